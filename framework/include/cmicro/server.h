/* cmicro: the RPC server. It routes go-micro requests ("Service.Method" in Micro-Endpoint) to
 * handlers, decodes the request with the codec of its Content-Type, runs the handler and
 * answers with the response or a go-micro error (Micro-Error header).
 *
 * Threads: cm_server_* functions run on the loop thread, or on any thread before the loop
 * runs. Handlers run on the server's worker pool (they may block) unless registered with
 * CM_HANDLER_INLINE, which runs them on the loop thread (they must not block); stream handlers
 * run each on a thread of its own (see CM_HANDLER_STREAM).
 */
#ifndef CMICRO_SERVER_H
#define CMICRO_SERVER_H

#include <cmicro/codec.h>
#include <cmicro/loop.h>
#include <cmicro/md.h>
#include <cmicro/rpc_error.h>
#include <cmicro/transport.h>
#include <cmicro/wrapper.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cm_server cm_server;
/* The context of one call being served. Valid until the handler returns. */
typedef struct cm_ctx cm_ctx;

/* A handler. req is the decoded request (borrowed), rsp the response to fill, initialised to
 * its defaults. With a NULL descriptor both are ProtobufCBinaryData (raw bytes). Memory stored
 * into rsp must outlive the call: use cm_ctx_alloc()/cm_ctx_strdup() or static storage.
 * Returns 0 on success; CM_EREMOTE after cm_ctx_error()/cm_ctx_set_error() to answer with that
 * go-micro error; any other negative code answers 500 with its cm_strerror() text. */
typedef int (*cm_handler_fn)(cm_ctx *ctx, const void *req, void *rsp, void *user);

/* The handler never blocks: run it on the loop thread, with no thread hand-off. */
#define CM_HANDLER_INLINE 1u
/* Served, but not published in the registry (go-micro's InternalHandler). */
#define CM_HANDLER_INTERNAL 2u
/* A stream endpoint (go-micro's server-stream, client-stream and bidi; <cmicro/stream.h>). fn
 * runs on a thread of its own for the stream's life, from the server's streams pool (not the
 * worker pool, so that open streams never keep unary calls waiting; CM_HANDLER_INLINE is
 * ignored), inside the server's handler wrappers and limits as any handler, and is called with
 * req NULL and rsp the call's cm_stream *, which receives messages of the request descriptor and
 * sends messages of the response descriptor. Returning 0 ends the server's side with go-micro's
 * EOS; CM_EREMOTE after cm_ctx_error() ends it with that error; another code with a 500 error
 * (408 when the stream's deadline passed). Publish metadata "stream", "true", as go-micro does
 * for stream endpoints. */
#define CM_HANDLER_STREAM 4u

/* The shape of a message as go-micro's registry publishes it (spec 1.3: a Value tree named
 * after the Go types, fields by their JSON names, depth limit 3). Static; generated code emits
 * these tables. */
typedef struct cm_value_desc {
    const char *name;
    const char *type;
    size_t nvalues;
    const struct cm_value_desc *values;
} cm_value_desc;

typedef struct cm_handler {
    const char *endpoint;                        /* "Hello.Say" */
    const ProtobufCMessageDescriptor *request;   /* NULL: raw bytes */
    const ProtobufCMessageDescriptor *response;  /* NULL: raw bytes */
    cm_handler_fn fn;
    unsigned flags;                              /* CM_HANDLER_INLINE, _INTERNAL */
    const cm_value_desc *request_value;          /* published endpoint shape; may be NULL */
    const cm_value_desc *response_value;
    /* Endpoint metadata published in the registry: key, value, key, value, ..., NULL. Borrowed
     * for the server's life (generated code points at a static table). NULL: none. The generator
     * fills "description", "example" and "scopes" from the rpc's leading comment. */
    const char *const *metadata;
} cm_handler;

typedef struct cm_server_opts {
    const char *name;          /* service name, the id of the server's errors; default
                                  "go.micro.server" */
    const char *address;       /* listen address; default ":0" (all interfaces, any port) */
    const char *transport;     /* transport backend; default CM_TRANSPORT_DEFAULT ("http") */
    cm_transport_opts transport_opts;
    unsigned workers;          /* threads for blocking handlers; default 8 */
    uint64_t drain_timeout_ms; /* how long cm_server_stop() waits for calls in flight;
                                  default 10000 */
    /* Built-in limits (handler wrappers installed first, so outermost), each refusing with
     * go-micro's error 429. 0: none (the default). */
    unsigned max_concurrent; /* calls in the handler at once, per endpoint */
    unsigned rate_limit;     /* calls per second, all endpoints (a token bucket) */
    unsigned rate_burst;     /* the bucket's size; default rate_limit */
    /* Event loops that accept and serve connections, at most 64. 0: 1 on a machine with at
     * most 2 CPUs (uv_available_parallelism), else half the CPUs, at most 8. Loop 0 is the
     * server's loop; each other one runs on a thread of its own with a listener on the same
     * address and port (SO_REUSEPORT), and the kernel spreads new connections among them by a
     * hash of the peer's address and port. A connection stays on the loop that accepted it.
     * Handlers, wrappers, limits, counters and the worker pool are shared; GET requests
     * (health, metrics, status) are answered from loop 0. max_conns in transport_opts is
     * divided among the loops; max_conns_per_ip counts per loop. */
    unsigned loops;
    /* Streams served at once, each on a thread of its own; past it a new stream is refused with
     * go-micro's error 429. Default CM_SERVER_MAX_STREAMS. */
    unsigned max_streams;
} cm_server_opts;

#define CM_SERVER_MAX_STREAMS 256

CM_EXTERN void cm_server_opts_init(cm_server_opts *o);

/* Creates a server on loop. o NULL: defaults; strings are copied. 0, CM_EINVAL or CM_ENOMEM. */
CM_EXTERN int cm_server_new(cm_loop *loop, const cm_server_opts *o, cm_server **out);
/* Installs a handler for h->endpoint (copied). user is borrowed while the server lives.
 * 0, CM_EINVAL (endpoint not "Service.Method", no fn), CM_EEXIST or CM_ENOMEM. */
CM_EXTERN int cm_server_handle(cm_server *s, const cm_handler *h, void *user);
/* Listens. 0, CM_ESTATE (already started), CM_EADDR or a libuv error (UV_EADDRINUSE). */
CM_EXTERN int cm_server_start(cm_server *s);
/* The real listen address after start ("127.0.0.1:43567", "[::]:8001"), else NULL. */
CM_EXTERN const char *cm_server_address(const cm_server *s);
/* Graceful stop: stops accepting, answers requests that arrive from now on with a 503 error,
 * waits for calls in flight up to the drain timeout, closes every connection, then runs
 * done(arg) on the loop. 0 or CM_ESTATE (not started, or already stopping). */
CM_EXTERN int cm_server_stop(cm_server *s, void (*done)(void *arg), void *arg);
/* Frees a server that was never started or whose stop has completed. On the loop thread, or
 * once no thread runs the loop (before cm_loop_free). Waits for handlers still running. */
CM_EXTERN void cm_server_free(cm_server *s);

typedef struct cm_server_stats {
    uint64_t accepted; /* connections accepted */
    uint64_t active;   /* connections open */
    uint64_t calls;    /* requests dispatched to a handler */
    uint64_t errors;   /* replies carrying an error (handler, routing, codec) */
    uint64_t inflight; /* calls not yet finished (a reply a worker wrote is finished by the
                        * loop right after: a client may see it first) */
} cm_server_stats;
/* Sums over the server's loops. Any thread. */
CM_EXTERN void cm_server_get_stats(const cm_server *s, cm_server_stats *st);
/* The number of loops the server runs (cm_server_opts.loops, resolved). */
CM_EXTERN unsigned cm_server_loops(const cm_server *s);
/* The counts of loop i alone (accepted and active: its listener's, 0 once stopped). Any
 * thread. 0 or CM_EINVAL (no such loop; *st zeroed). */
CM_EXTERN int cm_server_get_loop_stats(const cm_server *s, unsigned i, cm_server_stats *st);

/* Installs a handler wrapper (see <cmicro/wrapper.h>) around every handler: the first installed
 * is the outermost. Before cm_server_start(). 0, CM_EINVAL, CM_ESTATE or CM_ENOMEM (more than
 * CM_WRAP_MAX). */
CM_EXTERN int cm_server_wrap(cm_server *s, const cm_wrapper *w);
/* Installs a subscriber wrapper, around every message handler of the server's subscriptions.
 * Same rules. */
CM_EXTERN int cm_server_wrap_subscriber(cm_server *s, const cm_wrapper *w);

/* ---- the call context, for handlers ---- */

/* A request header / metadata value (case-insensitive key), or NULL. Borrowed for the call. */
CM_EXTERN const char *cm_ctx_get(const cm_ctx *ctx, const char *key);
/* The request's metadata: every request header, as go-micro's server context has them. */
CM_EXTERN const cm_msg *cm_ctx_headers(const cm_ctx *ctx);
CM_EXTERN const char *cm_ctx_endpoint(const cm_ctx *ctx);
CM_EXTERN const char *cm_ctx_service(const cm_ctx *ctx);
CM_EXTERN const char *cm_ctx_content_type(const cm_ctx *ctx);
CM_EXTERN const char *cm_ctx_peer(const cm_ctx *ctx);
/* Non-zero when the call is a stream (its handler is a CM_HANDLER_STREAM one): for wrappers,
 * which see no request and no response message for a stream. */
CM_EXTERN int cm_ctx_is_stream(const cm_ctx *ctx);
/* Milliseconds left before the caller's deadline (Timeout header); -1 when it sent none;
 * 0 when it has passed. */
CM_EXTERN int64_t cm_ctx_remaining_ms(const cm_ctx *ctx);
/* ---- the call's memory ----
 *
 * Everything below is allocated in the call's arena: never freed by the handler, all released
 * at once when the reply has been sent. The request message is the framework's and is borrowed
 * for the call; the response message is the framework's, the handler fills it, and every
 * string, bytes, sub-message and array it points to must live until the reply is sent, which
 * memory from these functions does (so does static storage). Each returns NULL (or CM_ENOMEM)
 * on out of memory. Any thread the handler runs on. */

/* n bytes, aligned for any type (not zeroed). */
CM_EXTERN void *cm_ctx_alloc(cm_ctx *ctx, size_t n);
/* A copy of s; for a static string too, since protobuf-c's string fields are not const. */
CM_EXTERN char *cm_ctx_strdup(cm_ctx *ctx, const char *s);
/* A printf-formatted string. */
CM_EXTERN char *cm_ctx_sprintf(cm_ctx *ctx, const char *fmt, ...) CM_PRINTF(2, 3);
/* A new message of type desc, initialised with its defaults (message_init):
 * `Book *b = cm_ctx_new_message(ctx, &book__descriptor);`. */
CM_EXTERN void *cm_ctx_new_message(cm_ctx *ctx, const ProtobufCMessageDescriptor *desc);
/* n zeroed elements of size bytes (NULL also when n * size overflows). */
CM_EXTERN void *cm_ctx_alloc_array(cm_ctx *ctx, size_t n, size_t size);

/* Sizes the repeated field `field` of msg for n elements: msg->field gets n zeroed elements from
 * the call's memory and msg->n_field = n. 0 or CM_ENOMEM (msg->n_field is then 0).
 *   if (CM_CTX_REPEATED(ctx, rsp, books, 3) < 0) return CM_ENOMEM;
 *   rsp->books[0] = cm_ctx_new_message(ctx, &book__descriptor); */
#define CM_CTX_REPEATED(ctx, msg, field, n)                                                        \
    (((msg)->field = cm_ctx_alloc_array((ctx), (n), sizeof(*(msg)->field))) != NULL || (n) == 0    \
         ? ((msg)->n_##field = (n), 0)                                                             \
         : ((msg)->n_##field = 0, CM_ENOMEM))
/* Sets a response header (copied). 0, CM_EINVAL or CM_ENOMEM. */
CM_EXTERN int cm_ctx_set_header(cm_ctx *ctx, const char *key, const char *val);
/* Sets the go-micro error the call answers with (id = the server's name). Returns CM_EREMOTE,
 * for `return cm_ctx_error(ctx, 400, "name required");`. */
CM_EXTERN int cm_ctx_error(cm_ctx *ctx, int32_t code, const char *fmt, ...) CM_PRINTF(3, 4);
/* Same with a ready error value. Takes e (even on failure). Returns CM_EREMOTE. */
CM_EXTERN int cm_ctx_set_error(cm_ctx *ctx, cm_error *e);

#ifdef __cplusplus
}
#endif
#endif
