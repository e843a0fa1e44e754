/* cmicro: JSON -> protobuf-c message with jsonpb's rules (golang/protobuf jsonpb, which
 * go-micro's JSON codec reads messages with), plus Go's oneof wrapper form.
 *
 * Memory mirrors protobuf_c_message_unpack() so that protobuf_c_message_free_unpacked() frees
 * everything: messages come from the caller's allocator and start with message_init; strings
 * are separate NUL-terminated allocations (an unset or empty proto3 string keeps the
 * descriptor's default pointer, which is never freed); bytes own their data (NULL when empty);
 * repeated fields are one array plus the n_ count; map entries are messages of the generated
 * <Name>Entry type; only the selected member of a oneof owns memory. Every pointer is stored
 * in its message as soon as it is allocated, so a failure anywhere frees the partial result
 * with one protobuf_c_message_free_unpacked().
 */
#include "json_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Names derived from a descriptor, computed once per decode. */
typedef struct msg_info msg_info;
struct msg_info {
    const ProtobufCMessageDescriptor *desc;
    char **json_names; /* lowerCamel name per field index */
    char **go_names;   /* GoCamelCase name per oneof member, NULL for other fields */
    int has_oneof;
    msg_info *next;
};

typedef struct dec {
    ProtobufCAllocator *alloc;
    cm__arena *arena;
    msg_info *infos;
    int depth;
    int rc;
    char *err;
    size_t errlen;
} dec;

/* The field being decoded, for error messages. */
typedef struct where {
    const ProtobufCMessageDescriptor *owner;
    const ProtobufCFieldDescriptor *field;
} where;

static int
fail(dec *d, const where *w, const char *fmt, ...) CM_PRINTF(3, 4);

static int
fail(dec *d, const where *w, const char *fmt, ...)
{
    char reason[160];
    va_list ap;

    if (d->rc != 0) {
        return -1;
    }
    d->rc = CM_ECODEC;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (w != NULL) {
        cm__codec_errf(d->err, d->errlen, "%s.%s: %s", w->owner->name, w->field->name, reason);
    } else {
        cm__codec_errf(d->err, d->errlen, "%s", reason);
    }
    return -1;
}

static int
nomem(dec *d)
{
    if (d->rc == 0) {
        d->rc = CM_ENOMEM;
        cm__codec_errf(d->err, d->errlen, "out of memory");
    }
    return -1;
}

static msg_info *
get_info(dec *d, const ProtobufCMessageDescriptor *desc)
{
    msg_info *mi;
    unsigned i;

    for (mi = d->infos; mi != NULL; mi = mi->next) {
        if (mi->desc == desc) {
            return mi;
        }
    }
    mi = cm__arena_alloc(d->arena, sizeof(*mi));
    if (mi == NULL) {
        return NULL;
    }
    mi->desc = desc;
    mi->has_oneof = 0;
    mi->json_names = cm__arena_alloc(d->arena, (desc->n_fields + 1) * sizeof(char *));
    mi->go_names = cm__arena_alloc(d->arena, (desc->n_fields + 1) * sizeof(char *));
    if (mi->json_names == NULL || mi->go_names == NULL) {
        return NULL;
    }
    for (i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        size_t n = strlen(f->name) + 1;

        mi->json_names[i] = cm__arena_alloc(d->arena, n);
        if (mi->json_names[i] == NULL) {
            return NULL;
        }
        cm__json_lower_camel(f->name, mi->json_names[i]);
        mi->go_names[i] = NULL;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            mi->has_oneof = 1;
            mi->go_names[i] = cm__arena_alloc(d->arena, n);
            if (mi->go_names[i] == NULL) {
                return NULL;
            }
            cm__json_go_camel(f->name, mi->go_names[i]);
        }
    }
    mi->next = d->infos;
    d->infos = mi;
    return mi;
}

/* The field a key names, by proto name or by lowerCamel JSON name; -1 when none. */
static int
resolve(const msg_info *mi, const cm__json_value *c, int *via_json)
{
    const ProtobufCMessageDescriptor *desc = mi->desc;
    unsigned lo = 0, hi = desc->n_fields, i;

    if (strlen(c->key) != c->keylen) {
        return -1;
    }
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        unsigned idx = desc->fields_sorted_by_name[mid];
        int cmp = strcmp(c->key, desc->fields[idx].name);

        if (cmp == 0) {
            *via_json = 0;
            return (int)idx;
        }
        if (cmp < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    for (i = 0; i < desc->n_fields; i++) {
        if (strcmp(c->key, mi->json_names[i]) == 0) {
            *via_json = 1;
            return (int)i;
        }
    }
    return -1;
}

/* Turns a json_scalar.c result into the decoder's error. */
static int
scalar_done(dec *d, const where *w, int rc, const char *why)
{
    if (rc == CM_ENOMEM) {
        return nomem(d);
    }
    return rc == 0 ? 0 : fail(d, w, "%s", why);
}

static int decode_message(dec *d, const ProtobufCMessageDescriptor *desc,
                          const cm__json_value *v, ProtobufCMessage **slot);

/* A copy of a JSON string into a new allocation. */
static int
get_string(dec *d, const where *w, const cm__json_value *v, char **slot)
{
    char *s;

    if (v->type != CM__JSON_STRING) {
        return fail(d, w, "expected a string, got %s", cm__json_type_name(v->type));
    }
    if (strlen(v->str) != v->len) {
        return fail(d, w, "string contains a NUL character");
    }
    s = cm__codec_alloc(d->alloc, v->len + 1);
    if (s == NULL) {
        return nomem(d);
    }
    memcpy(s, v->str, v->len + 1);
    *slot = s;
    return 0;
}

/* null as an array element or a map value: the zero value (present for strings and
 * messages, which must not be NULL there). */
static int
set_null(dec *d, const ProtobufCFieldDescriptor *f, void *p)
{
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        *(ProtobufCMessage **)p = cm__codec_message_new(f->descriptor, d->alloc);
        return *(ProtobufCMessage **)p == NULL ? nomem(d) : 0;
    }
    if (f->type == PROTOBUF_C_TYPE_STRING && *(char **)p == NULL) {
        *(char **)p = cm__codec_alloc(d->alloc, 1);
        if (*(char **)p == NULL) {
            return nomem(d);
        }
        **(char **)p = '\0';
    }
    return 0;
}

/* Stores one value of field w->field at p, which holds a value owning no memory. keep_empty:
 * an empty string must still be allocated (presence matters: oneofs, proto2, elements). */
static int
set_value(dec *d, const where *w, void *p, const cm__json_value *v, int keep_empty)
{
    const ProtobufCFieldDescriptor *f = w->field;
    char why[CM__JSON_WHY];
    int rc;

    if (v->type == CM__JSON_NULL) {
        return set_null(d, f, p);
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        if (v->type != CM__JSON_TRUE && v->type != CM__JSON_FALSE) {
            return fail(d, w, "expected a bool, got %s", cm__json_type_name(v->type));
        }
        *(protobuf_c_boolean *)p = v->type == CM__JSON_TRUE;
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        rc = cm__json_get_enum(v, f->descriptor, (int *)p, why);
        break;
    case PROTOBUF_C_TYPE_STRING:
        if (v->type == CM__JSON_STRING && v->len == 0 && !keep_empty) {
            return 0; /* Keep the default "" pointer. */
        }
        return get_string(d, w, v, (char **)p);
    case PROTOBUF_C_TYPE_BYTES:
        rc = cm__json_get_bytes(v, d->alloc, (ProtobufCBinaryData *)p, why);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        if (v->type != CM__JSON_OBJECT) {
            return fail(d, w, "expected an object, got %s", cm__json_type_name(v->type));
        }
        return decode_message(d, f->descriptor, v, (ProtobufCMessage **)p);
    default:
        rc = cm__json_get_number(f->type, v, p, why);
        break;
    }
    return scalar_done(d, w, rc, why);
}

/* Allocates a zeroed array for a repeated field and stores it with its count. */
static uint8_t *
new_array(dec *d, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, size_t n, size_t size)
{
    uint8_t *arr;

    if (n > SIZE_MAX / size) {
        nomem(d);
        return NULL;
    }
    arr = cm__codec_alloc(d->alloc, n * size);
    if (arr == NULL) {
        nomem(d);
        return NULL;
    }
    memset(arr, 0, n * size);
    *(void **)((char *)m + f->offset) = arr;
    *(size_t *)((char *)m + f->quantifier_offset) = n;
    return arr;
}

static int
set_array(dec *d, const where *w, ProtobufCMessage *m, const cm__json_value *v)
{
    size_t size = cm__json_value_size(w->field->type), i = 0;
    const cm__json_value *c;
    uint8_t *arr;

    if (v->type != CM__JSON_ARRAY) {
        return fail(d, w, "expected an array, got %s", cm__json_type_name(v->type));
    }
    if (v->count == 0) {
        return 0;
    }
    arr = new_array(d, m, w->field, v->count, size);
    if (arr == NULL) {
        return -1;
    }
    for (c = v->child; c != NULL; c = c->next, i++) {
        if (set_value(d, w, arr + i * size, c, 1) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Parses a map key (always a JSON string) by the key field's type into p. */
static int
set_map_key(dec *d, const ProtobufCMessageDescriptor *entry, void *p, const cm__json_value *c)
{
    const ProtobufCFieldDescriptor *kf = &entry->fields[0];
    where kw = {entry, kf};
    cm__json_value k;

    memset(&k, 0, sizeof(k));
    k.type = CM__JSON_STRING;
    k.str = c->key;
    k.len = c->keylen;
    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        return c->keylen == 0 ? 0 : get_string(d, &kw, &k, (char **)p);
    }
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (strlen(c->key) != c->keylen ||
            (strcmp(c->key, "true") != 0 && strcmp(c->key, "false") != 0)) {
            return fail(d, &kw, "invalid bool map key \"%.40s\"", c->key);
        }
        *(protobuf_c_boolean *)p = c->key[0] == 't';
        return 0;
    }
    if (strlen(k.str) != k.len || !cm__json_is_number_text(k.str, k.len)) {
        return fail(d, &kw, "invalid integer map key \"%.40s\"", c->key);
    }
    return set_value(d, &kw, p, &k, 0);
}

static int
set_map(dec *d, const where *w, const ProtobufCMessageDescriptor *entry, ProtobufCMessage *m,
        const cm__json_value *v)
{
    const ProtobufCFieldDescriptor *kf = &entry->fields[0], *vf = &entry->fields[1];
    where vw = {entry, vf};
    ProtobufCMessage **arr;
    const cm__json_value *c;
    size_t i = 0;

    if (v->type != CM__JSON_OBJECT) {
        return fail(d, w, "expected an object, got %s", cm__json_type_name(v->type));
    }
    if (v->count == 0) {
        return 0;
    }
    arr = (ProtobufCMessage **)new_array(d, m, w->field, v->count, sizeof(*arr));
    if (arr == NULL) {
        return -1;
    }
    /* Repeated keys stay as separate entries: the last one wins when read back, as in Go. */
    for (c = v->child; c != NULL; c = c->next, i++) {
        arr[i] = cm__codec_message_new(entry, d->alloc);
        if (arr[i] == NULL) {
            return nomem(d);
        }
        if (set_map_key(d, entry, (char *)arr[i] + kf->offset, c) < 0 ||
            set_value(d, &vw, (char *)arr[i] + vf->offset, c, 0) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Frees what the selected member of f's oneof owns and marks the oneof unset. */
static void
clear_oneof(dec *d, const ProtobufCMessageDescriptor *desc, ProtobufCMessage *m,
            const ProtobufCFieldDescriptor *f)
{
    uint32_t *which = (uint32_t *)((char *)m + f->quantifier_offset);
    void *p = (char *)m + f->offset;
    unsigned i;

    for (i = 0; i < desc->n_fields && *which != 0; i++) {
        const ProtobufCFieldDescriptor *g = &desc->fields[i];

        if (g->id != *which || g->quantifier_offset != f->quantifier_offset) {
            continue;
        }
        if (g->type == PROTOBUF_C_TYPE_STRING) {
            char *s = *(char **)p;

            if (s != NULL && s != g->default_value) {
                cm__codec_free(d->alloc, s);
            }
        } else if (g->type == PROTOBUF_C_TYPE_BYTES) {
            const ProtobufCBinaryData *def = g->default_value;
            uint8_t *data = ((ProtobufCBinaryData *)p)->data;

            if (data != NULL && (def == NULL || def->data != data)) {
                cm__codec_free(d->alloc, data);
            }
        } else if (g->type == PROTOBUF_C_TYPE_MESSAGE) {
            protobuf_c_message_free_unpacked(*(ProtobufCMessage **)p, d->alloc);
        }
        break;
    }
    *which = 0;
    /* The union is as wide as its widest member; clearing f's own width is what f needs. */
    memset(p, 0, cm__json_value_size(f->type));
}

static int
set_field(dec *d, const ProtobufCMessageDescriptor *desc, ProtobufCMessage *m,
          const ProtobufCFieldDescriptor *f, const cm__json_value *v)
{
    where w = {desc, f};
    void *p = (char *)m + f->offset;
    const ProtobufCMessageDescriptor *entry;

    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        entry = cm__json_map_entry(f);
        return entry != NULL ? set_map(d, &w, entry, m, v) : set_array(d, &w, m, v);
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        clear_oneof(d, desc, m, f);
        *(uint32_t *)((char *)m + f->quantifier_offset) = f->id;
        return set_value(d, &w, p, v, 1);
    }
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
        f->type != PROTOBUF_C_TYPE_MESSAGE) {
        *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
    }
    if (f->type == PROTOBUF_C_TYPE_BYTES) {
        /* A proto2 default points at static data: drop it before decoding the new value. */
        memset(p, 0, sizeof(ProtobufCBinaryData));
    }
    return set_value(d, &w, p, v, f->label != PROTOBUF_C_LABEL_NONE);
}

/* Go's encoding/json writes a oneof as {"<OneofGoName>":{"<FieldGoName>":value}} (or null
 * when unset). The oneof's name is not in protobuf-c's descriptors, so the wrapper is matched
 * by its inner member. Returns the member's field index, -2 for an ignorable null, -1 when c
 * is not a wrapper. */
static int
oneof_wrapper(const msg_info *mi, const cm__json_value *c)
{
    const cm__json_value *in = c->child;
    size_t i;

    if (!mi->has_oneof || c->keylen == 0 || c->key[0] < 'A' || c->key[0] > 'Z') {
        return -1;
    }
    for (i = 0; i < c->keylen; i++) {
        char k = c->key[i];

        if (!((k >= 'a' && k <= 'z') || (k >= 'A' && k <= 'Z') || (k >= '0' && k <= '9') ||
              k == '_')) {
            return -1;
        }
    }
    if (c->type == CM__JSON_NULL) {
        return -2;
    }
    if (c->type != CM__JSON_OBJECT || c->count != 1 || strlen(in->key) != in->keylen) {
        return -1;
    }
    for (i = 0; i < mi->desc->n_fields; i++) {
        if (mi->go_names[i] != NULL && strcmp(in->key, mi->go_names[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

typedef struct pick {
    const cm__json_value *v;
    int via_json;
} pick;

static int
fill_message(dec *d, const msg_info *mi, ProtobufCMessage *m, const cm__json_value *obj)
{
    const ProtobufCMessageDescriptor *desc = mi->desc;
    pick stack_picks[64], *picks = stack_picks;
    const cm__json_value *c;
    unsigned i;
    int idx, via_json = 0, rc = -1;

    if (desc->n_fields > 64) {
        picks = malloc(desc->n_fields * sizeof(*picks));
        if (picks == NULL) {
            return nomem(d);
        }
    }
    memset(picks, 0, desc->n_fields * sizeof(*picks));
    /* jsonpb: the JSON name beats the proto name, and a repeated key keeps its last value. */
    for (c = obj->child; c != NULL; c = c->next) {
        idx = resolve(mi, c, &via_json);
        if (idx < 0) {
            if (oneof_wrapper(mi, c) == -1) {
                fail(d, NULL, "unknown field \"%.60s\" in %s", c->key, desc->name);
                goto out;
            }
            continue;
        }
        if (picks[idx].v == NULL || via_json >= picks[idx].via_json) {
            picks[idx].v = c;
            picks[idx].via_json = via_json;
        }
    }
    for (i = 0; i < desc->n_fields; i++) {
        if (picks[i].v != NULL && picks[i].v->type != CM__JSON_NULL &&
            set_field(d, desc, m, &desc->fields[i], picks[i].v) < 0) {
            goto out;
        }
    }
    for (c = obj->child; c != NULL; c = c->next) {
        if (resolve(mi, c, &via_json) >= 0 || (idx = oneof_wrapper(mi, c)) < 0) {
            continue;
        }
        if (c->child->type != CM__JSON_NULL &&
            set_field(d, desc, m, &desc->fields[idx], c->child) < 0) {
            goto out;
        }
    }
    for (i = 0; i < desc->n_fields; i++) {
        if (desc->fields[i].label == PROTOBUF_C_LABEL_REQUIRED &&
            (picks[i].v == NULL || picks[i].v->type == CM__JSON_NULL)) {
            fail(d, NULL, "required field %s.%s not set", desc->name, desc->fields[i].name);
            goto out;
        }
    }
    rc = 0;
out:
    if (picks != stack_picks) {
        free(picks);
    }
    return rc;
}

static int
decode_message(dec *d, const ProtobufCMessageDescriptor *desc, const cm__json_value *v,
               ProtobufCMessage **slot)
{
    msg_info *mi;
    int rc;

    if (d->depth >= CM__JSON_MAX_DEPTH) {
        return fail(d, NULL, "messages nested too deeply");
    }
    if (desc->message_init == NULL) {
        return fail(d, NULL, "%s has no message_init", desc->name);
    }
    mi = get_info(d, desc);
    *slot = cm__codec_message_new(desc, d->alloc);
    if (mi == NULL || *slot == NULL) {
        return nomem(d);
    }
    d->depth++;
    rc = fill_message(d, mi, *slot, v);
    d->depth--;
    return rc;
}

int
cm__json_decode_tree(const ProtobufCMessageDescriptor *desc, const cm__json_value *root,
                     ProtobufCAllocator *alloc, void **out, char *err, size_t errlen)
{
    cm__arena arena; /* scratch: the field name tables */
    cm__arena_init(&arena);
    ProtobufCMessage *m = NULL;
    dec d;
    memset(&d, 0, sizeof(d));
    d.alloc = alloc;
    d.arena = &arena;
    d.err = err;
    d.errlen = errlen;
    if (desc->message_init == NULL) {
        cm__codec_errf(err, errlen, "%s has no message_init", desc->name);
        return CM_ECODEC;
    }
    if (root == NULL || root->type == CM__JSON_NULL) {
        /* An empty body or null: the default message, as go-micro and jsonpb leave it (a
         * proto2 message with required fields is incomplete then, as protobuf-c says too). */
        m = cm__codec_message_new(desc, alloc);
        if (m == NULL) {
            nomem(&d);
        }
        for (unsigned i = 0; m != NULL && i < desc->n_fields; i++) {
            if (desc->fields[i].label == PROTOBUF_C_LABEL_REQUIRED) {
                fail(&d, NULL, "required field %s.%s not set", desc->name, desc->fields[i].name);
                break;
            }
        }
    } else if (root->type != CM__JSON_OBJECT) {
        fail(&d, NULL, "expected a JSON object for %s, got %s", desc->name,
             cm__json_type_name(root->type));
    } else {
        decode_message(&d, desc, root, &m);
    }
    cm__arena_fini(&arena);
    if (d.rc != 0) {
        protobuf_c_message_free_unpacked(m, alloc);
        return d.rc;
    }
    *out = m;
    return 0;
}

int
cm__json_unmarshal(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                   ProtobufCAllocator *alloc, void **out, char *err, size_t errlen)
{
    cm__arena arena; /* the parse tree */
    cm__arena_init(&arena);
    cm__json_value *root = NULL;
    if (len > 0) {
        int rc = cm__json_parse(data, len, &arena, &root, err, errlen);
        if (rc < 0) {
            cm__arena_fini(&arena);
            return rc;
        }
    }
    int rc = cm__json_decode_tree(desc, root, alloc, out, err, errlen);
    cm__arena_fini(&arena);
    return rc;
}
