/* cmicro: one JSON value -> one protobuf scalar, with jsonpb's rules.
 *
 * Integers: a JSON number or a string holding one, exact (no trip through double), integral
 * and in range; 1e3 and 2.0 are integers, 1.5 is not. Floats: a number, a numeric string, or
 * "NaN", "Infinity", "-Infinity"; out of range is an error as in Go. Enums: the value's name
 * or its number. Bytes: base64, standard or URL-safe, padded or not.
 */
#include "json_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
why_fail(char *why, const char *fmt, ...) CM_PRINTF(2, 3);

static int
why_fail(char *why, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, CM__JSON_WHY, fmt, ap);
    va_end(ap);
    return CM_ECODEC;
}

int
cm__json_is_number_text(const char *s, size_t n)
{
    size_t i = 0, start;

    if (i < n && s[i] == '-') {
        i++;
    }
    if (i >= n || s[i] < '0' || s[i] > '9') {
        return 0;
    }
    if (s[i] == '0') {
        i++;
    } else {
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
    }
    if (i < n && s[i] == '.') {
        start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == start) {
            return 0;
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == start) {
            return 0;
        }
    }
    return i == n;
}

/* Multiplies v by ten n times; -1 on overflow. */
static int
scale10(uint64_t *v, long n)
{
    for (; n > 0; n--) {
        if (*v > UINT64_MAX / 10) {
            return -1;
        }
        *v *= 10;
    }
    return 0;
}

/* The exact magnitude and sign of a valid JSON number literal that must be an integer.
 * Returns NULL, or why it is not an integer that fits in 64 bits. */
static const char *
number_to_integer(const char *p, uint64_t *mag, int *neg)
{
    uint64_t v = 0;
    long exp = 0, e = 0, zeros = 0;
    int seen_point = 0, eneg = 0;

    *neg = *p == '-';
    p += *neg;
    /* v holds the significant digits read so far; zeros counts zeros not yet multiplied in,
     * exp the power of ten the digits are scaled by (minus one per fraction digit). */
    for (; (*p >= '0' && *p <= '9') || *p == '.'; p++) {
        if (*p == '.') {
            seen_point = 1;
            continue;
        }
        exp -= seen_point;
        if (*p == '0') {
            zeros += v != 0;
            continue;
        }
        if (scale10(&v, zeros) < 0 || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) {
            return "integer out of range";
        }
        zeros = 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        eneg = *p == '-';
        p += *p == '+' || *p == '-';
        for (; *p >= '0' && *p <= '9'; p++) {
            e = e < 100000 ? e * 10 + (*p - '0') : e;
        }
    }
    exp += zeros + (eneg ? -e : e);
    *mag = 0;
    if (v == 0) {
        return NULL;
    }
    if (exp < 0) {
        return "not an integer";
    }
    if (scale10(&v, exp) < 0) {
        return "integer out of range";
    }
    *mag = v;
    return NULL;
}

int
cm__json_get_integer(const cm__json_value *v, int is_signed, int bits, uint64_t *out, char *why)
{
    const char *reason;
    uint64_t mag, max;
    int neg;

    if (v->type != CM__JSON_NUMBER &&
        (v->type != CM__JSON_STRING || !cm__json_is_number_text(v->str, v->len))) {
        return why_fail(why, "expected an integer, got %s", cm__json_type_name(v->type));
    }
    reason = number_to_integer(v->str, &mag, &neg);
    if (reason != NULL) {
        return why_fail(why, "%s: %.40s", reason, v->str);
    }
    max = bits == 64 ? UINT64_MAX : UINT32_MAX;
    if (is_signed) {
        max = (max >> 1) + (neg ? 1 : 0);
    } else if (neg) {
        max = 0;
    }
    if (mag > max) {
        return why_fail(why, "value out of range for %s: %.40s",
                        is_signed ? (bits == 64 ? "int64" : "int32")
                                  : (bits == 64 ? "uint64" : "uint32"),
                        v->str);
    }
    *out = neg ? (uint64_t)0 - mag : mag;
    return 0;
}

int
cm__json_get_float(const cm__json_value *v, int is_float32, double *out, char *why)
{
    if (v->type == CM__JSON_STRING) {
        if (strcmp(v->str, "NaN") == 0) {
            *out = NAN;
            return 0;
        }
        if (strcmp(v->str, "Infinity") == 0 || strcmp(v->str, "-Infinity") == 0) {
            *out = v->str[0] == '-' ? -INFINITY : INFINITY;
            return 0;
        }
        if (!cm__json_is_number_text(v->str, v->len)) {
            return why_fail(why, "expected a number, got string");
        }
    } else if (v->type != CM__JSON_NUMBER) {
        return why_fail(why, "expected a number, got %s", cm__json_type_name(v->type));
    }
    /* Underflow reads as zero (or a subnormal) as in Go; overflow is an error. */
    *out = is_float32 ? (double)strtof(v->str, NULL) : strtod(v->str, NULL);
    if (isinf(*out)) {
        return why_fail(why, "value out of range for %s: %.40s", is_float32 ? "float" : "double",
                        v->str);
    }
    return 0;
}

int
cm__json_get_number(ProtobufCType type, const cm__json_value *v, void *p, char *why)
{
    uint64_t u;
    double x = 0;
    int rc;

    switch (type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        rc = cm__json_get_float(v, type == PROTOBUF_C_TYPE_FLOAT, &x, why);
        if (rc == 0 && type == PROTOBUF_C_TYPE_FLOAT) {
            *(float *)p = (float)x;
        } else if (rc == 0) {
            *(double *)p = x;
        }
        return rc;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        rc = cm__json_get_integer(v, type != PROTOBUF_C_TYPE_UINT64 &&
                                         type != PROTOBUF_C_TYPE_FIXED64,
                                  64, &u, why);
        if (rc == 0) {
            *(uint64_t *)p = u;
        }
        return rc;
    default:
        rc = cm__json_get_integer(v, type != PROTOBUF_C_TYPE_UINT32 &&
                                         type != PROTOBUF_C_TYPE_FIXED32,
                                  32, &u, why);
        if (rc == 0) {
            *(uint32_t *)p = (uint32_t)u;
        }
        return rc;
    }
}

int
cm__json_get_enum(const cm__json_value *v, const ProtobufCEnumDescriptor *ed, int *out,
                  char *why)
{
    unsigned lo = 0, hi = ed->n_value_names;
    uint64_t u;

    if (v->type == CM__JSON_NUMBER) {
        if (cm__json_get_integer(v, 1, 32, &u, why) != 0) {
            return CM_ECODEC;
        }
        *out = (int)(int32_t)(uint32_t)u;
        return 0;
    }
    if (v->type != CM__JSON_STRING) {
        return why_fail(why, "expected an enum name or number, got %s",
                        cm__json_type_name(v->type));
    }
    while (strlen(v->str) == v->len && lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        int cmp = strcmp(v->str, ed->values_by_name[mid].name);

        if (cmp == 0) {
            *out = ed->values[ed->values_by_name[mid].index].value;
            return 0;
        }
        if (cmp < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return why_fail(why, "unknown value \"%.60s\" for enum %s", v->str, ed->name);
}

static int
b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+' || c == '-') {
        return 62;
    }
    if (c == '/' || c == '_') {
        return 63;
    }
    return -1;
}

int
cm__json_get_bytes(const cm__json_value *v, ProtobufCAllocator *alloc, ProtobufCBinaryData *out,
                   char *why)
{
    const uint8_t *s = (const uint8_t *)v->str;
    size_t i, k = 0, pad = 0, n = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (v->type != CM__JSON_STRING) {
        return why_fail(why, "expected a base64 string, got %s", cm__json_type_name(v->type));
    }
    /* Line breaks are skipped, as Go's decoder does. */
    for (i = 0; i < v->len; i++) {
        if (s[i] == '\r' || s[i] == '\n') {
            continue;
        }
        if (s[i] == '=') {
            pad++;
        } else if (pad > 0 || b64_value(s[i]) < 0) {
            return why_fail(why, "invalid base64 data");
        } else {
            k++;
        }
    }
    if (k % 4 == 1 || pad > 2 || (pad > 0 && (k + pad) % 4 != 0)) {
        return why_fail(why, "invalid base64 data");
    }
    if (k * 3 / 4 == 0) {
        return 0;
    }
    out->data = cm__codec_alloc(alloc, k * 3 / 4);
    if (out->data == NULL) {
        return CM_ENOMEM;
    }
    for (i = 0; i < v->len; i++) {
        int x = b64_value(s[i]);

        if (x < 0) {
            continue;
        }
        acc = (acc << 6) | (uint32_t)x;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->data[n++] = (uint8_t)(acc >> bits);
        }
    }
    out->len = n;
    return 0;
}
