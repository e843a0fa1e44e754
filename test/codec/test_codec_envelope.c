/* go-micro's envelope codecs: application/proto-rpc (netstrings: the Request/Response envelope,
 * then the message) and application/json-rpc ({"method","params":[msg],"id"} and
 * {"id","result","error"}), with grpc+json's framing of the JSON encoding. Round trips, the
 * exact bytes Go writes, errors carried in the envelope, and malformed bodies. */
#include "codec_fixture.h"

static cm_codec_envelope
envelope(const char *method, const char *id, const char *error)
{
    cm_codec_envelope e;
    memset(&e, 0, sizeof e);
    snprintf(e.method, sizeof e.method, "%s", method);
    snprintf(e.id, sizeof e.id, "%s", id);
    snprintf(e.error, sizeof e.error, "%s", error);
    return e;
}

static void
round_trip(const cm_codec_ops *c, int response)
{
    EchoRequest r;
    fill_rich(&r, 0);
    r.message = "h\xc3\xa9llo"; /* valid UTF-8: JSON replaces invalid bytes, as Go does */
    cm_codec_envelope in = envelope("Echo.Call", "42", ""), out;
    cm_buf b = {0};
    CHECK_EQ_INT(c->marshal_envelope(response, &in, ECHO_DESC, &r, &b), 0);
    void *msg = NULL;
    char err[160] = "";
    CHECK_EQ_INT(c->unmarshal_envelope(response, ECHO_DESC, b.data, b.len, NULL, &out, &msg, err,
                                       sizeof err),
                 0);
    CHECK_EQ_STR(out.id, "42");
    CHECK_EQ_STR(out.error, "");
    if (!response || c == &cm_codec_proto_rpc) {
        CHECK_EQ_STR(out.method, "Echo.Call");
    }
    CHECK(msg != NULL);
    CHECK_EQ_STR(((EchoRequest *)msg)->message, r.message);
    protobuf_c_message_free_unpacked(msg, NULL);
    cm_buf_free(&b);
}

static void
test_round_trips(void)
{
    round_trip(&cm_codec_proto_rpc, 0);
    round_trip(&cm_codec_proto_rpc, 1);
    round_trip(&cm_codec_json_rpc, 0);
    round_trip(&cm_codec_json_rpc, 1);
}

static void
test_errors_in_envelope(void)
{
    const cm_codec_ops *codecs[] = {&cm_codec_proto_rpc, &cm_codec_json_rpc};
    for (size_t i = 0; i < 2; i++) {
        cm_codec_envelope in = envelope("Echo.Call", "7", "{\"id\":\"x\",\"code\":409}"), out;
        cm_buf b = {0};
        CHECK_EQ_INT(codecs[i]->marshal_envelope(1, &in, ECHO_DESC, NULL, &b), 0);
        void *msg = (void *)&b;
        char err[160] = "";
        CHECK_EQ_INT(codecs[i]->unmarshal_envelope(1, ECHO_DESC, b.data, b.len, NULL, &out, &msg,
                                                   err, sizeof err),
                     0);
        CHECK(msg == NULL);
        CHECK_EQ_STR(out.error, "{\"id\":\"x\",\"code\":409}");
        cm_buf_free(&b);
    }
}

static void
test_json_rpc_wire(void)
{
    /* A request as Go's jsonrpc client writes one; the id keeps its type in the answer. */
    static const char go_req[] = "{\"params\":[{\"message\":\"hi\"}],\"id\":\"3\","
                                 "\"method\":\"Echo.Call\"}\n";
    cm_codec_envelope env;
    void *msg = NULL;
    char err[160] = "";
    CHECK_EQ_INT(cm_codec_json_rpc.unmarshal_envelope(0, ECHO_DESC, (const uint8_t *)go_req,
                                                      strlen(go_req), NULL, &env, &msg, err,
                                                      sizeof err),
                 0);
    CHECK_EQ_STR(env.method, "Echo.Call");
    CHECK_EQ_STR(env.id, "3");
    CHECK(env.id_is_string);
    CHECK_EQ_STR(((EchoRequest *)msg)->message, "hi");
    protobuf_c_message_free_unpacked(msg, NULL);
    cm_buf b = {0};
    CHECK_EQ_INT(cm_codec_json_rpc.marshal_envelope(1, &env, ECHO_DESC, NULL, &b), 0);
    CHECK_EQ_INT(b.len, strlen("{\"id\":\"3\",\"result\":null,\"error\":null}\n"));
    CHECK(memcmp(b.data, "{\"id\":\"3\",\"result\":null,\"error\":null}\n", b.len) == 0);
    cm_buf_free(&b);
    env.id_is_string = 0;
    CHECK_EQ_INT(cm_codec_json_rpc.marshal_envelope(1, &env, ECHO_DESC, NULL, &b), 0);
    CHECK(memcmp(b.data, "{\"id\":3,", 8) == 0);
    cm_buf_free(&b);

    static const char *bad[] = {"[]", "{\"method\":\"A.B\",\"params\":{},\"id\":1}",
                                "{\"method\":\"A.B\",\"params\":[1,2],\"id\":1}", "{"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msg = NULL;
        CHECK_EQ_INT(cm_codec_json_rpc.unmarshal_envelope(0, ECHO_DESC, (const uint8_t *)bad[i],
                                                          strlen(bad[i]), NULL, &env, &msg, err,
                                                          sizeof err),
                     CM_ECODEC);
        CHECK(msg == NULL);
    }
}

static void
test_proto_rpc_bounds(void)
{
    /* Netstrings that run past the body are refused, not read past. */
    static const uint8_t cut[] = {0, 0, 0};
    static const uint8_t longer[] = {0, 0, 0, 9, 0x0a, 0x01, 'x'};
    static const uint8_t body_longer[] = {0, 0, 0, 0, 0, 0, 0, 200, 1};
    const struct {
        const uint8_t *p;
        size_t n;
    } cases[] = {{cut, sizeof cut}, {longer, sizeof longer}, {body_longer, sizeof body_longer}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cm_codec_envelope env;
        void *msg = NULL;
        char err[160] = "";
        CHECK_EQ_INT(cm_codec_proto_rpc.unmarshal_envelope(0, ECHO_DESC, cases[i].p, cases[i].n,
                                                           NULL, &env, &msg, err, sizeof err),
                     CM_ECODEC);
        CHECK(strstr(err, "proto-rpc") != NULL);
    }
}

static void
test_grpc_json(void)
{
    EchoRequest r;
    fill_rich(&r, 0);
    r.message = "h\xc3\xa9llo";
    cm_buf b = {0}, j = {0};
    CHECK_EQ_INT(cm_codec_grpc_json.marshal(ECHO_DESC, &r, &b), 0);
    CHECK_EQ_INT(cm_codec_json.marshal(ECHO_DESC, &r, &j), 0);
    CHECK_EQ_INT(b.len, j.len + 5);
    CHECK(memcmp(b.data + 5, j.data, j.len) == 0);
    void *msg = NULL;
    char err[160] = "";
    CHECK_EQ_INT(
        cm_codec_grpc_json.unmarshal(ECHO_DESC, b.data, b.len, NULL, &msg, err, sizeof err), 0);
    cm_buf want = pack_msg(&r.base), got = pack_msg(msg);
    CHECK(buf_eq(&want, &got)); /* every field came back */
    cm_buf_free(&want);
    cm_buf_free(&got);
    protobuf_c_message_free_unpacked(msg, NULL);
    cm_buf_free(&b);
    cm_buf_free(&j);
}

/* An error or id longer than its field is cut at a character boundary, so that what is written
 * back is the same UTF-8 (found by the codec-envelope fuzzer: a cut inside a character came back
 * as U+FFFD and read differently). */
static void
test_json_rpc_cut_at_characters(void)
{
    cm_buf in = {0};
    const char *head = "{\"id\":\"";
    CHECK_EQ_INT(cm_buf_append(&in, head, strlen(head)), 0);
    for (int i = 0; i < 40; i++) {
        CHECK_EQ_INT(cm_buf_append(&in, "\xc3\xa9", 2), 0); /* e acute: 2 bytes */
    }
    const char *mid = "\",\"result\":null,\"error\":\"x";
    CHECK_EQ_INT(cm_buf_append(&in, mid, strlen(mid)), 0);
    for (int i = 0; i < 600; i++) {
        CHECK_EQ_INT(cm_buf_append(&in, "\xe2\x82\xac", 3), 0); /* the euro sign: 3 bytes */
    }
    CHECK_EQ_INT(cm_buf_append(&in, "\"}", 2), 0);
    cm_codec_envelope env, env2;
    void *msg = NULL;
    char err[160] = "";
    CHECK_EQ_INT(cm_codec_json_rpc.unmarshal_envelope(1, ECHO_DESC, in.data, in.len, NULL, &env,
                                                      &msg, err, sizeof err),
                 0);
    CHECK_EQ_INT(strlen(env.id), 2 * 31);         /* 63 bytes fit: 31 whole characters */
    CHECK_EQ_INT(strlen(env.error), 1 + 3 * 340); /* 1,023 fit: "x" and 340 characters */
    cm_buf out = {0};
    CHECK_EQ_INT(cm_codec_json_rpc.marshal_envelope(1, &env, ECHO_DESC, NULL, &out), 0);
    CHECK_EQ_INT(cm_codec_json_rpc.unmarshal_envelope(1, ECHO_DESC, out.data, out.len, NULL, &env2,
                                                      &msg, err, sizeof err),
                 0);
    CHECK_EQ_STR(env2.id, env.id);
    CHECK_EQ_STR(env2.error, env.error);
    cm_buf_free(&in);
    cm_buf_free(&out);
}

int
main(void)
{
    count_alloc unused;
    count_alloc_init(&unused);
    RUN(test_round_trips);
    RUN(test_errors_in_envelope);
    RUN(test_json_rpc_wire);
    RUN(test_json_rpc_cut_at_characters);
    RUN(test_proto_rpc_bounds);
    RUN(test_grpc_json);
    TEST_DONE();
}
