/* Shared pieces of the codec tests: a counting (and failing) allocator, a rich EchoRequest
 * that sets every field kind, and protobuf packing into a cm_buf. */
#ifndef CM_TEST_CODEC_FIXTURE_H
#define CM_TEST_CODEC_FIXTURE_H

#include "echo.pb-c.h"
#include "legacy.pb-c.h"
#include "test.h"

#include <cmicro/codec.h>
#include <float.h>
#include <stdint.h>

typedef Cmicro__Test__V1__EchoRequest EchoRequest;
typedef Cmicro__Test__V1__Inner Inner;
typedef Cmicro__Test__V1__Legacy Legacy;
#define ECHO_DESC (&cmicro__test__v1__echo_request__descriptor)
#define LEGACY_DESC (&cmicro__test__v1__legacy__descriptor)

/* Counts live allocations; fail_at >= 0 makes that allocation (0-based) return NULL. */
typedef struct count_alloc {
    ProtobufCAllocator base;
    long live;
    long total;
    long fail_at;
} count_alloc;

static void *
count_alloc_fn(void *data, size_t size)
{
    count_alloc *c = data;
    void *p;

    if (c->fail_at >= 0 && c->total++ == c->fail_at) {
        return NULL;
    }
    if (c->fail_at < 0) {
        c->total++;
    }
    p = malloc(size);
    if (p != NULL) {
        c->live++;
    }
    return p;
}

static void
count_free_fn(void *data, void *p)
{
    count_alloc *c = data;

    if (p != NULL) {
        c->live--;
        free(p);
    }
}

static void
count_alloc_init(count_alloc *c)
{
    c->base.alloc = count_alloc_fn;
    c->base.free = count_free_fn;
    c->base.allocator_data = c;
    c->live = 0;
    c->total = 0;
    c->fail_at = -1;
}

/* protobuf_c_message_pack into a fresh buffer. */
static cm_buf
pack_msg(const ProtobufCMessage *m)
{
    cm_buf b = {0};

    CHECK(cm_buf_reserve(&b, protobuf_c_message_get_packed_size(m) + 1) == 0);
    b.len = protobuf_c_message_pack(m, b.data);
    return b;
}

static int
buf_eq(const cm_buf *a, const cm_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Storage for the rich message (static: the tests are single-threaded). */
static Inner rich_inner, rich_rep_inner0, rich_rep_inner1, rich_map_inner, rich_nested;
static Cmicro__Test__V1__EchoRequest__StrMapEntry rich_sm[3];
static Cmicro__Test__V1__EchoRequest__InnerMapEntry rich_im[2];
static Cmicro__Test__V1__EchoRequest__IntMapEntry rich_intm[3];
static Cmicro__Test__V1__EchoRequest__BoolMapEntry rich_bm[2];
static Cmicro__Test__V1__EchoRequest__U64MapEntry rich_um[1];

/* Every field kind set. Map entries are in key order already so that a JSON round trip (which
 * sorts keys) packs to the same bytes. which_oneof: 0 none, 1 text, 2 number, 3 nested. */
static void
fill_rich(EchoRequest *r, int which_oneof)
{
    static char *tags[] = {"a", "b"};
    static char *rep_str[] = {"x", "", "\xe2\x82\xac"};
    static Inner *rep_inner[2];
    static int32_t rep_i32[] = {1, -2, 2147483647, -2147483647 - 1};
    static Cmicro__Test__V1__Status rep_status[] = {0, 2, 1};
    static uint8_t hi[] = {'h', 'i'};
    static ProtobufCBinaryData rep_bytes[] = {{0, NULL}, {2, hi}};
    static double rep_dbl[] = {1e21, 1e-7, 123456789, -0.0, 1.5e300, 0.1};
    static int64_t rep_s64[] = {-1, INT64_MIN, INT64_MAX};
    static uint64_t rep_f64[] = {UINT64_MAX, 0};
    static float rep_flt[] = {FLT_MAX, 1e-45f, 0.1f, -3.5f};
    static protobuf_c_boolean rep_bool[] = {1, 0};
    static uint8_t payload[] = {0x00, 0x01, 0x02, 0xfb, 0xff};
    static Cmicro__Test__V1__EchoRequest__StrMapEntry *sm[3];
    static Cmicro__Test__V1__EchoRequest__InnerMapEntry *im[2];
    static Cmicro__Test__V1__EchoRequest__IntMapEntry *intm[3];
    static Cmicro__Test__V1__EchoRequest__BoolMapEntry *bm[2];
    static Cmicro__Test__V1__EchoRequest__U64MapEntry *um[1];
    static const char *sm_keys[] = {"<", "a", "b"}, *sm_vals[] = {"", "1", "2"};
    static const int32_t int_keys[] = {-1, 10, 2};
    static const char *int_vals[] = {"neg", "ten", "two"};
    int i;

    cmicro__test__v1__echo_request__init(r);
    r->message = "h\xc3\xa9llo <b>&\t\"q\"\\ \xe2\x80\xa8\xff\x01";
    r->i32 = -5;
    r->i64 = INT64_MAX;
    r->u32 = UINT32_MAX;
    r->u64 = UINT64_MAX;
    r->s32 = INT32_MIN;
    r->s64 = INT64_MIN;
    r->f32 = 7;
    r->sf64 = -1;
    r->dbl = 0.1;
    r->flt = 0.1f;
    r->flag = 1;
    r->payload.data = payload;
    r->payload.len = sizeof(payload);
    r->status = CMICRO__TEST__V1__STATUS__STATUS_OK;

    cmicro__test__v1__inner__init(&rich_inner);
    rich_inner.name = "in";
    rich_inner.n_tags = 2;
    rich_inner.tags = tags;
    r->inner = &rich_inner;

    r->n_rep_i32 = 4;
    r->rep_i32 = rep_i32;
    r->n_rep_str = 3;
    r->rep_str = rep_str;
    cmicro__test__v1__inner__init(&rich_rep_inner0);
    cmicro__test__v1__inner__init(&rich_rep_inner1);
    rich_rep_inner1.count = 2;
    rep_inner[0] = &rich_rep_inner0;
    rep_inner[1] = &rich_rep_inner1;
    r->n_rep_inner = 2;
    r->rep_inner = rep_inner;
    r->n_rep_status = 3;
    r->rep_status = rep_status;
    r->n_rep_bytes = 2;
    r->rep_bytes = rep_bytes;
    r->n_rep_dbl = 6;
    r->rep_dbl = rep_dbl;

    for (i = 0; i < 3; i++) {
        cmicro__test__v1__echo_request__str_map_entry__init(&rich_sm[i]);
        rich_sm[i].key = (char *)sm_keys[i];
        rich_sm[i].value = (char *)sm_vals[i];
        sm[i] = &rich_sm[i];
    }
    r->n_str_map = 3;
    r->str_map = sm;

    cmicro__test__v1__inner__init(&rich_map_inner);
    rich_map_inner.name = "v";
    for (i = 0; i < 2; i++) {
        cmicro__test__v1__echo_request__inner_map_entry__init(&rich_im[i]);
        im[i] = &rich_im[i];
    }
    rich_im[0].key = "j";
    rich_im[0].value = &rich_rep_inner0; /* empty message */
    rich_im[1].key = "k";
    rich_im[1].value = &rich_map_inner;
    r->n_inner_map = 2;
    r->inner_map = im;

    for (i = 0; i < 3; i++) {
        cmicro__test__v1__echo_request__int_map_entry__init(&rich_intm[i]);
        rich_intm[i].key = int_keys[i];
        rich_intm[i].value = (char *)int_vals[i];
        intm[i] = &rich_intm[i];
    }
    r->n_int_map = 3;
    r->int_map = intm;

    for (i = 0; i < 2; i++) {
        cmicro__test__v1__echo_request__bool_map_entry__init(&rich_bm[i]);
        bm[i] = &rich_bm[i];
    }
    rich_bm[0].key = 0;
    rich_bm[0].value = 0;
    rich_bm[1].key = 1;
    rich_bm[1].value = 5;
    r->n_bool_map = 2;
    r->bool_map = bm;

    cmicro__test__v1__echo_request__u64_map_entry__init(&rich_um[0]);
    rich_um[0].key = UINT64_MAX;
    rich_um[0].value = CMICRO__TEST__V1__STATUS__STATUS_FAILED;
    um[0] = &rich_um[0];
    r->n_u64_map = 1;
    r->u64_map = um;

    r->n_rep_s64 = 3;
    r->rep_s64 = rep_s64;
    r->n_rep_f64 = 2;
    r->rep_f64 = rep_f64;
    r->n_rep_flt = 4;
    r->rep_flt = rep_flt;
    r->n_rep_bool = 2;
    r->rep_bool = rep_bool;
    r->zz_last_declared = "z";
    r->declared_after = 9;

    switch (which_oneof) {
    case 1:
        r->my_kind_case = CMICRO__TEST__V1__ECHO_REQUEST__MY_KIND_TEXT;
        r->text = "t";
        break;
    case 2:
        r->my_kind_case = CMICRO__TEST__V1__ECHO_REQUEST__MY_KIND_NUMBER;
        r->number = 0;
        break;
    case 3:
        cmicro__test__v1__inner__init(&rich_nested);
        rich_nested.name = "n";
        rich_nested.count = -3;
        r->my_kind_case = CMICRO__TEST__V1__ECHO_REQUEST__MY_KIND_NESTED;
        r->nested = &rich_nested;
        break;
    default:
        break;
    }
}

#endif
