/* cmicro: application/protobuf, the plain protobuf encoding (go-micro codec/proto). */
#include "codec_int.h"

#include <stdlib.h>

/* Wraps the caller's allocator so that a failed allocation inside protobuf-c (which only
 * reports "NULL") can be told apart from malformed input. */
typedef struct tracked_alloc {
    ProtobufCAllocator base;
    ProtobufCAllocator *inner;
    int failed;
} tracked_alloc;

static void *
tracked_alloc_fn(void *data, size_t size)
{
    tracked_alloc *t = data;
    void *p = cm__codec_alloc(t->inner, size);

    if (p == NULL) {
        t->failed = 1;
    }
    return p;
}

static void
tracked_free_fn(void *data, void *p)
{
    tracked_alloc *t = data;

    cm__codec_free(t->inner, p);
}

static int
proto_marshal(const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out)
{
    const ProtobufCMessage *m = msg;
    size_t size;
    int rc;

    if (desc == NULL) {
        return cm__codec_raw_marshal(msg, out);
    }
    if (m == NULL || m->descriptor != desc) {
        return CM_ECODEC;
    }
    size = protobuf_c_message_get_packed_size(m);
    if (size == 0) {
        return 0;
    }
    rc = cm_buf_reserve(out, size);
    if (rc < 0) {
        return rc;
    }
    out->len += protobuf_c_message_pack(m, out->data + out->len);
    return 0;
}

/* Whether m or a message inside it kept an unknown field numbered 0. protobuf-c 1.4 refuses a
 * tag 0 written in one byte but takes one written in more (0x80 0x00) as an unknown field, which
 * it then packs in one byte, so the message would not decode again; Go refuses both. */
static int
has_field_zero(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;

    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        if (m->unknown_fields[i].tag == 0) {
            return 1;
        }
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];

        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            const void *at = base + f->offset;
            size_t n = *(const size_t *)(const void *)(base + f->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)at;
            for (size_t k = 0; k < n; k++) {
                if (v[k] != NULL && has_field_zero(v[k])) {
                    return 1;
                }
            }
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(const void *)(base + f->quantifier_offset) != f->id) {
            continue;
        }
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(const void *)(base + f->offset);
        if (sub != NULL && has_field_zero(sub)) {
            return 1;
        }
    }
    return 0;
}

static int
proto_unmarshal(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                ProtobufCAllocator *alloc, void **out, char *err, size_t errlen)
{
    tracked_alloc t;
    ProtobufCMessage *m;

    if (desc == NULL) {
        return cm__codec_raw_unmarshal(data, len, alloc, out);
    }
    t.base.alloc = tracked_alloc_fn;
    t.base.free = tracked_free_fn;
    t.base.allocator_data = &t;
    t.inner = alloc;
    t.failed = 0;
    m = protobuf_c_message_unpack(desc, &t.base, len, data);
    if (m == NULL) {
        if (t.failed) {
            return CM_ENOMEM;
        }
        cm__codec_errf(err, errlen, "malformed protobuf data for %s (%zu bytes)", desc->name,
                       len);
        return CM_ECODEC;
    }
    if (has_field_zero(m)) {
        protobuf_c_message_free_unpacked(m, &t.base);
        cm__codec_errf(err, errlen, "malformed protobuf data for %s: field number 0", desc->name);
        return CM_ECODEC;
    }
    *out = m;
    return 0;
}

const cm_codec_ops cm_codec_proto = {
    .abi_version = CM_ABI_VERSION,
    .name = "proto",
    .content_type = CM_CT_PROTOBUF,
    .marshal = proto_marshal,
    .unmarshal = proto_unmarshal,
};
