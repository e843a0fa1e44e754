/* cmicro: application/octet-stream, raw bytes only (go-micro codec/bytes). */
#include "codec_int.h"

static int
bytes_marshal(const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out)
{
    if (desc != NULL) {
        return CM_ECODEC;
    }
    return cm__codec_raw_marshal(msg, out);
}

static int
bytes_unmarshal(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                ProtobufCAllocator *alloc, void **out, char *err, size_t errlen)
{
    if (desc != NULL) {
        cm__codec_errf(err, errlen, "application/octet-stream carries raw bytes only");
        return CM_ECODEC;
    }
    return cm__codec_raw_unmarshal(data, len, alloc, out);
}

const cm_codec_ops cm_codec_bytes = {
    .abi_version = CM_ABI_VERSION,
    .name = "bytes",
    .content_type = CM_CT_BYTES,
    .marshal = bytes_marshal,
    .unmarshal = bytes_unmarshal,
};
