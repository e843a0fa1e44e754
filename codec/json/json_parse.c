/* cmicro: a strict RFC 8259 JSON parser into a small tree.
 *
 * cJSON would do for the structure but it keeps numbers only as doubles, and Go writes int64
 * and uint64 fields as bare JSON numbers: 9223372036854775807 must come back exact. This
 * parser keeps every number literal as written, decodes strings the way Go's encoding/json
 * does (invalid UTF-8 and lone surrogates become U+FFFD), bounds the nesting depth and puts
 * everything in one arena (the core's cm__arena) so a failed parse frees in one step.
 */
#include "json_int.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

const char *
cm__json_type_name(cm__json_type t)
{
    switch (t) {
    case CM__JSON_NULL:
        return "null";
    case CM__JSON_FALSE:
    case CM__JSON_TRUE:
        return "bool";
    case CM__JSON_NUMBER:
        return "number";
    case CM__JSON_STRING:
        return "string";
    case CM__JSON_ARRAY:
        return "array";
    case CM__JSON_OBJECT:
        return "object";
    }
    return "value";
}

typedef struct parser {
    const uint8_t *start;
    const uint8_t *p;
    const uint8_t *end;
    cm__arena *arena;
    int depth;
    int rc;
    char *err;
    size_t errlen;
} parser;

static void
fail(parser *ps, const char *what)
{
    if (ps->rc == 0) {
        ps->rc = CM_ECODEC;
        cm__codec_errf(ps->err, ps->errlen, "invalid JSON at offset %zu: %s",
                       (size_t)(ps->p - ps->start), what);
    }
}

static void
fail_nomem(parser *ps)
{
    if (ps->rc == 0) {
        ps->rc = CM_ENOMEM;
        cm__codec_errf(ps->err, ps->errlen, "out of memory");
    }
}

static void
skip_ws(parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) {
        ps->p++;
    }
}

static int
hex4(const uint8_t *s, uint32_t *v)
{
    uint32_t r = 0;
    int i;

    for (i = 0; i < 4; i++) {
        uint8_t c = s[i];

        r <<= 4;
        if (c >= '0' && c <= '9') {
            r |= (uint32_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            r |= (uint32_t)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            r |= (uint32_t)(c - 'A' + 10);
        } else {
            return -1;
        }
    }
    *v = r;
    return 0;
}

static size_t
put_utf8(uint8_t *out, uint32_t r)
{
    uint8_t tmp[4];
    size_t n;

    if (r < 0x80) {
        tmp[0] = (uint8_t)r;
        n = 1;
    } else if (r < 0x800) {
        tmp[0] = (uint8_t)(0xc0 | (r >> 6));
        tmp[1] = (uint8_t)(0x80 | (r & 0x3f));
        n = 2;
    } else if (r < 0x10000) {
        tmp[0] = (uint8_t)(0xe0 | (r >> 12));
        tmp[1] = (uint8_t)(0x80 | ((r >> 6) & 0x3f));
        tmp[2] = (uint8_t)(0x80 | (r & 0x3f));
        n = 3;
    } else {
        tmp[0] = (uint8_t)(0xf0 | (r >> 18));
        tmp[1] = (uint8_t)(0x80 | ((r >> 12) & 0x3f));
        tmp[2] = (uint8_t)(0x80 | ((r >> 6) & 0x3f));
        tmp[3] = (uint8_t)(0x80 | (r & 0x3f));
        n = 4;
    }
    if (out != NULL) {
        memcpy(out, tmp, n);
    }
    return n;
}

/* Reads the escape after a backslash at *pp. Returns the code point or -1. */
static long
read_escape(const uint8_t **pp, const uint8_t *end)
{
    const uint8_t *p = *pp;
    uint32_t r, lo;

    if (p >= end) {
        return -1;
    }
    switch (*p) {
    case '"':
    case '\\':
    case '/':
        *pp = p + 1;
        return *p;
    case 'b':
        *pp = p + 1;
        return '\b';
    case 'f':
        *pp = p + 1;
        return '\f';
    case 'n':
        *pp = p + 1;
        return '\n';
    case 'r':
        *pp = p + 1;
        return '\r';
    case 't':
        *pp = p + 1;
        return '\t';
    case 'u':
        break;
    default:
        return -1;
    }
    if (end - p < 5 || hex4(p + 1, &r) < 0) {
        return -1;
    }
    p += 5;
    if (r >= 0xd800 && r < 0xdc00) {
        /* A high surrogate pairs with a following \uDC00-\uDFFF; alone it is U+FFFD. */
        if (end - p >= 6 && p[0] == '\\' && p[1] == 'u' && hex4(p + 2, &lo) == 0 &&
            lo >= 0xdc00 && lo < 0xe000) {
            *pp = p + 6;
            return 0x10000 + ((long)(r - 0xd800) << 10) + (lo - 0xdc00);
        }
        r = 0xfffd;
    } else if (r >= 0xdc00 && r < 0xe000) {
        r = 0xfffd;
    }
    *pp = p;
    return (long)r;
}

/* Scans the string whose opening quote is at ps->p. With out NULL it only validates and
 * measures; otherwise it writes the decoded bytes. Returns the decoded length or -1. */
static long
scan_string(parser *ps, uint8_t *out)
{
    const uint8_t *p = ps->p + 1;
    size_t n = 0;

    for (;;) {
        uint32_t rune;
        size_t w;
        long r;

        if (p >= ps->end) {
            ps->p = p;
            fail(ps, "unterminated string");
            return -1;
        }
        if (*p == '"') {
            break;
        }
        if (*p == '\\') {
            const uint8_t *at = p;

            p++;
            r = read_escape(&p, ps->end);
            if (r < 0) {
                ps->p = at;
                fail(ps, "bad escape in string");
                return -1;
            }
            n += put_utf8(out ? out + n : NULL, (uint32_t)r);
        } else if (*p < 0x20) {
            ps->p = p;
            fail(ps, "control character in string");
            return -1;
        } else if (*p < 0x80) {
            if (out) {
                out[n] = *p;
            }
            n++;
            p++;
        } else {
            w = cm__json_utf8_decode(p, (size_t)(ps->end - p), &rune);
            if (w == 0) {
                n += put_utf8(out ? out + n : NULL, 0xfffd);
                p++;
            } else {
                if (out) {
                    memcpy(out + n, p, w);
                }
                n += w;
                p += w;
            }
        }
    }
    if (out != NULL) {
        out[n] = '\0';
        ps->p = p + 1;
    }
    return (long)n;
}

static int
parse_string(parser *ps, const char **str, size_t *len)
{
    long n = scan_string(ps, NULL);
    uint8_t *buf;

    if (n < 0) {
        return -1;
    }
    buf = cm__arena_alloc(ps->arena, (size_t)n + 1);
    if (buf == NULL) {
        fail_nomem(ps);
        return -1;
    }
    scan_string(ps, buf);
    *str = (const char *)buf;
    *len = (size_t)n;
    return 0;
}

static int
is_digit(const uint8_t *p, const uint8_t *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static int
parse_number(parser *ps, cm__json_value *v)
{
    const uint8_t *p = ps->p, *s = ps->p;
    char *text;

    if (p < ps->end && *p == '-') {
        p++;
    }
    if (!is_digit(p, ps->end)) {
        fail(ps, "bad number");
        return -1;
    }
    if (*p == '0') {
        p++;
    } else {
        while (is_digit(p, ps->end)) {
            p++;
        }
    }
    if (p < ps->end && *p == '.') {
        p++;
        if (!is_digit(p, ps->end)) {
            ps->p = p;
            fail(ps, "bad number");
            return -1;
        }
        while (is_digit(p, ps->end)) {
            p++;
        }
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < ps->end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (!is_digit(p, ps->end)) {
            ps->p = p;
            fail(ps, "bad number");
            return -1;
        }
        while (is_digit(p, ps->end)) {
            p++;
        }
    }
    text = cm__arena_alloc(ps->arena, (size_t)(p - s) + 1);
    if (text == NULL) {
        fail_nomem(ps);
        return -1;
    }
    memcpy(text, s, (size_t)(p - s));
    text[p - s] = '\0';
    v->type = CM__JSON_NUMBER;
    v->str = text;
    v->len = (size_t)(p - s);
    ps->p = p;
    return 0;
}

static int
parse_literal(parser *ps, const char *word, cm__json_type type, cm__json_value *v)
{
    size_t n = strlen(word);

    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        fail(ps, "unexpected character");
        return -1;
    }
    ps->p += n;
    v->type = type;
    return 0;
}

static cm__json_value *parse_value(parser *ps);

/* Parses the members of an array or an object; ps->p is just past the opening bracket. */
static int
parse_children(parser *ps, cm__json_value *v, int is_object)
{
    const uint8_t close = is_object ? '}' : ']';
    cm__json_value **tail = &v->child;

    if (++ps->depth > CM__JSON_MAX_DEPTH) {
        fail(ps, "nested too deeply");
        return -1;
    }
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        const char *key = NULL;
        size_t keylen = 0;
        cm__json_value *child;

        skip_ws(ps);
        if (is_object) {
            if (ps->p >= ps->end || *ps->p != '"') {
                fail(ps, "expected a string key");
                return -1;
            }
            if (parse_string(ps, &key, &keylen) < 0) {
                return -1;
            }
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                fail(ps, "expected ':'");
                return -1;
            }
            ps->p++;
        }
        child = parse_value(ps);
        if (child == NULL) {
            return -1;
        }
        child->key = key;
        child->keylen = keylen;
        *tail = child;
        tail = &child->next;
        v->count++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            break;
        }
        fail(ps, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
        return -1;
    }
    ps->depth--;
    return 0;
}

static cm__json_value *
parse_value(parser *ps)
{
    cm__json_value *v;
    int rc;

    skip_ws(ps);
    if (ps->p >= ps->end) {
        fail(ps, "unexpected end of input");
        return NULL;
    }
    v = cm__arena_alloc(ps->arena, sizeof(*v));
    if (v == NULL) {
        fail_nomem(ps);
        return NULL;
    }
    memset(v, 0, sizeof(*v));
    switch (*ps->p) {
    case '{':
        ps->p++;
        v->type = CM__JSON_OBJECT;
        rc = parse_children(ps, v, 1);
        break;
    case '[':
        ps->p++;
        v->type = CM__JSON_ARRAY;
        rc = parse_children(ps, v, 0);
        break;
    case '"':
        v->type = CM__JSON_STRING;
        rc = parse_string(ps, &v->str, &v->len);
        break;
    case 't':
        rc = parse_literal(ps, "true", CM__JSON_TRUE, v);
        break;
    case 'f':
        rc = parse_literal(ps, "false", CM__JSON_FALSE, v);
        break;
    case 'n':
        rc = parse_literal(ps, "null", CM__JSON_NULL, v);
        break;
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
            rc = parse_number(ps, v);
        } else {
            fail(ps, "unexpected character");
            rc = -1;
        }
        break;
    }
    return rc < 0 ? NULL : v;
}

int
cm__json_parse(const uint8_t *data, size_t len, cm__arena *arena, cm__json_value **root, char *err,
               size_t errlen)
{
    parser ps;
    cm__json_value *v;

    ps.start = data;
    ps.p = data;
    ps.end = data + len;
    ps.arena = arena;
    ps.depth = 0;
    ps.rc = 0;
    ps.err = err;
    ps.errlen = errlen;
    v = parse_value(&ps);
    if (v == NULL) {
        return ps.rc != 0 ? ps.rc : CM_ECODEC;
    }
    skip_ws(&ps);
    if (ps.p != ps.end) {
        fail(&ps, "trailing data after the JSON value");
        return ps.rc;
    }
    *root = v;
    return 0;
}
