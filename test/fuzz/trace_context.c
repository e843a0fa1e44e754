/* libFuzzer harness: W3C Trace Context (core/trace.c). The input is what a server receives: a
 * traceparent line, then a newline and the tracestate (corpus files are captured header pairs).
 * Each part, and the whole input, goes through cm_trace_parse and cm_tracestate_clean.
 * Invariants: a traceparent that parses writes back as 55 lowercase characters that parse to
 * the same context (and, for version 00, equal the input trimmed); a refused one leaves the
 * output untouched; a child keeps the trace id and only the known flags; a cleaned tracestate
 * is at most 512 characters of at most 32 members, without spaces around them, and cleans to
 * itself. */
#include "fuzz.h"

#include <cmicro/trace.h>
#include <string.h>

static void
check_traceparent(const char *s, size_t len)
{
    cm_trace_ctx c, sentinel;
    memset(&sentinel, 0xa5, sizeof sentinel);
    c = sentinel;
    if (cm_trace_parse(s, len, &c) != 0) {
        FUZZ_CHECK(memcmp(&c, &sentinel, sizeof c) == 0);
        return;
    }
    char out[CM_TRACEPARENT_LEN + 1];
    cm_trace_format(&c, out);
    FUZZ_CHECK(strlen(out) == CM_TRACEPARENT_LEN);
    for (size_t i = 0; i < CM_TRACEPARENT_LEN; i++) {
        FUZZ_CHECK((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f') ||
                   (out[i] == '-' && (i == 2 || i == 35 || i == 52)));
    }
    cm_trace_ctx back;
    FUZZ_CHECK(cm_trace_parse(out, CM_TRACEPARENT_LEN, &back) == 0);
    FUZZ_CHECK(memcmp(&back, &c, sizeof c) == 0);
    /* Version 00 is read exactly: what is written is the input, trimmed. */
    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    if (s[0] == '0' && s[1] == '0') {
        FUZZ_CHECK(memcmp(s, out, CM_TRACEPARENT_LEN) == 0);
    }
    cm_trace_ctx child;
    FUZZ_CHECK(cm_trace_child(&c, &child) == 0);
    FUZZ_CHECK(memcmp(child.trace_id, c.trace_id, CM_TRACE_ID_SIZE) == 0);
    FUZZ_CHECK(child.flags == (c.flags & (CM_TRACE_SAMPLED | CM_TRACE_RANDOM)));
    cm_trace_format(&child, out);
    FUZZ_CHECK(cm_trace_parse(out, CM_TRACEPARENT_LEN, &back) == 0);
}

static void
check_tracestate(const char *s, size_t len)
{
    char out[CM_TRACESTATE_MAX_LEN + 1], again[CM_TRACESTATE_MAX_LEN + 1];
    size_t n = cm_tracestate_clean(s, len, out);
    FUZZ_CHECK(n <= CM_TRACESTATE_MAX_LEN && strlen(out) == n);
    size_t members = n > 0;
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(out[i] >= 0x20 && out[i] <= 0x7e);
        if (out[i] == ',') {
            members++;
            FUZZ_CHECK(i > 0 && out[i - 1] != ' ' && out[i + 1] != ' ' && out[i + 1] != '\0');
        }
    }
    FUZZ_CHECK(members <= CM_TRACESTATE_MAX_MEMBERS);
    FUZZ_CHECK(n == 0 || (out[0] != ' ' && out[n - 1] != ' '));
    FUZZ_CHECK(cm_tracestate_clean(out, n, again) == n);
    FUZZ_CHECK(memcmp(out, again, n + 1) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t first = nl != NULL ? (size_t)(nl - s) : size;
    check_traceparent(s, first);
    check_traceparent(s, size);
    if (nl != NULL) {
        check_tracestate(nl + 1, size - first - 1);
    }
    check_tracestate(s, size);
    return 0;
}
