/* cmicro: internals shared by the codec files. Not installed. */
#ifndef CMICRO_CODEC_INT_H
#define CMICRO_CODEC_INT_H

#include "core_int.h"

#include <cmicro/codec.h>

/* Memory from a ProtobufCAllocator; NULL means malloc/free, like protobuf-c itself. */
void *cm__codec_alloc(ProtobufCAllocator *alloc, size_t size);
void cm__codec_free(ProtobufCAllocator *alloc, void *p);

/* Writes a one-line reason into err (when err is not NULL and errlen > 0). */
void cm__codec_errf(char *err, size_t errlen, const char *fmt, ...) CM_PRINTF(3, 4);

/* Raw frames (descriptor NULL). Marshal appends the bytes of a ProtobufCBinaryData.
 * Unmarshal allocates the struct and a copy of the bytes from alloc; data is never NULL (a
 * zero-length frame still gets a one-byte buffer) so the owner frees it as
 * alloc->free(data) then alloc->free(struct), which cm__codec_raw_free does. */
int cm__codec_raw_marshal(const void *msg, cm_buf *out);
int cm__codec_raw_unmarshal(const uint8_t *data, size_t len, ProtobufCAllocator *alloc,
                            void **out);
void cm__codec_raw_free(ProtobufCBinaryData *raw, ProtobufCAllocator *alloc);

/* A new default message of type desc from alloc (message_init applied). NULL on out of memory
 * or when the descriptor has no message_init. */
ProtobufCMessage *cm__codec_message_new(const ProtobufCMessageDescriptor *desc,
                                        ProtobufCAllocator *alloc);

#endif
