/* cmicro: wrappers (middleware), go-micro's four kinds.
 *
 *   handler wrappers     (server)  around every RPC handler           cm_server_wrap()
 *   subscriber wrappers  (server)  around every message handler        cm_server_wrap_subscriber()
 *   client wrappers      (client)  around a whole call, retries included  cm_client_wrap()
 *   call wrappers        (client)  around each attempt to one node      cm_client_wrap_call()
 *
 * A wrapper is a pair of hooks. before() runs as the call enters the wrapper and may end it
 * there with a go-micro error (short-circuit): the inner wrappers and the handler (or the
 * network) are skipped and the call ends with that error. after() runs as the call leaves the
 * wrapper, with the outcome. As in go-micro, the wrapper installed first is the outermost:
 * befores run in installation order, afters in reverse, and a wrapper's after runs exactly when
 * its before returned 0 (a short-circuit unwinds through the wrappers outside it; the wrapper
 * that short-circuits cleans up in its before). Built-in metrics,
 * tracing and the resilience wrappers use the same hooks.
 *
 * Threads: handler and subscriber wrappers run on the thread of the handler (a worker, the
 * stream's thread, or the loop for inline handlers); a client wrapper's before runs on the
 * thread that starts the call and its after on the loop thread; call wrappers run on the loop
 * thread. Hooks must not block. With no wrapper installed a call pays one branch.
 *
 * Streams: handler wrappers run around stream handlers too (as go-micro's do), once per
 * stream: before() when the stream is opened, after() when its handler returns, so a stream
 * counts as one call for its whole life. For a stream, cm_wrap_info.stream is 1, md holds the
 * opening message's headers, req and rsp are NULL (req_desc and rsp_desc describe the messages
 * the stream receives and sends), status and error are the handler's outcome, and a
 * short-circuit ends the stream with its error before the handler runs (the caller's first
 * cm_stream_recv answers CM_EREMOTE with it). Headers set with cm_wrap_set_header are not sent
 * on a stream.
 */
#ifndef CMICRO_WRAPPER_H
#define CMICRO_WRAPPER_H

#include <cmicro/codec.h>
#include <cmicro/rpc_error.h>
#include <cmicro/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cm_wrap_kind {
    CM_WRAP_HANDLER = 1,
    CM_WRAP_SUBSCRIBER = 2,
    CM_WRAP_CLIENT = 3,
    CM_WRAP_CALL = 4,
} cm_wrap_kind;

typedef struct cm_ctx cm_ctx;

/* What a wrapper sees. Borrowed during the hook. */
typedef struct cm_wrap_info {
    cm_wrap_kind kind;
    const char *service;  /* handler: the server's name; client, call: the callee's */
    const char *endpoint; /* "Hello.Say"; subscriber: the topic */
    const char *node;     /* call: this attempt's node address; handler: the peer; else NULL */
    int attempt;          /* call: 1 for the first attempt; else 0 */
    int64_t deadline_ms;  /* absolute, cm_now_ms() clock; -1: none */
    const cm_msg *md;     /* handler, subscriber: the request's headers (metadata); client, call:
                             the headers to be sent */
    const ProtobufCMessageDescriptor *req_desc;
    const void *req; /* the request message (raw bytes when req_desc is NULL); NULL in a
                        client wrapper's after and in call wrappers (it is encoded) */
    const ProtobufCMessageDescriptor *rsp_desc;
    const void *rsp;       /* after, on success: the response; else NULL */
    int status;            /* after: 0, CM_EREMOTE (a go-micro error) or another CM_E* code */
    const cm_error *error; /* after: the error when status < 0 (may be NULL) */
    uint64_t start_ns;     /* when the call entered the outermost wrapper (uv_hrtime clock) */
    cm_ctx *ctx;           /* handler: the call being served (cm_ctx_set_header, cm_ctx_alloc);
                              else NULL */
    void *priv;            /* the framework's */
    int stream;            /* handler: 1 when the call is a stream (see above); else 0 */
} cm_wrap_info;

typedef struct cm_wrapper {
    const char *name; /* for logs; copied */
    /* 0 to go on. To short-circuit, set *err (a cm_error_new() value, taken) and return
     * CM_EREMOTE. *state is this wrapper's slot for the call, handed to after(). May be NULL. */
    int (*before)(cm_wrap_info *w, void *arg, void **state, cm_error **err);
    /* May be NULL. */
    void (*after)(const cm_wrap_info *w, void *arg, void *state);
    void *arg; /* borrowed while installed */
} cm_wrapper;

/* At most this many wrappers of each kind per server or client. */
#define CM_WRAP_MAX 16

/* Adds a request header (client, call: sent with the request; handler: sent with the reply),
 * replacing none: call it once per key. key and val are copied. 0, CM_EINVAL or CM_ENOMEM. */
CM_EXTERN int cm_wrap_set_header(cm_wrap_info *w, const char *key, const char *val);

#ifdef __cplusplus
}
#endif
#endif
