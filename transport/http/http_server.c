/* cmicro: the server side of go-micro's HTTP/1.1 transport. Each accepted connection reads
 * requests one at a time: http_parser pauses at the end of a message, the request goes to the
 * callback, and bytes that follow it stay buffered until cm_tconn_reply(). Idle connections are
 * never closed by the server (go-micro clients pool them). */
#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* While a request is handled, reading goes on (to see the peer leave) until this many bytes
 * wait unparsed. */
#define PENDING_MAX (64 * 1024)
/* After a final reply the connection is shut down for writing and drained for at most this
 * long (and this many bytes) before it is closed, so that the peer reads the reply instead of
 * a reset. */
#define LINGER_MS 2000
#define LINGER_BYTES (16 * 1024 * 1024)
/* Buffers bigger than this are freed after their message. */
#define KEEP_WBUF_MAX (1024 * 1024)

typedef struct listener listener;
typedef struct sconn sconn;

enum {
    S_READ,   /* parsing; idle between requests */
    S_HANDLE, /* a request is with the callback */
    S_WRITE,  /* the reply is being written */
    S_LINGER, /* a final reply was sent; draining until the peer closes */
    S_CLOSED, /* the socket is closing or closed */
};

struct sconn {
    struct cm_tconn base;
    listener *l; /* NULL once the socket is closed */
    uv_tcp_t tcp;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    uv_timer_t timer; /* the linger deadline; initialised only when lingering */
    int state;
    int in_request;   /* a request was delivered and not replied yet */
    int parsing;      /* inside process() */
    int read_stopped; /* reading paused: too many unparsed bytes */
    int close_after;  /* close once the reply is written */
    int timer_init;
    int queued; /* in the listener's resume queue */
    unsigned nhandles;
    size_t drained;
    cm__http_rbuf rb;
    cm__http_in in;
    cm__http_buf wb;
    sconn *prev, *next;   /* the listener's connections */
    sconn *qprev, *qnext; /* the listener's resume queue */
    char peer[64];
    char local[64];
};

struct listener {
    struct cm_listener base;
    cm_transport *t;
    uv_tcp_t server;
    uv_idle_t idle; /* parses bytes left behind by pipelining; see on_idle() */
    uv_tcp_t spare; /* takes and closes a connection when memory for it runs out */
    int spare_busy;
    cm_request_cb cb;
    void *user;
    sconn *conns;
    sconn *qhead, *qtail;
    cm_listener_stats st;
    unsigned nhandles;
    int accepting;
    int closing;
    void (*done)(void *arg);
    void *done_arg;
    char addr[64];
};

static void process(sconn *c);

/* ---- lists ---- */

static void
conn_link(listener *l, sconn *c)
{
    c->prev = NULL;
    c->next = l->conns;
    if (l->conns) {
        l->conns->prev = c;
    }
    l->conns = c;
}

static void
conn_unlink(listener *l, sconn *c)
{
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        l->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
}

static void on_idle(uv_idle_t *h);

static void
enqueue(sconn *c)
{
    listener *l = c->l;
    if (c->queued) {
        return;
    }
    c->queued = 1;
    c->qnext = NULL;
    c->qprev = l->qtail;
    if (l->qtail) {
        l->qtail->qnext = c;
    } else {
        l->qhead = c;
        uv_idle_start(&l->idle, on_idle);
    }
    l->qtail = c;
}

static void
dequeue(sconn *c)
{
    listener *l = c->l;
    if (!c->queued) {
        return;
    }
    c->queued = 0;
    if (c->qprev) {
        c->qprev->qnext = c->qnext;
    } else {
        l->qhead = c->qnext;
    }
    if (c->qnext) {
        c->qnext->qprev = c->qprev;
    } else {
        l->qtail = c->qprev;
    }
    c->qprev = c->qnext = NULL;
    if (!l->qhead && !l->closing) {
        uv_idle_stop(&l->idle);
    }
}

/* Parses what connections left buffered when their reply was sent, one turn later, so that a
 * request is never delivered from inside cm_tconn_reply(). */
static void
on_idle(uv_idle_t *h)
{
    listener *l = h->data;
    size_t budget = 0;
    for (sconn *c = l->qhead; c; c = c->qnext) {
        budget++;
    }
    while (budget-- && l->qhead) {
        sconn *c = l->qhead;
        dequeue(c);
        process(c);
    }
}

/* ---- closing ---- */

static void
listener_maybe_done(listener *l)
{
    if (!l->closing || l->nhandles > 0 || l->conns) {
        return;
    }
    if (l->done) {
        l->done(l->done_arg);
    }
    free(l);
}

static void
conn_free(sconn *c)
{
    cm__http_rbuf_free(&c->rb);
    cm__http_in_free(&c->in);
    cm__http_buf_free(&c->wb);
    free(c);
}

static void
on_conn_handle_closed(uv_handle_t *h)
{
    sconn *c = h->data;
    if (--c->nhandles > 0) {
        return;
    }
    listener *l = c->l;
    conn_unlink(l, c);
    l->st.active--;
    c->l = NULL;
    if (!c->in_request) {
        conn_free(c);
    }
    listener_maybe_done(l);
}

/* Closes the socket now. A request with the callback keeps the struct alive until its reply. */
static void
conn_close(sconn *c)
{
    if (c->state == S_CLOSED) {
        return;
    }
    c->state = S_CLOSED;
    dequeue(c);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    if (c->timer_init) {
        uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    }
}

static void
on_linger_timeout(uv_timer_t *h)
{
    conn_close(h->data);
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    sconn *c = req->data;
    if (status < 0) {
        conn_close(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Sends FIN after the queued writes and drains the peer until it closes (or a deadline), so that
 * the peer reads a final reply rather than a reset caused by unread bytes. */
static void
start_linger(sconn *c)
{
    c->state = S_LINGER;
    c->rb.pos = c->rb.len = 0;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    if (!c->timer_init) {
        uv_timer_init(c->tcp.loop, &c->timer);
        c->timer.data = c;
        c->timer_init = 1;
        c->nhandles++;
    }
    uv_timer_start(&c->timer, on_linger_timeout, LINGER_MS, 0);
    if (c->read_stopped) {
        c->read_stopped = 0;
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
        }
    }
}

/* ---- writing ---- */

static void
on_write(uv_write_t *req, int status)
{
    sconn *c = req->data;
    if (c->state == S_CLOSED) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->state != S_WRITE) {
        return; /* a lingering connection's final reply */
    }
    cm__http_buf_trim(&c->wb, KEEP_WBUF_MAX);
    if (c->close_after) {
        start_linger(c);
        return;
    }
    c->state = S_READ;
    process(c);
}

/* Writes the header block in c->wb and body; 0 (written or queued) or a libuv error / CM_ENOMEM
 * (the connection is closed). With final set the connection lingers and closes afterwards. */
static int
send_reply(sconn *c, const uint8_t *body, size_t blen, int final)
{
    size_t sent;
    c->wreq.data = c;
    int r = cm__http_send((uv_stream_t *)&c->tcp, &c->wreq, &c->wb, c->wb.len, body, blen, on_write,
                          &sent);
    if (r < 0) {
        conn_close(c);
        return r;
    }
    if (final) {
        start_linger(c);
    } else {
        c->state = r == 1 ? S_READ : S_WRITE;
    }
    return 0;
}

static int
put_str(cm__http_buf *b, const char *s)
{
    return cm__http_buf_append(b, s, strlen(s));
}

static void deliver(sconn *c, int status);

/* A request the transport refuses by itself. Malformed HTTP gets a plain 400 here; a request over
 * a limit goes to the callback as a code (CM_EHDRTOOBIG, CM_ETOOBIG), so that the layer above
 * answers it in its own protocol. Either way the connection closes after that reply. */
static void
reject(sconn *c, int err)
{
    listener *l = c->l;
    cm__http_in *in = &c->in;
    l->st.rejected++;
    c->wb.len = 0;
    if (err == CM_ENOMEM) {
        conn_close(c);
        return;
    }
    if (in->limit) {
        c->in.keep_alive = 0;
        deliver(c, in->limit == 431 ? CM_EHDRTOOBIG : CM_ETOOBIG);
        return;
    }
    const char *desc = cm__http_in_error(in);
    if (put_str(&c->wb, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                        "Connection: close\r\nContent-Length: ") < 0 ||
        cm__http_put_u64(&c->wb, strlen(desc)) < 0 || put_str(&c->wb, "\r\n\r\n") < 0) {
        conn_close(c);
        return;
    }
    send_reply(c, (const uint8_t *)desc, strlen(desc), 1);
}

int
cm__http_reply(cm_tconn *base, const cm_msg *rsp, int close_after)
{
    sconn *c = (sconn *)base;
    if (!c->in_request) {
        return CM_ESTATE;
    }
    c->in_request = 0;
    if (c->state == S_CLOSED) {
        if (!c->l) {
            conn_free(c);
        }
        return CM_ECLOSED;
    }
    static const cm_msg empty = {NULL, 0, NULL, 0};
    if (!rsp) {
        rsp = &empty;
    }
    c->close_after = c->close_after || close_after;
    c->wb.len = 0;
    if (put_str(&c->wb, "HTTP/1.1 200 OK\r\nContent-Length: ") < 0 ||
        cm__http_put_u64(&c->wb, rsp->body_len) < 0 || put_str(&c->wb, "\r\n") < 0 ||
        cm__http_put_headers(&c->wb, rsp,
                             CM__HTTP_SKIP_HOST | CM__HTTP_SKIP_CLEN | CM__HTTP_SKIP_TE |
                                 CM__HTTP_SKIP_CONN) < 0 ||
        put_str(&c->wb, "\r\n") < 0) {
        conn_close(c);
        return CM_ENOMEM;
    }
    /* rsp may point into the request (an echo): the request's buffers go only now. */
    int r = send_reply(c, rsp->body, rsp->body_len, 0);
    cm__http_in_trim(&c->in);
    if (r < 0) {
        return CM_ECLOSED;
    }
    if (c->state == S_READ) {
        if (c->close_after) {
            start_linger(c);
        } else if (!c->parsing) {
            if (c->rb.pos < c->rb.len) {
                enqueue(c);
            } else if (c->read_stopped) {
                process(c);
            }
        }
    }
    return 0;
}

/* ---- reading ---- */

static void
deliver(sconn *c, int status)
{
    listener *l = c->l;
    c->state = S_HANDLE;
    c->in_request = 1;
    c->close_after = !c->in.keep_alive;
    if (status == 0) {
        l->st.requests++;
    }
    l->cb(&c->base, status, status == 0 ? &c->in.msg : NULL, l->user);
}

/* Parses buffered bytes while the connection is between requests. */
static void
process(sconn *c)
{
    if (c->parsing) {
        return;
    }
    c->parsing = 1;
    while (c->state == S_READ && c->rb.pos < c->rb.len) {
        int complete;
        ptrdiff_t n =
            cm__http_in_execute(&c->in, c->rb.p + c->rb.pos, c->rb.len - c->rb.pos, &complete, 0);
        if (n < 0) {
            reject(c, (int)n);
            break;
        }
        c->rb.pos += (size_t)n;
        if (complete) {
            deliver(c, 0);
        }
    }
    c->parsing = 0;
    if (c->state == S_READ && c->read_stopped) {
        c->read_stopped = 0;
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
        }
    }
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    sconn *c = h->data;
    cm__http_rbuf_alloc(&c->rb, buf);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sconn *c = s->data;
    if (nread < 0) {
        /* EOF or an error: whatever was half-received is dropped; a request with the callback
         * learns it from cm_tconn_reply(). */
        conn_close(c);
        return;
    }
    if (nread == 0) {
        return;
    }
    cm__http_rbuf_filled(&c->rb, (size_t)nread, buf->len);
    switch (c->state) {
    case S_READ:
        process(c);
        break;
    case S_HANDLE:
    case S_WRITE:
        if (c->rb.len - c->rb.pos > PENDING_MAX) {
            uv_read_stop(s);
            c->read_stopped = 1;
        }
        break;
    case S_LINGER:
        c->drained += (size_t)nread;
        c->rb.pos = c->rb.len = 0;
        if (c->drained > LINGER_BYTES) {
            conn_close(c);
        }
        break;
    default:
        break;
    }
}

static void
on_spare_closed(uv_handle_t *h)
{
    listener *l = h->data;
    l->spare_busy = 0;
    l->nhandles--;
    listener_maybe_done(l);
}

static void
on_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    if (status < 0 || l->closing) {
        return;
    }
    sconn *c = calloc(1, sizeof(*c));
    if (!c) {
        /* Out of memory: the peer is refused (libuv stops accepting until one is taken). */
        if (!l->spare_busy && uv_tcp_init(server->loop, &l->spare) == 0) {
            l->spare_busy = 1;
            l->spare.data = l;
            l->nhandles++;
            uv_accept(server, (uv_stream_t *)&l->spare);
            uv_close((uv_handle_t *)&l->spare, on_spare_closed);
        }
        return;
    }
    c->base.ops = &cm__transport_http;
    c->l = l;
    c->tcp.data = c;
    uv_tcp_init(server->loop, &c->tcp);
    c->nhandles = 1;
    conn_link(l, c);
    l->st.active++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    l->st.accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0 ||
        cm__http_format_addr((struct sockaddr *)&ss, c->peer, sizeof(c->peer)) < 0) {
        c->peer[0] = '\0';
    }
    len = sizeof(ss);
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) < 0 ||
        cm__http_format_addr((struct sockaddr *)&ss, c->local, sizeof(c->local)) < 0) {
        c->local[0] = '\0';
    }
    cm__http_in_init(&c->in, HTTP_REQUEST, l->t->opts.max_header_bytes, l->t->opts.max_body_bytes);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
    }
}

/* ---- the listener ---- */

static void
on_listener_handle_closed(uv_handle_t *h)
{
    listener *l = h->data;
    l->nhandles--;
    listener_maybe_done(l);
}

static void
on_bind_failed_closed(uv_handle_t *h)
{
    free(h->data);
}

int
cm__http_listen(cm_transport *t, const char *addr, cm_request_cb cb, void *user, cm_listener **out)
{
    char host[128];
    int port, bracketed;
    struct sockaddr_storage ss;
    if (cm__http_split_addr(addr, host, sizeof(host), &port, &bracketed) < 0) {
        return CM_EADDR;
    }
    if (!host[0]) {
        strcpy(host, "0.0.0.0");
    } else if (!bracketed && strcmp(host, "localhost") == 0) {
        strcpy(host, "127.0.0.1");
    }
    if (cm__http_ip_addr(host, port, &ss) < 0 || (bracketed != (ss.ss_family == AF_INET6))) {
        return CM_EADDR;
    }
    listener *l = calloc(1, sizeof(*l));
    if (!l) {
        return CM_ENOMEM;
    }
    l->base.ops = &cm__transport_http;
    l->t = t;
    l->cb = cb;
    l->user = user;
    l->server.data = l;
    int r = uv_tcp_init(t->loop, &l->server);
    if (r < 0) {
        free(l);
        return r;
    }
    r = uv_tcp_bind(&l->server, (struct sockaddr *)&ss, 0);
    if (r == 0) {
        r = uv_listen((uv_stream_t *)&l->server, SOMAXCONN, on_connection);
    }
    int len = sizeof(ss);
    if (r == 0) {
        r = uv_tcp_getsockname(&l->server, (struct sockaddr *)&ss, &len);
    }
    if (r == 0) {
        r = cm__http_format_addr((struct sockaddr *)&ss, l->addr, sizeof(l->addr));
    }
    if (r < 0) {
        uv_close((uv_handle_t *)&l->server, on_bind_failed_closed);
        return r;
    }
    uv_idle_init(t->loop, &l->idle);
    l->idle.data = l;
    l->nhandles = 2;
    l->accepting = 1;
    *out = &l->base;
    return 0;
}

int
cm__http_listener_addr(const cm_listener *base, char *buf, size_t len)
{
    const listener *l = (const listener *)base;
    size_t n = strlen(l->addr);
    if (n >= len) {
        return CM_EINVAL;
    }
    memcpy(buf, l->addr, n + 1);
    return 0;
}

void
cm__http_listener_stop_accepting(cm_listener *base)
{
    listener *l = (listener *)base;
    if (l->accepting) {
        l->accepting = 0;
        uv_close((uv_handle_t *)&l->server, on_listener_handle_closed);
    }
}

void
cm__http_listener_close(cm_listener *base, void (*done)(void *arg), void *arg)
{
    listener *l = (listener *)base;
    if (l->closing) {
        return;
    }
    cm__http_listener_stop_accepting(base);
    l->closing = 1;
    l->done = done;
    l->done_arg = arg;
    uv_close((uv_handle_t *)&l->idle, on_listener_handle_closed);
    for (sconn *c = l->conns; c; c = c->next) {
        conn_close(c);
    }
}

void
cm__http_listener_stats(const cm_listener *base, cm_listener_stats *st)
{
    *st = ((const listener *)base)->st;
}

const char *
cm__http_peer(const cm_tconn *base)
{
    return ((const sconn *)base)->peer;
}

const char *
cm__http_local(const cm_tconn *base)
{
    return ((const sconn *)base)->local;
}
