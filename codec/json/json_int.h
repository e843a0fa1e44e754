/* cmicro: internals of the application/json codec. Not installed.
 *
 * json.c       the ops table and what encoder and decoder share (names, maps, UTF-8)
 * json_enc.c   protobuf-c message -> JSON text, as Go's encoding/json writes it
 * json_parse.c JSON text -> a small tree (exact number text kept, strings decoded)
 * json_dec.c   tree -> protobuf-c message, with jsonpb's rules
 * json_scalar.c one tree value -> one scalar (integers, floats, enums, bytes)
 */
#ifndef CMICRO_JSON_INT_H
#define CMICRO_JSON_INT_H

#include "codec_int.h"

/* Deepest nesting of JSON objects and arrays, both written and read. */
#define CM__JSON_MAX_DEPTH 100

/* ---- json.c ---- */

/* The entry type when f is a map field (protoc's <Name>Entry with fields key = 1, value = 2),
 * otherwise NULL. protobuf-c keeps no map flag, so this is recognised by shape and name. */
const ProtobufCMessageDescriptor *cm__json_map_entry(const ProtobufCFieldDescriptor *f);

/* Field indexes of desc in declaration order (protobuf-c keeps the C struct in declaration
 * order with oneofs last; fields[] is in number order). order has desc->n_fields slots. */
void cm__json_field_order(const ProtobufCMessageDescriptor *desc, unsigned *order);

/* protoc's json_name ("foo_bar" -> "fooBar") and protoc-gen-go's GoCamelCase ("my_kind" ->
 * "MyKind"). out needs strlen(name) + 1 bytes; the length written is returned. */
size_t cm__json_lower_camel(const char *name, char *out);
size_t cm__json_go_camel(const char *name, char *out);

/* Bytes one value of type t takes in a message, a repeated array or a oneof. */
size_t cm__json_value_size(ProtobufCType t);

/* Decodes one UTF-8 sequence with Go's rules (no overlongs, surrogates or values above
 * U+10FFFF). Returns its length (1..4) and stores the code point, or 0 when invalid. */
size_t cm__json_utf8_decode(const uint8_t *s, size_t n, uint32_t *rune);

/* ---- json_enc.c / json_dec.c ---- */

int cm__json_marshal(const ProtobufCMessageDescriptor *desc, const ProtobufCMessage *msg,
                     cm_buf *out);
int cm__json_unmarshal(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                       ProtobufCAllocator *alloc, void **out, char *err, size_t errlen);

/* Go's float formatting in encoding/json (finite values only). buf needs 32 bytes. */
size_t cm__json_format_float(double v, int is_float32, char *buf);

/* ---- json_parse.c ---- */

typedef enum {
    CM__JSON_NULL,
    CM__JSON_FALSE,
    CM__JSON_TRUE,
    CM__JSON_NUMBER,
    CM__JSON_STRING,
    CM__JSON_ARRAY,
    CM__JSON_OBJECT,
} cm__json_type;

typedef struct cm__json_value cm__json_value;
struct cm__json_value {
    cm__json_type type;
    /* STRING: the decoded text; NUMBER: the literal as written. Both NUL-terminated; a string
     * may also hold NULs of its own (len counts every byte). */
    const char *str;
    size_t len;
    /* Members of an object carry their decoded key. */
    const char *key;
    size_t keylen;
    /* ARRAY and OBJECT: the children in document order. */
    cm__json_value *child;
    cm__json_value *next;
    size_t count;
};

/* Parses exactly one JSON value filling the whole input (surrounding whitespace allowed).
 * Returns 0, CM_ECODEC with a reason, or CM_ENOMEM. The tree lives in the arena. */
int cm__json_parse(const uint8_t *data, size_t len, cm__arena *arena, cm__json_value **root,
                   char *err, size_t errlen);

/* The name of a JSON type for error messages ("string", "object", ...). */
const char *cm__json_type_name(cm__json_type t);

/* ---- json_scalar.c ---- */

/* Each returns 0, CM_ECODEC with a reason in why (CM__JSON_WHY bytes), or CM_ENOMEM. */
#define CM__JSON_WHY 128

/* Whether s is exactly a JSON number literal. */
int cm__json_is_number_text(const char *s, size_t n);
int cm__json_get_integer(const cm__json_value *v, int is_signed, int bits, uint64_t *out,
                         char *why);
int cm__json_get_float(const cm__json_value *v, int is_float32, double *out, char *why);
/* Any integer or floating type, stored at p in the C type protobuf-c uses for it. */
int cm__json_get_number(ProtobufCType type, const cm__json_value *v, void *p, char *why);
int cm__json_get_enum(const cm__json_value *v, const ProtobufCEnumDescriptor *ed, int *out,
                      char *why);
/* Allocates the decoded bytes from alloc (data stays NULL when there are none). */
int cm__json_get_bytes(const cm__json_value *v, ProtobufCAllocator *alloc,
                       ProtobufCBinaryData *out, char *why);

/* The same from a parsed tree (root NULL or null: the default message). */
int cm__json_decode_tree(const ProtobufCMessageDescriptor *desc, const cm__json_value *root,
                         ProtobufCAllocator *alloc, void **out, char *err, size_t errlen);

/* ---- jsonrpc.c: application/json-rpc's envelope (the cm_codec_ops envelope slots) ---- */
int cm__jsonrpc_marshal(int response, const cm_codec_envelope *env,
                        const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out);
int cm__jsonrpc_unmarshal(int response, const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                          size_t len, ProtobufCAllocator *alloc, cm_codec_envelope *env, void **out,
                          char *err, size_t errlen);

#endif
