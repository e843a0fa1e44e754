/* protoc-gen-cmicro: the names of things, as protoc-c and protoc-gen-go spell them.
 *
 * protoc-c (protobuf-c 1.4, protoc-c/c_helpers.cc) names the C type of message pkg.Outer.Inner
 * by camel-casing each dotted piece and joining them with "__" (Pkg__Outer__Inner), and its
 * descriptor by lower-casing each piece with '_' before an upper-case letter that follows a
 * lower-case one (pkg__outer__inner__descriptor). The (pb_c_file).c_package option replaces the
 * package in both. protoc-gen-go names the Go type by GoCamelCase of the name relative to the
 * package (Outer_Inner); go-micro publishes those Go names in the registry.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

/* The extension number of protobuf-c's file options (protobuf-c/protobuf-c.proto) and the
 * field number of c_package inside them. */
#define PB_C_FILE_OPTIONS 1019u
#define PB_C_C_PACKAGE 6u

/* OverrideFullName of c_helpers.cc: c_package replaces the package part of full. */
static char *
override_full_name(const char *full, const char *package, const char *c_package)
{
    if (c_package == NULL) {
        return xstrdup(full);
    }
    size_t plen = package == NULL ? 0 : strlen(package);
    if (strlen(full) < plen) {
        plen = strlen(full);
    }
    return xasprintf("%s%s%s", c_package, plen == 0 ? "." : "", full + plen);
}

/* ToCamel of c_helpers.cc: '_' dropped, the letter after it and the first one upper-cased. */
static void
to_camel(sbuf *b, const char *s, size_t n)
{
    int next_upper = 1;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_') {
            next_upper = 1;
        } else if (next_upper) {
            sb_putc(b, (char)toupper((unsigned char)s[i]));
            next_upper = 0;
        } else {
            sb_putc(b, s[i]);
        }
    }
}

/* CamelToLower of c_helpers.cc. */
static void
camel_to_lower(sbuf *b, const char *s, size_t n)
{
    int was_upper = 1;

    for (size_t i = 0; i < n; i++) {
        int is_upper = isupper((unsigned char)s[i]) != 0;

        if (is_upper) {
            if (!was_upper) {
                sb_putc(b, '_');
            }
            sb_putc(b, (char)tolower((unsigned char)s[i]));
        } else {
            sb_putc(b, s[i]);
        }
        was_upper = is_upper;
    }
}

/* Splits name on '.', skipping empty pieces, and joins the converted pieces with "__". */
static char *
join_pieces(const char *name, void (*conv)(sbuf *, const char *, size_t))
{
    sbuf b = {0};
    const char *p = name;

    while (*p != '\0') {
        if (*p == '.') {
            p++;
            continue;
        }
        size_t n = strcspn(p, ".");
        if (b.len > 0) {
            sb_puts(&b, "__");
        }
        conv(&b, p, n);
        p += n;
    }
    return sb_take(&b);
}

char *
c_type_name(const char *full, const char *package, const char *c_package)
{
    char *name = override_full_name(full, package, c_package);
    char *r = join_pieces(name, to_camel);

    free(name);
    return r;
}

char *
c_lower_name(const char *full, const char *package, const char *c_package)
{
    char *name = override_full_name(full, package, c_package);
    char *r = join_pieces(name, camel_to_lower);

    free(name);
    return r;
}

char *
c_camel_to_lower(const char *s)
{
    sbuf b = {0};

    camel_to_lower(&b, s, strlen(s));
    return sb_take(&b);
}

char *
c_package_prefix(const char *package, const char *c_package)
{
    const char *p = c_package != NULL ? c_package : package;
    sbuf b = {0};

    if (p == NULL || *p == '\0') {
        return xstrdup("");
    }
    for (; *p != '\0'; p++) {
        sb_putc(&b, *p == '.' ? '_' : (char)tolower((unsigned char)*p));
    }
    sb_putc(&b, '_');
    return sb_take(&b);
}

int
c_is_keyword(const char *s)
{
    static const char *const words[] = {
        "_Alignas", "_Alignof", "_Atomic", "_Bool", "_Complex", "_Generic", "_Imaginary",
        "_Noreturn", "_Static_assert", "_Thread_local", "alignas", "alignof", "auto", "bool",
        "break", "case", "char", "complex", "const", "continue", "default", "do", "double",
        "else", "enum", "extern", "false", "float", "for", "goto", "if", "imaginary", "inline",
        "int", "long", "noreturn", "register", "restrict", "return", "short", "signed",
        "sizeof", "static", "static_assert", "struct", "switch", "thread_local", "true",
        "typedef", "union", "unsigned", "void", "volatile", "while",
    };

    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcmp(words[i], s) == 0) {
            return 1;
        }
    }
    return 0;
}

int
c_is_ident(const char *s)
{
    if (s == NULL || *s == '\0' || isdigit((unsigned char)*s)) {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (!isalnum((unsigned char)*s) && *s != '_') {
            return 0;
        }
    }
    return 1;
}

char *
file_base_name(const char *name)
{
    static const char *const suffixes[] = {".protodevel", ".proto"};
    size_t n = strlen(name);

    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        size_t k = strlen(suffixes[i]);

        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0) {
            char *r = xmalloc(n - k + 1);
            memcpy(r, name, n - k);
            r[n - k] = '\0';
            return r;
        }
    }
    return xstrdup(name);
}

static int
is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

char *
go_camel_case(const char *s)
{
    sbuf b = {0};
    size_t n = strlen(s);

    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (c == '.' && i + 1 < n && is_lower(s[i + 1])) {
            continue; /* ".x" is dropped, x is upper-cased below. */
        } else if (c == '.') {
            sb_putc(&b, '_');
        } else if (c == '_' && (i == 0 || s[i - 1] == '.')) {
            sb_putc(&b, 'X');
        } else if (c == '_' && i + 1 < n && is_lower(s[i + 1])) {
            continue;
        } else if (c >= '0' && c <= '9') {
            sb_putc(&b, c);
        } else {
            sb_putc(&b, is_lower(c) ? (char)(c - 'a' + 'A') : c);
            while (i + 1 < n && is_lower(s[i + 1])) {
                sb_putc(&b, s[++i]);
            }
        }
    }
    return sb_take(&b);
}

/* Reads a base-128 varint from [*p, end). Returns 0, or -1 when it is cut short or too long. */
static int
read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;

    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p >= end) {
            return -1;
        }
        uint8_t c = *(*p)++;
        r |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* Finds c_package in one serialized ProtobufCFileOptions; the last occurrence wins. */
static void
scan_pb_c_options(const uint8_t *p, const uint8_t *end, char **out)
{
    uint64_t key, len, skip;

    while (p < end) {
        if (read_varint(&p, end, &key) < 0) {
            return;
        }
        switch (key & 7) {
        case 0:
            if (read_varint(&p, end, &skip) < 0) {
                return;
            }
            break;
        case 1:
        case 5:
            skip = (key & 7) == 1 ? 8 : 4;
            if ((uint64_t)(end - p) < skip) {
                return;
            }
            p += skip;
            break;
        case 2:
            if (read_varint(&p, end, &len) < 0 || (uint64_t)(end - p) < len) {
                return;
            }
            if ((key >> 3) == PB_C_C_PACKAGE) {
                free(*out);
                *out = xmalloc((size_t)len + 1);
                memcpy(*out, p, (size_t)len);
                (*out)[len] = '\0';
            }
            p += len;
            break;
        default:
            return;
        }
    }
}

char *
file_c_package(const gen_file *f)
{
    char *out = NULL;

    if (f->options == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < f->options->base.n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *u = &f->options->base.unknown_fields[i];
        const uint8_t *p = u->data;
        const uint8_t *end = u->data + u->len;
        uint64_t len;

        if (u->tag != PB_C_FILE_OPTIONS || u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) {
            continue;
        }
        /* The stored bytes start with the length prefix. */
        if (read_varint(&p, end, &len) < 0 || (uint64_t)(end - p) < len) {
            continue;
        }
        scan_pb_c_options(p, p + len, &out);
    }
    return out;
}
