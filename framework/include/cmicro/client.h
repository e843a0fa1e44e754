/* cmicro: the RPC client. A call names a service and an endpoint; the client picks a node,
 * encodes the request with the codec of its content type, sends it over the transport, and
 * decodes the response or the go-micro error.
 *
 * Retries: max_attempts counts every attempt including the first (1 = no retry). A call is
 * retried only when it was provably not processed (the connection was refused, no byte sent),
 * when the callee answered 408, or, for calls marked idempotent, on any transport error. Back-off
 * between attempts is go-micro's: floor(i^e) x 100 ms (0, 100 ms, 600 ms, 1.9 s, ...).
 *
 * Timeouts: request_timeout_ms (timeout_ms per call) bounds the whole call, every attempt and
 * back-off included. attempt_timeout_ms (go-micro's ConnectionTimeout) bounds one attempt of an
 * idempotent call that may still be retried; any other attempt runs to the call's deadline, since
 * no retry could follow its timeout. Each attempt sends the time it really has as the Timeout
 * header. A timeout error names the limit that fired and says whether a retry follows.
 */
#ifndef CMICRO_CLIENT_H
#define CMICRO_CLIENT_H

#include <cmicro/codec.h>
#include <cmicro/loop.h>
#include <cmicro/md.h>
#include <cmicro/rpc_error.h>
#include <cmicro/selector.h>
#include <cmicro/transport.h>
#include <cmicro/wrapper.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cm_client cm_client;
typedef struct cm_ctx cm_ctx;

typedef struct cm_client_opts {
    const char *content_type;    /* default application/protobuf */
    uint64_t request_timeout_ms; /* whole call, all attempts; default 30000 */
    uint64_t attempt_timeout_ms; /* one attempt of an idempotent call that can be retried
                                    (see Timeouts above); default 5000 */
    int max_attempts;            /* default 6 (go-micro v4.10+: 5 retries) */
    const char *transport;       /* default CM_TRANSPORT_DEFAULT ("http") */
    cm_transport_opts transport_opts;
    cm_selector *selector;       /* borrowed, on the client's loop: resolves service names for
                                    calls without an address; NULL: calls need an address */
} cm_client_opts;

CM_EXTERN void cm_client_opts_init(cm_client_opts *o);

/* Per-call options; zero fields take the client's values. Zero-initialise, or use
 * cm_call_opts_init(). */
typedef struct cm_call_opts {
    const char *address;         /* node address list "h:p[,h:p...]": no selector; attempts
                                    rotate through it */
    const char *content_type;
    uint64_t timeout_ms;         /* whole call */
    uint64_t attempt_timeout_ms;
    int max_attempts;
    const cm_md *md;             /* metadata sent as headers; borrowed during the call */
    const cm_ctx *parent;        /* a call being served: its metadata (not Micro-* framework
                                    headers) is forwarded and its deadline bounds this call */
    int idempotent;              /* retry transport errors too */
    const cm_select_filter *filter; /* narrows the selector's nodes (version, labels) */
    int borrow_response;         /* cm_client_call_async: the response is decoded into the
                                    call's own memory and borrowed by the callback (valid until
                                    it returns; never freed by the caller): no allocation per
                                    call. Ignored by cm_client_call. */
} cm_call_opts;

CM_EXTERN void cm_call_opts_init(cm_call_opts *o);

/* Creates a client on loop; loop NULL: the client makes a loop and runs it on a thread of its
 * own, joined by cm_client_free(). o NULL: defaults. 0, CM_EINVAL, CM_ENOMEM or a libuv error. */
CM_EXTERN int cm_client_new(cm_loop *loop, const cm_client_opts *o, cm_client **out);
/* Cancels calls in flight (their callbacks run with CM_ECANCELED) and frees the client.
 * Not on the loop thread of a client that owns its loop. Free the client's streams first
 * (cm_stream_free): one still open keeps this waiting. */
CM_EXTERN void cm_client_free(cm_client *c);
CM_EXTERN cm_loop *cm_client_loop(cm_client *c);
/* The client's effective options (defaults applied); strings borrowed from c. Any thread. */
CM_EXTERN void cm_client_get_opts(const cm_client *c, cm_client_opts *out);

/* The callback of an asynchronous call, on the loop thread, exactly once.
 * status: 0 with rsp set (returns owned: free with cm_message_free(rsp)); CM_EREMOTE when the
 * callee answered a go-micro error; CM_ETIMEDOUT, CM_ENONODE, CM_ECODEC, CM_ECANCELED, libuv
 * errors, ... otherwise. err (borrowed during the callback; cm_error_dup to keep) is set whenever
 * status < 0: the callee's error, or one made by the client (id "cmicro.client") saying which
 * attempt, node and time. */
typedef void (*cm_call_cb)(int status, void *rsp, const cm_error *err, void *user);
/* With cm_call_opts.borrow_response, rsp is borrowed instead: valid during the callback only. */

/* Starts a call. req (of type req_desc; NULL descriptor: a ProtobufCBinaryData) is encoded
 * before this returns and stays the caller's. rsp_desc NULL: the response is raw bytes
 * (ProtobufCBinaryData). Any thread. Returns 0 (cb will run) or CM_EINVAL / CM_ECODEC /
 * CM_ECONTENTTYPE / CM_ENOMEM (cb will not run). */
CM_EXTERN int cm_client_call_async(cm_client *c, const char *service, const char *endpoint,
                                   const ProtobufCMessageDescriptor *req_desc, const void *req,
                                   const ProtobufCMessageDescriptor *rsp_desc,
                                   const cm_call_opts *opts, cm_call_cb cb, void *user);

/* A blocking call, from any thread but the loop's. On 0, *rsp (returns owned:
 * cm_message_free) holds the response. On failure *err (may be NULL; returns owned:
 * cm_error_free) says why, and the return value is as for cm_call_cb's status; CM_ESTATE when
 * called on the loop thread. */
CM_EXTERN int cm_client_call(cm_client *c, const char *service, const char *endpoint,
                             const ProtobufCMessageDescriptor *req_desc, const void *req,
                             const ProtobufCMessageDescriptor *rsp_desc, void **rsp,
                             const cm_call_opts *opts, cm_error **err);

/* Installs a client wrapper (around each whole call, retries included) or a call wrapper (around
 * each attempt to a node); see <cmicro/wrapper.h>. The first installed is the outermost. Before
 * the client's first call. 0, CM_EINVAL, CM_ESTATE or CM_ENOMEM (more than CM_WRAP_MAX). */
CM_EXTERN int cm_client_wrap(cm_client *c, const cm_wrapper *w);
CM_EXTERN int cm_client_wrap_call(cm_client *c, const cm_wrapper *w);

/* Frees a response returned by a call (protobuf message or ProtobufCBinaryData). */
CM_EXTERN void cm_message_free(const ProtobufCMessageDescriptor *desc, void *msg);

#ifdef __cplusplus
}
#endif
#endif
