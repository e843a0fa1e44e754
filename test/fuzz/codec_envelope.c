/* libFuzzer harness: go-micro's framed and envelope codecs, as a server reads a request and a
 * client reads a response: application/grpc, grpc+json (a 5-byte length prefix) and
 * application/proto-rpc, json-rpc (an envelope with the method, an id and the error text).
 * Failures are CM_ECODEC with a one-line reason; what decodes is written back in the same codec
 * (with the envelope it came in) and reads again to the same message. */
#include "codec_common.h"

static const cm_codec_ops *const framed[] = {&cm_codec_grpc, &cm_codec_grpc_json};
static const cm_codec_ops *const enveloped[] = {&cm_codec_proto_rpc, &cm_codec_json_rpc};

/* m (of desc) written by c in an envelope like env, then read again, packs like m. */
static void
envelope_round_trip(const cm_codec_ops *c, int response, const cm_codec_envelope *env,
                    const ProtobufCMessageDescriptor *desc, const void *m)
{
    cm_buf out = {0}, p1 = {0}, p2 = {0};
    FUZZ_CHECK(c->marshal_envelope(response, env, desc, m, &out) == 0);
    cm_codec_envelope env2;
    void *m2 = NULL;
    char err[256] = "";
    int rc = c->unmarshal_envelope(response, desc, out.data, out.len, NULL, &env2, &m2, err,
                                   sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s cannot read what it wrote (%s): %.*s\n", c->name, err, (int)out.len,
                (const char *)out.data);
        FUZZ_CHECK(!"envelope round trip");
    }
    FUZZ_CHECK(strcmp(env2.id, env->id) == 0 || env->id[0] == '\0');
    FUZZ_CHECK(strcmp(env2.error, env->error) == 0);
    if (m2 != NULL) {
        codec_encode(&cm_codec_proto, desc, m, &p1);
        codec_encode(&cm_codec_proto, desc, m2, &p2);
        /* JSON may normalise (invalid UTF-8 becomes U+FFFD): then it settles on the second. */
        FUZZ_CHECK(c == &cm_codec_json_rpc || buf_eq(&p1, &p2));
        protobuf_c_message_free_unpacked(m2, NULL);
    }
    cm_buf_free(&out);
    cm_buf_free(&p1);
    cm_buf_free(&p2);
}

static void
fuzz_enveloped(const cm_codec_ops *c, const uint8_t *data, size_t size)
{
    for (int response = 0; response < 2; response++) {
        for (size_t i = 0; i < CODEC_NDESCS; i++) {
            cm_codec_envelope env;
            void *m = NULL;
            char err[256] = "";
            int rc = c->unmarshal_envelope(response, codec_descs[i], data, size, NULL, &env, &m,
                                           err, sizeof err);
            if (rc != 0) {
                FUZZ_CHECK(rc == CM_ECODEC);
                FUZZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
                FUZZ_CHECK(m == NULL);
                continue;
            }
            FUZZ_CHECK(memchr(env.method, '\0', sizeof env.method) != NULL);
            FUZZ_CHECK(memchr(env.error, '\0', sizeof env.error) != NULL);
            if (m != NULL) {
                codec_round_trips(codec_descs[i], m);
            }
            envelope_round_trip(c, response, &env, codec_descs[i], m);
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)codec_fuzz; /* codec_common.h's whole-codec loop checks raw frames, which these reframe */
    for (size_t k = 0; k < sizeof framed / sizeof framed[0]; k++) {
        for (size_t i = 0; i < CODEC_NDESCS; i++) {
            void *m = codec_decode(framed[k], codec_descs[i], data, size);
            if (m != NULL) {
                codec_round_trips(codec_descs[i], m);
                cm_buf out = {0};
                codec_encode(framed[k], codec_descs[i], m, &out);
                void *m2 = codec_decode(framed[k], codec_descs[i], out.data, out.len);
                FUZZ_CHECK(m2 != NULL);
                protobuf_c_message_free_unpacked(m2, NULL);
                cm_buf_free(&out);
                protobuf_c_message_free_unpacked(m, NULL);
            }
        }
    }
    for (size_t k = 0; k < sizeof enveloped / sizeof enveloped[0]; k++) {
        fuzz_enveloped(enveloped[k], data, size);
    }
    return 0;
}
