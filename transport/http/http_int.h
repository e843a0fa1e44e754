/* cmicro: internals shared by the HTTP/1.1 transport's server side (http_server.c) and client
 * side (http_client.c). Not installed. */
#ifndef CMICRO_HTTP_INT_H
#define CMICRO_HTTP_INT_H

#include "transport_int.h"

#include <http_parser.h>

/* A growable byte buffer, reused across messages. */
typedef struct cm__http_buf {
    char *p;
    size_t len;
    size_t cap;
} cm__http_buf;

/* Makes room for n more bytes. 0 or CM_ENOMEM. */
int cm__http_buf_reserve(cm__http_buf *b, size_t n);
int cm__http_buf_append(cm__http_buf *b, const void *p, size_t n);
void cm__http_buf_free(cm__http_buf *b);

/* The longest request target kept (for the ":path" pseudo header). */
#define CM__HTTP_URL_MAX 2048

/* One incoming message (request or response) being parsed by http_parser into a cm_msg. The
 * buffers are kept from message to message of a connection. */
typedef struct cm__http_in {
    http_parser parser;
    cm__http_buf strs;   /* "key\0value\0" for every header */
    cm_hdr *hdrs;        /* hcap entries: offsets into strs until the message completes */
    size_t nhdrs;
    size_t hcap;
    cm__http_buf body;
    size_t hdr_bytes; /* header block bytes seen so far (approximately the wire count) */
    size_t max_hdr;
    size_t max_body;
    int hstate;          /* 0: no header yet, 1: in a key, 2: in a value */
    int in_body;         /* the header block is complete; trailers are ignored */
    int limit;           /* 431 or 413 when a limit stopped the parser, else 0 */
    uint64_t limit_size; /* the body size that broke the body limit */
    int limit_chunked;   /* the body size is a running total of chunks (a lower bound) */
    int keep_alive;      /* http_should_keep_alive() of the completed message */
    int oom;             /* a callback ran out of memory */
    int strict;          /* requests: refuse what RFC 9112 lets a server refuse (see below) */
    int scan;            /* the strict scanner's state over the header block */
    const char *refusal; /* why the strict reading refused the message; NULL: http_parser's */
    int expect_continue; /* the request said "Expect: 100-continue" */
    int expect_failed;   /* it said another expectation: answered 417 */
    int started;         /* a byte of the current message has been seen */
    size_t url_len;      /* a request's target, truncated to CM__HTTP_URL_MAX: strs[0..url_len) */
    cm_msg msg;          /* the completed message */
} cm__http_in;

/* A request parser reads strictly (in->strict): whitespace between a header name and its colon,
 * obs-folded lines, a bare LF as a line end, a control character in a header value (other than
 * HTAB), and a message with both Content-Length and Transfer-Encoding are refused (400), so that
 * every framing decision rests on one reading that no proxy in front can read differently. A
 * response parser (the client side) is lenient. */
void cm__http_in_init(cm__http_in *in, enum http_parser_type type, size_t max_hdr, size_t max_body);
void cm__http_in_free(cm__http_in *in);
/* Runs http_parser over data. The parser pauses when a message completes: then *complete is
 * set, in->msg holds the message and the return value counts the bytes used, so the caller
 * keeps the rest for the next message. On a parse error (or a limit, see in->limit) the
 * return value is < 0. A message with a non-200 status gets a ":status" pseudo header when
 * status_header is set. len 0 signals EOF to the parser (a body delimited by the close). */
ptrdiff_t cm__http_in_execute(cm__http_in *in, const char *data, size_t len, int *complete,
                              int status_header);
/* The reason of the last failed execute: the strict reading's, else http_parser's. */
const char *cm__http_in_error(const cm__http_in *in);
/* Releases memory a big message left behind, keeping the buffers of ordinary sizes. */
void cm__http_in_trim(cm__http_in *in);

/* Header keys the writers never copy from a message (they write their own). */
enum {
    CM__HTTP_SKIP_HOST = 1,
    CM__HTTP_SKIP_CLEN = 2,
    CM__HTTP_SKIP_TE = 4,
    CM__HTTP_SKIP_CONN = 8,
    CM__HTTP_SKIP_UA = 16,
    CM__HTTP_SKIP_TRAILER = 32,
};
/* Appends "Key: Value\r\n" for every header of m except the skipped ones and keys that are not
 * HTTP tokens; CR and LF in values become spaces. A key that starts with Transfer-Encoding
 * ("Transfer-Encoding-Hint") is skipped with CM__HTTP_SKIP_TE: http_parser takes it for
 * Transfer-Encoding. 0 or CM_ENOMEM. */
int cm__http_put_headers(cm__http_buf *b, const cm_msg *m, unsigned skip);
/* Appends the decimal form of v. 0 or CM_ENOMEM. */
int cm__http_put_u64(cm__http_buf *b, uint64_t v);

/* TLS over a connection's stream (http_tls.c). */
typedef struct cm__tls_ctx cm__tls_ctx; /* a transport's OpenSSL contexts */
typedef struct cm__tls cm__tls;         /* one connection's TLS session */

/* Writes b->p[0..hlen) and then body: uv_try_write first, and what it could not take is
 * copied to the front of b and queued with uv_write(req, cb). With req NULL, a request is
 * allocated only then (its data is s->data; cb frees it). Returns 1 when everything was
 * written at once (cb will not run), 0 when a write was queued, or a libuv error or CM_ENOMEM
 * (nothing queued). *sent receives the bytes written at once. With tls (non-NULL, its handshake
 * done) the bytes are encrypted first and b holds the records. */
int cm__http_send(uv_stream_t *s, cm__tls *tls, uv_write_t *req, cm__http_buf *b, size_t hlen,
                  const uint8_t *body, size_t blen, uv_write_cb cb, size_t *sent);

/* The writes queued by one stream (http_stream.c): bytes handed to libuv and not written yet.
 * on_written runs after each queued write completes (status < 0: it failed or was canceled by
 * the close of the handle). */
typedef struct cm__http_wq {
    size_t queued;
    void (*on_written)(struct cm__http_wq *q, int status);
    int corked; /* writes are gathered in gather, written at the uncork */
    cm__http_buf gather;
    void *spare_w; /* a completed write's request, kept for the next one */
} cm__http_wq;
/* Writes hdr[0..hlen) and body on st (through tls when non-NULL), copying what cannot be written
 * at once into a write of its own; while corked, appends them to the gathered bytes. 0,
 * CM_ENOMEM or a libuv error. */
int cm__http_wq_write(cm__http_wq *q, uv_stream_t *st, cm__tls *tls, const char *hdr, size_t hlen,
                      const uint8_t *body, size_t blen);
/* Corks q (on non-zero), or uncorks it and writes what was gathered in one write (st may be NULL:
 * the gathered bytes are dropped). 0, CM_ENOMEM or a libuv error. */
int cm__http_wq_cork(cm__http_wq *q, uv_stream_t *st, cm__tls *tls, int on);
/* The bytes queued and gathered. */
size_t cm__http_wq_pending(const cm__http_wq *q);
void cm__http_wq_free(cm__http_wq *q);

/* A read buffer: bytes [pos, len) are received but not parsed yet. */
typedef struct cm__http_rbuf {
    char *p;
    size_t pos;
    size_t len;
    size_t cap;
    int grow;     /* the last read filled the buffer: offer a bigger one next time */
    int borrowed; /* p is a buffer of the loop's, lent for one read (cm__http_rbuf_lend) */
    char *spare;  /* a small buffer of rb's own kept during a borrow for what is left after */
    size_t spare_cap;
} cm__http_rbuf;

/* The uv_alloc_cb body: compacts or grows rb and offers its free tail. */
void cm__http_rbuf_alloc(cm__http_rbuf *rb, uv_buf_t *buf);
/* Accounts for nread bytes received into the offered tail (size offered). */
void cm__http_rbuf_filled(cm__http_rbuf *rb, size_t nread, size_t offered);
void cm__http_rbuf_free(cm__http_rbuf *rb);
/* The uv_alloc_cb body for a reader that holds no more memory than its unparsed bytes: rb
 * borrows shared[0..cap), a buffer of the loop's, for one read, after its unparsed bytes (a few
 * KiB at most) are moved there and its own buffer is kept as its spare; with more, it is
 * cm__http_rbuf_alloc(). The read callback must call cm__http_rbuf_settle() before it returns,
 * whatever the read's result. */
void cm__http_rbuf_lend(cm__http_rbuf *rb, char *shared, size_t cap, uv_buf_t *buf);
/* Ends a borrow: the bytes not parsed yet, if any, move to memory of rb's own (its spare
 * buffer when they fit: a connection that often has a few bytes left allocates once). 0 or
 * CM_ENOMEM (they are dropped). */
int cm__http_rbuf_settle(cm__http_rbuf *rb);
/* rb's own buffer was parsed to its end: it becomes the spare (a small one) or is freed. */
void cm__http_rbuf_drained(cm__http_rbuf *rb);

/* The contexts of a transport whose options ask for TLS (*out NULL when they do not). Reads the
 * certificate, key and CA files. 0, CM_EINVAL (logged: which file and why) or CM_ENOMEM. */
int cm__tls_ctx_new(const cm_transport_opts *o, cm__tls_ctx **out);
void cm__tls_ctx_free(cm__tls_ctx *x);
/* A certificate was given: listeners can serve TLS. */
int cm__tls_ctx_can_serve(const cm__tls_ctx *x);
/* The transport's buffer for received ciphertext (an alloc callback's answer; the read callback
 * must pass all of it to cm__tls_input before returning). */
void cm__tls_rbuf(cm__tls_ctx *x, uv_buf_t *buf);
/* A session for one connection. A client checks the certificate against server_name, else host
 * (a name or an IP literal). peer names the connection in log lines. 0, CM_EINVAL, CM_ENOMEM. */
int cm__tls_new(cm__tls_ctx *x, int server, const char *host, const char *server_name,
                const char *peer, cm__tls **out);
void cm__tls_free(cm__tls *s);
int cm__tls_done(const cm__tls *s); /* the handshake is complete */
int cm__tls_eof(const cm__tls *s);  /* the peer sent close_notify */
/* Client: sends the first handshake flight. 0 or < 0. */
int cm__tls_start(cm__tls *s, uv_stream_t *st);
/* Takes n received bytes: runs the handshake, appends the plaintext to rb (*plain counts it)
 * and writes what OpenSSL has to send on st. 0, or < 0: CM_ECERT, CM_ETLS (handshake failed;
 * logged), CM_EPROTO (a server's peer sent plain HTTP, or a bad record), CM_ENOMEM or a libuv
 * error. */
int cm__tls_input(cm__tls *s, uv_stream_t *st, const char *data, size_t n, cm__http_rbuf *rb,
                  size_t *plain);
/* Server: why the handshake failed ("tlsv1 alert unknown ca"), for a log line. */
const char *cm__tls_why(const cm__tls *s);
/* The stream ended before the handshake did: CM_ETLS, with the reason logged. */
int cm__tls_closed_in_handshake(cm__tls *s);
/* Encrypts p (after the handshake); the records wait in the session. 0 or CM_ECLOSED. */
int cm__tls_write(cm__tls *s, const void *p, size_t n);
/* Moves the records waiting to be sent into b (replacing its content; no copy). */
void cm__tls_take_output(cm__tls *s, cm__http_buf *b);
/* Writes the records waiting to be sent on st (queued in order after earlier writes). */
int cm__tls_flush(cm__tls *s, uv_stream_t *st);
/* Sends close_notify (when the handshake was done). */
void cm__tls_close_notify(cm__tls *s, uv_stream_t *st);

/* "1.2.3.4:80" or "[::1]:80". 0 or CM_EINVAL (does not fit). */
int cm__http_format_addr(const struct sockaddr *sa, char *buf, size_t len);
/* Splits "host:port", "[v6]:port" or ":port" into host (brackets removed, "" for none) and
 * port. *bracketed tells that the host was written in brackets. 0 or CM_EADDR. */
int cm__http_split_addr(const char *addr, char *host, size_t hostlen, int *port, int *bracketed);
/* Fills ss from an IP literal host and a port. 0, or CM_EADDR when host is not an IP literal. */
int cm__http_ip_addr(const char *host, int port, struct sockaddr_storage *ss);

/* Releases a buffer that grew past max, so that one big message does not pin its memory. */
void cm__http_buf_trim(cm__http_buf *b, size_t max);

/* Connection counts per client address (http_limits.c). */
typedef struct cm__ipcount cm__ipcount;
/* A listener's table: key NULL for its own, or the bound address of a reuse_port listener, whose
 * table the other listeners on that address share (the loops of one server). NULL on out of
 * memory. Any thread. */
cm__ipcount *cm__ipcount_open(const char *key);
/* Drops the listener's reference (the last one frees the table). */
void cm__ipcount_close(cm__ipcount *t);
/* Counts one more connection of ip. 0, CM_ESTATE (ip has max already; max 0: no cap) or
 * CM_ENOMEM. */
int cm__ipcount_add(cm__ipcount *t, const char *ip, unsigned max);
void cm__ipcount_del(cm__ipcount *t, const char *ip);

/* A stream's handle: server (http_server.c) or client (http_stream.c). */
typedef struct cm__http_tstream {
    struct cm_tstream base;
    int server;
} cm__http_tstream;

/* Server streams (http_server.c). */
int cm__http_tconn_stream(cm_tconn *c, const cm_tstream_cbs *cbs, void *user, cm_tstream **out);
int cm__http_server_stream_send(cm_tstream *s, const cm_msg *m);
size_t cm__http_server_stream_queued(const cm_tstream *s);
void cm__http_server_stream_pause(cm_tstream *s, int on);
int cm__http_server_stream_cork(cm_tstream *s, int on);
void cm__http_server_stream_close(cm_tstream *s);

/* The client side's state: the transport's private part. */
typedef struct cm__http_pool cm__http_pool;   /* idle connections of one address */
typedef struct cm__http_cconn cm__http_cconn; /* one client connection */
#define CM__HTTP_POOL_BUCKETS 64
typedef struct cm__http_client {
    cm__http_pool *buckets[CM__HTTP_POOL_BUCKETS];
    cm__http_cconn *conns; /* every connection not freed yet */
    size_t nconns;
    uint64_t dialed;
    uint64_t reused;
    uint64_t idle;
    uv_idle_t close_tick; /* closed by cm_transport_close so that it completes on a later turn */
    int closing;
    int tick_open;
    cm__tls_ctx *tls; /* NULL: plain HTTP */
    void *streams;    /* client streams not freed yet (http_stream.c) */
    size_t nstreams;
} cm__http_client;

/* The transport's TLS contexts; NULL for plain HTTP. */
cm__tls_ctx *cm__http_tls_ctx(cm_transport *t);

/* ops slots implemented by http_server.c and http_client.c. */
int cm__http_listen(cm_transport *t, const char *addr, cm_request_cb cb, void *user,
                    cm_listener **out);
int cm__http_listener_addr(const cm_listener *l, char *buf, size_t len);
void cm__http_listener_stop_accepting(cm_listener *l);
void cm__http_listener_close(cm_listener *l, void (*done)(void *arg), void *arg);
void cm__http_listener_stats(const cm_listener *l, cm_listener_stats *st);
int cm__http_reply(cm_tconn *c, const cm_msg *rsp, int close_after);
int cm__http_reply_early(cm_tconn *c, const cm_msg *rsp);
const char *cm__http_peer(const cm_tconn *c);
const char *cm__http_local(const cm_tconn *c);

int cm__http_client_init(cm_transport *t);
void cm__http_client_close(cm_transport *t);
int cm__http_roundtrip(cm_transport *t, const char *addr, const cm_msg *req, uint64_t timeout_ms,
                       cm_roundtrip_cb cb, void *user, cm_roundtrip **handle);
void cm__http_cancel(cm_roundtrip *rt);
void cm__http_pool_stats(const cm_transport *t, cm_pool_stats *st);
/* Completes the transport's close once nothing is left open. */
void cm__http_client_maybe_closed(cm_transport *t);

/* Client streams (http_stream.c). A stream's handle dispatches to the server or client functions
 * by which side made it. */
int cm__http_dial_stream(cm_transport *t, const char *addr, uint64_t dial_timeout_ms,
                         const cm_tstream_cbs *cbs, void *user, cm_tstream **out);
int cm__http_stream_send(cm_tstream *s, const cm_msg *m);
size_t cm__http_stream_queued(const cm_tstream *s);
void cm__http_stream_pause(cm_tstream *s, int on);
int cm__http_stream_cork(cm_tstream *s, int on);
void cm__http_stream_close(cm_tstream *s);
/* Closes every client stream (cm_transport_close): their on_end runs with CM_ECANCELED. */
void cm__http_streams_close(cm_transport *t);

#define CM__HTTP_CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
