/* cmicro: go-micro's gRPC codec over its HTTP transport (codec/grpc): application/grpc,
 * application/grpc+proto and application/grpc+json. The body is one gRPC length-prefixed
 * message: a compression flag byte (0), the message length as 4 bytes big-endian, then the
 * protobuf encoding (the JSON one for grpc+json, as Go's encoding/json writes it). A message over
 * 4 MiB is refused, as go-micro does. go-micro writes an empty message as no bytes at all, which
 * its own reader then fails on with "EOF" (a Go client of a Go server cannot receive an empty
 * response this way); cmicro reads both forms and always writes the prefix, which go-micro reads.
 * Compressed messages (flag 1) are refused: go-micro never sends them. */
#include "codec_int.h"

#include <string.h>

#define GRPC_PREFIX 5
#define GRPC_MAX_MESSAGE (4u * 1024 * 1024) /* go-micro's MaxMessageSize */

static int
frame(const cm_codec_ops *inner, const ProtobufCMessageDescriptor *desc, const void *msg,
      cm_buf *out)
{
    size_t start = out->len;
    int rc = cm_buf_reserve(out, GRPC_PREFIX);
    if (rc < 0) {
        return rc;
    }
    out->len += GRPC_PREFIX;
    rc = inner->marshal(desc, msg, out);
    size_t n = out->len - start - GRPC_PREFIX;
    if (rc < 0) {
        out->len = start;
        return rc;
    }
    if (n > UINT32_MAX) {
        out->len = start;
        return CM_ECODEC;
    }
    uint8_t *p = out->data + start;
    p[0] = 0;
    p[1] = (uint8_t)(n >> 24);
    p[2] = (uint8_t)(n >> 16);
    p[3] = (uint8_t)(n >> 8);
    p[4] = (uint8_t)n;
    return 0;
}

static int
unframe(const cm_codec_ops *inner, const ProtobufCMessageDescriptor *desc, const uint8_t *data,
        size_t len, ProtobufCAllocator *alloc, void **out, char *err, size_t errlen)
{
    if (len == 0) {
        return inner->unmarshal(desc, data, 0, alloc, out, err, errlen);
    }
    if (len < GRPC_PREFIX) {
        cm__codec_errf(err, errlen, "gRPC message prefix cut short (%zu of 5 bytes)", len);
        return CM_ECODEC;
    }
    if (data[0] != 0) {
        cm__codec_errf(err, errlen, "compressed gRPC messages (flag %u) are not supported",
                       data[0]);
        return CM_ECODEC;
    }
    uint32_t n = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 8 |
                 (uint32_t)data[4];
    if (n > GRPC_MAX_MESSAGE) {
        cm__codec_errf(err, errlen, "gRPC message larger than max (%u vs. %u)", n,
                       GRPC_MAX_MESSAGE);
        return CM_ECODEC;
    }
    if (n != len - GRPC_PREFIX) {
        cm__codec_errf(err, errlen, "gRPC message length %u, but %zu bytes follow the prefix", n,
                       len - GRPC_PREFIX);
        return CM_ECODEC;
    }
    return inner->unmarshal(desc, data + GRPC_PREFIX, n, alloc, out, err, errlen);
}

static int
grpc_marshal(const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out)
{
    return frame(&cm_codec_proto, desc, msg, out);
}

static int
grpc_unmarshal(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
               ProtobufCAllocator *alloc, void **out, char *err, size_t errlen)
{
    return unframe(&cm_codec_proto, desc, data, len, alloc, out, err, errlen);
}

static int
grpc_json_marshal(const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out)
{
    return frame(&cm_codec_json, desc, msg, out);
}

static int
grpc_json_unmarshal(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                    ProtobufCAllocator *alloc, void **out, char *err, size_t errlen)
{
    return unframe(&cm_codec_json, desc, data, len, alloc, out, err, errlen);
}

const cm_codec_ops cm_codec_grpc = {
    .abi_version = CM_ABI_VERSION,
    .name = "grpc",
    .content_type = CM_CT_GRPC,
    .marshal = grpc_marshal,
    .unmarshal = grpc_unmarshal,
};

const cm_codec_ops cm_codec_grpc_proto = {
    .abi_version = CM_ABI_VERSION,
    .name = "grpc+proto",
    .content_type = CM_CT_GRPC_PROTO,
    .marshal = grpc_marshal,
    .unmarshal = grpc_unmarshal,
};

const cm_codec_ops cm_codec_grpc_json = {
    .abi_version = CM_ABI_VERSION,
    .name = "grpc+json",
    .content_type = CM_CT_GRPC_JSON,
    .marshal = grpc_json_marshal,
    .unmarshal = grpc_json_unmarshal,
};
