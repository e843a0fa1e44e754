/* cmicro: the process-wide codec table and helpers shared by the codecs.
 *
 * Raw frames. Every codec passes raw frames through when the descriptor is NULL: marshal
 * appends the bytes of the ProtobufCBinaryData it is given, unmarshal returns a new
 * ProtobufCBinaryData whose struct and bytes are two separate allocations from the caller's
 * allocator (malloc when the allocator is NULL). The bytes pointer is never NULL, even for a
 * zero-length frame, so the owner always frees it the same way:
 *
 *     alloc->free(alloc->allocator_data, raw->data);
 *     alloc->free(alloc->allocator_data, raw);
 *
 * (free(raw->data); free(raw); with the NULL allocator). cm__codec_raw_free() does exactly
 * this. protobuf_c_message_free_unpacked() must not be used on a raw frame.
 */
#include "codec_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for the built-ins plus the codecs an application registers. */
#define CODEC_TABLE_MAX 32

static const cm_codec_ops *codec_table[CODEC_TABLE_MAX] = {
    &cm_codec_proto,      &cm_codec_json,      &cm_codec_bytes,     &cm_codec_grpc,
    &cm_codec_grpc_proto, &cm_codec_grpc_json, &cm_codec_proto_rpc, &cm_codec_json_rpc,
};
static size_t codec_count = 8;

const cm_codec_ops *
cm_codec_findn(const char *content_type, size_t len)
{
    size_t i;

    if (content_type == NULL) {
        return NULL;
    }
    for (i = 0; i < codec_count; i++) {
        const char *ct = codec_table[i]->content_type;

        if (strlen(ct) == len && memcmp(ct, content_type, len) == 0) {
            return codec_table[i];
        }
    }
    return NULL;
}

const cm_codec_ops *
cm_codec_find(const char *content_type)
{
    if (content_type == NULL) {
        return NULL;
    }
    return cm_codec_findn(content_type, strlen(content_type));
}

int
cm_codec_register(const cm_codec_ops *ops)
{
    size_t i;

    if (ops == NULL || ops->abi_version != CM_ABI_VERSION || ops->name == NULL ||
        ops->content_type == NULL || ops->content_type[0] == '\0' || ops->marshal == NULL ||
        ops->unmarshal == NULL) {
        return CM_EINVAL;
    }
    for (i = 0; i < codec_count; i++) {
        if (strcmp(codec_table[i]->content_type, ops->content_type) == 0) {
            codec_table[i] = ops;
            return 0;
        }
    }
    if (codec_count == CODEC_TABLE_MAX) {
        return CM_ENOMEM;
    }
    codec_table[codec_count++] = ops;
    return 0;
}

void *
cm__codec_alloc(ProtobufCAllocator *alloc, size_t size)
{
    if (alloc == NULL) {
        return malloc(size);
    }
    return alloc->alloc(alloc->allocator_data, size);
}

void
cm__codec_free(ProtobufCAllocator *alloc, void *p)
{
    if (p == NULL) {
        return;
    }
    if (alloc == NULL) {
        free(p);
    } else {
        alloc->free(alloc->allocator_data, p);
    }
}

void
cm__codec_errf(char *err, size_t errlen, const char *fmt, ...)
{
    unsigned char *p;
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* One line, safe for a header value: input echoed into the reason may hold anything. */
    for (p = (unsigned char *)err; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }
}

int
cm__codec_raw_marshal(const void *msg, cm_buf *out)
{
    const ProtobufCBinaryData *raw = msg;

    if (raw == NULL || (raw->len > 0 && raw->data == NULL)) {
        return CM_ECODEC;
    }
    return cm_buf_append(out, raw->data, raw->len);
}

int
cm__codec_raw_unmarshal(const uint8_t *data, size_t len, ProtobufCAllocator *alloc, void **out)
{
    ProtobufCBinaryData *raw;

    raw = cm__codec_alloc(alloc, sizeof(*raw));
    if (raw == NULL) {
        return CM_ENOMEM;
    }
    /* One byte at least, so that data is never NULL and always freed the same way. */
    raw->data = cm__codec_alloc(alloc, len > 0 ? len : 1);
    if (raw->data == NULL) {
        cm__codec_free(alloc, raw);
        return CM_ENOMEM;
    }
    if (len > 0) {
        memcpy(raw->data, data, len);
    }
    raw->len = len;
    *out = raw;
    return 0;
}

void
cm__codec_raw_free(ProtobufCBinaryData *raw, ProtobufCAllocator *alloc)
{
    if (raw == NULL) {
        return;
    }
    cm__codec_free(alloc, raw->data);
    cm__codec_free(alloc, raw);
}

ProtobufCMessage *
cm__codec_message_new(const ProtobufCMessageDescriptor *desc, ProtobufCAllocator *alloc)
{
    ProtobufCMessage *m;

    if (desc->message_init == NULL) {
        return NULL;
    }
    m = cm__codec_alloc(alloc, desc->sizeof_message);
    if (m == NULL) {
        return NULL;
    }
    desc->message_init(m);
    return m;
}
