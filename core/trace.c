/* W3C Trace Context: traceparent parsed and written, ids drawn from getrandom(2), tracestate
 * checked and bounded. */
#include <cmicro/trace.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

/* ---- traceparent ---- */

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1; /* uppercase too: the spec allows lowercase only */
}

/* n bytes from 2n lowercase hex characters. 0, or -1 when a character is not one. */
static int
unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void
tohex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
}

static int
all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc |= p[i];
    }
    return acc == 0;
}

static int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int
cm_trace_parse(const char *s, size_t len, cm_trace_ctx *out)
{
    uint8_t version;
    cm_trace_ctx c;

    if (s == NULL || out == NULL) {
        return CM_EINVAL;
    }
    while (len > 0 && is_ows(s[0])) {
        s++;
        len--;
    }
    while (len > 0 && is_ows(s[len - 1])) {
        len--;
    }
    /* version "-" trace-id "-" parent-id "-" trace-flags, at fixed offsets 0, 3, 36, 53. */
    if (len < CM_TRACEPARENT_LEN || unhex(s, &version, 1) < 0 || version == 0xff || s[2] != '-' ||
        s[35] != '-' || s[52] != '-') {
        return CM_EINVAL;
    }
    /* Version 00 is exactly 55 characters; a later version may carry more fields after a '-'. */
    if (len > CM_TRACEPARENT_LEN && (version == 0 || s[CM_TRACEPARENT_LEN] != '-')) {
        return CM_EINVAL;
    }
    if (unhex(s + 3, c.trace_id, CM_TRACE_ID_SIZE) < 0 ||
        unhex(s + 36, c.span_id, CM_SPAN_ID_SIZE) < 0 || unhex(s + 53, &c.flags, 1) < 0 ||
        all_zero(c.trace_id, CM_TRACE_ID_SIZE) || all_zero(c.span_id, CM_SPAN_ID_SIZE)) {
        return CM_EINVAL;
    }
    *out = c;
    return 0;
}

void
cm_trace_format(const cm_trace_ctx *c, char *out)
{
    memcpy(out, "00-", 3);
    tohex(c->trace_id, CM_TRACE_ID_SIZE, out + 3);
    out[35] = '-';
    tohex(c->span_id, CM_SPAN_ID_SIZE, out + 36);
    out[52] = '-';
    tohex(&c->flags, 1, out + 53);
    out[CM_TRACEPARENT_LEN] = '\0';
}

void
cm_trace_id_hex(const cm_trace_ctx *c, char *out)
{
    tohex(c->trace_id, CM_TRACE_ID_SIZE, out);
    out[2 * CM_TRACE_ID_SIZE] = '\0';
}

void
cm_span_id_hex(const cm_trace_ctx *c, char *out)
{
    tohex(c->span_id, CM_SPAN_ID_SIZE, out);
    out[2 * CM_SPAN_ID_SIZE] = '\0';
}

/* ---- ids ---- */

/* Random bytes from the kernel, 256 at a time per thread. A forked child starts with an empty
 * pool, so that parent and child never hand out the same ids. */
static _Thread_local struct {
    uint8_t buf[256];
    size_t used; /* bytes handed out; the pool is empty when used == sizeof buf */
    int filled;
} pool;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void
pool_forget(void)
{
    memset(&pool, 0, sizeof pool);
}

static void
register_atfork(void)
{
    pthread_atfork(NULL, NULL, pool_forget);
}

int
cm__random_bytes(uint8_t *out, size_t n)
{
    pthread_once(&atfork_once, register_atfork);
    while (n > 0) {
        if (!pool.filled || pool.used == sizeof pool.buf) {
            size_t got = 0;
            while (got < sizeof pool.buf) {
                ssize_t r = getrandom(pool.buf + got, sizeof pool.buf - got, 0);
                if (r < 0 && errno != EINTR) {
                    return -errno;
                }
                got += r > 0 ? (size_t)r : 0;
            }
            pool.used = 0;
            pool.filled = 1;
        }
        size_t take = sizeof pool.buf - pool.used < n ? sizeof pool.buf - pool.used : n;
        memcpy(out, pool.buf + pool.used, take);
        memset(pool.buf + pool.used, 0, take); /* handed out once only */
        pool.used += take;
        out += take;
        n -= take;
    }
    return 0;
}

/* n random bytes that are not all zero. */
static int
random_id(uint8_t *out, size_t n)
{
    do {
        int rc = cm__random_bytes(out, n);
        if (rc < 0) {
            return rc;
        }
    } while (all_zero(out, n));
    return 0;
}

int
cm_trace_new(cm_trace_ctx *out, uint8_t flags)
{
    cm_trace_ctx c;
    int rc;

    if (out == NULL) {
        return CM_EINVAL;
    }
    if ((rc = random_id(c.trace_id, CM_TRACE_ID_SIZE)) < 0 ||
        (rc = random_id(c.span_id, CM_SPAN_ID_SIZE)) < 0) {
        return rc;
    }
    c.flags = flags;
    *out = c;
    return 0;
}

int
cm_trace_child(const cm_trace_ctx *parent, cm_trace_ctx *out)
{
    uint8_t span[CM_SPAN_ID_SIZE];

    if (parent == NULL || out == NULL) {
        return CM_EINVAL;
    }
    int rc = random_id(span, CM_SPAN_ID_SIZE);
    if (rc < 0) {
        return rc;
    }
    if (out != parent) {
        memcpy(out->trace_id, parent->trace_id, CM_TRACE_ID_SIZE);
    }
    memcpy(out->span_id, span, CM_SPAN_ID_SIZE);
    out->flags = parent->flags & (CM_TRACE_SAMPLED | CM_TRACE_RANDOM);
    return 0;
}

/* ---- tracestate ---- */

static int
is_lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A key's characters after the first: lcalpha, DIGIT, "_", "-", "*", "/". */
static int
is_keychar(char c)
{
    return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

/* key = simple-key / multi-tenant-key
 * simple-key = lcalpha 0*255(keychar)
 * multi-tenant-key = tenant-id "@" system-id
 * tenant-id = (lcalpha / DIGIT) 0*240(keychar); system-id = lcalpha 0*13(keychar) */
static int
valid_key(const char *k, size_t n)
{
    const char *at = memchr(k, '@', n);
    if (at == NULL) {
        if (n < 1 || n > 256 || !is_lcalpha(k[0])) {
            return 0;
        }
    } else {
        size_t tn = (size_t)(at - k), sn = n - tn - 1;
        if (tn < 1 || tn > 241 || !(is_lcalpha(k[0]) || is_digit(k[0])) || sn < 1 || sn > 14 ||
            !is_lcalpha(at[1])) {
            return 0;
        }
    }
    for (size_t i = 1; i < n; i++) {
        if ((at == NULL || k + i != at) && !is_keychar(k[i])) {
            return 0;
        }
    }
    return 1;
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr;
 * nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (printable ASCII but ',' and '=') */
static int
valid_value(const char *v, size_t n)
{
    if (n < 1 || n > 256 || v[n - 1] == ' ') {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=') {
            return 0;
        }
    }
    return 1;
}

typedef struct member {
    const char *p;
    size_t len, keylen;
    int kept;
} member;

/* Splits s into its members (OWS trimmed, empty ones skipped) and checks each. Returns the
 * number of members, or -1 when the value is invalid. */
static int
split_members(const char *s, size_t len, member *m)
{
    int n = 0;
    size_t i = 0;
    while (i <= len) {
        size_t start = i;
        while (i < len && s[i] != ',') {
            i++;
        }
        size_t end = i++;
        while (start < end && is_ows(s[start])) {
            start++;
        }
        while (end > start && is_ows(s[end - 1])) {
            end--;
        }
        if (start == end) {
            continue; /* an empty member is allowed, and left out */
        }
        const char *eq = memchr(s + start, '=', end - start);
        if (n == CM_TRACESTATE_MAX_MEMBERS || eq == NULL ||
            !valid_key(s + start, (size_t)(eq - (s + start))) ||
            !valid_value(eq + 1, (size_t)(s + end - eq - 1))) {
            return -1;
        }
        m[n] = (member){s + start, end - start, (size_t)(eq - (s + start)), 1};
        for (int j = 0; j < n; j++) {
            if (m[j].keylen == m[n].keylen && memcmp(m[j].p, m[n].p, m[n].keylen) == 0) {
                return -1; /* a key twice */
            }
        }
        n++;
    }
    return n;
}

/* The length of the kept members joined by commas. */
static size_t
kept_length(const member *m, int n)
{
    size_t total = 0, kept = 0;
    for (int i = 0; i < n; i++) {
        if (m[i].kept) {
            total += m[i].len;
            kept++;
        }
    }
    return kept > 0 ? total + kept - 1 : 0;
}

size_t
cm_tracestate_clean(const char *s, size_t len, char *out)
{
    member m[CM_TRACESTATE_MAX_MEMBERS];

    out[0] = '\0';
    int n = s != NULL ? split_members(s, len, m) : -1;
    if (n <= 0) {
        return 0;
    }
    /* Over the bound: members over 128 characters first, then from the end. */
    for (int i = 0; i < n && kept_length(m, n) > CM_TRACESTATE_MAX_LEN; i++) {
        m[i].kept = m[i].len <= 128;
    }
    for (int i = n - 1; i >= 0 && kept_length(m, n) > CM_TRACESTATE_MAX_LEN; i--) {
        m[i].kept = 0;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (m[i].kept) {
            if (off > 0) {
                out[off++] = ',';
            }
            memcpy(out + off, m[i].p, m[i].len);
            off += m[i].len;
        }
    }
    out[off] = '\0';
    return off;
}
