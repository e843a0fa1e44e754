/* cmicro: transports. A transport moves framed messages (headers + body) between a client and
 * a server: one request, one response. The built-in backend is go-micro's HTTP/1.1 transport
 * ("http"); others are one more backend behind the same ops table, registered with
 * cm_transport_register() (see "writing a backend" at the end).
 *
 * Threads: every function here runs on the loop thread of the cm_loop the transport was
 * created with, and every callback is called there. A callback is never called from inside the
 * function that started the operation; a function that returns < 0 never calls its callback.
 */
#ifndef CMICRO_TRANSPORT_H
#define CMICRO_TRANSPORT_H

#include <cmicro/error.h>
#include <cmicro/loop.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One header: key and value NUL-terminated. Keys compare case-insensitively. */
typedef struct cm_hdr {
    const char *key;
    const char *val;
} cm_hdr;

/* A message: headers and body, all borrowed views. In a message the transport delivers, body
 * is never NULL (an empty body is ""). */
typedef struct cm_msg {
    const cm_hdr *hdrs;
    size_t nhdrs;
    const uint8_t *body;
    size_t body_len;
} cm_msg;

/* The first value of header key (case-insensitive), or NULL. */
CM_EXTERN const char *cm_msg_header(const cm_msg *m, const char *key);

typedef struct cm_transport_opts {
    size_t max_header_bytes;  /* request/response header block limit; default 64 KiB */
    size_t max_body_bytes;    /* body limit; default 4 MiB */
    unsigned pool_size;       /* idle client connections kept per address; default 100 */
    uint64_t pool_ttl_ms;     /* a pooled connection older than this (since creation) is
                                 closed instead of reused; default 60000 */
    uint64_t dial_timeout_ms; /* default 5000 */
    /* Server side. A connection is closed when a request's header block does not arrive within
     * header_timeout_ms of its first byte (default 10 s; with TLS, also when the handshake does
     * not complete within it from the accept), when the body makes no progress for
     * body_timeout_ms (default 60 s; also bounds writing a reply to a peer that does not read),
     * and when it is idle between requests for idle_timeout_ms (default 75 s: above the 60 s
     * that go-micro clients keep pooled connections). */
    uint64_t header_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t idle_timeout_ms;
    /* At most max_conns connections (default: the process's open-file limit less 64, at most
     * 65536): a new one beyond it closes the oldest idle connection, or is refused when none is
     * idle. At most max_conns_per_ip from one client address (default 0: no cap; set it when
     * clients are not trusted and not behind one proxy address). */
    unsigned max_conns;
    unsigned max_conns_per_ip;
    /* A zero timeout or max_conns takes the default; UINT64_MAX waits without limit. */

    /* TLS, as go-micro's transport.Secure(true) / transport.TLSConfig: both sides speak HTTP/1.1
     * over TLS 1.2 or later. On when tls is set or when tls_cert_file or tls_ca_file is given
     * (default off). The client verifies the server's certificate against tls_ca_file, or the
     * system's CA store when it is NULL, and checks that it names the host dialled (an IP
     * literal must be among its IP addresses), or tls_server_name. tls_insecure turns that
     * check off: any certificate is accepted, and a warning is logged once per transport. A
     * listener needs tls_cert_file and tls_key_file; it does not ask clients for certificates.
     * The files are PEM; they are read by cm_transport_new(), which answers CM_EINVAL (and logs
     * why) when one cannot be used. The strings are borrowed for the life of the transport. */
    int tls;
    int tls_insecure;
    const char *tls_cert_file;   /* certificate chain, leaf first: the server's (a client offers
                                    it when a server asks) */
    const char *tls_key_file;    /* its private key; NULL: in tls_cert_file */
    const char *tls_ca_file;     /* CAs the client trusts; NULL: the system store */
    const char *tls_server_name; /* client: the name checked and sent as SNI; NULL: the host */
    /* Listeners set SO_REUSEPORT before they bind, so that several listeners (of transports on
     * different loops) may bind the same address and port; the kernel spreads the connections
     * among them by a hash of the peer's address and port. Such listeners on one address count
     * max_conns_per_ip together (each of them still applies its own max_conns). Default off. */
    int reuse_port;
    /* Server side: at most max_calls requests of a listener are with its callback at once (not
     * yet replied to; a request that becomes a stream leaves the count). A connection whose
     * next request finds them all taken stops being read, its bytes waiting in the kernel's
     * socket buffers, until a slot is freed; waiting connections get slots in the order they
     * came. This bounds the memory of the calls in flight, not the connections. 0: the default,
     * CM_TRANSPORT_MAX_CALLS (a server makes it at least twice its workers). */
    unsigned max_calls;
} cm_transport_opts;

#define CM_TRANSPORT_MAX_CALLS 64

CM_EXTERN void cm_transport_opts_init(cm_transport_opts *o);

typedef struct cm_transport cm_transport;
typedef struct cm_listener cm_listener;   /* server side: a listening socket and its conns */
typedef struct cm_tconn cm_tconn;         /* server side: one accepted connection */
typedef struct cm_roundtrip cm_roundtrip; /* client side: one request in flight */

/* The backend a transport is made of when no name is given: "http". */
#define CM_TRANSPORT_DEFAULT "http"

/* Creates a transport by backend name (NULL: CM_TRANSPORT_DEFAULT). opts NULL: defaults; it is
 * copied. Returns 0, CM_ENOTFOUND (no such backend), CM_EINVAL or CM_ENOMEM. */
CM_EXTERN int cm_transport_new(cm_loop *loop, const char *name, const cm_transport_opts *opts,
                               cm_transport **out);
/* Closes pooled connections and cancels every round trip in flight (their callbacks run with
 * CM_ECANCELED); listeners must have been closed before. done (may be NULL) runs on the loop
 * when all handles are closed; the transport is freed then. */
CM_EXTERN void cm_transport_close(cm_transport *t, void (*done)(void *arg), void *arg);
CM_EXTERN const char *cm_transport_name(const cm_transport *t);

/* ---- server side ---- */

/* Called for each request. status 0: req is a complete request; it and every string in it are
 * borrowed until cm_tconn_reply() is called for it. The transport delivers no further request on
 * that connection before then (requests are served one at a time per connection, as go-micro
 * clients never pipeline).
 * status < 0: the transport refused a request over a limit, req is NULL: CM_EHDRTOOBIG (header
 * block over max_header_bytes) or CM_ETOOBIG (body over max_body_bytes). The callback answers it
 * with cm_tconn_reply() like any request, in its own protocol; the connection closes after that
 * reply. Malformed requests never reach the callback: the transport answers them with a plain
 * 400 and closes. A connection the transport closes after a final reply is shut down for writing
 * and drained for up to 2 s first, so that the peer reads the reply rather than a reset. Idle
 * connections are never closed.
 * A request that is not a POST to "/" (as go-micro's calls are) carries two pseudo headers after
 * its own: ":method" ("GET") and ":path" (the request target, "/health?x=1", truncated to 2048
 * bytes). */
typedef void (*cm_request_cb)(cm_tconn *conn, int status, const cm_msg *req, void *user);

/* Listens on "host:port" (":0", "0.0.0.0:0", "127.0.0.1:8001", "[::1]:0"; the host is an IP
 * literal, "localhost" or empty for all IPv4 interfaces). Returns 0, CM_EADDR (unparsable
 * address) or a libuv error (UV_EADDRINUSE, ...). */
CM_EXTERN int cm_transport_listen(cm_transport *t, const char *addr, cm_request_cb cb, void *user,
                                  cm_listener **out);
/* The bound address, with the real port ("127.0.0.1:43567", "[::]:43567"). 0 or CM_EINVAL
 * when it does not fit in len. */
CM_EXTERN int cm_listener_addr(const cm_listener *l, char *buf, size_t len);
/* Stops accepting new connections; open connections go on being served, and their requests no
 * longer wait for a call slot (max_calls): they reach the callback at once, for the owner to
 * answer while it drains (a server refuses them with 503). */
CM_EXTERN void cm_listener_stop_accepting(cm_listener *l);
/* Closes the listening socket and every connection. A connection whose request has not been
 * replied yet stays valid until cm_tconn_reply(), which then returns CM_ECLOSED. done (may be
 * NULL) runs on the loop when everything is closed; the listener is freed then. */
CM_EXTERN void cm_listener_close(cm_listener *l, void (*done)(void *arg), void *arg);

typedef struct cm_listener_stats {
    uint64_t accepted; /* connections accepted since listen */
    uint64_t active;   /* connections open now */
    uint64_t requests; /* requests delivered to the callback */
    uint64_t rejected; /* requests refused by the transport (limits, malformed) */
    uint64_t timeouts; /* connections closed by the header, body or idle timeout */
    uint64_t evicted;  /* idle connections closed to make room under max_conns */
    uint64_t refused;  /* connections refused: max_conns with none idle, or max_conns_per_ip */
    uint64_t tls_failed; /* TLS handshakes that failed or timed out, plain HTTP included */
} cm_listener_stats;
/* Any thread (for the "http" backend: the counters are read with relaxed atomic loads). */
CM_EXTERN void cm_listener_get_stats(const cm_listener *l, cm_listener_stats *st);

/* Sends the reply to the request last delivered on conn: HTTP/1.1 200 OK with Content-Length.
 * rsp is borrowed during the call (the transport copies what it cannot write at once); NULL
 * sends an empty reply. With close_after (or when the request said "Connection: close") the
 * connection is closed once the reply is written. After this call conn must not be used again
 * until the next request callback for it (which never runs from inside this call). Returns 0,
 * CM_ECLOSED (the peer went away; the reply is dropped), CM_ENOMEM (the connection is closed)
 * or CM_ESTATE (no request waits for a reply on conn). A reply whose first header is the pseudo
 * header ":status" ("404") is sent with that status instead of 200; pseudo headers are never
 * sent as headers. */
CM_EXTERN int cm_tconn_reply(cm_tconn *conn, const cm_msg *rsp, int close_after);
/* Any thread, at most once per request, while the request is with the callback: writes the
 * reply to the request last delivered on conn from the calling thread, as much of it as the
 * socket takes without waiting, so that a handler running off the loop answers without a trip
 * back to it. Returns 0 when it took the reply: the connection's loop must still call
 * cm_tconn_reply(conn, rsp, close_after) with the same rsp (its headers are not read again;
 * its body must be unchanged until then), which writes what is left and moves the connection
 * on. Any other return (CM_ENOTSUP: a TLS connection, or something else is being written):
 * nothing was written; reply with cm_tconn_reply() alone. */
CM_EXTERN int cm_tconn_reply_early(cm_tconn *conn, const cm_msg *rsp);
/* Peer and local addresses of the connection ("127.0.0.1:5555"); never NULL. */
CM_EXTERN const char *cm_tconn_peer(const cm_tconn *conn);
CM_EXTERN const char *cm_tconn_local(const cm_tconn *conn);

/* ---- client side ---- */

/* Set in flags when no byte of the request reached the peer (connect refused, dial failed),
 * so the request was provably not processed and may be retried. */
#define CM_RT_UNSENT 1u

/* status 0: rsp (borrowed during the callback) holds the peer's response (HTTP status 200).
 * status CM_EPROTO with rsp non-NULL: the peer answered with another HTTP status; rsp (borrowed
 * during the callback) holds that response's headers and body plus a pseudo header ":status"
 * whose value is the status code as text ("404").
 * Any other status < 0: rsp is NULL; CM_ETIMEDOUT, CM_ECANCELED, CM_ECLOSED (peer closed before
 * a full response), CM_EPROTO (malformed response), CM_ETOOBIG (response over a limit),
 * CM_ENOMEM, or a libuv error (UV_ECONNREFUSED, UV_EAI_NONAME, ...). With TLS also CM_ECERT
 * (the server's certificate failed verification) and CM_ETLS (the handshake failed, for
 * instance against a server that does not speak TLS); the reason is logged (warn). A plain
 * client calling a TLS listener gets CM_EPROTO with ":status" 400 and the body "Client sent an
 * HTTP request to an HTTPS server." (Go's answer). */
typedef void (*cm_roundtrip_cb)(int status, unsigned flags, const cm_msg *rsp, void *user);

/* Sends req to addr ("host:port", an IP literal or a name) as a POST to "/", or to the target
 * a pseudo header ":path" gives ("/?id=events-1", percent-encoded by the caller; it is not sent as
 * a header), over a pooled connection (LIFO
 * reuse; one request in flight per connection) and calls cb once with the response. req is
 * borrowed during the call. timeout_ms (0: none) bounds the whole round trip including the dial;
 * on expiry the connection is closed, not pooled. handle (may be NULL) receives a handle valid
 * until cb runs. A name is resolved with uv_getaddrinfo on every dial (its first IPv4 address is
 * preferred). Idle pooled connections do not keep the loop alive (they are unref'd). Returns 0,
 * CM_EADDR, CM_EINVAL (also: a ":path" that is not "/" followed by printable ASCII), CM_ENOMEM
 * or CM_ESTATE (the transport is closing). */
CM_EXTERN int cm_transport_roundtrip(cm_transport *t, const char *addr, const cm_msg *req,
                                     uint64_t timeout_ms, cm_roundtrip_cb cb, void *user,
                                     cm_roundtrip **handle);
/* Cancels a round trip: its callback runs later on the loop with CM_ECANCELED. */
CM_EXTERN void cm_roundtrip_cancel(cm_roundtrip *rt);

typedef struct cm_pool_stats {
    uint64_t dialed; /* connections opened */
    uint64_t reused; /* round trips served by a pooled connection */
    uint64_t idle;   /* idle connections in the pool now */
} cm_pool_stats;
CM_EXTERN void cm_transport_get_pool_stats(const cm_transport *t, cm_pool_stats *st);

/* ---- streams: full-duplex messages on one connection ----
 *
 * go-micro's streams over HTTP/1.1: once a stream starts, requests (client to server) and
 * responses (server to client) flow independently on one connection, each a complete HTTP
 * message. A server turns a delivered request's connection into a stream with cm_tconn_stream()
 * instead of replying to it; a client opens one with cm_transport_dial_stream() (a new
 * connection, never pooled). Both sides then use the same cm_tstream functions.
 *
 * Flow control: cm_tstream_send() copies the message and queues it; cm_tstream_queued() counts
 * the bytes not yet taken by the kernel, and on_written runs when a queued write completes, so
 * that the layer above bounds what it queues. cm_tstream_pause() stops reading from the peer
 * (TCP pushes back on the writer) until it is resumed. */
typedef struct cm_tstream cm_tstream;

typedef struct cm_tstream_cbs {
    /* A message from the peer: on a server, a request; on a client, a response (with ":status"
     * when it was not 200). m and its strings are borrowed during the call. */
    void (*on_msg)(void *user, const cm_msg *m);
    /* The connection ended: CM_ECLOSED (the peer closed), CM_EPROTO, CM_ETIMEDOUT (the dial),
     * a libuv error. Runs once; no callback runs after it. Not run after cm_tstream_close(). */
    void (*on_end)(void *user, int status);
    /* Queued bytes were written; cm_tstream_queued() says how many are left. May be NULL. */
    void (*on_written)(void *user);
} cm_tstream_cbs;

/* Turns conn, whose last request was delivered and not replied to, into a stream; *out is valid
 * until cm_tstream_close(). Later requests go to cbs->on_msg, never to the listener's callback.
 * cbs and user are borrowed until cm_tstream_close(). 0, CM_ESTATE (no request waits for a
 * reply), CM_ECLOSED, CM_ENOTSUP (the backend has no streams). */
CM_EXTERN int cm_tconn_stream(cm_tconn *conn, const cm_tstream_cbs *cbs, void *user,
                              cm_tstream **out);
/* Dials addr on a connection of its own. Messages sent before the connection is up are queued.
 * dial_timeout_ms 0: the transport's. 0, CM_EADDR, CM_ENOMEM, CM_ESTATE (closing), CM_ENOTSUP. */
CM_EXTERN int cm_transport_dial_stream(cm_transport *t, const char *addr, uint64_t dial_timeout_ms,
                                       const cm_tstream_cbs *cbs, void *user, cm_tstream **out);
/* Queues m (copied): a client sends a POST request, a server a 200 response. 0, CM_ECLOSED or
 * CM_ENOMEM. Never calls back from inside. */
CM_EXTERN int cm_tstream_send(cm_tstream *s, const cm_msg *m);
/* Bytes queued and not written yet. */
CM_EXTERN size_t cm_tstream_queued(const cm_tstream *s);
/* Stops (on non-zero) or resumes reading from the peer. */
CM_EXTERN void cm_tstream_pause(cm_tstream *s, int on);
/* Corks s (on non-zero): the messages sent until the uncork are gathered and written together,
 * in one system call where the socket takes them, as TCP_CORK gathers segments. Uncorking
 * writes them; 0, or CM_ECLOSED when that write failed (on_end runs as after a failed send).
 * A backend without the slot writes each message as it is sent. */
CM_EXTERN int cm_tstream_cork(cm_tstream *s, int on);
/* Closes the connection once the queued bytes are written (at most a few seconds), and releases
 * s: no callback runs after this. */
CM_EXTERN void cm_tstream_close(cm_tstream *s);

/* ---- writing a backend ----
 *
 * A backend is a static const cm_transport_ops registered once with cm_transport_register(); the
 * built-in "http" goes through the same path. The framework allocates priv_size bytes of private
 * state with each transport (cm_transport_priv). A backend's listener, connection and round trip
 * structs begin with the matching struct below, whose ops the generic functions dispatch on. A
 * NULL slot answers CM_ENOTSUP (or does nothing, for slots that return nothing). */

struct cm_listener {
    const struct cm_transport_ops *ops;
};
struct cm_tconn {
    const struct cm_transport_ops *ops;
};
struct cm_roundtrip {
    const struct cm_transport_ops *ops;
};
struct cm_tstream {
    const struct cm_transport_ops *ops;
};

typedef struct cm_transport_ops {
    int abi_version; /* CM_ABI_VERSION */
    const char *name;
    size_t priv_size;
    int (*init)(cm_transport *t);
    /* Closes everything; must call cm_transport_closed(t) once all is closed. */
    void (*close)(cm_transport *t);
    int (*listen)(cm_transport *t, const char *addr, cm_request_cb cb, void *user,
                  cm_listener **out);
    int (*listener_addr)(const cm_listener *l, char *buf, size_t len);
    void (*listener_stop_accepting)(cm_listener *l);
    void (*listener_close)(cm_listener *l, void (*done)(void *arg), void *arg);
    void (*listener_stats)(const cm_listener *l, cm_listener_stats *st);
    int (*reply)(cm_tconn *c, const cm_msg *rsp, int close_after);
    const char *(*peer)(const cm_tconn *c);
    const char *(*local)(const cm_tconn *c);
    int (*roundtrip)(cm_transport *t, const char *addr, const cm_msg *req, uint64_t timeout_ms,
                     cm_roundtrip_cb cb, void *user, cm_roundtrip **handle);
    void (*cancel)(cm_roundtrip *rt);
    void (*pool_stats)(const cm_transport *t, cm_pool_stats *st);
    /* Streams (may be NULL: CM_ENOTSUP). */
    int (*tconn_stream)(cm_tconn *c, const cm_tstream_cbs *cbs, void *user, cm_tstream **out);
    int (*dial_stream)(cm_transport *t, const char *addr, uint64_t dial_timeout_ms,
                       const cm_tstream_cbs *cbs, void *user, cm_tstream **out);
    int (*stream_send)(cm_tstream *s, const cm_msg *m);
    size_t (*stream_queued)(const cm_tstream *s);
    void (*stream_pause)(cm_tstream *s, int on);
    void (*stream_close)(cm_tstream *s);
    /* May be NULL (CM_ENOTSUP): see cm_tconn_reply_early(). */
    int (*reply_early)(cm_tconn *c, const cm_msg *rsp);
    /* May be NULL (nothing is gathered): see cm_tstream_cork(). */
    int (*stream_cork)(cm_tstream *s, int on);
} cm_transport_ops;

/* Adds or replaces the backend of ops->name. ops is borrowed for the life of the process (a
 * static const table). Returns 0, CM_EINVAL (wrong abi_version, no name, or no init, close,
 * listen, reply or roundtrip slot) or CM_ENOMEM (the table is full: 16 backends). Any thread;
 * call it before transports are created. */
CM_EXTERN int cm_transport_register(const cm_transport_ops *ops);
/* The backend of that name, or NULL. */
CM_EXTERN const cm_transport_ops *cm_transport_find(const char *name);

/* For backends: the loop and options the transport was created with (borrowed), its private
 * state (priv_size bytes, zeroed, aligned for any type), and the call a backend's close makes
 * once everything is closed (it frees t and runs the close callback). */
CM_EXTERN cm_loop *cm_transport_loop(const cm_transport *t);
CM_EXTERN const cm_transport_opts *cm_transport_get_opts(const cm_transport *t);
CM_EXTERN void *cm_transport_priv(cm_transport *t);
CM_EXTERN void cm_transport_closed(cm_transport *t);

#ifdef __cplusplus
}
#endif
#endif
