/* cmicro framework internals. Not installed. */
#ifndef CMICRO_FRAMEWORK_INT_H
#define CMICRO_FRAMEWORK_INT_H

#include "core_int.h"

#include <cmicro/cmicro.h>
#include <cmicro/metrics.h>
#include <cmicro/stream.h>
#include <cmicro/trace.h>
#include <cmicro/wrapper.h>
#include <stdatomic.h>
#include <uv.h>

/* The free contexts a server loop keeps for the next calls; a burst past it frees the rest as its
 * calls end. The events layer pauses its broker at this many messages waiting for a worker. */
#define CM__CTX_KEEP 1024

/* ---- wrappers (wrap.c) ---- */

typedef struct cm__wraps {
    cm_wrapper w[CM_WRAP_MAX];
    size_t n;
} cm__wraps;

/* Copies w (its name too). 0, CM_EINVAL (no hook) or CM_ENOMEM (CM_WRAP_MAX reached). */
int cm__wraps_add(cm__wraps *ws, const cm_wrapper *w);
/* Same, as the outermost. */
int cm__wraps_add_first(cm__wraps *ws, const cm_wrapper *w);
void cm__wraps_free(cm__wraps *ws);
/* Runs the befores in order into states (CM_WRAP_MAX slots); *ran counts those that returned 0.
 * 0, or CM_EREMOTE with *err (owned) when one short-circuited. */
int cm__wraps_before(const cm__wraps *ws, cm_wrap_info *wi, void **states, size_t *ran,
                     cm_error **err);
/* Runs the afters of the first ran wrappers, in reverse. */
void cm__wraps_after(const cm__wraps *ws, const cm_wrap_info *wi, void *const *states, size_t ran);
/* The server's subscriber wrappers, for the message handlers. */
const cm__wraps *cm__server_sub_wraps(const cm_server *s);

/* ---- service configuration ---- */

/* A service's resolved configuration; strings are borrowed from the options or the environment. */
typedef struct cm__svc_config {
    const char *name, *version, *address, *advertise, *reg_name, *reg_addr;
    const char *id, *transport, *env_metadata;
    uint64_t ttl_ms, interval_ms, dereg_wait_ms;
    uint64_t reg_timeout_ms; /* MICRO_REGISTRY_TIMEOUT; 0: the backend's default */
    int log_config;
    int strategy_set;
    cm_client_opts client;
    cm_selector_opts selector;
    cm_transport_opts server_transport; /* the server's connection limits */
    unsigned max_concurrent, rate_limit, rate_burst, max_streams;
    unsigned loops; /* the server's loops; 0: the default */
    int metrics; /* on or off */
    int tracing; /* on or off */
    const char *trace_export; /* OTLP/HTTP traces URL, or NULL */
} cm__svc_config;

/* Code, then env, then defaults, then validation. 0 or CM_EINVAL with the reason in why. */
int cm__service_config(const cm_service_opts *o, cm__svc_config *c, char *why, size_t whylen);
/* The node metadata: code's keys, then those of MICRO_SERVER_METADATA ("k=v,k2=v2") that code did
 * not set (an overridden key is logged once). 0, CM_EINVAL (why says which entry) or CM_ENOMEM. */
int cm__service_metadata(const cm_md *code, const char *env, cm_md *out, char *why, size_t whylen);
/* A Go duration ("1m30s", "500ms") or plain milliseconds. 0 or CM_EINVAL. */
int cm__parse_duration_ms(const char *s, uint64_t *out);

/* A client-only service: the client starts its loop's thread at the first call. */
void cm__client_set_autostart(cm_client *c, int on);

/* The server's handlers, sorted by endpoint (go-micro's endpoint order). */
size_t cm__server_handlers(const cm_server *s, const cm_handler **out, size_t max);

/* ---- worker pools: handlers that may block run here ---- */

typedef struct cm__wport cm__wport;

typedef struct cm__job {
    struct cm__job *next;
    void (*work)(struct cm__job *job); /* on a worker thread */
    void (*done)(struct cm__job *job); /* on the loop thread of the port it was posted on */
    cm__wport *port;                   /* set by the post */
} cm__job;

typedef struct cm__workers cm__workers;

/* Starts n threads, and more on demand up to max (max <= n: a fixed pool; both 0: one thread).
 * The completions are delivered on loop. 0, CM_ENOMEM or a libuv error. */
int cm__workers_new(uv_loop_t *loop, unsigned n, unsigned max, cm__workers **out);
/* Queues job (any thread). */
void cm__workers_submit(cm__workers *w, cm__job *job);
/* Queues job from the loop thread: the jobs posted in one turn of the loop are handed to the
 * workers together, before the loop waits for I/O again (one lock, at most one wake-up). */
void cm__workers_post(cm__workers *w, cm__job *job);
/* A port of the pool on another loop (a server's extra loop): jobs posted through it run on the
 * same threads and complete on that loop. Before the loop runs, or on its thread. Freed by
 * cm__workers_free. 0, CM_ENOMEM or a libuv error. */
int cm__workers_port_new(cm__workers *w, uv_loop_t *loop, cm__wport **out);
/* The port of the loop the pool was made on. */
cm__wport *cm__workers_home(cm__workers *w);
/* cm__workers_post through port p (its loop's thread). */
void cm__workers_port_post(cm__wport *p, cm__job *job);
/* Waits for queued and running jobs, runs their done callbacks on the calling thread (the loop
 * thread or any thread once the loop no longer runs; no port's loop may run either), joins the
 * threads, closes the ports' handles (each port is freed when its loop runs them closed) and
 * frees. */
void cm__workers_free(cm__workers *w);
/* Whether a job is queued, running or waiting for its done callback (the calling thread is the
 * loop's, or the loop no longer runs). */
int cm__workers_busy(cm__workers *w);

/* ---- server requests ---- */

#define CM__MAX_RSP_HDRS 16

typedef struct cm__route {
    atomic_int inflight; /* calls of this endpoint in its handler (the concurrency limit) */
    /* The built-in metrics' series of this endpoint's successes (counter, latency) and its calls
     * in flight (gauge), found once (observe.c), so that a successful call looks nothing up. */
    _Atomic(void *) ok_series[3];
    char *endpoint;
    size_t service_len; /* length of the part before '.' */
    cm_handler h;
    void *user;
} cm__route;

/* One loop of a server (server_int.h). */
typedef struct cm__sloop cm__sloop;

/* One request in the server: pooled, with its arena and reply buffer. */
struct cm_ctx {
    cm__job job; /* first: the worker pool hands it back */
    cm_server *srv;
    cm__sloop *sl; /* the loop of its connection; its pool */
    cm_ctx *next_free;
    cm_tconn *conn;
    const cm_msg *req;
    const cm__route *rt;
    const cm_codec_ops *codec;
    const char *content_type;
    const char *service;
    const char *endpoint;
    const char *http_method; /* a request that is not a POST to "/": its method, else NULL */
    const char *http_path;
    int64_t deadline_ms; /* absolute, cm_now_ms() clock; -1 none */
    void *req_msg;
    void *rsp_msg;
    int status;
    cm_error *error;
    cm__arena arena;
    cm_buf out;
    char env_id[64]; /* an envelope codec's request id, answered in its response envelope */
    int env_id_str;  /* ... as a JSON string */
    cm_hdr rsp_hdrs[CM__MAX_RSP_HDRS];
    size_t nrsp_hdrs;
    int close_after;
    uint64_t start_ns; /* when the request arrived; set when wrappers are installed */
    /* A stream's peer and local addresses, copied (its connection may go before its handler
     * returns); NULL for other calls (read from the connection). */
    const char *peer, *local;
    void *get_state;   /* a GET request's handler state (in the arena) */
    /* Trace context, made at the first call made with this one as parent (tracing.c): 0 off,
     * 1 on, 2 being made, 3 made: the span this call is served in and the incoming tracestate,
     * cleaned (NULL: none). */
    atomic_int trace_state;
    char traceparent[CM_TRACEPARENT_LEN + 1];
    const char *tracestate;
    cm_ctx *wait_next; /* a GET request waiting for the registry's answer */
    const void *event_sub; /* a message being handled: its subscriber (event.c); else NULL */
    size_t event_bytes;    /* its body's bytes, while it waits for a worker (event.c) */
    int hopped;            /* a GET served on loop 0 for another loop */
    cm__post hop;
    /* The reply was encoded by the worker (encode_rc its result) and, when encode_rc is 0,
     * handed to cm_tconn_reply_early(). */
    int encoded;
    int encode_rc;
};

/* A context from the pool of s's loop 0 (or a new one); NULL on out of memory. Loop 0. */
cm_ctx *cm__ctx_get(cm_server *s);
/* Back to the pool, its arena and buffers trimmed. */
void cm__ctx_put(cm_ctx *c);
void cm__ctx_destroy(cm_ctx *c);
/* Sets a response header (replacing one of the same key); key and val must outlive the reply.
 * 0 or CM_ENOMEM (CM__MAX_RSP_HDRS reached). */
int cm__ctx_add_header(cm_ctx *c, const char *key, const char *val);
/* Answers a plain HTTP request (a GET) with status, content type and a copy of body, and
 * releases c. On the loop thread. */
void cm__ctx_reply_http(cm_ctx *c, int status, const char *content_type, const char *body,
                        size_t len);
/* A GET request's handler: answers it with cm__ctx_reply_http(), now or later on the loop. */
typedef void (*cm__get_fn)(cm_ctx *c, const char *path, void *arg);
/* Installs the server's GET handler (before start). Without one, every GET answers 404. */
void cm__server_on_get(cm_server *s, cm__get_fn fn, void *arg);
/* Serves go-micro's Debug.Health and Debug.Stats on s (internal handlers). 0 or an error of
 * cm_server_handle(). */
int cm__debug_handle(cm_server *s);
/* When s started listening, in Unix seconds; 0 before. */
uint64_t cm__server_started_unix(const cm_server *s);
/* A call in flight that is not a request (a message for a subscriber): the drain waits for it
 * until its release. Loop thread. */
void cm__server_hold(cm_server *s);
void cm__server_release(cm_server *s);
/* Runs job on the server's worker pool (loop thread). */
void cm__server_submit(cm_server *s, cm__job *job);
/* Runs c's handler inside the server's handler wrappers (c->status, c->error: the outcome). On
 * the handler's thread. */
void cm__server_run_handler(cm_ctx *c);
/* Non-zero once cm_server_stop() has been called. Any thread. */
int cm__server_stopping(const cm_server *s);
/* Whether a handler or a subscriber's message is with the worker pools (see cm__workers_busy). */
int cm__server_busy(const cm_server *s);
uint64_t cm__server_drain_timeout_ms(const cm_server *s);
/* The server's name (the id of the errors it makes). */
const char *cm__server_name(const cm_server *s);
unsigned cm__server_workers(const cm_server *s); /* the worker pool's threads */
/* The name of the server's transport ("http"), as node metadata "transport" carries it. */
const char *cm__server_transport_name(const cm_server *s);

/* ---- resilience wrappers (limit.c) ---- */

typedef struct cm__limits cm__limits;
/* Installs the concurrency limit per endpoint and the rate limit (calls/s, burst) on s as its
 * first handler wrappers; *out NULL when both are 0. 0 or CM_ENOMEM. */
int cm__limits_new(cm_server *s, unsigned max_concurrent, unsigned rate, unsigned burst,
                   cm__limits **out);
/* Calls refused so far by each limit (l may be NULL). */
void cm__limits_refused(const cm__limits *l, uint64_t *concurrency, uint64_t *rate);
void cm__limits_free(cm__limits *l);
/* The in-flight counter of the endpoint c is routed to. */
atomic_int *cm__ctx_route_inflight(cm_ctx *c);
/* The success series slots of the endpoint c is routed to (two). */
_Atomic(void *) *cm__ctx_route_series(cm_ctx *c);
/* The same for the subscriber of a message being handled (c->event_sub set): two slots. */
_Atomic(void *) *cm__ctx_event_series(cm_ctx *c);

/* ---- built-in metrics (observe.c) ---- */

typedef struct cm__observe cm__observe;
/* Makes the service's metrics registry and installs its wrappers (the server's outermost) and
 * collector. After the server and the client exist, before the service runs. 0 or an error. */
int cm__observe_new(cm_service *svc, cm__observe **out);
cm_metrics *cm__observe_metrics(cm__observe *o);
/* The families of the calls served (micro_request_total {service, endpoint, status, code} and
 * micro_request_duration_seconds {service, endpoint, status}) and made (micro_client_*, same
 * labels), for the status page; all NULL when o is NULL (metrics off). */
void cm__observe_families(const cm__observe *o, cm_metric_family **srv_req,
                          cm_metric_family **srv_lat, cm_metric_family **cli_req,
                          cm_metric_family **cli_lat);
/* The gauge of the calls being served, micro_server_endpoint_inflight {service, endpoint}; NULL
 * when o is NULL. */
cm_metric_family *cm__observe_inflight(const cm__observe *o);
/* The service's metrics; NULL when off. */
cm__observe *cm__service_observe(cm_service *s);
/* After the server and the client are freed. */
void cm__observe_free(cm__observe *o);
/* Installs w as the server's outermost handler wrapper. Before start. */
int cm__server_wrap_first(cm_server *s, const cm_wrapper *w);
/* The listeners' counters, summed over the server's loops. Any thread. */
void cm__server_listener_stats(const cm_server *s, cm_listener_stats *out);
/* Calls refused by the built-in limits, and streams refused past max_streams. Any thread. */
void cm__server_limits_refused(const cm_server *s, uint64_t *concurrency, uint64_t *rate,
                               uint64_t *streams);
cm_selector *cm__service_selector(cm_service *s);

/* ---- trace context (tracing.c) ---- */

/* Installs the trace wrappers on the service's server (the span a call is served in) and
 * client (a new trace for a call made outside any). 0 or an error. */
int cm__tracing_install(cm_server *s, cm_client *c);
/* The traceparent of the span c is served in (made at the first use: a child of the incoming
 * one, or a new trace) and in *tracestate the cleaned incoming tracestate (or NULL); NULL when
 * tracing is off for c. Any thread, but the memory comes from c's arena: call it while c's
 * handler runs. */
const char *cm__ctx_trace(cm_ctx *c, const char **tracestate);

/* ---- span export (otlp.c) ---- */

typedef struct cm__otlp cm__otlp;
/* Installs the span-recording handler wrapper on s (after the trace wrapper) and starts the
 * exporter's thread, posting to url as service. 0, CM_ENOMEM or a libuv error. */
int cm__otlp_new(cm_server *s, const char *url, const char *service, cm__otlp **out);
void cm__otlp_stats(cm__otlp *o, uint64_t *exported, uint64_t *dropped, uint64_t *failed);
/* Sends what is queued (bounded by the POST timeout), stops the thread, frees. After the
 * server is freed. */
void cm__otlp_free(cm__otlp *o);
cm__otlp *cm__service_otlp(cm_service *s);

/* ---- health (health.c) ---- */

typedef struct cm__health cm__health;
int cm__health_new(cm_service *svc, cm__health **out);
/* Serves GET /metrics from reg too (reg NULL: 404). */
void cm__health_set_metrics(cm__health *h, cm_metrics *reg);
/* Adds a user check. 0, CM_EINVAL or CM_ENOMEM (32 checks). Before the service runs. */
int cm__health_add(cm__health *h, const char *name, cm_health_check_fn fn, void *user);
/* The service is going away: registry answers from now on are dropped. */
void cm__health_close(cm__health *h);
void cm__health_free(cm__health *h);
/* The server's GET handler (cm__get_fn) with arg the cm__health. */
void cm__health_on_get(cm_ctx *c, const char *path, void *arg);
/* Non-zero while the service's node is registered (its last register succeeded). */
int cm__service_registered(const cm_service *s);
/* The last register failure ("" none; borrowed, loop thread), the failures in a row since the
 * last success, and when it failed (Unix seconds). */
const char *cm__service_register_error(const cm_service *s, unsigned *failures,
                                       uint64_t *when_unix);

/* ---- status page (status.c) ---- */

/* GET /status (path with its query): the service, its endpoints, server, registry and called
 * services, as HTML or, for "?format=json" or "Accept: application/json", as JSON. lookup_error
 * (NULL: none) is the health probe's last registry lookup failure. On the loop thread. */
void cm__status_get(cm_ctx *c, cm_service *svc, const char *path, const char *lookup_error);

/* ---- events (event.c) ---- */

typedef struct cm__events cm__events;
typedef void (*cm__events_cb)(int status, void *arg);
/* The service's events: the broker (made by name, address and settings bo (may be NULL), its
 * subscriptions in reg) and the subscribers. 0 or an error of cm_broker_new. */
int cm__events_new(cm_loop *loop, cm_server *srv, cm_registry *reg, const char *name,
                   const char *address, const cm_broker_opts *bo, cm__events **out);
int cm__events_add(cm__events *ev, const cm_subscriber *sub, void *user);
size_t cm__events_count(const cm__events *ev);
const cm_subscriber *cm__events_sub(const cm__events *ev, size_t i);
cm_broker *cm__events_broker(const cm__events *ev);
void cm__events_stats(const cm__events *ev, cm_event_stats *st);
/* Connects the broker and subscribes every subscriber (loop thread): 1 when done at once, 0 when
 * cb will tell, or an error. */
int cm__events_start(cm__events *ev, cm__events_cb cb, void *arg);
/* Ends the subscriptions (the start of a graceful stop). */
void cm__events_stop(cm__events *ev);
/* Fails the publishes waiting for the broker, closes the broker, frees ev;
 * done (may be NULL) runs when the broker is closed. Loop thread. */
void cm__events_close(cm__events *ev, void (*done)(void *arg), void *arg);
/* The client's events (a service's client), NULL for a client of its own. */
void cm__client_set_events(cm_client *c, cm__events *ev);
cm__events *cm__client_events(cm_client *c);
/* Starts the loop's thread of a client-only program at its first use. Any thread. */
void cm__client_autostart_loop(cm_client *c);

/* ---- headers ---- */

/* Writes the canonical MIME form of key ("x-user-id" -> "X-User-Id") into out (len bytes with
 * the NUL); keys with characters outside token chars are copied unchanged. 0 or CM_EINVAL. */
int cm__canonical_key(const char *key, char *out, size_t len);
/* Non-zero for headers that belong to the framework and are never forwarded as metadata. */
int cm__is_framework_header(const char *key);

/* ---- streams (stream.c) ---- */

#define CM__CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Serves c, routed to a stream handler, as a stream: takes c's connection and runs the handler
 * inside the handler wrappers on the streams' pool; c is finished when the stream ends. 0, or
 * < 0 (c untouched). Loop. */
int cm__stream_serve(cm_ctx *c, const ProtobufCMessageDescriptor *req,
                     const ProtobufCMessageDescriptor *rsp);
/* Cancels the streams served on a loop and closes their connections (the drain timeout). That
 * loop's thread, or any once it no longer runs. */
void cm__streams_cancel(cm__sloop *sl);
/* server.c's side of it: the loop c is served on, its loop, its list of streams (changed on the
 * loop's thread under the lock; read there without it, elsewhere under it), its worker port, its
 * error count; a server's loops. */
cm__sloop *cm__ctx_sloop(const cm_ctx *c);
cm_loop *cm__sloop_loop(const cm__sloop *sl);
struct cm_stream **cm__sloop_streams_lock(cm__sloop *sl);
void cm__sloop_streams_unlock(cm__sloop *sl);
struct cm_stream *cm__sloop_streams(const cm__sloop *sl);
void cm__sloop_submit(cm__sloop *sl, cm__job *job);
/* A stream's job, on a thread of the streams' pool (its loop's thread). */
void cm__sloop_submit_stream(cm__sloop *sl, cm__job *job);
void cm__sloop_count_error(cm__sloop *sl);
unsigned cm__server_nloops(const cm_server *s);
cm__sloop *cm__server_sloop(cm_server *s, unsigned i);
void cm__server_finish(cm_ctx *c);
cm_handler_fn cm__ctx_route_fn(const cm_ctx *c);
void *cm__ctx_route_user(const cm_ctx *c);
/* client.c's side (loop thread, but the post and the id). */
int cm__client_stream_parts(cm_client *c, cm_transport **t, cm_selector **sel);
uint64_t cm__client_next_id(cm_client *c);
const char *cm__client_content_type(const cm_client *c);
void cm__client_post(cm_client *c, cm__post *p, void (*fn)(void *arg), void *arg);

/* The id used in the errors made by the client. */
#define CM__CLIENT_ERROR_ID "cmicro.client"

/* Frees a raw frame or a protobuf message decoded by a codec with allocator alloc (NULL: malloc). */
void cm__message_free(const ProtobufCMessageDescriptor *desc, void *msg, ProtobufCAllocator *alloc);

#endif
