/* protoc-gen-cmicro: the registry Value trees of request and response messages.
 *
 * go-micro v4 (server/extractor.go, extractValue) publishes each endpoint's request and
 * response as a tree built by reflection over the Go struct that protoc-gen-go generated:
 *
 *  - a Value is {name, type, values}; name = type = the Go type name after dereferencing one
 *    pointer ("EchoRequest", "string", "Outer_Inner"); unnamed types (slices, maps) give "".
 *  - a struct lists one Value per exported field in struct order; protoc-gen-go's internal
 *    fields (state, sizeCache, unknownFields) are unexported and skipped. The child's name is
 *    the first part of its json tag (the proto field name; a field literally named "omitempty"
 *    or "-" is skipped), else it keeps its type name: a oneof's interface field has no json
 *    tag, so it is published as {"isMsg_Kind", "isMsg_Kind"}.
 *  - a slice gets type "[]" + the element's type name (pointer dereferenced): "[]string",
 *    "[]Item", "[]uint8" for bytes, "[]" for repeated bytes; it is not recursed into.
 *  - recursion stops at depth 3: the top Value is depth 0, so the fields of a message field of
 *    the top message are listed (depth 2) but not their own fields.
 *
 * protoc-gen-go (cmd/protoc-gen-go/internal_gengo) writes the struct fields in .proto order,
 * one interface field per real oneof at the place of its first member, and names the oneof
 * interface "is" + message Go name + "_" + oneof Go name, where the oneof Go name is made
 * unique against the message's field and method names (compiler/protogen, newMessage).
 *
 * The generated tables: cm__fields1_<m> lists the fields of message m at depth 1 (leaves),
 * cm__fields0_<m> those at depth 0 (message fields point to their cm__fields1 table) and
 * cm__value_<m> is the top Value of a request or response message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

#define T(x) GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_##x
#define MAX_DEPTH 3

/* One struct field as extractValue publishes it. */
typedef struct vfield {
    char *name;
    char *type;
    const gen_type *child; /* a singular message field: its fields are listed one level down */
} vfield;

typedef struct vfields {
    vfield *items;
    size_t n;
} vfields;

/* The unique-name set of protogen's field name conflict resolution: name -> has getter. */
typedef struct used_names {
    strlist names;
    char *getter; /* getter[i]: 1 when names[i] maps to true */
} used_names;

static int
used_get(const used_names *u, const char *name)
{
    for (size_t i = 0; i < u->names.n; i++) {
        if (strcmp(u->names.items[i], name) == 0) {
            return u->getter[i];
        }
    }
    return 0;
}

static void
used_set(used_names *u, const char *name, int val)
{
    for (size_t i = 0; i < u->names.n; i++) {
        if (strcmp(u->names.items[i], name) == 0) {
            u->getter[i] = (char)val;
            return;
        }
    }
    strlist_add(&u->names, name);
    u->getter = xrealloc(u->getter, u->names.cap);
    u->getter[u->names.n - 1] = (char)val;
}

/* makeNameUnique of protogen: appends '_' until neither name nor Get+name is taken. Takes
 * name; returns the unique name, owned by the caller. */
static char *
make_unique(used_names *u, char *name, int has_getter)
{
    for (;;) {
        char *get = xasprintf("Get%s", name);
        int taken = used_get(u, name) || (has_getter && used_get(u, get));

        free(get);
        if (!taken) {
            break;
        }
        char *longer = xasprintf("%s_", name);
        free(name);
        name = longer;
    }
    char *get = xasprintf("Get%s", name);
    used_set(u, name, 1);
    used_set(u, get, has_getter);
    free(get);
    return name;
}

static int
is_real_oneof_member(const gen_message *m, const gen_field *f)
{
    return f->has_oneof_index && f->oneof_index >= 0 && (size_t)f->oneof_index < m->n_oneof_decl &&
           !(f->has_proto3_optional && f->proto3_optional);
}

/* The Go names of m's oneofs (by oneof index; NULL for oneofs without fields). */
static char **
oneof_go_names(const gen_message *m)
{
    static const char *const methods[] = {
        "Reset",     "String",    "ProtoMessage",        "Marshal",
        "Unmarshal", "Descriptor", "ExtensionRangeArray", "ExtensionMap",
    };
    char **names = xcalloc(m->n_oneof_decl, sizeof(*names));
    used_names u = {{0}, NULL};

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        used_set(&u, methods[i], 1);
    }
    for (size_t i = 0; i < m->n_field; i++) {
        const gen_field *f = m->field[i];

        free(make_unique(&u, go_camel_case(f->name), 1));
        if (f->has_oneof_index && f->oneof_index >= 0 &&
            (size_t)f->oneof_index < m->n_oneof_decl && names[f->oneof_index] == NULL) {
            const char *on = m->oneof_decl[f->oneof_index]->name;
            names[f->oneof_index] = make_unique(&u, go_camel_case(on != NULL ? on : ""), 0);
        }
    }
    strlist_free(&u.names);
    free(u.getter);
    return names;
}

static const char *
scalar_go_type(int type)
{
    switch (type) {
    case T(DOUBLE):
        return "float64";
    case T(FLOAT):
        return "float32";
    case T(INT64):
    case T(SINT64):
    case T(SFIXED64):
        return "int64";
    case T(UINT64):
    case T(FIXED64):
        return "uint64";
    case T(INT32):
    case T(SINT32):
    case T(SFIXED32):
        return "int32";
    case T(UINT32):
    case T(FIXED32):
        return "uint32";
    case T(BOOL):
        return "bool";
    case T(STRING):
        return "string";
    default:
        return NULL;
    }
}

/* Fills v->type (and v->child) for field f of a message. Returns GEN_OK or GEN_MALFORMED. */
static int
field_type(const gen_index *ix, const gen_field *f, vfield *v, char *err, size_t errlen)
{
    int repeated =
        f->has_label && f->label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED;
    const gen_type *ref = NULL;
    const char *elem;

    if (!f->has_type) {
        snprintf(err, errlen, "field %s has no type", f->name);
        return GEN_MALFORMED;
    }
    if (f->type == T(MESSAGE) || f->type == T(GROUP) || f->type == T(ENUM)) {
        ref = gen_index_find(ix, f->type_name);
        if (ref == NULL || (ref->msg == NULL) != (f->type == T(ENUM))) {
            snprintf(err, errlen, "field %s has an unknown type %s", f->name,
                     f->type_name != NULL ? f->type_name : "(none)");
            return GEN_MALFORMED;
        }
    }
    if (f->options != NULL && f->options->has_weak && f->options->weak) {
        v->type = xstrdup(""); /* a weak field is struct{} in Go */
        return GEN_OK;
    }
    if (ref != NULL && ref->msg != NULL && repeated && ref->msg->options != NULL &&
        ref->msg->options->has_map_entry && ref->msg->options->map_entry) {
        v->type = xstrdup(""); /* a Go map type has no name */
        return GEN_OK;
    }
    if (f->type == T(BYTES)) {
        /* []byte is unnamed; its element is uint8, and [][]byte's element is unnamed. */
        v->type = xstrdup(repeated ? "[]" : "[]uint8");
        return GEN_OK;
    }
    elem = ref != NULL ? ref->go_name : scalar_go_type(f->type);
    if (elem == NULL) {
        snprintf(err, errlen, "field %s has an unknown type %d", f->name, (int)f->type);
        return GEN_MALFORMED;
    }
    if (repeated) {
        v->type = xasprintf("[]%s", elem);
    } else {
        v->type = xstrdup(elem);
        if (ref != NULL && ref->msg != NULL) {
            v->child = ref;
        }
    }
    return GEN_OK;
}

static void
vfields_free(vfields *vs)
{
    for (size_t i = 0; i < vs->n; i++) {
        free(vs->items[i].name);
        free(vs->items[i].type);
    }
    free(vs->items);
    vs->items = NULL;
    vs->n = 0;
}

/* The struct fields of message t in Go struct order. */
static int
message_fields(const gen_index *ix, const gen_type *t, vfields *out, char *err, size_t errlen)
{
    const gen_message *m = t->msg;
    char **oneofs;
    int rc = GEN_OK;

    out->items = xcalloc(m->n_field, sizeof(*out->items));
    out->n = 0;
    for (size_t i = 0; i < m->n_field; i++) {
        if (m->field[i]->name == NULL) {
            snprintf(err, errlen, "a field of %s has no name", t->full);
            return GEN_MALFORMED;
        }
    }
    oneofs = oneof_go_names(m);
    for (size_t i = 0; i < m->n_field && rc == GEN_OK; i++) {
        const gen_field *f = m->field[i];
        vfield *v = &out->items[out->n];

        if (is_real_oneof_member(m, f)) {
            char *iface = oneofs[f->oneof_index];

            if (iface == NULL) {
                continue; /* already listed at its first member */
            }
            v->name = xasprintf("is%s_%s", t->go_name, iface);
            v->type = xstrdup(v->name);
            free(iface);
            oneofs[f->oneof_index] = NULL;
            out->n++;
            continue;
        }
        if (strcmp(f->name, "omitempty") == 0 || strcmp(f->name, "-") == 0) {
            continue; /* extractValue skips these json tag names */
        }
        rc = field_type(ix, f, v, err, errlen);
        if (rc == GEN_OK) {
            v->name = xstrdup(f->name);
            out->n++;
        }
    }
    for (size_t i = 0; i < m->n_oneof_decl; i++) {
        free(oneofs[i]);
    }
    free(oneofs);
    if (rc != GEN_OK) {
        vfields_free(out);
    }
    return rc;
}

char *
gen_value_name(const gen_type *t)
{
    return xasprintf("cm__value_%s", t->lc_name);
}

/* A list of types without duplicates, in order of first appearance. */
typedef struct typelist {
    const gen_type **items;
    size_t n;
    size_t cap;
} typelist;

static void
typelist_add(typelist *l, const gen_type *t)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i] == t) {
            return;
        }
    }
    if (l->n == l->cap) {
        l->cap = l->cap == 0 ? 16 : l->cap * 2;
        l->items = xrealloc(l->items, l->cap * sizeof(*l->items));
    }
    l->items[l->n++] = t;
}

void
gen_put_literal(sbuf *b, const char *s)
{
    sb_putc(b, '"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            sb_putc(b, '\\');
            sb_putc(b, (char)c);
        } else if (c < 0x20 || c >= 0x7f || c == '?') {
            sb_printf(b, "\\%03o", c);
        } else {
            sb_putc(b, (char)c);
        }
    }
    sb_putc(b, '"');
}

/* Writes one table entry {name, type, n, values}, wrapped at 100 columns. */
static void
put_entry(sbuf *b, size_t indent, const char *name, const char *type, size_t n,
          const char *values, const char *tail)
{
    sbuf sn = {0}, st = {0}, sc = {0};

    gen_put_literal(&sn, name);
    gen_put_literal(&st, type);
    sb_printf(&sc, "%zu", n);
    const char *params[] = {sb_str(&sn), sb_str(&st), sb_str(&sc), values};
    sb_wrap_call(b, indent, "{", params, 4, tail);
    sb_free(&sn);
    sb_free(&st);
    sb_free(&sc);
}

/* Writes the fields table of message t at depth d (0 or 1), or nothing when it is empty. */
static void
put_table(sbuf *src, const gen_type *t, int depth, const vfields *vs, const gen_index *ix,
          char *err, size_t errlen)
{
    if (vs->n == 0) {
        return;
    }
    sb_printf(src, "static const cm_value_desc cm__fields%d_%s[] = {\n", depth, t->lc_name);
    for (size_t i = 0; i < vs->n; i++) {
        const vfield *v = &vs->items[i];
        vfields sub = {NULL, 0};
        char *values = xstrdup("NULL");

        /* A message field lists its own fields while they stay above the depth limit. */
        if (v->child != NULL && depth + 2 < MAX_DEPTH &&
            message_fields(ix, v->child, &sub, err, errlen) == GEN_OK && sub.n > 0) {
            free(values);
            values = xasprintf("cm__fields%d_%s", depth + 1, v->child->lc_name);
        }
        sb_puts(src, "    ");
        put_entry(src, 4, v->name, v->type, sub.n, values, "},\n");
        vfields_free(&sub);
        free(values);
    }
    sb_puts(src, "};\n");
}

int
gen_values_emit(const gen_index *ix, const gen_file *f, sbuf *src, char *err, size_t errlen)
{
    typelist top = {NULL, 0, 0}, inner = {NULL, 0, 0};
    vfields vs = {NULL, 0};
    int rc = GEN_OK;

    for (size_t s = 0; s < f->n_service; s++) {
        for (size_t m = 0; m < f->service[s]->n_method; m++) {
            const gen_method *md = f->service[s]->method[m];
            const gen_type *in = gen_index_find(ix, md->input_type);
            const gen_type *out = gen_index_find(ix, md->output_type);

            if (in == NULL || in->msg == NULL || out == NULL || out->msg == NULL) {
                snprintf(err, errlen, "method %s has an unknown request or response type",
                         md->name != NULL ? md->name : "(unnamed)");
                free(top.items);
                return GEN_MALFORMED;
            }
            typelist_add(&top, in);
            typelist_add(&top, out);
        }
    }
    const gen_type *events[256];
    size_t nevents = gen_event_types(ix, f, events, 256);
    for (size_t i = 0; i < nevents && i < 256; i++) {
        typelist_add(&top, events[i]);
    }
    /* Depth-1 messages: singular message fields of the top messages. */
    for (size_t i = 0; i < top.n && rc == GEN_OK; i++) {
        rc = message_fields(ix, top.items[i], &vs, err, errlen);
        for (size_t k = 0; rc == GEN_OK && k < vs.n; k++) {
            if (vs.items[k].child != NULL) {
                typelist_add(&inner, vs.items[k].child);
            }
        }
        vfields_free(&vs);
    }
    if (rc == GEN_OK) {
        sb_puts(src, "/* The registry shape of each request and response message: go-micro's "
                     "Value tree of the\n * protoc-gen-go struct (server/extractor.go). */\n");
    }
    for (size_t i = 0; i < inner.n && rc == GEN_OK; i++) {
        rc = message_fields(ix, inner.items[i], &vs, err, errlen);
        if (rc == GEN_OK) {
            put_table(src, inner.items[i], 1, &vs, ix, err, errlen);
        }
        vfields_free(&vs);
    }
    for (size_t i = 0; i < top.n && rc == GEN_OK; i++) {
        const gen_type *t = top.items[i];

        rc = message_fields(ix, t, &vs, err, errlen);
        if (rc != GEN_OK) {
            break;
        }
        put_table(src, t, 0, &vs, ix, err, errlen);
        char *values = vs.n > 0 ? xasprintf("cm__fields0_%s", t->lc_name) : xstrdup("NULL");
        sbuf sn = {0}, sc = {0};

        gen_put_literal(&sn, t->go_name);
        sb_printf(&sc, "%zu", vs.n);
        const char *params[] = {sb_str(&sn), sb_str(&sn), sb_str(&sc), values};
        sb_printf(src, "static const cm_value_desc cm__value_%s = {\n    ", t->lc_name);
        sb_wrap_call(src, 4, "", params, 4, ",\n};\n");
        sb_free(&sn);
        sb_free(&sc);
        free(values);
        vfields_free(&vs);
    }
    if (rc == GEN_OK) {
        sb_putc(src, '\n');
    }
    free(top.items);
    free(inner.items);
    return rc;
}
