/* A deterministic mutation loop through the JSON and protobuf decoders: no input may crash or
 * leak, every failure is CM_ECODEC with a one-line reason, and whatever decodes must encode
 * again and come back to a fixed point. */
#include "codec_fixture.h"

#define ITERATIONS 4000

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t
rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static const char *const tokens[] = {
    "{",        "}",       "[",          "]",          "\"",        ",",         ":",
    "null",     "true",    "1e999",      "-",          "\\u",       "\\ud800",   "0",
    "\"MyKind\":", "\"text\":", "{\"a\":1}", "99999999999999999999999", "\xff", "\\",
    "\"Nested\":{}", "1.5", "\"NaN\"", "[[[[", "\x80\x01", "\x0a\x00",
};

static void
mutate(const cm_buf *src, cm_buf *dst)
{
    int k, rounds = 1 + (int)(rnd() % 4);

    dst->len = 0;
    CHECK_EQ_INT(cm_buf_append(dst, src->data, src->len), 0);
    for (k = 0; k < rounds; k++) {
        size_t pos = dst->len ? rnd() % dst->len : 0, n;
        const char *t;

        switch (rnd() % 6) {
        case 0:
            if (dst->len) {
                dst->data[pos] ^= (uint8_t)(1u << (rnd() % 8));
            }
            break;
        case 1:
            if (dst->len) {
                dst->data[pos] = (uint8_t)rnd();
            }
            break;
        case 2:
            n = 1 + rnd() % 8;
            n = n > dst->len - pos ? dst->len - pos : n;
            memmove(dst->data + pos, dst->data + pos + n, dst->len - pos - n);
            dst->len -= n;
            break;
        case 3:
            t = tokens[rnd() % (sizeof(tokens) / sizeof(tokens[0]))];
            n = strlen(t) ? strlen(t) : 1;
            CHECK_EQ_INT(cm_buf_reserve(dst, n), 0);
            memmove(dst->data + pos + n, dst->data + pos, dst->len - pos);
            memcpy(dst->data + pos, t, n);
            dst->len += n;
            break;
        case 4: {
            size_t from = dst->len ? rnd() % dst->len : 0;

            n = 1 + rnd() % 32;
            n = n > dst->len - from ? dst->len - from : n;
            CHECK_EQ_INT(cm_buf_reserve(dst, n), 0);
            memmove(dst->data + pos + n, dst->data + pos, dst->len - pos);
            memmove(dst->data + pos, dst->data + (from >= pos ? from + n : from), n);
            dst->len += n;
            break;
        }
        default:
            dst->len = pos;
            break;
        }
    }
}

/* Decodes with a counting allocator; on success encodes to JSON into js (if not NULL). */
static int
try_decode(const cm_codec_ops *c, const ProtobufCMessageDescriptor *desc, const uint8_t *data,
           size_t len, cm_buf *js)
{
    count_alloc ca;
    void *out = NULL;
    char err[256];
    int rc;

    count_alloc_init(&ca);
    err[0] = '\0';
    rc = c->unmarshal(desc, data, len, &ca.base, &out, err, sizeof(err));
    if (rc == 0) {
        cm_buf packed = pack_msg(out);

        if (js != NULL) {
            js->len = 0;
            CHECK_EQ_INT(cm_codec_json.marshal(desc, out, js), 0);
        }
        cm_buf_free(&packed);
        protobuf_c_message_free_unpacked(out, &ca.base);
    } else {
        CHECK_EQ_INT(rc, CM_ECODEC);
        CHECK(strlen(err) > 0);
        CHECK(strchr(err, '\n') == NULL);
    }
    CHECK_EQ_INT(ca.live, 0);
    return rc;
}

static void
fuzz(const cm_codec_ops *c, const ProtobufCMessageDescriptor *desc, const cm_buf *seed,
     int *accepted)
{
    cm_buf in = {0}, js1 = {0}, js2 = {0};
    int i;

    for (i = 0; i < ITERATIONS; i++) {
        mutate(seed, &in);
        if (try_decode(c, desc, in.data, in.len, &js1) != 0) {
            continue;
        }
        (*accepted)++;
        if (getenv("CM_FUZZ_VERBOSE") != NULL) {
            /* Shows each accepted mutant and what it encodes to, when chasing a failure. */
            fprintf(stderr, "accepted by %s: %.*s\n-> %.*s", c->name, (int)in.len,
                    (const char *)in.data, (int)js1.len, (const char *)js1.data);
        }
        /* What we decoded, we write; what we write, we read back to the same text. */
        CHECK_EQ_INT(try_decode(&cm_codec_json, desc, js1.data, js1.len, &js2), 0);
        if (!buf_eq(&js1, &js2)) {
            CHECK_EQ_INT(try_decode(&cm_codec_json, desc, js2.data, js2.len, &in), 0);
            CHECK(buf_eq(&js2, &in));
        }
    }
    cm_buf_free(&in);
    cm_buf_free(&js1);
    cm_buf_free(&js2);
}

static void
test_fuzz_rich(void)
{
    int which;

    for (which = 0; which <= 3; which++) {
        EchoRequest r;
        cm_buf json = {0}, proto;
        int json_ok = 0, proto_ok = 0;

        fill_rich(&r, which);
        CHECK_EQ_INT(cm_codec_json.marshal(ECHO_DESC, &r, &json), 0);
        proto = pack_msg(&r.base);
        fuzz(&cm_codec_json, ECHO_DESC, &json, &json_ok);
        fuzz(&cm_codec_proto, ECHO_DESC, &proto, &proto_ok);
        fprintf(stderr, "oneof %d: %d/%d JSON and %d/%d protobuf mutants decoded\n", which, json_ok,
                ITERATIONS, proto_ok, ITERATIONS);
        /* The loop must exercise both paths, not only the rejects. */
        CHECK(json_ok > ITERATIONS / 100);
        CHECK(proto_ok > ITERATIONS / 100);
        cm_buf_free(&json);
        cm_buf_free(&proto);
    }
}

static void
test_fuzz_legacy(void)
{
    static int32_t vals[] = {1, 2, 3};
    Legacy l = CMICRO__TEST__V1__LEGACY__INIT, child = CMICRO__TEST__V1__LEGACY__INIT;
    cm_buf json = {0}, proto;
    int json_ok = 0, proto_ok = 0;

    l.id = "root";
    l.has_count = 1;
    l.count = -4;
    l.label = "lab";
    child.id = "kid";
    child.has_ratio = 1;
    child.ratio = 2.5;
    l.child = &child;
    l.n_packed_vals = 3;
    l.packed_vals = vals;
    l.choice_case = CMICRO__TEST__V1__LEGACY__CHOICE_NAME;
    l.name = "nm";
    CHECK_EQ_INT(cm_codec_json.marshal(LEGACY_DESC, &l, &json), 0);
    proto = pack_msg(&l.base);
    fuzz(&cm_codec_json, LEGACY_DESC, &json, &json_ok);
    fuzz(&cm_codec_proto, LEGACY_DESC, &proto, &proto_ok);
    fprintf(stderr, "legacy: %d JSON and %d protobuf mutants decoded\n", json_ok, proto_ok);
    cm_buf_free(&json);
    cm_buf_free(&proto);
}

int
main(void)
{
    RUN(test_fuzz_rich);
    RUN(test_fuzz_legacy);
    TEST_DONE();
}
