/* cmicro: protobuf-c message -> JSON, byte for byte what Go's json.Encoder writes for the
 * protoc-gen-go struct (see json.c for the two deliberate differences). */
#include "json_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct enc {
    cm_buf *out;
    int rc;
    int depth;
} enc;

static void
put(enc *e, const void *p, size_t n)
{
    if (e->rc == 0) {
        e->rc = cm_buf_append(e->out, p, n);
    }
}

static void
put_char(enc *e, char c)
{
    put(e, &c, 1);
}

static void
put_str(enc *e, const char *s)
{
    put(e, s, strlen(s));
}

static void
fail(enc *e)
{
    if (e->rc == 0) {
        e->rc = CM_ECODEC;
    }
}

/* Go's encodeState.string with HTML escaping on (json.Encoder's default). */
static void
write_string(enc *e, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0, start = 0;

    put_char(e, '"');
    while (i < n) {
        uint8_t c = s[i];
        uint32_t r;
        size_t w;

        if (c < 0x80) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};

            if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
                i++;
                continue;
            }
            put(e, s + start, i - start);
            if (c == '"' || c == '\\') {
                esc[1] = (char)c;
                put(e, esc, 2);
            } else if (c == '\n' || c == '\r' || c == '\t') {
                esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
                put(e, esc, 2);
            } else {
                put(e, esc, 6);
            }
            start = ++i;
            continue;
        }
        w = cm__json_utf8_decode(s + i, n - i, &r);
        if (w == 0 || r == 0x2028 || r == 0x2029) {
            put(e, s + start, i - start);
            put_str(e, w == 0 ? "\\ufffd" : r == 0x2028 ? "\\u2028" : "\\u2029");
            i += w == 0 ? 1 : w;
            start = i;
            continue;
        }
        i += w;
    }
    put(e, s + start, i - start);
    put_char(e, '"');
}

static void
write_base64(enc *e, const uint8_t *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char chunk[256];
    size_t i, k = 0;

    put_char(e, '"');
    for (i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        size_t left = n - i;

        if (left > 1) {
            v |= (uint32_t)s[i + 1] << 8;
        }
        if (left > 2) {
            v |= s[i + 2];
        }
        chunk[k++] = tab[(v >> 18) & 0x3f];
        chunk[k++] = tab[(v >> 12) & 0x3f];
        chunk[k++] = left > 1 ? tab[(v >> 6) & 0x3f] : '=';
        chunk[k++] = left > 2 ? tab[v & 0x3f] : '=';
        if (k == sizeof(chunk)) {
            put(e, chunk, k);
            k = 0;
        }
    }
    put(e, chunk, k);
    put_char(e, '"');
}

size_t
cm__json_format_float(double v, int is_float32, char *buf)
{
    char tmp[40], digits[24];
    double a = fabs(v);
    int prec, exp, efmt = 0, nd = 0;
    size_t n = 0;
    const char *p;

    if (a != 0) {
        if (is_float32) {
            efmt = (float)a < 1e-6f || (float)a >= 1e21f;
        } else {
            efmt = a < 1e-6 || a >= 1e21;
        }
    }
    /* The shortest digits that read back to the same value (what strconv's -1 precision
     * gives): the correctly rounded decimal of that length always does when any does. */
    for (prec = 1; prec < 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, v);
        if (is_float32 ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) {
            break;
        }
    }
    snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, v);
    for (p = tmp; *p != 'e'; p++) {
        if (*p >= '0' && *p <= '9') {
            digits[nd++] = *p;
        }
    }
    exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }
    if (a == 0) {
        exp = 0;
    }
    if (signbit(v)) {
        buf[n++] = '-';
    }
    if (efmt) {
        buf[n++] = digits[0];
        if (nd > 1) {
            buf[n++] = '.';
            memcpy(buf + n, digits + 1, (size_t)nd - 1);
            n += (size_t)nd - 1;
        }
        /* strconv writes at least two exponent digits; encoding/json trims "e-07" to "e-7". */
        if (exp < 0) {
            n += (size_t)snprintf(buf + n, 8, "e-%d", -exp);
        } else {
            n += (size_t)snprintf(buf + n, 8, "e+%02d", exp);
        }
    } else if (exp >= 0) {
        int i;

        for (i = 0; i <= exp || i < nd; i++) {
            if (i == exp + 1) {
                buf[n++] = '.';
            }
            buf[n++] = i < nd ? digits[i] : '0';
        }
    } else {
        buf[n++] = '0';
        buf[n++] = '.';
        memset(buf + n, '0', (size_t)(-exp - 1));
        n += (size_t)(-exp - 1);
        memcpy(buf + n, digits, (size_t)nd);
        n += (size_t)nd;
    }
    buf[n] = '\0';
    return n;
}

static void
write_float(enc *e, double v, int is_float32)
{
    char buf[40];

    if (isnan(v)) {
        put_str(e, "\"NaN\"");
    } else if (isinf(v)) {
        put_str(e, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else {
        put(e, buf, cm__json_format_float(v, is_float32, buf));
    }
}

static void write_message(enc *e, const ProtobufCMessageDescriptor *desc,
                          const ProtobufCMessage *m);

/* Writes one value of field f stored at p (a member, an array element or a map value). */
static void
write_value(enc *e, const ProtobufCFieldDescriptor *f, const void *p)
{
    char buf[32];
    int n = 0;

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        n = snprintf(buf, sizeof(buf), "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_ENUM:
        n = snprintf(buf, sizeof(buf), "%d", *(const int *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        n = snprintf(buf, sizeof(buf), "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        n = snprintf(buf, sizeof(buf), "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        n = snprintf(buf, sizeof(buf), "%" PRIu64, *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        write_float(e, *(const float *)p, 1);
        return;
    case PROTOBUF_C_TYPE_DOUBLE:
        write_float(e, *(const double *)p, 0);
        return;
    case PROTOBUF_C_TYPE_BOOL:
        put_str(e, *(const protobuf_c_boolean *)p ? "true" : "false");
        return;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;

        write_string(e, s ? s : "", s ? strlen(s) : 0);
        return;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;

        if (b->len > 0 && b->data == NULL) {
            fail(e);
            return;
        }
        write_base64(e, b->data, b->len);
        return;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(const ProtobufCMessage *const *)p;

        if (m == NULL) {
            put_str(e, "{}");
        } else {
            write_message(e, f->descriptor, m);
        }
        return;
    }
    default:
        fail(e);
        return;
    }
    put(e, buf, (size_t)n);
}

static int
enter(enc *e)
{
    if (++e->depth > CM__JSON_MAX_DEPTH) {
        fail(e);
        return -1;
    }
    return 0;
}

static void
write_array(enc *e, const ProtobufCFieldDescriptor *f, const uint8_t *arr, size_t n)
{
    size_t i, size = cm__json_value_size(f->type);

    if (enter(e) < 0) {
        return;
    }
    put_char(e, '[');
    for (i = 0; i < n && e->rc == 0; i++) {
        if (i > 0) {
            put_char(e, ',');
        }
        write_value(e, f, arr + i * size);
    }
    put_char(e, ']');
    e->depth--;
}

typedef struct map_key {
    const char *s;
    size_t len;
    size_t idx;
    char buf[24];
} map_key;

/* The key text: s, or buf when s is NULL (buf moves with the struct while sorting). */
static const char *
key_str(const map_key *k)
{
    return k->s != NULL ? k->s : k->buf;
}

static int
key_eq(const map_key *x, const map_key *y)
{
    return x->len == y->len && memcmp(key_str(x), key_str(y), x->len) == 0;
}

static int
map_key_cmp(const void *a, const void *b)
{
    const map_key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(key_str(x), key_str(y), n);

    if (c != 0) {
        return c;
    }
    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void
map_key_text(const ProtobufCFieldDescriptor *kf, const void *p, map_key *k)
{
    k->s = NULL;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING:
        k->s = *(char *const *)p ? *(char *const *)p : "";
        k->len = strlen(k->s);
        return;
    case PROTOBUF_C_TYPE_BOOL:
        k->s = *(const protobuf_c_boolean *)p ? "true" : "false";
        k->len = strlen(k->s);
        return;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        k->len = (size_t)snprintf(k->buf, sizeof(k->buf), "%" PRId64, *(const int64_t *)p);
        return;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        k->len = (size_t)snprintf(k->buf, sizeof(k->buf), "%" PRIu64, *(const uint64_t *)p);
        return;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        k->len = (size_t)snprintf(k->buf, sizeof(k->buf), "%" PRIu32, *(const uint32_t *)p);
        return;
    default:
        k->len = (size_t)snprintf(k->buf, sizeof(k->buf), "%" PRId32, *(const int32_t *)p);
        return;
    }
}

/* A JSON object with keys sorted by their text, as Go sorts map keys. When the entries repeat
 * a key the last one wins, as it does when Go decodes the protobuf form. */
static void
write_map(enc *e, const ProtobufCMessageDescriptor *entry, ProtobufCMessage *const *ents,
          size_t n)
{
    const ProtobufCFieldDescriptor *kf = &entry->fields[0], *vf = &entry->fields[1];
    map_key *keys;
    size_t i, cnt = 0;
    int first = 1;

    if (enter(e) < 0) {
        return;
    }
    keys = malloc((n > 0 ? n : 1) * sizeof(*keys));
    if (keys == NULL) {
        e->rc = e->rc ? e->rc : CM_ENOMEM;
        return;
    }
    for (i = 0; i < n; i++) {
        if (ents[i] == NULL) {
            continue;
        }
        if (ents[i]->descriptor != entry) {
            fail(e);
            break;
        }
        map_key_text(kf, (const char *)ents[i] + kf->offset, &keys[cnt]);
        keys[cnt].idx = i;
        cnt++;
    }
    qsort(keys, cnt, sizeof(*keys), map_key_cmp);
    put_char(e, '{');
    for (i = 0; i < cnt && e->rc == 0; i++) {
        if (i + 1 < cnt && key_eq(&keys[i], &keys[i + 1])) {
            continue;
        }
        if (!first) {
            put_char(e, ',');
        }
        first = 0;
        write_string(e, key_str(&keys[i]), keys[i].len);
        put_char(e, ':');
        write_value(e, vf, (const char *)ents[keys[i].idx] + vf->offset);
    }
    put_char(e, '}');
    free(keys);
    e->depth--;
}

/* Whether Go's encoding/json writes the field (omitempty on the protoc-gen-go struct). */
static int
field_present(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m, const void *p)
{
    const char *base = (const char *)m;
    int is_ptr = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE;

    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *)(base + f->quantifier_offset) != f->id) {
            return 0;
        }
        return !is_ptr || *(void *const *)p != NULL;
    }
    switch (f->label) {
    case PROTOBUF_C_LABEL_REPEATED:
        return *(const size_t *)(base + f->quantifier_offset) > 0 && *(void *const *)p != NULL;
    case PROTOBUF_C_LABEL_REQUIRED:
        return !is_ptr || *(void *const *)p != NULL;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (is_ptr) {
            return *(void *const *)p != NULL && *(void *const *)p != f->default_value;
        }
        if (f->type == PROTOBUF_C_TYPE_BYTES && ((const ProtobufCBinaryData *)p)->len == 0) {
            return 0;
        }
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset) != 0;
    default:
        break;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)p != 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p != 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p != 0;
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p != 0;
    case PROTOBUF_C_TYPE_ENUM:
        return *(const int *)p != 0;
    case PROTOBUF_C_TYPE_STRING:
        return *(char *const *)p != NULL && **(char *const *)p != '\0';
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)p != NULL;
    default:
        return *(const uint32_t *)p != 0;
    }
}

static void
write_field(enc *e, const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
    const char *p = (const char *)m + f->offset;
    const ProtobufCMessageDescriptor *entry;
    size_t n;

    write_string(e, f->name, strlen(f->name));
    put_char(e, ':');
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        write_value(e, f, p);
        return;
    }
    n = *(const size_t *)((const char *)m + f->quantifier_offset);
    entry = cm__json_map_entry(f);
    if (entry != NULL) {
        write_map(e, entry, *(ProtobufCMessage *const *const *)p, n);
    } else {
        write_array(e, f, *(const uint8_t *const *)p, n);
    }
}

static void
write_message(enc *e, const ProtobufCMessageDescriptor *desc, const ProtobufCMessage *m)
{
    unsigned stack_order[64], *order = stack_order;
    unsigned i;
    int first = 1;

    if (m->descriptor != desc || enter(e) < 0) {
        fail(e);
        return;
    }
    if (desc->n_fields > 64) {
        order = malloc(desc->n_fields * sizeof(*order));
        if (order == NULL) {
            e->rc = e->rc ? e->rc : CM_ENOMEM;
            return;
        }
    }
    cm__json_field_order(desc, order);
    put_char(e, '{');
    for (i = 0; i < desc->n_fields && e->rc == 0; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[order[i]];

        if (!field_present(f, m, (const char *)m + f->offset)) {
            continue;
        }
        if (!first) {
            put_char(e, ',');
        }
        first = 0;
        write_field(e, f, m);
    }
    put_char(e, '}');
    if (order != stack_order) {
        free(order);
    }
    e->depth--;
}

int
cm__json_marshal(const ProtobufCMessageDescriptor *desc, const ProtobufCMessage *msg,
                 cm_buf *out)
{
    size_t start = out->len;
    enc e = {out, 0, 0};

    if (msg == NULL) {
        return CM_ECODEC;
    }
    write_message(&e, desc, msg);
    put_char(&e, '\n');
    if (e.rc != 0) {
        out->len = start;
    }
    return e.rc;
}
