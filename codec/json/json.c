/* cmicro: application/json, compatible with go-micro's codec/json.
 *
 * go-micro writes with encoding/json on the protoc-gen-go struct (json.Encoder, so one line
 * ending in "\n") and reads protobuf messages with jsonpb. cmicro writes what encoding/json
 * writes (proto field names, declaration order, zero values omitted, 64-bit integers as
 * numbers, enums as numbers, bytes as base64, HTML-safe strings) with two deliberate
 * differences, both in what jsonpb reads: a set oneof member is written by its own field name
 * (Go writes an extra {"<OneofName>":{"<FieldName>":...}} wrapper, which jsonpb rejects) and
 * NaN/Inf are written as "NaN"/"Infinity"/"-Infinity" (encoding/json fails on them). The
 * reader follows jsonpb and also accepts Go's oneof wrapper.
 *
 * Details: a set oneof member comes after the other fields (where protobuf-c puts the union);
 * control characters other than \n \r \t are written as \u00XX (Go before 1.22; later Go
 * writes \b and \f, the same string); map keys are sorted by their text; a proto2 optional
 * field is written when present, even when zero. Well-known types (Timestamp, Struct, ...)
 * are plain messages here, as they are to encoding/json. Numbers are parsed with strtod(), so
 * the process must keep the "C" LC_NUMERIC locale.
 *
 * Limits that come from protobuf-c's descriptors: a custom json_name option is not known (the
 * lowerCamel name protoc derives is used), oneof names are not known (so the wrapper is matched
 * by its inner member), and maps are recognised by the shape of their entry type.
 */
#include "json_int.h"

#include <string.h>

static int
json_marshal(const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out)
{
    if (desc == NULL) {
        return cm__codec_raw_marshal(msg, out);
    }
    return cm__json_marshal(desc, msg, out);
}

static int
json_unmarshal(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
               ProtobufCAllocator *alloc, void **out, char *err, size_t errlen)
{
    if (desc == NULL) {
        return cm__codec_raw_unmarshal(data, len, alloc, out);
    }
    return cm__json_unmarshal(desc, data, len, alloc, out, err, errlen);
}

const cm_codec_ops cm_codec_json = {
    .abi_version = CM_ABI_VERSION,
    .name = "json",
    .content_type = CM_CT_JSON,
    .marshal = json_marshal,
    .unmarshal = json_unmarshal,
};

/* go-micro's application/json-rpc: the JSON encoding inside an envelope (jsonrpc.c). Used
 * without one, the message alone. */
const cm_codec_ops cm_codec_json_rpc = {
    .abi_version = CM_ABI_VERSION,
    .name = "json-rpc",
    .content_type = CM_CT_JSON_RPC,
    .marshal = json_marshal,
    .unmarshal = json_unmarshal,
    .marshal_envelope = cm__jsonrpc_marshal,
    .unmarshal_envelope = cm__jsonrpc_unmarshal,
};

/* protoc's MapEntryName: "str_map" -> "StrMapEntry". */
static int
is_map_entry_name(const char *field, const char *entry)
{
    int cap_next = 1;

    for (; *field != '\0'; field++) {
        char c = *field;

        if (c == '_') {
            cap_next = 1;
            continue;
        }
        if (cap_next && c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        }
        cap_next = 0;
        if (*entry++ != c) {
            return 0;
        }
    }
    return strcmp(entry, "Entry") == 0;
}

const ProtobufCMessageDescriptor *
cm__json_map_entry(const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *e;

    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE) {
        return NULL;
    }
    e = f->descriptor;
    if (e == NULL || e->n_fields != 2 || e->fields[0].id != 1 || e->fields[1].id != 2 ||
        strcmp(e->fields[0].name, "key") != 0 || strcmp(e->fields[1].name, "value") != 0 ||
        e->fields[0].label == PROTOBUF_C_LABEL_REPEATED ||
        e->fields[1].label == PROTOBUF_C_LABEL_REPEATED) {
        return NULL;
    }
    switch (e->fields[0].type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_MESSAGE:
        return NULL;
    default:
        break;
    }
    if (e->short_name == NULL || !is_map_entry_name(f->name, e->short_name)) {
        return NULL;
    }
    return e;
}

void
cm__json_field_order(const ProtobufCMessageDescriptor *desc, unsigned *order)
{
    unsigned i, j;

    /* Insertion sort by (offset, number): the input is nearly sorted already. */
    for (i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];

        for (j = i; j > 0; j--) {
            const ProtobufCFieldDescriptor *g = &desc->fields[order[j - 1]];

            if (g->offset < f->offset || (g->offset == f->offset && g->id < f->id)) {
                break;
            }
            order[j] = order[j - 1];
        }
        order[j] = i;
    }
}

size_t
cm__json_value_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sizeof(uint64_t);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int); /* protobuf-c forces enums to int size */
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return sizeof(uint32_t);
    }
}

size_t
cm__json_lower_camel(const char *name, char *out)
{
    size_t n = 0;
    int cap_next = 0;

    for (; *name != '\0'; name++) {
        if (*name == '_') {
            cap_next = 1;
        } else if (cap_next && *name >= 'a' && *name <= 'z') {
            out[n++] = (char)(*name - 'a' + 'A');
            cap_next = 0;
        } else {
            out[n++] = *name;
            cap_next = 0;
        }
    }
    out[n] = '\0';
    return n;
}

static int
is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

size_t
cm__json_go_camel(const char *s, char *out)
{
    size_t i, n = 0, len = strlen(s);

    for (i = 0; i < len; i++) {
        char c = s[i];

        if (c == '.' && i + 1 < len && is_lower(s[i + 1])) {
            continue;
        } else if (c == '.') {
            out[n++] = '_';
        } else if (c == '_' && (i == 0 || s[i - 1] == '.')) {
            out[n++] = 'X';
        } else if (c == '_' && i + 1 < len && is_lower(s[i + 1])) {
            continue;
        } else if (c >= '0' && c <= '9') {
            out[n++] = c;
        } else {
            if (is_lower(c)) {
                c = (char)(c - 'a' + 'A');
            }
            out[n++] = c;
            while (i + 1 < len && is_lower(s[i + 1])) {
                out[n++] = s[++i];
            }
        }
    }
    out[n] = '\0';
    return n;
}

size_t
cm__json_utf8_decode(const uint8_t *s, size_t n, uint32_t *rune)
{
    uint8_t c = s[0], lo = 0x80, hi = 0xbf;
    size_t need, i;
    uint32_t r;

    if (c < 0x80) {
        *rune = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        r = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        r = c & 0x0f;
        if (c == 0xe0) {
            lo = 0xa0;
        } else if (c == 0xed) {
            hi = 0x9f;
        }
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        r = c & 0x07;
        if (c == 0xf0) {
            lo = 0x90;
        } else if (c == 0xf4) {
            hi = 0x8f;
        }
    } else {
        return 0;
    }
    if (n < need || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (i = 1; i < need; i++) {
        if (i > 1 && (s[i] < 0x80 || s[i] > 0xbf)) {
            return 0;
        }
        r = (r << 6) | (s[i] & 0x3f);
    }
    *rune = r;
    return need;
}
