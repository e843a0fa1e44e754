/* go-micro's broker.Message {Header map[string]string; Body []byte} as its JSON codec
 * (encoding/json, no struct tags) writes and reads it. Both built-in backends carry messages in
 * this form. */
#include "broker_int.h"

#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* More header entries than this make a message malformed (cm_md is a list). */
#define HEADER_MAX 1024

/* ---- encoding, byte for byte as Go 1.22+ ---- */

static int
put(cm_buf *out, const char *s, size_t n)
{
    return cm_buf_append(out, s, n);
}

/* The length of the valid UTF-8 sequence at s (1-4), or 0 when it is not one (Go's
 * utf8.DecodeRune answers RuneError, width 1). */
static size_t
utf8_len(const uint8_t *s, size_t n, uint32_t *rune)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t r, min;
    if (c < 0x80) {
        *rune = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2, r = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, r = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, r = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        r = (r << 6) | (s[i] & 0x3f);
    }
    if (r < min || r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff)) {
        return 0;
    }
    *rune = r;
    return len;
}

/* The ASCII bytes encoding/json writes as they are (HTML escaping on), a bit each: 0x20 to 0x7f
 * but '"' (34), '&' (38), '<' (60), '>' (62) and '\\' (92). */
static const uint64_t PLAIN[2] = {
    0xffffffff00000000u & ~(1ull << '"' | 1ull << '&' | 1ull << '<' | 1ull << '>'),
    ~(1ull << ('\\' - 64)),
};

static int
plain(uint8_t c)
{
    return c < 0x80 && (PLAIN[c >> 6] >> (c & 63) & 1) != 0;
}

/* The escape of the character at s (its length in *adv) into esc (at most 6 bytes: never more
 * than 6 per byte of s), or 0: write it as it is. */
static size_t
escape(const uint8_t *s, size_t n, size_t *adv, char *esc)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t c = s[0];
    *adv = 1;
    if (c == '"' || c == '\\') {
        esc[0] = '\\', esc[1] = (char)c;
        return 2;
    }
    if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
        esc[0] = '\\';
        esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b' : 'f';
        return 2;
    }
    if (c < 0x80) { /* a control byte, '<', '>' or '&' */
        memcpy(esc, "\\u00", 4);
        esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
        return 6;
    }
    uint32_t r;
    size_t len = utf8_len(s, n, &r);
    if (len == 0) {
        memcpy(esc, "\\ufffd", 6);
        return 6;
    }
    *adv = len;
    if (r == 0x2028 || r == 0x2029) {
        memcpy(esc, r == 0x2028 ? "\\u2028" : "\\u2029", 6);
        return 6;
    }
    return 0;
}

/* A JSON string as encoding/json writes it with HTML escaping on, straight into out's room for the
 * longest escaping (6 bytes a byte) of what follows its first plain run: runs of plain bytes are
 * copied at once. */
static int
put_string(cm_buf *out, const char *str)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t n = strlen(str), first = 0;
    while (first < n && plain(s[first])) {
        first++;
    }
    if (n - first > (SIZE_MAX - n - 2) / 6 ||
        cm_buf_reserve(out, first + 6 * (n - first) + 2) < 0) {
        return CM_ENOMEM;
    }
    char *o = (char *)out->data + out->len;
    *o++ = '"';
    memcpy(o, s, first);
    o += first;
    for (size_t i = first; i < n;) {
        size_t run = i;
        while (run < n && plain(s[run])) {
            run++;
        }
        memcpy(o, s + i, run - i);
        o += run - i;
        if (run == n) {
            break;
        }
        size_t adv;
        size_t elen = escape(s + run, n - run, &adv, o);
        if (elen == 0) {
            memcpy(o, s + run, adv);
        }
        o += elen ? elen : adv;
        i = run + adv;
    }
    *o++ = '"';
    out->len = (size_t)(o - (char *)out->data);
    return 0;
}

static int
put_base64(cm_buf *out, const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (cm_buf_reserve(out, (n + 2) / 3 * 4) < 0) {
        return CM_ENOMEM;
    }
    char *o = (char *)out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63], *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    out->len = (size_t)(o - (char *)out->data);
    return 0;
}

typedef struct pair {
    const char *key, *val;
} pair;

static int
cmp_key(const void *a, const void *b)
{
    return strcmp(((const pair *)a)->key, ((const pair *)b)->key);
}

static int
put_header(cm_buf *out, const cm_md *header)
{
    size_t n = cm_md_count(header);
    pair few[16];
    pair *kv = n <= 16 ? few : malloc(n * sizeof(*kv));
    if (kv == NULL) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        cm_md_at(header, i, &kv[i].key, &kv[i].val);
    }
    qsort(kv, n, sizeof(*kv), cmp_key); /* Go sorts map keys bytewise */
    int rc = put(out, "{", 1);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if ((i > 0 && put(out, ",", 1) < 0) || put_string(out, kv[i].key) < 0 ||
            put(out, ":", 1) < 0 || put_string(out, kv[i].val) < 0) {
            rc = CM_ENOMEM;
        }
    }
    if (kv != few) {
        free(kv);
    }
    return rc == 0 && put(out, "}", 1) == 0 ? 0 : CM_ENOMEM;
}

int
cm_broker_msg_encode(const cm_md *header, const uint8_t *body, size_t body_len, cm_buf *out)
{
    if (out == NULL || (body == NULL && body_len > 0)) {
        return CM_EINVAL;
    }
    if (put(out, "{\"Header\":", 10) < 0) {
        return CM_ENOMEM;
    }
    int rc = header != NULL ? put_header(out, header) : put(out, "null", 4);
    if (rc < 0 || put(out, ",\"Body\":\"", 9) < 0 || put_base64(out, body, body_len) < 0 ||
        put(out, "\"}", 2) < 0) {
        return CM_ENOMEM;
    }
    return 0;
}

/* ---- decoding ---- */

static int
fail(char *err, size_t errlen, const char *why)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s", why);
    }
    return CM_ECODEC;
}

/* The base64 alphabet's value of byte c, or -1. */
#define B64_VAL(c)                                                                                 \
    ((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'                                                        \
     : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26                                                   \
     : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52                                                   \
     : (c) == '+'               ? 62                                                               \
     : (c) == '/'               ? 63                                                               \
                                : -1)
/* By byte: its value shifted into its place in a group of four (shift 18, 12, 6 or 0), or
 * B64_BAD, which no OR of values reaches: a group's four ORed is its 24 bits, or has B64_BAD. */
#define B64_BAD 0x01000000u
#define B64_E(c, sh) (B64_VAL(c) < 0 ? B64_BAD : (uint32_t)B64_VAL(c) << (sh)),
#define B64_R4(c, sh) B64_E(c, sh) B64_E((c) + 1, sh) B64_E((c) + 2, sh) B64_E((c) + 3, sh)
#define B64_R16(c, sh) B64_R4(c, sh) B64_R4((c) + 4, sh) B64_R4((c) + 8, sh) B64_R4((c) + 12, sh)
#define B64_R64(c, sh)                                                                             \
    B64_R16(c, sh) B64_R16((c) + 16, sh) B64_R16((c) + 32, sh) B64_R16((c) + 48, sh)
#define B64_TABLE(sh)                                                                              \
    {                                                                                              \
        B64_R64(0, sh) B64_R64(64, sh) B64_R64(128, sh) B64_R64(192, sh)                           \
    }
static const uint32_t B64_0[256] = B64_TABLE(18), B64_1[256] = B64_TABLE(12),
                      B64_2[256] = B64_TABLE(6), B64_3[256] = B64_TABLE(0);

/* Decodes the groups of four alphabet bytes at the start of s[0..n) into o: what b64_decode's
 * general loop does with them, without its checks. Returns the bytes of s consumed. */
static size_t
b64_groups(const uint8_t *s, size_t n, uint8_t *o, size_t *len)
{
    uint8_t *w = o + *len; /* a local pointer: a store through o could otherwise change *len */
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t v = B64_0[s[i]] | B64_1[s[i + 1]] | B64_2[s[i + 2]] | B64_3[s[i + 3]];
        if (v >= B64_BAD) {
            break;
        }
        w[0] = (uint8_t)(v >> 16), w[1] = (uint8_t)(v >> 8), w[2] = (uint8_t)v;
        w += 3;
    }
    *len = (size_t)(w - o);
    return i;
}

/* Go's base64.StdEncoding.Decode: padded, CR and LF ignored. Writes at most strlen(s) / 4 * 3
 * bytes to o. */
static int
b64_decode(const char *s, uint8_t *o, size_t *outlen)
{
    size_t n = strlen(s), len = 0, q = 0, pad = 0;
    uint32_t acc = 0;
    for (size_t i = b64_groups((const uint8_t *)s, n, o, &len); i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '\r' || c == '\n') {
            continue;
        }
        uint32_t v = B64_3[c];
        if (c == '=' && q >= 2) {
            pad++;
            v = 0;
        } else if (v == B64_BAD || pad > 0) {
            return CM_ECODEC;
        }
        acc = acc << 6 | v;
        if (++q == 4) {
            o[len++] = (uint8_t)(acc >> 16);
            if (pad < 2) {
                o[len++] = (uint8_t)(acc >> 8);
            }
            if (pad < 1) {
                o[len++] = (uint8_t)acc;
            }
            q = 0;
            acc = 0;
            if (pad > 0) {
                pad = 3; /* nothing may follow the padding */
            }
        }
    }
    *outlen = len;
    return q != 0 ? CM_ECODEC : 0;
}

/* The parts of a message's JSON tree, checked: its header object (NULL: none) and entries, and
 * its body string (NULL: none). */
typedef struct parts {
    const cJSON *header;
    size_t n;         /* header entries */
    size_t strs;      /* bytes of their keys and values, with room for the changes of copy_str */
    const char *body; /* base64 */
    size_t body_max;  /* its decoded length at most */
} parts;

static int
check_header(const cJSON *h, parts *p, char *err, size_t errlen)
{
    if (cJSON_IsNull(h)) {
        return 0;
    }
    if (!cJSON_IsObject(h)) {
        return fail(err, errlen, "Header is not a JSON object");
    }
    for (const cJSON *e = h->child; e != NULL; e = e->next) {
        if (!cJSON_IsString(e)) {
            return fail(err, errlen, "a Header value is not a string");
        }
        if (++p->n > HEADER_MAX) {
            return fail(err, errlen, "more than 1024 Header entries");
        }
        p->strs += strlen(e->string) + 2 + strlen(e->valuestring) + 1;
    }
    p->header = h;
    return 0;
}

/* The field of o named name: the exact name first, else case-insensitively (as Go), the last
 * one when repeated. */
static const cJSON *
field(const cJSON *o, const char *name)
{
    const cJSON *exact = NULL, *folded = NULL;
    for (const cJSON *e = o->child; e != NULL; e = e->next) {
        if (strcmp(e->string, name) == 0) {
            exact = e;
        } else if (strcasecmp(e->string, name) == 0) {
            folded = e;
        }
    }
    return exact != NULL ? exact : folded;
}

static int
check_tree(const cJSON *root, parts *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    if (cJSON_IsNull(root)) {
        return 0;
    }
    if (!cJSON_IsObject(root)) {
        return fail(err, errlen, "not a JSON object");
    }
    int rc = 0;
    const cJSON *h = field(root, "Header");
    if (h != NULL && (rc = check_header(h, p, err, errlen)) < 0) {
        return rc;
    }
    const cJSON *b = field(root, "Body");
    if (b == NULL || cJSON_IsNull(b)) {
        return 0;
    }
    if (!cJSON_IsString(b)) {
        return fail(err, errlen, "Body is not a JSON string");
    }
    p->body = b->valuestring;
    p->body_max = strlen(p->body) / 4 * 3;
    return 0;
}

/* Copies s to *at and moves *at past it. cm_md keeps no CR or LF and no empty or ':' key: such
 * bytes become spaces (an empty key one space), as the HTTP transport does with header values. */
static char *
copy_str(char **at, const char *s, int key)
{
    char *c = *at, *w = c;
    for (; *s != '\0'; s++) { /* one pass: header strings are short */
        *w++ = *s == '\r' || *s == '\n' || (key && *s == ':') ? ' ' : *s;
    }
    if (key && w == c) {
        *w++ = ' ';
    }
    *w = '\0';
    *at = w + 1;
    return c;
}

/* Fills kv from the header's entries, a repeated key (without case) replacing the value of the
 * first as cm_md_set does. Returns the pairs. */
static size_t
copy_header(const parts *p, char **kv, char *strs)
{
    size_t n = 0;
    for (const cJSON *e = p->header ? p->header->child : NULL; e != NULL; e = e->next) {
        char *k = copy_str(&strs, e->string, 1);
        char *v = copy_str(&strs, e->valuestring, 0);
        size_t i = 0;
        while (i < n && strcasecmp(kv[2 * i], k) != 0) {
            i++;
        }
        kv[2 * i] = i < n ? kv[2 * i] : k;
        kv[2 * i + 1] = v;
        n += i == n;
    }
    return n;
}

#define ALIGN_UP(n) (((n) + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t))

/* The message of p in one allocation (see cm__broker_msg_decode_block). */
static int
make_block(const parts *p, size_t pre, cm__broker_dmsg *out, char *err, size_t errlen)
{
    size_t at_md = ALIGN_UP(pre), at_kv = at_md + ALIGN_UP(sizeof(cm_md));
    size_t at_strs = at_kv + 2 * p->n * sizeof(char *), at_body = at_strs + p->strs;
    uint8_t *blk = malloc(at_body + p->body_max + 1);
    if (blk == NULL) {
        return CM_ENOMEM;
    }
    memset(blk, 0, pre);
    char **kv = (char **)(void *)(blk + at_kv);
    size_t n = copy_header(p, kv, (char *)blk + at_strs);
    out->block = blk;
    out->header = cm__md_view((cm_md *)(void *)(blk + at_md), kv, n);
    out->body = NULL;
    out->body_len = 0;
    if (p->body != NULL && b64_decode(p->body, blk + at_body, &out->body_len) < 0) {
        free(blk);
        return fail(err, errlen, "Body is not standard base64");
    }
    out->body = out->body_len > 0 ? blk + at_body : NULL;
    return 0;
}

int
cm__broker_msg_decode_block(const uint8_t *data, size_t len, size_t pre, cm__broker_dmsg *out,
                            char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)data, len, &end, 0);
    if (root == NULL) {
        return fail(err, errlen, "not JSON");
    }
    while (end != NULL && end < (const char *)data + len && strchr(" \t\r\n", *end) != NULL) {
        end++;
    }
    parts p;
    int rc = 0;
    if (end != (const char *)data + len) {
        rc = fail(err, errlen, "bytes after the JSON value");
    }
    if (rc == 0) {
        rc = check_tree(root, &p, err, errlen);
    }
    if (rc == 0) {
        rc = make_block(&p, pre, out, err, errlen);
    }
    cJSON_Delete(root);
    if (rc < 0) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

/* The header of a decoded message as a cm_md of its own. NULL when out of memory. */
static cm_md *
md_copy(const cm_md *h)
{
    cm_md *md = cm_md_new();
    for (size_t i = 0; md != NULL && i < cm_md_count(h); i++) {
        const char *k, *v;
        cm_md_at(h, i, &k, &v);
        if (cm_md_set(md, k, v) < 0) {
            cm_md_free(md);
            md = NULL;
        }
    }
    return md;
}

int
cm_broker_msg_decode(const uint8_t *data, size_t len, cm_md **header, uint8_t **body,
                     size_t *body_len, char *err, size_t errlen)
{
    if ((data == NULL && len > 0) || header == NULL || body == NULL || body_len == NULL) {
        return CM_EINVAL;
    }
    *header = NULL;
    *body = NULL;
    *body_len = 0;
    cm__broker_dmsg m;
    int rc = cm__broker_msg_decode_block(data, len, 0, &m, err, errlen);
    if (rc < 0) {
        return rc;
    }
    cm_md *md = md_copy(m.header);
    uint8_t *b = m.body_len > 0 ? malloc(m.body_len) : NULL;
    if (md == NULL || (m.body_len > 0 && b == NULL)) {
        cm_md_free(md);
        free(m.block);
        return CM_ENOMEM;
    }
    if (b != NULL) {
        memcpy(b, m.body, m.body_len);
    }
    free(m.block);
    *header = md;
    *body = b;
    *body_len = m.body_len;
    return 0;
}
