/* application/protobuf and application/octet-stream, and raw frames through every codec. */
#include "codec_fixture.h"

#include "codec_int.h"

static void
test_proto_round_trip(void)
{
    const cm_codec_ops *c = &cm_codec_proto;
    int which;

    for (which = 0; which <= 3; which++) {
        EchoRequest r;
        cm_buf want, got = {0}, again;
        count_alloc ca;
        void *out = NULL;
        char err[128] = "";

        fill_rich(&r, which);
        want = pack_msg(&r.base);
        CHECK_EQ_INT(c->marshal(ECHO_DESC, &r, &got), 0);
        CHECK(buf_eq(&want, &got));

        count_alloc_init(&ca);
        CHECK_EQ_INT(c->unmarshal(ECHO_DESC, got.data, got.len, &ca.base, &out, err, sizeof(err)),
                     0);
        CHECK(ca.live > 0);
        again = pack_msg(out);
        CHECK(buf_eq(&want, &again));
        CHECK_EQ_INT(((EchoRequest *)out)->my_kind_case, which == 0 ? 0 : 27 + which);
        protobuf_c_message_free_unpacked(out, &ca.base);
        CHECK_EQ_INT(ca.live, 0);

        /* Marshal appends. */
        CHECK_EQ_INT(c->marshal(ECHO_DESC, &r, &got), 0);
        CHECK_EQ_INT(got.len, 2 * want.len);
        CHECK(memcmp(got.data + want.len, want.data, want.len) == 0);
        cm_buf_free(&want);
        cm_buf_free(&got);
        cm_buf_free(&again);
    }
}

static void
test_proto_empty_and_wrong(void)
{
    const cm_codec_ops *c = &cm_codec_proto;
    Cmicro__Test__V1__EmptyRequest e = CMICRO__TEST__V1__EMPTY_REQUEST__INIT;
    EchoRequest r;
    cm_buf b = {0};
    void *out = NULL;
    char err[128];

    /* An empty message encodes to zero bytes and zero bytes decode to the default message. */
    CHECK_EQ_INT(c->marshal(&cmicro__test__v1__empty_request__descriptor, &e, &b), 0);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_INT(c->unmarshal(ECHO_DESC, (const uint8_t *)"", 0, NULL, &out, err, sizeof(err)),
                 0);
    CHECK_EQ_STR(((EchoRequest *)out)->message, "");
    CHECK_EQ_INT(((EchoRequest *)out)->n_rep_i32, 0);
    protobuf_c_message_free_unpacked(out, NULL);

    /* A message of another type than the descriptor is refused. */
    fill_rich(&r, 0);
    CHECK_EQ_INT(c->marshal(&cmicro__test__v1__inner__descriptor, &r, &b), CM_ECODEC);
    CHECK_EQ_INT(c->marshal(ECHO_DESC, NULL, &b), CM_ECODEC);
    CHECK_EQ_INT(b.len, 0);
    cm_buf_free(&b);
}

static void
test_proto_garbage(void)
{
    static const struct {
        const char *data;
        size_t len;
    } cases[] = {
        {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11}, /* varint too long */
        {"\x0a\x05" "ab", 4},                                 /* length beyond the end */
        {"\x0a", 1},                                          /* tag without value */
        {"\x0f", 1},                                          /* wire type 7 */
        {"\x0b\x0c", 2},                                      /* groups are unsupported */
        {"\x92\x01\x03\x0a\x05x", 6},                         /* bad nested message */
        {"\x00\x01", 2},                                      /* field number 0 */
        /* Field number 0 in a two-byte tag, which protobuf-c 1.4 takes as an unknown field
         * (found by test/fuzz codec-proto): at the top, in a message, a repeated message, a
         * oneof member and a map value. */
        {"\x80\x00\x05", 3},
        {"\x92\x01\x03\x80\x00\x05", 6},
        {"\xaa\x01\x03\x80\x00\x05", 6},
        {"\xf2\x01\x03\x80\x00\x05", 6},
        {"\xd2\x01\x05\x12\x03\x80\x00\x05", 8},
    };
    count_alloc ca;
    size_t i;

    count_alloc_init(&ca);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        void *out = NULL;
        char err[128] = "";

        CHECK_EQ_INT(cm_codec_proto.unmarshal(ECHO_DESC, (const uint8_t *)cases[i].data,
                                              cases[i].len, &ca.base, &out, err, sizeof(err)),
                     CM_ECODEC);
        CHECK(out == NULL);
        CHECK(strstr(err, "cmicro.test.v1.EchoRequest") != NULL);
        CHECK(strchr(err, '\n') == NULL);
    }
    CHECK_EQ_INT(ca.live, 0);

    /* A proto2 message without its required field does not decode either. */
    {
        void *out = NULL;
        char err[128] = "";

        CHECK_EQ_INT(cm_codec_proto.unmarshal(LEGACY_DESC, (const uint8_t *)"\x10\x01", 2, NULL,
                                              &out, err, sizeof(err)),
                     CM_ECODEC);
        /* A NULL err buffer is allowed. */
        CHECK_EQ_INT(cm_codec_proto.unmarshal(ECHO_DESC, (const uint8_t *)"\x0f", 1, NULL, &out,
                                              NULL, 0),
                     CM_ECODEC);
    }
}

static void
test_proto_out_of_memory(void)
{
    EchoRequest r;
    cm_buf b;
    long n;
    int ok = 0;

    fill_rich(&r, 3);
    b = pack_msg(&r.base);
    /* Fail each allocation in turn: every failure is CM_ENOMEM and leaks nothing. */
    for (n = 0; !ok; n++) {
        count_alloc ca;
        void *out = NULL;
        int rc;

        count_alloc_init(&ca);
        ca.fail_at = n;
        rc = cm_codec_proto.unmarshal(ECHO_DESC, b.data, b.len, &ca.base, &out, NULL, 0);
        if (rc == 0) {
            protobuf_c_message_free_unpacked(out, &ca.base);
            ok = 1;
        } else {
            CHECK_EQ_INT(rc, CM_ENOMEM);
        }
        CHECK_EQ_INT(ca.live, 0);
        CHECK(n < 10000);
    }
    CHECK(n > 10);
    cm_buf_free(&b);
}

static void
check_raw(const cm_codec_ops *c)
{
    static const uint8_t frame[] = {0x00, 0xff, 'r', 'a', 'w', 0x0a};
    ProtobufCBinaryData in = {sizeof(frame), (uint8_t *)frame};
    ProtobufCBinaryData empty = {0, NULL};
    ProtobufCBinaryData *raw;
    cm_buf b = {0};
    count_alloc ca;
    void *out = NULL;
    char err[64];

    CHECK_EQ_INT(c->marshal(NULL, &in, &b), 0);
    CHECK_EQ_INT(b.len, sizeof(frame));
    CHECK(memcmp(b.data, frame, sizeof(frame)) == 0);
    CHECK_EQ_INT(c->marshal(NULL, &empty, &b), 0);
    CHECK_EQ_INT(b.len, sizeof(frame));

    /* With an allocator: two allocations, freed data first then the struct. */
    count_alloc_init(&ca);
    CHECK_EQ_INT(c->unmarshal(NULL, b.data, b.len, &ca.base, &out, err, sizeof(err)), 0);
    raw = out;
    CHECK_EQ_INT(raw->len, sizeof(frame));
    CHECK(memcmp(raw->data, frame, sizeof(frame)) == 0);
    CHECK(raw->data != b.data);
    CHECK_EQ_INT(ca.live, 2);
    ca.base.free(ca.base.allocator_data, raw->data);
    ca.base.free(ca.base.allocator_data, raw);
    CHECK_EQ_INT(ca.live, 0);

    /* A zero-length frame still has a data pointer, so it is freed the same way. */
    CHECK_EQ_INT(c->unmarshal(NULL, NULL, 0, &ca.base, &out, err, sizeof(err)), 0);
    raw = out;
    CHECK_EQ_INT(raw->len, 0);
    CHECK(raw->data != NULL);
    cm__codec_raw_free(raw, &ca.base);
    CHECK_EQ_INT(ca.live, 0);

    /* Without an allocator: malloc, freed with free(). The JSON codec does not parse. */
    CHECK_EQ_INT(c->unmarshal(NULL, (const uint8_t *)"{not json", 9, NULL, &out, err,
                              sizeof(err)),
                 0);
    raw = out;
    CHECK_EQ_INT(raw->len, 9);
    CHECK(memcmp(raw->data, "{not json", 9) == 0);
    free(raw->data);
    free(raw);

    /* Out of memory on either allocation. */
    count_alloc_init(&ca);
    ca.fail_at = 0;
    CHECK_EQ_INT(c->unmarshal(NULL, frame, sizeof(frame), &ca.base, &out, err, sizeof(err)),
                 CM_ENOMEM);
    count_alloc_init(&ca);
    ca.fail_at = 1;
    CHECK_EQ_INT(c->unmarshal(NULL, frame, sizeof(frame), &ca.base, &out, err, sizeof(err)),
                 CM_ENOMEM);
    CHECK_EQ_INT(ca.live, 0);
    cm_buf_free(&b);
}

static void
test_raw_frames(void)
{
    check_raw(&cm_codec_proto);
    check_raw(&cm_codec_json);
    check_raw(&cm_codec_bytes);
}

static void
test_bytes_codec(void)
{
    EchoRequest r;
    cm_buf b = {0};
    void *out = NULL;
    char err[128] = "";

    fill_rich(&r, 0);
    CHECK_EQ_INT(cm_codec_bytes.marshal(ECHO_DESC, &r, &b), CM_ECODEC);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_INT(
        cm_codec_bytes.unmarshal(ECHO_DESC, (const uint8_t *)"x", 1, NULL, &out, err, sizeof(err)),
        CM_ECODEC);
    CHECK_EQ_STR(err, "application/octet-stream carries raw bytes only");
    cm_buf_free(&b);
}

int
main(void)
{
    RUN(test_proto_round_trip);
    RUN(test_proto_empty_and_wrong);
    RUN(test_proto_garbage);
    RUN(test_proto_out_of_memory);
    RUN(test_raw_frames);
    RUN(test_bytes_codec);
    TEST_DONE();
}
