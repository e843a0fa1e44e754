/* What the codec harnesses share: the test messages and the round trips a decoded message must
 * survive. */
#ifndef CM_TEST_FUZZ_CODEC_COMMON_H
#define CM_TEST_FUZZ_CODEC_COMMON_H

#include "echo.pb-c.h"
#include "fuzz.h"
#include "legacy.pb-c.h"

#include <cmicro/codec.h>
#include <string.h>

/* Every input is decoded as each of these. */
static const ProtobufCMessageDescriptor *const codec_descs[] = {
    &cmicro__test__v1__echo_request__descriptor,
    &cmicro__test__v1__echo_response__descriptor,
    &cmicro__test__v1__inner__descriptor,
    &cmicro__test__v1__legacy__descriptor,
};
#define CODEC_NDESCS (sizeof(codec_descs) / sizeof(codec_descs[0]))

static int
buf_eq(const cm_buf *a, const cm_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Decodes; a failure must be CM_ECODEC with a one-line reason. */
static void *
codec_decode(const cm_codec_ops *c, const ProtobufCMessageDescriptor *desc, const uint8_t *data,
             size_t len)
{
    void *out = NULL;
    char err[256] = "";
    int rc = c->unmarshal(desc, data, len, NULL, &out, err, sizeof(err));
    if (rc != 0) {
        FUZZ_CHECK(rc == CM_ECODEC);
        FUZZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
        return NULL;
    }
    FUZZ_CHECK(out != NULL);
    return out;
}

static void
codec_encode(const cm_codec_ops *c, const ProtobufCMessageDescriptor *desc, const void *msg,
             cm_buf *out)
{
    out->len = 0;
    FUZZ_CHECK(c->marshal(desc, msg, out) == 0);
}

/* The round trips of a message m one of the codecs decoded:
 *  - protobuf: packed, it decodes again and packs to the same bytes;
 *  - JSON: written, it reads back, and what that writes reads back to the same text (the first
 *    write may differ from the second only where the reader normalises, e.g. invalid UTF-8);
 *  - the protobuf copy writes the same JSON as m. */
static void
codec_round_trips(const ProtobufCMessageDescriptor *desc, const void *m)
{
    cm_buf p1 = {0}, p2 = {0}, j1 = {0}, j2 = {0}, j3 = {0};

    codec_encode(&cm_codec_proto, desc, m, &p1);
    void *m2 = codec_decode(&cm_codec_proto, desc, p1.data ? p1.data : (const uint8_t *)"", p1.len);
    FUZZ_CHECK(m2 != NULL);
    codec_encode(&cm_codec_proto, desc, m2, &p2);
    FUZZ_CHECK(buf_eq(&p1, &p2));

    codec_encode(&cm_codec_json, desc, m, &j1);
    codec_encode(&cm_codec_json, desc, m2, &j2);
    FUZZ_CHECK(buf_eq(&j1, &j2));
    protobuf_c_message_free_unpacked(m2, NULL);

    void *m3 = codec_decode(&cm_codec_json, desc, j1.data, j1.len);
    if (m3 == NULL) {
        fprintf(stderr, "the JSON codec cannot read what it wrote: %.*s\n", (int)j1.len,
                (const char *)j1.data);
        FUZZ_CHECK(!"JSON round trip");
    }
    codec_encode(&cm_codec_json, desc, m3, &j2);
    protobuf_c_message_free_unpacked(m3, NULL);
    if (!buf_eq(&j1, &j2)) {
        void *m4 = codec_decode(&cm_codec_json, desc, j2.data, j2.len);
        FUZZ_CHECK(m4 != NULL);
        codec_encode(&cm_codec_json, desc, m4, &j3);
        protobuf_c_message_free_unpacked(m4, NULL);
        if (!buf_eq(&j2, &j3)) {
            fprintf(stderr, "JSON does not settle:\n%.*s\n%.*s\n%.*s\n", (int)j1.len,
                    (const char *)j1.data, (int)j2.len, (const char *)j2.data, (int)j3.len,
                    (const char *)j3.data);
            FUZZ_CHECK(!"JSON fixed point");
        }
    }
    cm_buf_free(&p1);
    cm_buf_free(&p2);
    cm_buf_free(&j1);
    cm_buf_free(&j2);
    cm_buf_free(&j3);
}

/* Decodes data with c as every test message; runs the round trips of what decodes. */
static void
codec_fuzz(const cm_codec_ops *c, const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < CODEC_NDESCS; i++) {
        void *m = codec_decode(c, codec_descs[i], data, size);
        if (m != NULL) {
            codec_round_trips(codec_descs[i], m);
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    /* Raw frames pass through. */
    void *raw = codec_decode(c, NULL, data, size);
    FUZZ_CHECK(raw != NULL);
    ProtobufCBinaryData *b = raw;
    FUZZ_CHECK(b->len == size && b->data != NULL && memcmp(b->data, data, size) == 0);
    free(b->data);
    free(b);
}

#endif
