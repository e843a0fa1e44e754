/* The rich request, its comparison, and the namespace guard (see echo_common.h). */
#include "echo_common.h"

#include "mdns/mdns_test.h"

#include <stdlib.h>
#include <string.h>

typedef Cmicro__Test__V1__Inner inner;
typedef Cmicro__Test__V1__EchoRequest__StrMapEntry str_entry;
typedef Cmicro__Test__V1__EchoRequest__InnerMapEntry inner_entry;
typedef Cmicro__Test__V1__EchoRequest__IntMapEntry int_entry;
typedef Cmicro__Test__V1__EchoRequest__BoolMapEntry bool_entry;
typedef Cmicro__Test__V1__EchoRequest__U64MapEntry u64_entry;

#define MSG(desc) .base = PROTOBUF_C_MESSAGE_INIT(&cmicro__test__v1__##desc##__descriptor)

static char *tags[] = {"x", "y"};
static inner in = {MSG(inner), .name = "in", .count = 3, .n_tags = 2, .tags = tags};
static inner r1 = {MSG(inner), .name = "r1", .count = 0};
static inner r2 = {MSG(inner), .name = "", .count = 2};
static inner *rep_inner[] = {&r1, &r2};
static inner mi = {MSG(inner), .name = "mi", .count = 1};
static int32_t rep_i32[] = {1, -2, 3};
static char *rep_str[] = {"a", "", "c"};
static Cmicro__Test__V1__Status rep_status[] = {CMICRO__TEST__V1__STATUS__STATUS_OK,
                                                 CMICRO__TEST__V1__STATUS__STATUS_FAILED};
static uint8_t payload[] = {0x00, 0xff, 0x10, 'a'};
static uint8_t one[] = {0x01};
static ProtobufCBinaryData rep_bytes[] = {{1, one}, {0, NULL}};
static double rep_dbl[] = {1.25, -2.5e10};
/* Map entries sorted by key, as echo_request_equal() sorts what it receives. */
static str_entry sm1 = {MSG(echo_request__str_map_entry), .key = "k1", .value = "v1"};
static str_entry sm2 = {MSG(echo_request__str_map_entry), .key = "k2", .value = ""};
static str_entry *str_map[] = {&sm1, &sm2};
static inner_entry im1 = {MSG(echo_request__inner_map_entry), .key = "m", .value = &mi};
static inner_entry *inner_map[] = {&im1};
static int_entry nm1 = {MSG(echo_request__int_map_entry), .key = -5, .value = "minus five"};
static int_entry nm2 = {MSG(echo_request__int_map_entry), .key = 1, .value = "one"};
static int_entry *int_map[] = {&nm1, &nm2};
static bool_entry bm1 = {MSG(echo_request__bool_map_entry), .key = 0, .value = -6};
static bool_entry bm2 = {MSG(echo_request__bool_map_entry), .key = 1, .value = 5};
static bool_entry *bool_map[] = {&bm1, &bm2};
static u64_entry um1 = {MSG(echo_request__u64_map_entry), .key = UINT64_MAX,
                        .value = CMICRO__TEST__V1__STATUS__STATUS_OK};
static u64_entry *u64_map[] = {&um1};
static int64_t rep_s64[] = {-1, 1};
static uint64_t rep_f64[] = {7};
static float rep_flt[] = {0.5f};
static protobuf_c_boolean rep_bool[] = {1, 0, 1};

static echo_request rich;

const echo_request *
rich_request(int for_json)
{
    echo_request r = CMICRO__TEST__V1__ECHO_REQUEST__INIT;
    r.message = "h\xc3\xa9llo <&> \"quoted\" \xe2\x9c\x93";
    r.i32 = -42;
    r.i64 = -9007199254740993LL;
    r.u32 = 4000000000u;
    r.u64 = UINT64_MAX;
    r.s32 = -7;
    r.s64 = -1234567890123LL;
    r.f32 = 0x12345678u;
    r.f64 = 0x123456789abcdef0ull;
    r.sf32 = -0x12345678;
    r.sf64 = -0x123456789abcdefLL;
    r.dbl = 0.1;
    r.flt = 1.5f;
    r.flag = 1;
    r.payload.len = sizeof(payload);
    r.payload.data = payload;
    r.status = CMICRO__TEST__V1__STATUS__STATUS_FAILED;
    r.mode = CMICRO__TEST__V1__ECHO_REQUEST__MODE__MODE_LOUD;
    r.inner = &in;
    r.n_rep_i32 = 3;
    r.rep_i32 = rep_i32;
    r.n_rep_str = 3;
    r.rep_str = rep_str;
    r.n_rep_inner = 2;
    r.rep_inner = rep_inner;
    r.n_rep_status = 2;
    r.rep_status = rep_status;
    r.n_rep_bytes = 2;
    r.rep_bytes = rep_bytes;
    r.n_rep_dbl = 2;
    r.rep_dbl = rep_dbl;
    r.n_str_map = 2;
    r.str_map = str_map;
    r.n_inner_map = 1;
    r.inner_map = inner_map;
    r.n_int_map = 2;
    r.int_map = int_map;
    if (for_json < 2) {
        r.my_kind_case = CMICRO__TEST__V1__ECHO_REQUEST__MY_KIND_NUMBER;
        r.number = (int64_t)1 << 40;
    }
    if (!for_json) {
        r.n_bool_map = 2;
        r.bool_map = bool_map;
    }
    r.n_u64_map = 1;
    r.u64_map = u64_map;
    r.n_rep_s64 = 2;
    r.rep_s64 = rep_s64;
    r.n_rep_f64 = 1;
    r.rep_f64 = rep_f64;
    r.n_rep_flt = 1;
    r.rep_flt = rep_flt;
    r.n_rep_bool = 3;
    r.rep_bool = rep_bool;
    r.zz_last_declared = "z";
    r.declared_after = 37;
    rich = r;
    return &rich;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp((*(str_entry *const *)a)->key, (*(str_entry *const *)b)->key);
}

static int
cmp_inner(const void *a, const void *b)
{
    return strcmp((*(inner_entry *const *)a)->key, (*(inner_entry *const *)b)->key);
}

static int
cmp_int(const void *a, const void *b)
{
    int32_t x = (*(int_entry *const *)a)->key, y = (*(int_entry *const *)b)->key;
    return (x > y) - (x < y);
}

static int
cmp_bool(const void *a, const void *b)
{
    int x = (*(bool_entry *const *)a)->key != 0, y = (*(bool_entry *const *)b)->key != 0;
    return x - y;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = (*(u64_entry *const *)a)->key, y = (*(u64_entry *const *)b)->key;
    return (x > y) - (x < y);
}

/* qsort, which must not see the NULL array of an empty field. */
static void
sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1) {
        qsort(base, n, size, cmp);
    }
}

int
echo_request_equal(const echo_request *want, echo_request *got)
{
    if (got == NULL) {
        return 0;
    }
    sort(got->str_map, got->n_str_map, sizeof(*got->str_map), cmp_str);
    sort(got->inner_map, got->n_inner_map, sizeof(*got->inner_map), cmp_inner);
    sort(got->int_map, got->n_int_map, sizeof(*got->int_map), cmp_int);
    sort(got->bool_map, got->n_bool_map, sizeof(*got->bool_map), cmp_bool);
    sort(got->u64_map, got->n_u64_map, sizeof(*got->u64_map), cmp_u64);
    size_t nw = protobuf_c_message_get_packed_size(&want->base);
    size_t ng = protobuf_c_message_get_packed_size(&got->base);
    if (nw != ng) {
        return 0;
    }
    uint8_t *bw = malloc(nw + 1), *bg = malloc(ng + 1);
    int eq = bw != NULL && bg != NULL && protobuf_c_message_pack(&want->base, bw) == nw &&
             protobuf_c_message_pack(&got->base, bg) == ng && memcmp(bw, bg, nw) == 0;
    free(bw);
    free(bg);
    return eq;
}

void
interop_require_netns_for(const char *registry)
{
    if (registry == NULL || strcmp(registry, "mdns") == 0) {
        require_private_netns();
    }
}
