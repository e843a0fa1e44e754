/* The HTTP transport's client side against a scripted raw server on the same loop: request
 * bytes, response framing, errors, timeouts, cancellation and the connection pool. */
#include "harness.h"

/* ---- a scripted raw server ---- */

enum { ACT_REPLY, ACT_REPLY_CLOSE, ACT_NEVER, ACT_CLOSE };

typedef struct rawsrv rawsrv;

typedef struct rconn {
    uv_tcp_t tcp;
    rawsrv *srv;
    char buf[1 << 16];
    size_t len;
    struct rconn *next;
} rconn;

struct rawsrv {
    uv_tcp_t tcp;
    int port;
    char addr[32];
    int action;
    const char *response; /* written after each complete request */
    int accepted;
    int requests;
    char last[1 << 16]; /* the last complete request's bytes */
    rconn *conns;
};

static void
rconn_closed(uv_handle_t *h)
{
    rconn *c = h->data;
    rawsrv *s = c->srv;
    for (rconn **p = &s->conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    free(c);
}

static void
rconn_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    (void)sz;
    rconn *c = h->data;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void
rconn_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void
rconn_write(rconn *c, const char *s)
{
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init((char *)s, (unsigned)strlen(s));
    CHECK(uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, rconn_written) == 0);
}

static void
rconn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    rconn *c = st->data;
    rawsrv *s = c->srv;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)st)) {
            uv_close((uv_handle_t *)st, rconn_closed);
        }
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) {
        return;
    }
    char v[32];
    size_t head = (size_t)(end - c->buf) + 4;
    size_t body = raw_header(c->buf, "Content-Length", v, sizeof(v)) ? strtoul(v, 0, 10) : 0;
    if (c->len < head + body) {
        return;
    }
    memcpy(s->last, c->buf, head + body);
    s->last[head + body] = '\0';
    memmove(c->buf, c->buf + head + body, c->len - head - body);
    c->len -= head + body;
    s->requests++;
    switch (s->action) {
    case ACT_REPLY:
        rconn_write(c, s->response);
        break;
    case ACT_REPLY_CLOSE:
        rconn_write(c, s->response);
        uv_close((uv_handle_t *)st, rconn_closed);
        break;
    case ACT_CLOSE:
        uv_close((uv_handle_t *)st, rconn_closed);
        break;
    default:
        break;
    }
}

static void
raw_on_conn(uv_stream_t *st, int status)
{
    rawsrv *s = st->data;
    CHECK(status == 0);
    rconn *c = calloc(1, sizeof(*c));
    c->srv = s;
    c->tcp.data = c;
    uv_tcp_init(L, &c->tcp);
    CHECK(uv_accept(st, (uv_stream_t *)&c->tcp) == 0);
    c->next = s->conns;
    s->conns = c;
    s->accepted++;
    uv_read_start((uv_stream_t *)&c->tcp, rconn_alloc, rconn_read);
}

static void
rawsrv_start(rawsrv *s, int action, const char *response)
{
    memset(s, 0, sizeof(*s));
    s->action = action;
    s->response = response;
    s->tcp.data = s;
    uv_tcp_init(L, &s->tcp);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    CHECK(uv_tcp_bind(&s->tcp, (struct sockaddr *)&a, 0) == 0);
    CHECK(uv_listen((uv_stream_t *)&s->tcp, 16, raw_on_conn) == 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", s->port);
}

static void
rawsrv_stop(rawsrv *s)
{
    uv_close((uv_handle_t *)&s->tcp, NULL);
    for (rconn *c = s->conns; c; c = c->next) {
        if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
            uv_close((uv_handle_t *)&c->tcp, rconn_closed);
        }
    }
    run_for(20);
    CHECK(s->conns == NULL);
}

/* ---- results ---- */

typedef struct result {
    int done;
    int status;
    unsigned flags;
    int has_rsp;
    char status_hdr[16];
    char body[256];
    char hdr[256]; /* the value of header X-R */
    uint64_t at;   /* uv_now() when it completed */
} result;

static void
on_result(int status, unsigned flags, const cm_msg *rsp, void *user)
{
    result *r = user;
    r->done++;
    r->status = status;
    r->flags = flags;
    r->at = uv_now(L);
    r->has_rsp = rsp != NULL;
    if (rsp) {
        const char *st = cm_msg_header(rsp, ":status");
        snprintf(r->status_hdr, sizeof(r->status_hdr), "%s", st ? st : "");
        const char *x = cm_msg_header(rsp, "x-r");
        snprintf(r->hdr, sizeof(r->hdr), "%s", x ? x : "");
        size_t n = rsp->body_len < sizeof(r->body) - 1 ? rsp->body_len : sizeof(r->body) - 1;
        memcpy(r->body, rsp->body, n);
        r->body[n] = '\0';
    }
}

static cm_transport *
client_new(const cm_transport_opts *o)
{
    cm_transport *t;
    CHECK_EQ_INT(cm_transport_new(CL, "http", o, &t), 0);
    return t;
}

static void
client_close(cm_transport *t)
{
    int done = 0;
    cm_transport_close(t, set_flag, &done);
    CHECK_EQ_INT(done, 0);
    run_until(&done, 5000);
}

static void
roundtrip(cm_transport *t, const char *addr, const cm_msg *req, uint64_t timeout, result *r)
{
    memset(r, 0, sizeof(*r));
    CHECK_EQ_INT(cm_transport_roundtrip(t, addr, req, timeout, on_result, r, NULL), 0);
    CHECK_EQ_INT(r->done, 0);
    run_until(&r->done, 10000);
    CHECK_EQ_INT(r->done, 1);
}

static cm_pool_stats
pool(cm_transport *t)
{
    cm_pool_stats ps;
    cm_transport_get_pool_stats(t, &ps);
    return ps;
}

/* ---- tests ---- */

static void
test_request_bytes(void)
{
    rawsrv s;
    rawsrv_start(&s, ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-R: 1\r\n\r\nok");
    cm_transport *t = client_new(NULL);
    cm_hdr h[] = {{"Host", "evil"},    {"Content-Length", "99"}, {"Transfer-Encoding", "x"},
                  {"User-Agent", "y"}, {"X-A", "b\r\nc"},        {"Micro-Id", "1"}};
    cm_msg req = {h, 6, (const uint8_t *)"abc", 3};
    result r;
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "ok");
    CHECK_EQ_STR(r.hdr, "1");
    char *want = strdupf("POST / HTTP/1.1\r\nHost: %s\r\nUser-Agent: cmicro/0.1\r\n"
                         "Content-Length: 3\r\nX-A: b  c\r\nMicro-Id: 1\r\n\r\nabc",
                         s.addr);
    CHECK_EQ_STR(s.last, want);
    free(want);

    cm_msg empty = {NULL, 0, NULL, 0};
    roundtrip(t, s.addr, &empty, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    want = strdupf("POST / HTTP/1.1\r\nHost: %s\r\nUser-Agent: cmicro/0.1\r\n"
                   "Content-Length: 0\r\n\r\n",
                   s.addr);
    CHECK_EQ_STR(s.last, want);
    free(want);
    CHECK_EQ_INT(s.accepted, 1);
    CHECK_EQ_INT(pool(t).dialed, 1);
    CHECK_EQ_INT(pool(t).reused, 1);
    CHECK_EQ_INT(pool(t).idle, 1);

    /* A ":path" pseudo header is the request target (the HTTP broker's "/?id=..."), never a
     * header; one that is not "/" and printable ASCII is refused before anything is sent. */
    cm_hdr ph[] = {{":path", "/?id=events-1%2F2"}, {"Content-Type", "application/json"}};
    cm_msg preq = {ph, 2, (const uint8_t *)"{}", 2};
    roundtrip(t, s.addr, &preq, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    want = strdupf("POST /?id=events-1%%2F2 HTTP/1.1\r\nHost: %s\r\nUser-Agent: cmicro/0.1\r\n"
                   "Content-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
                   s.addr);
    CHECK_EQ_STR(s.last, want);
    free(want);
    const char *badpath[] = {"x", "/a b", "/a\r\nX: 1", "", "/\x7f"};
    for (size_t i = 0; i < sizeof(badpath) / sizeof(badpath[0]); i++) {
        ph[0].val = badpath[i];
        CHECK_EQ_INT(cm_transport_roundtrip(t, s.addr, &preq, 0, on_result, &r, NULL), CM_EINVAL);
    }
    CHECK_EQ_INT(pool(t).idle, 1); /* the refused requests took no connection */

    /* A name is resolved (asynchronously) and dialed; Host is the address as given. */
    char name[64];
    snprintf(name, sizeof(name), "localhost:%d", s.port);
    roundtrip(t, name, &empty, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(strstr(s.last, name) != NULL);
    CHECK_EQ_INT(pool(t).dialed, 2);

    /* Unusable addresses fail at once, without a callback. */
    const char *bad[] = {"nohost", "1.2.3.4:99999", "[zz]:80", "::1:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(cm_transport_roundtrip(t, bad[i], &empty, 0, on_result, &r, NULL), CM_EADDR);
    }
    client_close(t);
    rawsrv_stop(&s);
}

static void
test_response_kinds(void)
{
    cm_msg req = {NULL, 0, (const uint8_t *)"q", 1};
    result r;
    rawsrv s;
    cm_transport *t = client_new(NULL);

    /* Non-200: CM_EPROTO with the response and its ":status"; the connection is not kept. */
    rawsrv_start(&s, ACT_REPLY,
                 "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nX-R: 2\r\n\r\nnope!");
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, CM_EPROTO);
    CHECK(r.has_rsp);
    CHECK_EQ_STR(r.status_hdr, "404");
    CHECK_EQ_STR(r.body, "nope!");
    CHECK_EQ_STR(r.hdr, "2");
    CHECK_EQ_INT(pool(t).idle, 0);
    rawsrv_stop(&s);

    /* A chunked response is decoded and the connection pooled. */
    rawsrv_start(&s, ACT_REPLY,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n"
                 "0\r\n\r\n");
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "abcde");
    CHECK_EQ_STR(r.status_hdr, "");
    CHECK_EQ_INT(pool(t).idle, 1);
    rawsrv_stop(&s);
    /* The peer closed the idle connection: it left the pool at once. */
    CHECK_EQ_INT(pool(t).idle, 0);

    /* A body delimited by the close. */
    rawsrv_start(&s, ACT_REPLY_CLOSE, "HTTP/1.1 200 OK\r\n\r\nbye");
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "bye");
    CHECK_EQ_INT(pool(t).idle, 0);
    rawsrv_stop(&s);

    /* Connection: close in the response: not pooled. */
    rawsrv_start(&s, ACT_REPLY,
                 "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nc");
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "c");
    CHECK_EQ_INT(pool(t).idle, 0);
    rawsrv_stop(&s);

    /* Connection: close in the request: not pooled either. */
    rawsrv_start(&s, ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nd");
    cm_hdr ch[] = {{"Connection", "close"}};
    cm_msg creq = {ch, 1, NULL, 0};
    roundtrip(t, s.addr, &creq, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(strstr(s.last, "\r\nConnection: close\r\n") != NULL);
    CHECK_EQ_INT(pool(t).idle, 0);
    rawsrv_stop(&s);

    /* The peer closes in the middle of the response. */
    rawsrv_start(&s, ACT_REPLY_CLOSE, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, CM_ECLOSED);
    CHECK(!r.has_rsp);
    rawsrv_stop(&s);

    /* The peer closes without answering. */
    rawsrv_start(&s, ACT_CLOSE, NULL);
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, CM_ECLOSED);
    CHECK_EQ_INT(r.flags, 0); /* the request was sent: it may have been processed */
    rawsrv_stop(&s);

    /* Garbage. */
    rawsrv_start(&s, ACT_REPLY, "garbage\r\n\r\n");
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, CM_EPROTO);
    CHECK(!r.has_rsp);
    rawsrv_stop(&s);
    CHECK_EQ_INT(pool(t).idle, 0);
    client_close(t);

    /* Limits: the body and the header block. */
    cm_transport_opts o;
    cm_transport_opts_init(&o);
    o.max_body_bytes = 10;
    o.max_header_bytes = 100;
    t = client_new(&o);
    rawsrv_start(&s, ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n01234567890");
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, CM_ETOOBIG);
    rawsrv_stop(&s);
    rawsrv_start(&s, ACT_REPLY,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n"
                 "6\r\n012345\r\n0\r\n\r\n");
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, CM_ETOOBIG);
    rawsrv_stop(&s);
    rawsrv_start(&s, ACT_REPLY,
                 "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-Long: "
                 "0123456789012345678901234567890123456789012345678901234567890123456789"
                 "\r\n\r\nx");
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, CM_ETOOBIG);
    rawsrv_stop(&s);
    rawsrv_start(&s, ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "0123456789");
    rawsrv_stop(&s);
    client_close(t);
}

static int
free_port(void)
{
    uv_tcp_t h;
    uv_tcp_init(L, &h);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    CHECK(uv_tcp_bind(&h, (struct sockaddr *)&a, 0) == 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&h, (struct sockaddr *)&a, &len);
    uv_close((uv_handle_t *)&h, NULL);
    uv_run(L, UV_RUN_NOWAIT);
    return ntohs(a.sin_port);
}

static void
test_failures(void)
{
    cm_msg req = {NULL, 0, (const uint8_t *)"q", 1};
    result r;
    cm_transport *t = client_new(NULL);

    /* Refused: the libuv error, flagged as never sent. */
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
    roundtrip(t, addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, UV_ECONNREFUSED);
    CHECK(r.flags & CM_RT_UNSENT);
    CHECK_EQ_INT(pool(t).idle, 0);

    /* A server that never answers: CM_ETIMEDOUT on time; the connection is dropped. */
    rawsrv s;
    rawsrv_start(&s, ACT_NEVER, NULL);
    uint64_t t0 = uv_now(L);
    roundtrip(t, s.addr, &req, 200, &r);
    CHECK_EQ_INT(r.status, CM_ETIMEDOUT);
    CHECK_EQ_INT(r.flags, 0);
    CHECK(r.at - t0 >= 190 && r.at - t0 < 1000);
    CHECK_EQ_INT(s.requests, 1);
    CHECK_EQ_INT(pool(t).idle, 0);
    run_for(20);
    CHECK(s.conns == NULL); /* the client closed it */

    /* Cancel: never inside cancel, CM_ECANCELED later; right after the call (dialing) and
     * once the request is out. */
    cm_roundtrip *h = NULL;
    memset(&r, 0, sizeof(r));
    CHECK_EQ_INT(cm_transport_roundtrip(t, s.addr, &req, 0, on_result, &r, &h), 0);
    CHECK(h != NULL);
    cm_roundtrip_cancel(h);
    CHECK_EQ_INT(r.done, 0);
    run_until(&r.done, 5000);
    CHECK_EQ_INT(r.status, CM_ECANCELED);
    CHECK(r.flags & CM_RT_UNSENT);
    memset(&r, 0, sizeof(r));
    int before = s.requests;
    CHECK_EQ_INT(cm_transport_roundtrip(t, s.addr, &req, 0, on_result, &r, &h), 0);
    while (s.requests == before) {
        uv_run(L, UV_RUN_ONCE);
    }
    CHECK_EQ_INT(r.done, 0);
    cm_roundtrip_cancel(h);
    cm_roundtrip_cancel(h); /* twice: still one callback */
    CHECK_EQ_INT(r.done, 0);
    run_until(&r.done, 5000);
    CHECK_EQ_INT(r.status, CM_ECANCELED);
    CHECK_EQ_INT(r.flags, 0);
    run_for(20);
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_INT(pool(t).idle, 0);
    rawsrv_stop(&s);

    /* Closing the transport cancels what is in flight and closes the pool. */
    rawsrv_start(&s, ACT_NEVER, NULL);
    rawsrv s2;
    rawsrv_start(&s2, ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    roundtrip(t, s2.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_INT(pool(t).idle, 1);
    result a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    CHECK_EQ_INT(cm_transport_roundtrip(t, s.addr, &req, 0, on_result, &a, NULL), 0);
    while (s.requests == 0) {
        uv_run(L, UV_RUN_ONCE);
    }
    CHECK_EQ_INT(cm_transport_roundtrip(t, s.addr, &req, 0, on_result, &b, NULL), 0);
    int done = 0;
    cm_transport_close(t, set_flag, &done);
    CHECK_EQ_INT(a.done + b.done + done, 0);
    run_until(&done, 5000);
    CHECK_EQ_INT(a.done, 1);
    CHECK_EQ_INT(b.done, 1);
    CHECK_EQ_INT(a.status, CM_ECANCELED);
    CHECK_EQ_INT(b.status, CM_ECANCELED);
    CHECK(b.flags & CM_RT_UNSENT);
    rawsrv_stop(&s);
    rawsrv_stop(&s2);
}

/* A dial that never completes: a listener whose accept queue is full drops new SYNs. */
static void
test_dial_timeout(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    CHECK(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(listen(lfd, 0) == 0);
    socklen_t len = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &len);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(50000);
    cm_transport_opts o;
    cm_transport_opts_init(&o);
    o.dial_timeout_ms = 300;
    cm_transport *t = client_new(&o);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(a.sin_port));
    cm_msg req = {NULL, 0, NULL, 0};
    result r;
    uint64_t t0 = uv_now(L);
    roundtrip(t, addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, CM_ETIMEDOUT);
    CHECK(r.flags & CM_RT_UNSENT);
    CHECK(r.at - t0 >= 290 && r.at - t0 < 2000);
    /* The round trip's own timeout bounds the dial too. */
    o.dial_timeout_ms = 0;
    client_close(t);
    t = client_new(&o);
    t0 = uv_now(L);
    roundtrip(t, addr, &req, 150, &r);
    CHECK_EQ_INT(r.status, CM_ETIMEDOUT);
    CHECK(r.flags & CM_RT_UNSENT);
    CHECK(r.at - t0 >= 140 && r.at - t0 < 2000);
    client_close(t);
    for (int i = 0; i < 4; i++) {
        close(fill[i]);
    }
    close(lfd);
}

static void
test_pool(void)
{
    cm_msg req = {NULL, 0, (const uint8_t *)"q", 1};
    result r;
    rawsrv s;
    rawsrv_start(&s, ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk");

    /* A pooled connection older than the TTL is closed when taken. */
    cm_transport_opts o;
    cm_transport_opts_init(&o);
    o.pool_ttl_ms = 50;
    cm_transport *t = client_new(&o);
    roundtrip(t, s.addr, &req, 5000, &r);
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(pool(t).dialed, 1);
    run_for(80);
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_INT(pool(t).dialed, 2);
    CHECK_EQ_INT(pool(t).reused, 1);
    CHECK_EQ_INT(pool(t).idle, 1);
    client_close(t);

    /* At most pool_size idle connections per address; LIFO reuse. */
    cm_transport_opts_init(&o);
    o.pool_size = 2;
    t = client_new(&o);
    result rs[3];
    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(cm_transport_roundtrip(t, s.addr, &req, 5000, on_result, &rs[i], NULL), 0);
    }
    for (int i = 0; i < 3; i++) {
        run_until(&rs[i].done, 5000);
        CHECK_EQ_INT(rs[i].status, 0);
    }
    CHECK_EQ_INT(pool(t).dialed, 3);
    CHECK_EQ_INT(pool(t).idle, 2);
    run_for(20);
    CHECK_EQ_INT(s.accepted, 5);
    int open = 0;
    for (rconn *c = s.conns; c; c = c->next) {
        open++;
    }
    CHECK_EQ_INT(open, 2); /* the third one was closed */
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(pool(t).dialed, 3);
    CHECK_EQ_INT(pool(t).reused, 1);

    /* pool_size 0: nothing is kept. */
    client_close(t);
    o.pool_size = 0;
    t = client_new(&o);
    roundtrip(t, s.addr, &req, 5000, &r);
    roundtrip(t, s.addr, &req, 5000, &r);
    CHECK_EQ_INT(pool(t).dialed, 2);
    CHECK_EQ_INT(pool(t).idle, 0);
    client_close(t);
    rawsrv_stop(&s);
}

/* Closing while a name is being resolved: the lookup is canceled (or finishes) first. */
static void
test_close_while_resolving(void)
{
    rawsrv s;
    rawsrv_start(&s, ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    char name[64];
    snprintf(name, sizeof(name), "localhost:%d", s.port);
    cm_msg req = {NULL, 0, NULL, 0};
    for (int i = 0; i < 20; i++) {
        cm_transport *t = client_new(NULL);
        result r;
        memset(&r, 0, sizeof(r));
        cm_roundtrip *h;
        CHECK_EQ_INT(cm_transport_roundtrip(t, name, &req, 0, on_result, &r, &h), 0);
        if (i % 2) {
            cm_roundtrip_cancel(h);
        }
        int done = 0;
        cm_transport_close(t, set_flag, &done);
        CHECK_EQ_INT(r.done + done, 0);
        run_until(&done, 5000);
        CHECK_EQ_INT(r.done, 1);
        CHECK_EQ_INT(r.status, CM_ECANCELED);
        CHECK(r.flags & CM_RT_UNSENT);
    }
    rawsrv_stop(&s);
}

int
main(void)
{
    harness_init();
    RUN(test_request_bytes);
    RUN(test_response_kinds);
    RUN(test_failures);
    RUN(test_dial_timeout);
    RUN(test_pool);
    RUN(test_close_while_resolving);
    harness_done();
    TEST_DONE();
}
