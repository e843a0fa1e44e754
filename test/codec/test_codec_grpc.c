/* go-micro's gRPC framing over HTTP (application/grpc, application/grpc+proto): the 5-byte
 * prefix around the protobuf encoding, empty messages both ways, and clear errors for
 * a cut prefix, compression, a length that disagrees with the body and a message over 4 MiB. */
#include "codec_fixture.h"

static void
test_round_trip(void)
{
    const cm_codec_ops *codecs[] = {&cm_codec_grpc, &cm_codec_grpc_proto};
    for (size_t k = 0; k < 2; k++) {
        const cm_codec_ops *c = codecs[k];
        EchoRequest r;
        fill_rich(&r, 1);
        cm_buf want = pack_msg(&r.base), got = {0};
        CHECK_EQ_INT(c->marshal(ECHO_DESC, &r, &got), 0);
        CHECK_EQ_INT(got.len, want.len + 5);
        CHECK(got.data[0] == 0);
        uint32_t n = (uint32_t)got.data[1] << 24 | (uint32_t)got.data[2] << 16 |
                     (uint32_t)got.data[3] << 8 | got.data[4];
        CHECK_EQ_INT(n, want.len);
        CHECK(memcmp(got.data + 5, want.data, want.len) == 0);

        void *out = NULL;
        char err[128] = "";
        count_alloc ca; /* the caller's allocator is used for the whole message */
        count_alloc_init(&ca);
        CHECK_EQ_INT(c->unmarshal(ECHO_DESC, got.data, got.len, &ca.base, &out, err, sizeof err),
                     0);
        CHECK(ca.live > 0);
        cm_buf again = pack_msg(out);
        CHECK(buf_eq(&want, &again));
        protobuf_c_message_free_unpacked(out, &ca.base);
        CHECK_EQ_INT(ca.live, 0);
        cm_buf_free(&again);
        cm_buf_free(&want);
        cm_buf_free(&got);
    }
}

static void
test_empty(void)
{
    /* An empty message is written with its prefix (go-micro's reader fails on no bytes), and no
     * bytes (what go-micro writes) read back as the default message. */
    EchoRequest r = CMICRO__TEST__V1__ECHO_REQUEST__INIT;
    cm_buf got = {0};
    CHECK_EQ_INT(cm_codec_grpc.marshal(ECHO_DESC, &r, &got), 0);
    CHECK_EQ_INT(got.len, 5);
    CHECK(memcmp(got.data, "\0\0\0\0\0", 5) == 0);
    cm_buf_free(&got);
    void *out = NULL;
    char err[128] = "";
    CHECK_EQ_INT(
        cm_codec_grpc.unmarshal(ECHO_DESC, (const uint8_t *)"", 0, NULL, &out, err, sizeof err), 0);
    CHECK(((EchoRequest *)out)->message[0] == '\0');
    protobuf_c_message_free_unpacked(out, NULL);
    /* A zero-length frame with its prefix is the default message too. */
    static const uint8_t zero[5] = {0, 0, 0, 0, 0};
    CHECK_EQ_INT(cm_codec_grpc.unmarshal(ECHO_DESC, zero, 5, NULL, &out, err, sizeof err), 0);
    protobuf_c_message_free_unpacked(out, NULL);
}

static void
expect_error(const uint8_t *data, size_t len, const char *reason)
{
    void *out = NULL;
    char err[128] = "";
    CHECK_EQ_INT(cm_codec_grpc.unmarshal(ECHO_DESC, data, len, NULL, &out, err, sizeof err),
                 CM_ECODEC);
    CHECK(out == NULL);
    if (strstr(err, reason) == NULL) {
        fprintf(stderr, "reason: %s\n", err);
    }
    CHECK(strstr(err, reason) != NULL);
}

static void
test_bad_frames(void)
{
    static const uint8_t cut[3] = {0, 0, 0};
    expect_error(cut, 3, "prefix cut short");
    static const uint8_t compressed[7] = {1, 0, 0, 0, 2, 0x0a, 0x00};
    expect_error(compressed, 7, "compressed gRPC messages");
    static const uint8_t longer[7] = {0, 0, 0, 0, 9, 0x0a, 0x00};
    expect_error(longer, 7, "length 9, but 2 bytes follow");
    /* The message go-micro's server misread a plain protobuf body as: refused up front. */
    static const uint8_t huge[8] = {0, 0x6e, 0x73, 0x2e, 0x70, 1, 2, 3};
    expect_error(huge, 8, "larger than max (1853042288 vs. 4194304)");
}

int
main(void)
{
    RUN(test_round_trip);
    RUN(test_empty);
    RUN(test_bad_frames);
    TEST_DONE();
}
