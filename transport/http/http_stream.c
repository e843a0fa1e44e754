/* cmicro: streams over go-micro's HTTP/1.1 transport. A client stream dials a connection of its
 * own (go-micro's transport.WithStream: never pooled) and from then on writes requests and reads
 * responses independently: each message is a whole HTTP message, requests are POSTs to "/" and
 * responses 200s, as go-micro's stream client and server write them. The server side of a
 * stream is a connection of the listener turned into a stream (http_server.c); the write queue
 * below serves both sides.
 *
 * TLS: a client stream of a TLS transport makes its handshake within the dial deadline, and its
 * messages wait until it is done; a server stream on a TLS listener works as any. */
#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USER_AGENT "cmicro/0.1"
/* A paused reader still reads until this many bytes wait unparsed. */
#define PENDING_MAX (64 * 1024)
#define KEEP_WBUF_MAX (1024 * 1024)
/* A stream keeps its gathering buffer between batches up to this size. */
#define KEEP_GATHER_MAX (128 * 1024)

/* ---- the write queue ---- */

typedef struct qwrite {
    uv_write_t req;
    cm__http_wq *q;
    cm__http_buf b;
    size_t n;
} qwrite;

/* A write request: the one kept from the last completed write, or a new one (NULL: no memory). */
static qwrite *
qwrite_get(cm__http_wq *q)
{
    qwrite *w = q->spare_w;
    if (w != NULL) {
        q->spare_w = NULL;
        memset(w, 0, sizeof(*w));
        return w;
    }
    return calloc(1, sizeof(*w));
}

/* A written request, its buffer kept for the next gathering when there is none, and itself for
 * the next write: a stream that writes batch after batch allocates nothing. */
static void
on_qwrite(uv_write_t *req, int status)
{
    qwrite *w = CM__HTTP_CONTAINER(req, qwrite, req);
    cm__http_wq *q = w->q;
    q->queued -= w->n;
    if (q->gather.p == NULL && w->b.cap <= KEEP_GATHER_MAX) {
        q->gather = w->b;
        q->gather.len = 0;
    } else {
        cm__http_buf_free(&w->b);
    }
    if (q->spare_w == NULL) {
        q->spare_w = w;
    } else {
        free(w);
    }
    q->on_written(q, status);
}

/* Plain text: what the socket takes now goes without a copy; only the rest is queued, in a write
 * of its own. */
static int
wq_write_plain(cm__http_wq *q, uv_stream_t *st, const char *hdr, size_t hlen, const uint8_t *body,
               size_t blen)
{
    uv_buf_t bufs[2] = {{(char *)(uintptr_t)hdr, hlen}, {(char *)(uintptr_t)body, blen}};
    int n = uv_try_write(st, bufs, blen > 0 ? 2 : 1); /* UV_EAGAIN while writes are queued */
    if (n < 0 && n != UV_EAGAIN) {
        return n;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == hlen + blen) {
        return 0;
    }
    qwrite *w = qwrite_get(q);
    size_t hdone = done < hlen ? done : hlen;
    size_t bdone = done - hdone;
    if (w == NULL || cm__http_buf_append(&w->b, hdr + hdone, hlen - hdone) < 0 ||
        (blen > bdone && cm__http_buf_append(&w->b, body + bdone, blen - bdone) < 0)) {
        if (w != NULL) {
            cm__http_buf_free(&w->b);
        }
        free(w);
        return CM_ENOMEM;
    }
    w->q = q;
    uv_buf_t rest = {w->b.p, w->b.len};
    int r = uv_write(&w->req, st, &rest, 1, on_qwrite);
    if (r < 0) {
        cm__http_buf_free(&w->b);
        free(w);
        return r;
    }
    w->n = w->b.len;
    q->queued += w->n;
    return 0;
}

/* Plain text: the gathered bytes, written at once as far as the socket takes them; the rest is
 * queued in a write that takes over the gathered buffer (no copy). */
static int
wq_write_gathered(cm__http_wq *q, uv_stream_t *st)
{
    uv_buf_t buf = {q->gather.p, q->gather.len};
    int n = uv_try_write(st, &buf, 1);
    if (n < 0 && n != UV_EAGAIN) {
        return n;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == q->gather.len) {
        return 0;
    }
    qwrite *w = qwrite_get(q);
    if (w == NULL) {
        return CM_ENOMEM;
    }
    w->q = q;
    w->b = q->gather;
    memset(&q->gather, 0, sizeof(q->gather));
    uv_buf_t rest = {w->b.p + done, w->b.len - done};
    int r = uv_write(&w->req, st, &rest, 1, on_qwrite);
    if (r < 0) {
        cm__http_buf_free(&w->b);
        free(w);
        return r;
    }
    w->n = rest.len;
    q->queued += w->n;
    return 0;
}

int
cm__http_wq_cork(cm__http_wq *q, uv_stream_t *st, cm__tls *tls, int on)
{
    if (on) {
        q->corked = 1;
        return 0;
    }
    q->corked = 0;
    int r = 0;
    if (q->gather.len > 0 && st != NULL) {
        r = tls != NULL ? cm__http_wq_write(q, st, tls, q->gather.p, q->gather.len, NULL, 0)
                        : wq_write_gathered(q, st);
    }
    q->gather.len = 0;
    cm__http_buf_trim(&q->gather, KEEP_GATHER_MAX);
    return r;
}

size_t
cm__http_wq_pending(const cm__http_wq *q)
{
    return q->queued + q->gather.len;
}

void
cm__http_wq_free(cm__http_wq *q)
{
    cm__http_buf_free(&q->gather);
    free(q->spare_w);
    q->spare_w = NULL;
}

int
cm__http_wq_write(cm__http_wq *q, uv_stream_t *st, cm__tls *tls, const char *hdr, size_t hlen,
                  const uint8_t *body, size_t blen)
{
    if (q->corked) {
        size_t had = q->gather.len;
        if (cm__http_buf_append(&q->gather, hdr, hlen) < 0 ||
            (blen > 0 && cm__http_buf_append(&q->gather, body, blen) < 0)) {
            q->gather.len = had; /* never half a message */
            return CM_ENOMEM;
        }
        return 0;
    }
    if (tls == NULL) {
        return wq_write_plain(q, st, hdr, hlen, body, blen);
    }
    qwrite *w = qwrite_get(q);
    if (w == NULL || cm__http_buf_append(&w->b, hdr, hlen) < 0) {
        free(w);
        return CM_ENOMEM;
    }
    w->q = q;
    size_t sent;
    int r = cm__http_send(st, tls, &w->req, &w->b, hlen, body, blen, on_qwrite, &sent);
    if (r != 0) {
        cm__http_buf_free(&w->b);
        free(w);
        return r < 0 ? r : 0;
    }
    w->n = w->b.len;
    q->queued += w->n;
    return 0;
}

/* ---- client streams ---- */

typedef struct cstream {
    cm__http_tstream ts;
    cm_transport *t;
    uv_tcp_t tcp;
    uv_timer_t timer; /* the dial's deadline */
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    const cm_tstream_cbs *cbs;
    void *user;
    unsigned nhandles;
    int resolving;
    int connected;
    int closed;   /* the socket is closing */
    int released; /* cm_tstream_close was called: no more callbacks, free when closed */
    int told;     /* on_end ran */
    int paused;
    int read_stopped;
    int parsing;
    int peer_eof; /* the server closed: what is buffered is parsed, then the end */
    cm__tls *tls; /* NULL: plain HTTP */
    cm__http_wq wq;
    cm__http_buf pending; /* messages sent before the connection was up */
    cm__http_buf wb;
    cm__http_rbuf rb;
    cm__http_in in;
    struct cstream *prev, *next;
    char addr[256];
    char host[256];
    int port;
} cstream;

static cm__http_client *
client_of(cm_transport *t)
{
    return cm_transport_priv(t);
}

static void
stream_unlink(cstream *s)
{
    cm__http_client *cl = client_of(s->t);
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        cl->streams = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    cl->nstreams--;
}

static void
maybe_free(cstream *s)
{
    if (!s->closed || s->nhandles > 0 || s->resolving || !s->released) {
        return;
    }
    cm_transport *t = s->t;
    stream_unlink(s);
    cm__http_buf_free(&s->pending);
    cm__http_wq_free(&s->wq);
    cm__http_buf_free(&s->wb);
    cm__http_rbuf_free(&s->rb);
    cm__http_in_free(&s->in);
    cm__tls_free(s->tls);
    free(s);
    cm__http_client_maybe_closed(t);
}

static void
on_handle_closed(uv_handle_t *h)
{
    cstream *s = h->data;
    s->nhandles--;
    maybe_free(s);
}

/* Closes the socket; tells the stream (status) unless it was released or already told. */
static void
stream_end(cstream *s, int status)
{
    if (!s->closed) {
        s->closed = 1;
        if (s->resolving) {
            uv_cancel((uv_req_t *)&s->gai);
        }
        uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
        uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    }
    if (!s->released && !s->told) {
        s->told = 1;
        s->cbs->on_end(s->user, status);
    }
    maybe_free(s);
}

static void
on_written(cm__http_wq *q, int status)
{
    cstream *s = CM__HTTP_CONTAINER(q, cstream, wq);
    if (s->closed) {
        return;
    }
    if (status < 0) {
        stream_end(s, status);
        return;
    }
    if (!s->released && s->cbs->on_written != NULL) {
        s->cbs->on_written(s->user);
    }
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    cstream *s = h->data;
    if (s->tls != NULL) {
        cm__tls_rbuf(client_of(s->t)->tls, buf); /* records: decrypted into s->rb */
        return;
    }
    cm__http_rbuf_alloc(&s->rb, buf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Parses the buffered responses while the reader wants them. */
static void
parse(cstream *s)
{
    if (s->parsing) {
        return;
    }
    s->parsing = 1;
    while (!s->closed && !s->paused && !s->released && s->rb.pos < s->rb.len) {
        int complete;
        ptrdiff_t n =
            cm__http_in_execute(&s->in, s->rb.p + s->rb.pos, s->rb.len - s->rb.pos, &complete, 1);
        if (n < 0) {
            cm_log(CM_LOG_DEBUG, "transport.http", "%s: stream: %s", s->addr,
                   cm__http_in_error(&s->in));
            stream_end(s, CM_EPROTO);
            break;
        }
        s->rb.pos += (size_t)n;
        if (complete) {
            s->cbs->on_msg(s->user, &s->in.msg);
            cm__http_in_trim(&s->in);
        }
    }
    s->parsing = 0;
    if (s->closed || s->released) {
        return;
    }
    if (s->peer_eof) {
        if (s->rb.pos >= s->rb.len) {
            stream_end(s, CM_ECLOSED);
        }
        return;
    }
    int want_stop = s->paused && s->rb.len - s->rb.pos > PENDING_MAX;
    if (want_stop && !s->read_stopped) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->read_stopped = 1;
    } else if (!want_stop && s->read_stopped) {
        s->read_stopped = 0;
        if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) < 0) {
            stream_end(s, CM_ECLOSED);
        }
    }
}

static void ready(cstream *s);

/* The server is done sending: the responses still buffered are read first. */
static void
peer_done(cstream *s)
{
    s->peer_eof = 1;
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->read_stopped = 1;
    parse(s);
}

/* n bytes of TLS records: the handshake, then responses. */
static void
on_tls_data(cstream *s, const char *data, size_t n)
{
    int handshaking = !cm__tls_done(s->tls);
    size_t plain;
    int r = cm__tls_input(s->tls, (uv_stream_t *)&s->tcp, data, n, &s->rb, &plain);
    if (r < 0) {
        cm_log(CM_LOG_DEBUG, "transport.http", "%s: stream: TLS: %s", s->addr, cm__tls_why(s->tls));
        stream_end(s, r);
        return;
    }
    if (handshaking && cm__tls_done(s->tls)) {
        ready(s);
    }
    if (s->closed) {
        return;
    }
    if (cm__tls_eof(s->tls)) {
        peer_done(s);
    } else if (plain > 0) {
        parse(s);
    }
}

static void
on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    cstream *s = st->data;
    if (nread < 0 && s->tls != NULL && !cm__tls_done(s->tls)) {
        stream_end(s, cm__tls_closed_in_handshake(s->tls));
        return;
    }
    if (nread == UV_EOF) {
        peer_done(s);
        return;
    }
    if (nread < 0) {
        stream_end(s, (int)nread);
        return;
    }
    if (nread > 0 && s->tls != NULL) {
        on_tls_data(s, buf->base, (size_t)nread);
    } else if (nread > 0) {
        cm__http_rbuf_filled(&s->rb, (size_t)nread, buf->len);
        parse(s);
    }
}

/* The connection is up (and its handshake done): what was sent meanwhile goes out. */
static void
ready(cstream *s)
{
    s->connected = 1;
    uv_timer_stop(&s->timer);
    int r = 0, flushed = 0;
    if (s->pending.len > 0) {
        r = cm__http_wq_write(&s->wq, (uv_stream_t *)&s->tcp, s->tls, s->pending.p, s->pending.len,
                              NULL, 0);
        s->pending.len = 0;
        cm__http_buf_trim(&s->pending, 0);
        flushed = 1;
    }
    if (r < 0) {
        stream_end(s, r);
    } else if (flushed && !s->released && s->cbs->on_written != NULL) {
        /* The queued count changed (what was pending may have been written at once, and then
         * no write completion would say so). */
        s->cbs->on_written(s->user);
    }
}

/* Starts the handshake; the dial's deadline still runs. 0 or < 0. */
static int
start_tls(cstream *s)
{
    const cm_transport_opts *o = &s->t->opts;
    int r = cm__tls_new(client_of(s->t)->tls, 0, s->host, o->tls_server_name, s->addr, &s->tls);
    return r < 0 ? r : cm__tls_start(s->tls, (uv_stream_t *)&s->tcp);
}

static void
on_connect(uv_connect_t *req, int status)
{
    cstream *s = req->data;
    if (s->closed) {
        return;
    }
    if (status < 0) {
        stream_end(s, status);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    int r = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (r == 0 && client_of(s->t)->tls != NULL) {
        r = start_tls(s);
    }
    if (r < 0) {
        stream_end(s, r);
    } else if (s->tls == NULL) {
        ready(s);
    }
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    cstream *s = req->data;
    s->resolving = 0;
    if (s->closed || status < 0) {
        if (res) {
            uv_freeaddrinfo(res);
        }
        if (!s->closed) {
            stream_end(s, status);
        }
        maybe_free(s);
        return;
    }
    struct addrinfo *ai = res;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            ai = a;
            break;
        }
    }
    int r = ai ? uv_tcp_connect(&s->creq, &s->tcp, ai->ai_addr, on_connect) : UV_EAI_NONAME;
    uv_freeaddrinfo(res);
    if (r < 0) {
        stream_end(s, r);
    }
}

static void
on_dial_timeout(uv_timer_t *h)
{
    cstream *s = h->data;
    if (!s->connected && !s->closed) {
        stream_end(s, CM_ETIMEDOUT);
    }
}

static void
on_resume(uv_timer_t *h)
{
    parse(h->data);
}

static int
dial(cstream *s)
{
    struct sockaddr_storage ss;
    if (cm__http_ip_addr(s->host, s->port, &ss) == 0) {
        return uv_tcp_connect(&s->creq, &s->tcp, (const struct sockaddr *)&ss, on_connect);
    }
    char port[8];
    snprintf(port, sizeof(port), "%d", s->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int r = uv_getaddrinfo(s->t->loop, &s->gai, on_resolved, s->host, port, &hints);
    if (r == 0) {
        s->resolving = 1;
    }
    return r;
}

static void
stream_link(cstream *s)
{
    cm__http_client *cl = client_of(s->t);
    s->next = cl->streams;
    if (s->next) {
        s->next->prev = s;
    }
    cl->streams = s;
    cl->nstreams++;
}

int
cm__http_dial_stream(cm_transport *t, const char *addr, uint64_t dial_timeout_ms,
                     const cm_tstream_cbs *cbs, void *user, cm_tstream **out)
{
    cm__http_client *cl = client_of(t);
    if (cl->closing) {
        return CM_ESTATE;
    }
    cstream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return CM_ENOMEM;
    }
    int bracketed;
    if (snprintf(s->addr, sizeof(s->addr), "%s", addr) >= (int)sizeof(s->addr) ||
        cm__http_split_addr(addr, s->host, sizeof(s->host), &s->port, &bracketed) < 0 ||
        s->host[0] == '\0') {
        free(s);
        return CM_EADDR;
    }
    s->ts.base.ops = t->ops;
    s->t = t;
    s->cbs = cbs;
    s->user = user;
    s->wq.on_written = on_written;
    cm__http_in_init(&s->in, HTTP_RESPONSE, t->opts.max_header_bytes, t->opts.max_body_bytes);
    uv_tcp_init(t->loop, &s->tcp);
    uv_timer_init(t->loop, &s->timer);
    s->tcp.data = s->timer.data = s->creq.data = s->gai.data = s;
    s->nhandles = 2;
    stream_link(s);
    int r = dial(s);
    if (r < 0) {
        s->released = 1;
        s->told = 1;
        stream_end(s, r);
        return r;
    }
    uint64_t ms = dial_timeout_ms ? dial_timeout_ms : t->opts.dial_timeout_ms;
    if (ms && ms != UINT64_MAX) {
        uv_timer_start(&s->timer, on_dial_timeout, ms, 0);
    }
    *out = &s->ts.base;
    return 0;
}

static int
put_str(cm__http_buf *b, const char *s)
{
    return cm__http_buf_append(b, s, strlen(s));
}

/* Go's http.Request.Write for a POST to "/". */
static int
build_request(cstream *s, const cm_msg *m)
{
    cm__http_buf *b = &s->wb;
    b->len = 0;
    if (put_str(b, "POST / HTTP/1.1\r\nHost: ") < 0 || put_str(b, s->addr) < 0 ||
        put_str(b, "\r\nUser-Agent: " USER_AGENT "\r\nContent-Length: ") < 0 ||
        cm__http_put_u64(b, m->body_len) < 0 || put_str(b, "\r\n") < 0 ||
        cm__http_put_headers(b, m,
                             CM__HTTP_SKIP_HOST | CM__HTTP_SKIP_CLEN | CM__HTTP_SKIP_TE |
                                 CM__HTTP_SKIP_UA | CM__HTTP_SKIP_TRAILER | CM__HTTP_SKIP_CONN) <
            0 ||
        put_str(b, "\r\n") < 0) {
        return CM_ENOMEM;
    }
    return 0;
}

static int
client_send(cstream *s, const cm_msg *m)
{
    if (s->closed || s->released) {
        return CM_ECLOSED;
    }
    if (build_request(s, m) < 0) {
        return CM_ENOMEM;
    }
    int r;
    if (!s->connected) {
        r = cm__http_buf_append(&s->pending, s->wb.p, s->wb.len);
        if (r == 0) {
            r = cm__http_buf_append(&s->pending, m->body, m->body_len);
        }
    } else {
        r = cm__http_wq_write(&s->wq, (uv_stream_t *)&s->tcp, s->tls, s->wb.p, s->wb.len, m->body,
                              m->body_len);
    }
    cm__http_buf_trim(&s->wb, KEEP_WBUF_MAX);
    if (r < 0 && r != CM_ENOMEM) {
        stream_end(s, r);
        return CM_ECLOSED;
    }
    return r;
}

static void
on_linger_done(uv_shutdown_t *req, int status)
{
    (void)status;
    cstream *s = req->data;
    free(req);
    stream_end(s, CM_ECLOSED);
}

static void
client_close(cstream *s)
{
    s->released = 1;
    if (s->closed) {
        maybe_free(s);
        return;
    }
    if (s->wq.corked) { /* what was gathered goes out before the close */
        int live = s->connected;
        int r = cm__http_wq_cork(&s->wq, live ? (uv_stream_t *)&s->tcp : NULL, s->tls, 0);
        if (r < 0) {
            stream_end(s, r);
            return;
        }
    }
    if (s->connected && s->wq.queued > 0) {
        /* The queued messages (a final EOS) go out, then the close. */
        uv_shutdown_t *req = malloc(sizeof(*req));
        if (req != NULL) {
            req->data = s;
            if (uv_shutdown(req, (uv_stream_t *)&s->tcp, on_linger_done) == 0) {
                uv_read_stop((uv_stream_t *)&s->tcp);
                return;
            }
            free(req);
        }
    }
    stream_end(s, CM_ECANCELED);
}

void
cm__http_streams_close(cm_transport *t)
{
    cm__http_client *cl = client_of(t);
    cstream *s = cl->streams;
    while (s != NULL) {
        cstream *next = s->next;
        stream_end(s, CM_ECANCELED);
        s = next;
    }
}

/* ---- the ops slots: server or client by the handle ---- */

int
cm__http_stream_send(cm_tstream *ts, const cm_msg *m)
{
    cm__http_tstream *h = (cm__http_tstream *)ts;
    return h->server ? cm__http_server_stream_send(ts, m) : client_send((cstream *)h, m);
}

size_t
cm__http_stream_queued(const cm_tstream *ts)
{
    const cm__http_tstream *h = (const cm__http_tstream *)ts;
    if (h->server) {
        return cm__http_server_stream_queued(ts);
    }
    const cstream *s = (const cstream *)h;
    return cm__http_wq_pending(&s->wq) + s->pending.len;
}

int
cm__http_stream_cork(cm_tstream *ts, int on)
{
    cm__http_tstream *h = (cm__http_tstream *)ts;
    if (h->server) {
        return cm__http_server_stream_cork(ts, on);
    }
    cstream *s = (cstream *)h;
    int live = s->connected && !s->closed && !s->released;
    int r = cm__http_wq_cork(&s->wq, live ? (uv_stream_t *)&s->tcp : NULL, s->tls, on);
    if (r < 0) {
        stream_end(s, r);
        return CM_ECLOSED;
    }
    return 0;
}

void
cm__http_stream_pause(cm_tstream *ts, int on)
{
    cm__http_tstream *h = (cm__http_tstream *)ts;
    if (h->server) {
        cm__http_server_stream_pause(ts, on);
        return;
    }
    cstream *s = (cstream *)h;
    if (s->closed || s->paused == !!on) {
        return;
    }
    s->paused = !!on;
    if (!on && s->connected) {
        uv_timer_start(&s->timer, on_resume, 0, 0); /* never from inside this call */
    }
}

void
cm__http_stream_close(cm_tstream *ts)
{
    cm__http_tstream *h = (cm__http_tstream *)ts;
    if (h->server) {
        cm__http_server_stream_close(ts);
    } else {
        client_close((cstream *)h);
    }
}
