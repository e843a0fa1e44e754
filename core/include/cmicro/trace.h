/* cmicro core: W3C Trace Context (https://www.w3.org/TR/trace-context/), the traceparent and
 * tracestate headers that carry a trace across calls.
 *
 *     traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
 *                  version, trace-id (16 bytes), parent-id (the sender's span, 8 bytes), flags
 *     tracestate:  congo=t61rcWkgMzE,rojo=00f067aa0ba902b7
 *
 * A server parses the incoming traceparent (cm_trace_parse), makes its own span a child of it
 * (cm_trace_child: same trace, new span id) or starts a new trace when there is none or it is
 * invalid (cm_trace_new), and sends cm_trace_format() of the span it is in on each outgoing
 * call, with the incoming tracestate passed through cm_tracestate_clean(). Parsing is strict:
 * what the spec calls invalid is refused, and then the tracestate must be dropped too. Nothing
 * here allocates; bad input of any size is refused, never a crash.
 *
 * Threads: every function may be called from any thread.
 */
#ifndef CMICRO_TRACE_H
#define CMICRO_TRACE_H

#include <cmicro/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CM_TRACE_ID_SIZE 16
#define CM_SPAN_ID_SIZE 8
/* The length of a version 00 traceparent; a buffer for cm_trace_format has one more byte. */
#define CM_TRACEPARENT_LEN 55
/* trace-flags: sampled (the caller may have recorded the trace) and, from Trace Context Level
 * 2, random (the trace id's right 7 bytes at least are random). Other bits are reserved. */
#define CM_TRACE_SAMPLED 0x01
#define CM_TRACE_RANDOM 0x02
/* The most tracestate kept: 32 members (more is invalid), 512 characters. */
#define CM_TRACESTATE_MAX_MEMBERS 32
#define CM_TRACESTATE_MAX_LEN 512

typedef struct cm_trace_ctx {
    uint8_t trace_id[CM_TRACE_ID_SIZE];
    uint8_t span_id[CM_SPAN_ID_SIZE]; /* traceparent's parent-id: the span that sends it */
    uint8_t flags;
} cm_trace_ctx;

/* Parses a traceparent value of len bytes (need not be NUL-terminated; spaces and tabs around
 * it are ignored) into *out. Version 00 must be exactly 55 characters. A higher version (not
 * ff) may be longer when a '-' follows the flags; its first four fields are read as version 00's
 * and the rest is ignored, as the spec asks. Hex must be lowercase; an all-zero trace-id or
 * parent-id is invalid. out->flags keeps all 8 bits received. 0 or CM_EINVAL (out is then
 * unchanged). */
CM_EXTERN int cm_trace_parse(const char *s, size_t len, cm_trace_ctx *out);

/* Writes c as a version 00 traceparent and a NUL into out (CM_TRACEPARENT_LEN + 1 bytes). */
CM_EXTERN void cm_trace_format(const cm_trace_ctx *c, char *out);
/* The trace-id as 32 lowercase hex characters and a NUL (33 bytes), e.g. for a log line or an
 * OTLP span; the span id as 16 and a NUL (17 bytes). */
CM_EXTERN void cm_trace_id_hex(const cm_trace_ctx *c, char *out);
CM_EXTERN void cm_span_id_hex(const cm_trace_ctx *c, char *out);

/* A new trace: random trace-id and span id (neither all zero), with flags as given (e.g.
 * CM_TRACE_SAMPLED | CM_TRACE_RANDOM). The bytes come from getrandom(2), drawn 256 at a time
 * into a per-thread pool that a fork clears in the child, so most calls make no system call.
 * 0, or a negative errno when the kernel has no random source to give (out unchanged). */
CM_EXTERN int cm_trace_new(cm_trace_ctx *out, uint8_t flags);
/* A child span of parent: the same trace-id, a new random span id, the sampled and random
 * flags kept and the reserved bits cleared (the spec says they must be sent as zero).
 * parent and out may be the same. 0 or a negative errno as cm_trace_new. */
CM_EXTERN int cm_trace_child(const cm_trace_ctx *parent, cm_trace_ctx *out);

/* Checks a tracestate value of len bytes (the header's lines joined with ',', as HTTP combines
 * them) and writes what may be passed on into out (CM_TRACESTATE_MAX_LEN + 1 bytes), NUL
 * terminated: the members in order, separated by ',' without spaces, empty members left out.
 * When the whole is over CM_TRACESTATE_MAX_LEN characters, members over 128 characters go
 * first, then members from the end, as the spec advises. Returns the length written; 0 (out
 * is "") for an empty or invalid value: a bad key or value, a key twice, more than
 * CM_TRACESTATE_MAX_MEMBERS members. */
CM_EXTERN size_t cm_tracestate_clean(const char *s, size_t len, char *out);

#ifdef __cplusplus
}
#endif
#endif
