/* cmicro: the client side of go-micro's HTTP/1.1 transport. A round trip runs on a connection
 * of its own: one taken from the address's pool of idle connections (last in, first out) or a
 * new one. The round trip state lives in the connection (one request in flight per
 * connection), so a pooled round trip allocates nothing.
 *
 * With TLS a new connection runs the handshake before it sends the request (bounded by
 * dial_timeout_ms as well as the round trip's deadline); the request is encrypted, the
 * response decrypted into the same read buffer, and a pooled connection keeps its session. */
#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define USER_AGENT "cmicro/0.1"
#define KEEP_WBUF_MAX (1024 * 1024)

enum {
    C_DIAL, /* resolving or connecting */
    C_IDLE, /* in the pool */
    C_BUSY, /* a round trip is using it */
    C_DEAD, /* closing or closed */
};

struct cm__http_pool {
    cm__http_pool *next;  /* hash chain */
    cm__http_cconn *idle; /* most recently used first */
    size_t nidle;
    size_t nconns; /* connections of this address, in any state */
    unsigned hash;
    int is_name;
    int port;
    struct sockaddr_storage sa; /* when the host is an IP literal */
    char *host;                 /* when it is a name: points into addr's storage */
    char addr[];                /* the address as given, then the host name */
};

struct cm__http_cconn {
    struct cm_roundtrip rt; /* the handle of the round trip in flight */
    cm_transport *t;
    cm__http_pool *pool; /* NULL once closing */
    uv_tcp_t tcp;
    uv_timer_t timer; /* the deadline; also runs deferred completions */
    uv_connect_t creq;
    uv_write_t wreq;
    uv_getaddrinfo_t gai;
    int state;
    int connected;
    int writing;   /* a uv_write is queued */
    int resolving; /* uv_getaddrinfo in flight */
    int sent;      /* some request byte may have reached the peer */
    int req_close; /* the request said Connection: close */
    int active;    /* a round trip is in flight (its callback has not run) */
    int deferred;  /* its completion is scheduled on the timer */
    int dstatus;
    unsigned dflags;
    unsigned nhandles;
    uint64_t created;  /* uv_now() when dialed */
    uint64_t deadline; /* uv_now() limit of the round trip; 0: none */
    cm_roundtrip_cb cb;
    void *user;
    cm__http_rbuf rb;
    cm__http_in in;
    cm__http_buf wb;
    cm__tls *tls;                  /* NULL: plain HTTP */
    cm__http_cconn *prev, *next;   /* every connection of the transport */
    cm__http_cconn *iprev, *inext; /* the pool's idle list */
};

static cm__http_client *
client_of(cm_transport *t)
{
    return (cm__http_client *)(void *)t->priv;
}

/* ---- the pool ---- */

static unsigned
hash_str(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

/* Finds or creates the pool of addr. 0, CM_EADDR or CM_ENOMEM. */
static int
pool_get(cm__http_client *cl, const char *addr, cm__http_pool **out)
{
    unsigned h = hash_str(addr);
    cm__http_pool **slot = &cl->buckets[h % CM__HTTP_POOL_BUCKETS];
    for (cm__http_pool *p = *slot; p; p = p->next) {
        if (p->hash == h && strcmp(p->addr, addr) == 0) {
            *out = p;
            return 0;
        }
    }
    char host[256];
    int port, bracketed;
    struct sockaddr_storage ss;
    if (cm__http_split_addr(addr, host, sizeof(host), &port, &bracketed) < 0) {
        return CM_EADDR;
    }
    if (!host[0]) {
        strcpy(host, "127.0.0.1"); /* ":port" dials the local system, as in Go */
    }
    int is_name = cm__http_ip_addr(host, port, &ss) < 0;
    if (is_name && bracketed) {
        return CM_EADDR;
    }
    size_t an = strlen(addr) + 1, hn = is_name ? strlen(host) + 1 : 0;
    cm__http_pool *p = calloc(1, sizeof(*p) + an + hn);
    if (!p) {
        return CM_ENOMEM;
    }
    memcpy(p->addr, addr, an);
    if (is_name) {
        p->host = p->addr + an;
        memcpy(p->host, host, hn);
    } else {
        p->sa = ss;
    }
    p->is_name = is_name;
    p->port = port;
    p->hash = h;
    p->next = *slot;
    *slot = p;
    *out = p;
    return 0;
}

/* Drops a connection's reference; the pool goes when its last connection does. */
static void
pool_release(cm__http_client *cl, cm__http_pool *p)
{
    if (--p->nconns > 0) {
        return;
    }
    cm__http_pool **slot = &cl->buckets[p->hash % CM__HTTP_POOL_BUCKETS];
    while (*slot != p) {
        slot = &(*slot)->next;
    }
    *slot = p->next;
    free(p);
}

static void
idle_remove(cm__http_client *cl, cm__http_cconn *c)
{
    cm__http_pool *p = c->pool;
    if (c->iprev) {
        c->iprev->inext = c->inext;
    } else {
        p->idle = c->inext;
    }
    if (c->inext) {
        c->inext->iprev = c->iprev;
    }
    c->iprev = c->inext = NULL;
    p->nidle--;
    cl->idle--;
    uv_ref((uv_handle_t *)&c->tcp);
}

static void
idle_push(cm__http_client *cl, cm__http_cconn *c)
{
    cm__http_pool *p = c->pool;
    c->iprev = NULL;
    c->inext = p->idle;
    if (p->idle) {
        p->idle->iprev = c;
    }
    p->idle = c;
    p->nidle++;
    cl->idle++;
    c->state = C_IDLE;
    /* An idle connection does not keep the loop alive (it still reads, to see a close). */
    uv_unref((uv_handle_t *)&c->tcp);
}

/* ---- connection lifetime ---- */

static void
check_closed(cm__http_client *cl, cm_transport *t)
{
    if (cl->closing && !cl->tick_open && cl->nconns == 0 && cl->nstreams == 0) {
        cm__tls_ctx_free(cl->tls);
        cl->tls = NULL;
        cm_transport_closed(t);
    }
}

static void
maybe_free(cm__http_cconn *c)
{
    if (c->nhandles > 0 || c->resolving) {
        return;
    }
    cm_transport *t = c->t;
    cm__http_client *cl = client_of(t);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        cl->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    cl->nconns--;
    cm__http_rbuf_free(&c->rb);
    cm__http_in_free(&c->in);
    cm__http_buf_free(&c->wb);
    cm__tls_free(c->tls);
    free(c);
    check_closed(cl, t);
}

static void
on_handle_closed(uv_handle_t *h)
{
    cm__http_cconn *c = h->data;
    c->nhandles--;
    maybe_free(c);
}

/* Closes the socket; the timer too unless it still has to run a deferred completion. */
static void
conn_close(cm__http_cconn *c)
{
    if (c->state == C_DEAD) {
        return;
    }
    cm__http_client *cl = client_of(c->t);
    if (c->state == C_IDLE) {
        idle_remove(cl, c);
    }
    c->state = C_DEAD;
    pool_release(cl, c->pool);
    c->pool = NULL;
    if (c->resolving) {
        uv_cancel((uv_req_t *)&c->gai);
    }
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    if (!c->deferred) {
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    }
}

static cm__http_cconn *
conn_new(cm_transport *t, cm__http_pool *p)
{
    cm__http_client *cl = client_of(t);
    cm__http_cconn *c = calloc(1, sizeof(*c));
    if (!c) {
        return NULL;
    }
    c->rt.ops = &cm__transport_http;
    c->t = t;
    c->pool = p;
    p->nconns++;
    c->state = C_DIAL;
    c->created = uv_now(t->loop);
    c->tcp.data = c;
    c->timer.data = c;
    c->creq.data = c;
    c->wreq.data = c;
    c->gai.data = c;
    uv_tcp_init(t->loop, &c->tcp);
    uv_timer_init(t->loop, &c->timer);
    c->nhandles = 2;
    cm__http_in_init(&c->in, HTTP_RESPONSE, t->opts.max_header_bytes, t->opts.max_body_bytes);
    c->next = cl->conns;
    if (cl->conns) {
        cl->conns->prev = c;
    }
    cl->conns = c;
    cl->nconns++;
    cl->dialed++;
    return c;
}

/* ---- completing a round trip ---- */

/* Ends the round trip and closes the connection; cb runs now (we are in a loop callback). */
static void
fail_now(cm__http_cconn *c, int status, unsigned flags)
{
    cm_roundtrip_cb cb = c->cb;
    void *user = c->user;
    c->active = 0;
    conn_close(c);
    cb(status, flags, NULL, user);
}

static void
on_deferred(uv_timer_t *h)
{
    cm__http_cconn *c = h->data;
    c->deferred = 0;
    c->active = 0;
    c->cb(c->dstatus, c->dflags, NULL, c->user);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* Ends the round trip and closes the connection; cb runs on a later loop turn. */
static void
fail_later(cm__http_cconn *c, int status, unsigned flags)
{
    if (c->state == C_DEAD) {
        return; /* an active round trip always has a live connection */
    }
    c->deferred = 1;
    c->dstatus = status;
    c->dflags = flags;
    conn_close(c);
    uv_timer_start(&c->timer, on_deferred, 0, 0);
}

static unsigned
unsent_flag(const cm__http_cconn *c)
{
    return c->sent ? 0 : CM_RT_UNSENT;
}

/* A whole response arrived. */
static void
response_done(cm__http_cconn *c, int eof)
{
    cm__http_client *cl = client_of(c->t);
    cm_roundtrip_cb cb = c->cb;
    void *user = c->user;
    int code = c->in.parser.status_code;
    c->active = 0;
    uv_timer_stop(&c->timer);
    if (code != 200) {
        conn_close(c);
        cb(CM_EPROTO, 0, &c->in.msg, user);
        return;
    }
    /* Pooled before the callback, so that a round trip started from it reuses this one. */
    if (!eof && c->in.keep_alive && !c->req_close && !c->writing && c->rb.pos == c->rb.len &&
        !cl->closing && c->pool->nidle < c->t->opts.pool_size) {
        idle_push(cl, c);
    } else {
        conn_close(c);
    }
    cb(0, 0, &c->in.msg, user);
    if (c->state != C_DEAD) {
        cm__http_in_trim(&c->in);
    }
}

/* ---- I/O ---- */

static void
on_write(uv_write_t *req, int status)
{
    cm__http_cconn *c = req->data;
    c->writing = 0;
    if (c->state == C_DEAD) {
        return;
    }
    if (status < 0) {
        if (c->state == C_BUSY && c->active && !c->deferred) {
            fail_now(c, CM_ECLOSED, 0);
        } else {
            conn_close(c);
        }
        return;
    }
    cm__http_buf_trim(&c->wb, KEEP_WBUF_MAX);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    cm__http_cconn *c = h->data;
    if (c->tls != NULL) {
        cm__tls_rbuf(client_of(c->t)->tls, buf);
        return;
    }
    cm__http_rbuf_alloc(&c->rb, buf);
}

/* The peer closed (UV_EOF) or the read failed. */
static void
on_end(cm__http_cconn *c, ssize_t nread, int busy)
{
    if (!busy) {
        conn_close(c); /* an idle connection leaves the pool as soon as the peer closes */
        return;
    }
    if (c->tls != NULL && !cm__tls_done(c->tls)) {
        fail_now(c, cm__tls_closed_in_handshake(c->tls), CM_RT_UNSENT);
        return;
    }
    if (nread == UV_EOF) {
        /* A body delimited by the close ends here. */
        int complete;
        ptrdiff_t n = cm__http_in_execute(&c->in, "", 0, &complete, 1);
        if (n >= 0 && complete) {
            response_done(c, 1);
            return;
        }
    }
    fail_now(c, CM_ECLOSED, 0);
}

/* Parses the bytes in c->rb. 1 when the round trip ended (the connection is pooled or closed),
 * 0 when more is needed. */
static int
parse_response(cm__http_cconn *c)
{
    while (c->rb.pos < c->rb.len) {
        int complete;
        ptrdiff_t n =
            cm__http_in_execute(&c->in, c->rb.p + c->rb.pos, c->rb.len - c->rb.pos, &complete, 1);
        if (n < 0) {
            fail_now(c, n == CM_ETOOBIG || n == CM_ENOMEM ? (int)n : CM_EPROTO, 0);
            return 1;
        }
        c->rb.pos += (size_t)n;
        if (complete) {
            response_done(c, 0);
            return 1;
        }
    }
    return 0;
}

/* A library code passes; a libuv error on the stream becomes CM_ECLOSED. */
static int
io_status(int r)
{
    return r <= CM_EINVAL ? r : CM_ECLOSED;
}

static int send_request(cm__http_cconn *c, size_t hlen, const uint8_t *body, size_t blen);
static void on_timeout(uv_timer_t *h);

/* The handshake is done: the request (all in c->wb) goes out, under the round trip's deadline.
 * 0, or -1 when the round trip failed. */
static int
tls_ready(cm__http_cconn *c)
{
    if (c->deadline) {
        uint64_t now = uv_now(c->t->loop);
        uv_timer_start(&c->timer, on_timeout, c->deadline > now ? c->deadline - now : 1, 0);
    } else {
        uv_timer_stop(&c->timer);
    }
    int r = send_request(c, c->wb.len, NULL, 0);
    if (r < 0) {
        fail_now(c, io_status(r), CM_RT_UNSENT);
        return -1;
    }
    return 0;
}

/* n bytes of TLS records: the handshake, then the response. */
static void
on_tls_data(cm__http_cconn *c, const char *data, size_t n, int busy)
{
    int handshaking = !cm__tls_done(c->tls);
    size_t plain;
    int r = cm__tls_input(c->tls, (uv_stream_t *)&c->tcp, data, n, &c->rb, &plain);
    if (!busy) {
        /* Idle: session tickets are fine; data nobody asked for, or a close, is not. */
        if (r < 0 || plain > 0 || cm__tls_eof(c->tls)) {
            conn_close(c);
        }
        return;
    }
    if (r < 0) {
        fail_now(c, io_status(r), handshaking ? CM_RT_UNSENT : unsent_flag(c));
        return;
    }
    if (handshaking && cm__tls_done(c->tls) && tls_ready(c) < 0) {
        return;
    }
    if (plain > 0 && parse_response(c)) {
        if (cm__tls_eof(c->tls) && c->state == C_IDLE) {
            conn_close(c);
        }
        return;
    }
    if (cm__tls_eof(c->tls)) {
        on_end(c, UV_EOF, 1);
    }
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cm__http_cconn *c = s->data;
    if (c->state == C_DEAD) {
        return;
    }
    int busy = c->state == C_BUSY && c->active && !c->deferred;
    if (nread < 0) {
        on_end(c, nread, busy);
        return;
    }
    if (nread == 0) {
        return;
    }
    if (c->tls != NULL) {
        on_tls_data(c, buf->base, (size_t)nread, busy);
        return;
    }
    cm__http_rbuf_filled(&c->rb, (size_t)nread, buf->len);
    if (!busy) {
        conn_close(c); /* bytes nobody asked for: the connection cannot be trusted */
        return;
    }
    parse_response(c);
}

/* Writes the request held in c->wb (header block of hlen bytes, and body). */
static int
send_request(cm__http_cconn *c, size_t hlen, const uint8_t *body, size_t blen)
{
    size_t sent;
    int r = cm__http_send((uv_stream_t *)&c->tcp, c->tls, &c->wreq, &c->wb, hlen, body, blen,
                          on_write, &sent);
    if (r < 0) {
        return r;
    }
    c->sent = 1; /* a queued write may have sent part of the request by the time it fails */
    c->writing = r == 0;
    return 0;
}

/* Starts the handshake of a new connection, bounded by the dial timeout too. 0 or < 0. */
static int
start_tls(cm__http_cconn *c)
{
    char host[256];
    int port, bracketed;
    const cm_transport_opts *o = &c->t->opts;
    if (cm__http_split_addr(c->pool->addr, host, sizeof(host), &port, &bracketed) < 0) {
        return CM_EADDR;
    }
    int r = cm__tls_new(client_of(c->t)->tls, 0, host[0] ? host : "127.0.0.1", o->tls_server_name,
                        c->pool->addr, &c->tls);
    if (r < 0) {
        return r;
    }
    uint64_t now = uv_now(c->t->loop);
    uint64_t ms = o->dial_timeout_ms;
    uint64_t left = c->deadline > now ? c->deadline - now : 1;
    if (c->deadline && (!ms || left < ms)) {
        ms = left;
    }
    if (ms) {
        uv_timer_start(&c->timer, on_timeout, ms, 0);
    }
    return cm__tls_start(c->tls, (uv_stream_t *)&c->tcp);
}

static void
on_connect(uv_connect_t *req, int status)
{
    cm__http_cconn *c = req->data;
    if (c->state == C_DEAD) {
        return;
    }
    if (status < 0) {
        fail_now(c, status, CM_RT_UNSENT);
        return;
    }
    c->connected = 1;
    c->state = C_BUSY;
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->deadline) {
        uint64_t now = uv_now(c->t->loop);
        uv_timer_start(&c->timer, on_timeout, c->deadline > now ? c->deadline - now : 1, 0);
    } else {
        uv_timer_stop(&c->timer);
    }
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r == 0) {
        r = client_of(c->t)->tls != NULL ? start_tls(c) : send_request(c, c->wb.len, NULL, 0);
    }
    if (r < 0) {
        fail_now(c, io_status(r), CM_RT_UNSENT);
    }
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    cm__http_cconn *c = req->data;
    c->resolving = 0;
    if (c->state == C_DEAD) {
        if (res) {
            uv_freeaddrinfo(res);
        }
        maybe_free(c);
        return;
    }
    if (status < 0) {
        fail_now(c, status, CM_RT_UNSENT);
        return;
    }
    /* The first IPv4 address, else the first one (no happy eyeballs: go-micro nodes are IP
     * literals). */
    struct addrinfo *ai = res;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            ai = a;
            break;
        }
    }
    int r = ai ? uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connect) : UV_EAI_NONAME;
    uv_freeaddrinfo(res);
    if (r < 0) {
        fail_now(c, r, CM_RT_UNSENT);
    }
}

static void
on_timeout(uv_timer_t *h)
{
    cm__http_cconn *c = h->data;
    if (!c->active || c->deferred) {
        return;
    }
    if (c->tls != NULL && !cm__tls_done(c->tls)) {
        cm_log(CM_LOG_WARN, "transport.http", "%s: the TLS handshake timed out", c->pool->addr);
    }
    fail_now(c, CM_ETIMEDOUT, c->connected ? unsent_flag(c) : CM_RT_UNSENT);
}

/* Starts a new connection's dial. 0 or a libuv error. */
static int
dial(cm__http_cconn *c)
{
    cm__http_pool *p = c->pool;
    if (!p->is_name) {
        return uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&p->sa, on_connect);
    }
    char port[8];
    snprintf(port, sizeof(port), "%d", p->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int r = uv_getaddrinfo(c->t->loop, &c->gai, on_resolved, p->host, port, &hints);
    if (r == 0) {
        c->resolving = 1;
    }
    return r;
}

static int
put_str(cm__http_buf *b, const char *s)
{
    return cm__http_buf_append(b, s, strlen(s));
}

/* The request target: the value of a ":path" pseudo header, else "/". NULL when ":path" is not
 * an origin-form target ("/" then printable ASCII without spaces). */
static const char *
request_target(const cm_msg *req)
{
    const char *path = cm_msg_header(req, ":path");
    if (path == NULL) {
        return "/";
    }
    if (path[0] != '/') {
        return NULL;
    }
    for (const char *p = path; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            return NULL;
        }
    }
    return path;
}

/* Go's http.Request.Write for a POST to "/" (or to the ":path" pseudo header's target). */
static int
build_request(cm__http_cconn *c, const char *addr, const cm_msg *req)
{
    cm__http_buf *b = &c->wb;
    b->len = 0;
    const char *target = request_target(req);
    if (target == NULL) {
        return CM_EINVAL;
    }
    if (put_str(b, "POST ") < 0 || put_str(b, target) < 0 ||
        put_str(b, " HTTP/1.1\r\nHost: ") < 0 || put_str(b, addr) < 0 ||
        put_str(b, "\r\nUser-Agent: " USER_AGENT "\r\nContent-Length: ") < 0 ||
        cm__http_put_u64(b, req->body_len) < 0 || put_str(b, "\r\n") < 0 ||
        cm__http_put_headers(b, req,
                             CM__HTTP_SKIP_HOST | CM__HTTP_SKIP_CLEN | CM__HTTP_SKIP_TE |
                                 CM__HTTP_SKIP_UA | CM__HTTP_SKIP_TRAILER) < 0 ||
        put_str(b, "\r\n") < 0) {
        return CM_ENOMEM;
    }
    c->req_close = 0;
    for (size_t i = 0; i < req->nhdrs; i++) {
        const cm_hdr *h = &req->hdrs[i];
        if (h->key && h->val && strcasecmp(h->key, "Connection") == 0 &&
            strcasestr(h->val, "close")) {
            c->req_close = 1;
        }
    }
    return 0;
}

/* Takes addr's most recently used idle connection that is young enough (NULL: none) and finds
 * or makes addr's pool. 0, CM_EADDR or CM_ENOMEM. */
static int
take_idle(cm_transport *t, const char *addr, uint64_t now, cm__http_pool **pool,
          cm__http_cconn **out)
{
    cm__http_client *cl = client_of(t);
    for (;;) {
        /* Looked up again after a close: the pool goes with its last connection. */
        int r = pool_get(cl, addr, pool);
        if (r < 0) {
            return r;
        }
        cm__http_cconn *c = (*pool)->idle;
        if (!c) {
            *out = NULL;
            return 0;
        }
        idle_remove(cl, c);
        c->state = C_BUSY;
        if (!t->opts.pool_ttl_ms || now - c->created < t->opts.pool_ttl_ms) {
            *out = c;
            return 0;
        }
        conn_close(c); /* too old: closed when taken, as go-micro's pool does */
    }
}

/* Sends the request on a pooled connection. */
static void
start_pooled(cm__http_cconn *c, const cm_msg *req, uint64_t timeout_ms)
{
    client_of(c->t)->reused++;
    c->sent = 0;
    if (timeout_ms) {
        uv_timer_start(&c->timer, on_timeout, timeout_ms, 0);
    }
    int r = send_request(c, c->wb.len, req->body, req->body_len);
    if (r < 0) {
        fail_later(c, r == CM_ENOMEM ? CM_ENOMEM : CM_ECLOSED, CM_RT_UNSENT);
    }
}

/* Dials a new connection; the request (all in c->wb) goes out once connected. */
static void
start_dial(cm__http_cconn *c, uint64_t timeout_ms)
{
    uint64_t dial_ms = c->t->opts.dial_timeout_ms;
    if (timeout_ms && (!dial_ms || timeout_ms < dial_ms)) {
        dial_ms = timeout_ms;
    }
    if (dial_ms) {
        uv_timer_start(&c->timer, on_timeout, dial_ms, 0);
    }
    int r = dial(c);
    if (r < 0) {
        fail_later(c, r, CM_RT_UNSENT);
    }
}

int
cm__http_roundtrip(cm_transport *t, const char *addr, const cm_msg *req, uint64_t timeout_ms,
                   cm_roundtrip_cb cb, void *user, cm_roundtrip **handle)
{
    cm__http_client *cl = client_of(t);
    if (cl->closing) {
        return CM_ESTATE;
    }
    if (request_target(req) == NULL) {
        return CM_EINVAL;
    }
    uint64_t now = uv_now(t->loop);
    cm__http_pool *p;
    cm__http_cconn *c;
    int r = take_idle(t, addr, now, &p, &c);
    if (r < 0) {
        return r;
    }
    int reused = c != NULL;
    if (!reused) {
        c = conn_new(t, p);
        if (!c) {
            if (p->nconns == 0) {
                p->nconns = 1;
                pool_release(cl, p);
            }
            return CM_ENOMEM;
        }
    }
    /* A new connection sends later: the borrowed body is copied behind the header block. */
    r = build_request(c, addr, req);
    if (r == 0 && !reused) {
        r = cm__http_buf_append(&c->wb, req->body, req->body_len);
    }
    if (r < 0) {
        cl->dialed -= !reused;
        conn_close(c);
        return r;
    }
    c->cb = cb;
    c->user = user;
    c->active = 1;
    c->deadline = timeout_ms ? now + timeout_ms : 0;
    if (handle) {
        *handle = &c->rt;
    }
    if (reused) {
        start_pooled(c, req, timeout_ms);
    } else {
        start_dial(c, timeout_ms);
    }
    return 0;
}

void
cm__http_cancel(cm_roundtrip *rt)
{
    cm__http_cconn *c = CM__HTTP_CONTAINER(rt, cm__http_cconn, rt);
    if (!c->active || c->deferred) {
        return;
    }
    fail_later(c, CM_ECANCELED, c->connected ? unsent_flag(c) : CM_RT_UNSENT);
}

void
cm__http_pool_stats(const cm_transport *t, cm_pool_stats *st)
{
    const cm__http_client *cl = (const cm__http_client *)(const void *)t->priv;
    st->dialed = cl->dialed;
    st->reused = cl->reused;
    st->idle = cl->idle;
}

int
cm__http_client_init(cm_transport *t)
{
    memset(client_of(t), 0, sizeof(cm__http_client));
    return 0;
}

void
cm__http_client_maybe_closed(cm_transport *t)
{
    check_closed(client_of(t), t);
}

static void
on_tick_closed(uv_handle_t *h)
{
    cm_transport *t = h->data;
    cm__http_client *cl = client_of(t);
    cl->tick_open = 0;
    check_closed(cl, t);
}

void
cm__http_client_close(cm_transport *t)
{
    cm__http_client *cl = client_of(t);
    if (cl->closing) {
        return;
    }
    cl->closing = 1;
    cm__http_streams_close(t);
    for (cm__http_cconn *c = cl->conns; c; c = c->next) {
        if (c->active && !c->deferred) {
            fail_later(c, CM_ECANCELED, c->connected ? unsent_flag(c) : CM_RT_UNSENT);
        } else {
            conn_close(c);
        }
    }
    /* Completes the close on a later turn even when there is nothing else to close. */
    uv_idle_init(t->loop, &cl->close_tick);
    cl->close_tick.data = t;
    cl->tick_open = 1;
    uv_close((uv_handle_t *)&cl->close_tick, on_tick_closed);
}
