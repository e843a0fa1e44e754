/* cmicro: go-micro's proto-rpc codec (codec/protorpc), application/proto-rpc. A request body is
 * two netstrings (a 4-byte big-endian length, then the bytes): the envelope Request{method, seq},
 * then the protobuf message. A response's envelope is Response{method, seq, error}, followed by
 * the message (empty when the envelope carries an error). Each netstring is bounded by the body
 * it is in. */
#include "codec_int.h"
#include "envelope.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
put_netstring(cm_buf *out, const uint8_t *p, size_t n)
{
    if (n > UINT32_MAX) {
        return CM_ECODEC;
    }
    uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    int rc = cm_buf_append(out, len, 4);
    return rc < 0 ? rc : cm_buf_append(out, p, n);
}

/* The next netstring of data at *pos: 0, or CM_ECODEC when it runs past the end. */
static int
get_netstring(const uint8_t *data, size_t len, size_t *pos, const uint8_t **p, size_t *n, char *err,
              size_t errlen, const char *what)
{
    if (len - *pos < 4) {
        cm__codec_errf(err, errlen, "proto-rpc %s: netstring length cut short", what);
        return CM_ECODEC;
    }
    const uint8_t *l = data + *pos;
    size_t size = (size_t)l[0] << 24 | (size_t)l[1] << 16 | (size_t)l[2] << 8 | l[3];
    if (size > len - *pos - 4) {
        cm__codec_errf(err, errlen, "proto-rpc %s: netstring of %zu bytes, %zu left", what, size,
                       len - *pos - 4);
        return CM_ECODEC;
    }
    *p = l + 4;
    *n = size;
    *pos += 4 + size;
    return 0;
}

static int
env_marshal(int response, const cm_codec_envelope *env, const ProtobufCMessageDescriptor *desc,
            const void *msg, cm_buf *out)
{
    uint64_t seq = strtoull(env->id, NULL, 10);
    CmProtorpc__Request rq = CM_PROTORPC__REQUEST__INIT;
    CmProtorpc__Response rs = CM_PROTORPC__RESPONSE__INIT;
    ProtobufCMessage *e = response ? &rs.base : &rq.base;
    rq.service_method = rs.service_method = (char *)(uintptr_t)env->method;
    rq.seq = rs.seq = seq;
    rs.error = (char *)(uintptr_t)env->error;
    uint8_t head[sizeof(env->method) + sizeof(env->error) + 32];
    size_t hn = protobuf_c_message_pack(e, head);
    int rc = put_netstring(out, head, hn);
    size_t at = out->len;
    if (rc == 0) {
        rc = cm_buf_append(out, "\0\0\0\0", 4); /* the body's length, filled in below */
    }
    if (rc == 0 && msg != NULL) {
        rc = cm_codec_proto.marshal(desc, msg, out);
    }
    if (rc < 0) {
        return rc;
    }
    size_t n = out->len - at - 4;
    if (n > UINT32_MAX) {
        return CM_ECODEC;
    }
    out->data[at] = (uint8_t)(n >> 24);
    out->data[at + 1] = (uint8_t)(n >> 16);
    out->data[at + 2] = (uint8_t)(n >> 8);
    out->data[at + 3] = (uint8_t)n;
    return 0;
}

/* Copies s into dst (cut to fit). */
static void
copy_text(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

static int
read_envelope(int response, const uint8_t *p, size_t n, cm_codec_envelope *env, char *err,
              size_t errlen)
{
    const ProtobufCMessageDescriptor *d =
        response ? &cm_protorpc__response__descriptor : &cm_protorpc__request__descriptor;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, n, p);
    if (m == NULL) {
        cm__codec_errf(err, errlen, "proto-rpc: malformed %s envelope",
                       response ? "response" : "request");
        return CM_ECODEC;
    }
    if (response) {
        CmProtorpc__Response *r = (CmProtorpc__Response *)m;
        copy_text(env->method, sizeof env->method, r->service_method);
        snprintf(env->id, sizeof env->id, "%" PRIu64, r->seq);
        copy_text(env->error, sizeof env->error, r->error);
    } else {
        CmProtorpc__Request *r = (CmProtorpc__Request *)m;
        copy_text(env->method, sizeof env->method, r->service_method);
        snprintf(env->id, sizeof env->id, "%" PRIu64, r->seq);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int
env_unmarshal(int response, const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
              ProtobufCAllocator *alloc, cm_codec_envelope *env, void **out, char *err,
              size_t errlen)
{
    memset(env, 0, sizeof(*env));
    *out = NULL;
    size_t pos = 0;
    const uint8_t *p, *body = (const uint8_t *)"";
    size_t n, bn = 0;
    int rc = get_netstring(data, len, &pos, &p, &n, err, errlen, "envelope");
    if (rc == 0) {
        rc = read_envelope(response, p, n, env, err, errlen);
    }
    if (rc == 0 && pos < len) {
        rc = get_netstring(data, len, &pos, &body, &bn, err, errlen, "body");
    }
    if (rc < 0 || (response && env->error[0] != '\0' && bn == 0)) {
        return rc;
    }
    return cm_codec_proto.unmarshal(desc, body, bn, alloc, out, err, errlen);
}

/* Without an envelope (a raw use of the table), the message alone, as application/protobuf. */
static int
plain_marshal(const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out)
{
    return cm_codec_proto.marshal(desc, msg, out);
}

static int
plain_unmarshal(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                ProtobufCAllocator *alloc, void **out, char *err, size_t errlen)
{
    return cm_codec_proto.unmarshal(desc, data, len, alloc, out, err, errlen);
}

const cm_codec_ops cm_codec_proto_rpc = {
    .abi_version = CM_ABI_VERSION,
    .name = "proto-rpc",
    .content_type = CM_CT_PROTO_RPC,
    .marshal = plain_marshal,
    .unmarshal = plain_unmarshal,
    .marshal_envelope = env_marshal,
    .unmarshal_envelope = env_unmarshal,
};
