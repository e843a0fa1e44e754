/* The HTTP transport over TLS, C client and C server on 127.0.0.1, with a throwaway CA made by
 * the openssl command (test/common/make-test-ca.sh, argv[1]): calls, verification (wrong CA,
 * wrong name, the insecure opt-in), plain HTTP and TLS crossed, stalled handshakes on both
 * sides, and configuration errors. */
#include "harness.h"
#include "logcap.h"

#include <arpa/inet.h>
#include <openssl/ssl.h>

static char dir[256];

static const char *
path(const char *name)
{
    static char buf[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

typedef struct result {
    int done;
    int status;
    unsigned flags;
    char *body;
    char *code; /* ":status" */
} result;

static void
on_result(int status, unsigned flags, const cm_msg *rsp, void *user)
{
    result *r = user;
    r->done++;
    r->status = status;
    r->flags = flags;
    if (rsp) {
        r->body = strndup((const char *)rsp->body, rsp->body_len);
        const char *code = cm_msg_header(rsp, ":status");
        r->code = code ? strdup(code) : NULL;
    }
}

static void
result_free(result *r)
{
    free(r->body);
    free(r->code);
    memset(r, 0, sizeof(*r));
}

static void
client_close(cm_transport *t)
{
    int done = 0;
    cm_transport_close(t, set_flag, &done);
    run_until(&done, 5000);
}

static void
server_opts(cm_transport_opts *o)
{
    cm_transport_opts_init(o);
    o->tls = 1;
    o->tls_cert_file = path("server.pem");
    o->tls_key_file = path("server.key");
}

static cm_transport *
tls_client(const char *ca, int insecure, const char *server_name)
{
    cm_transport_opts o;
    cm_transport_opts_init(&o);
    o.tls = 1;
    o.tls_ca_file = ca;
    o.tls_insecure = insecure;
    o.tls_server_name = server_name;
    o.max_header_bytes = 4 * 1024 * 1024; /* the echo server renders the request in a header */
    o.dial_timeout_ms = 30000; /* it bounds the handshake: seconds under valgrind on a busy CPU */
    cm_transport *t;
    CHECK_EQ_INT(cm_transport_new(CL, "http", &o, &t), 0);
    return t;
}

/* One round trip of body to addr; the result is left in r. */
static void
call(cm_transport *t, const char *addr, const char *body, uint64_t timeout_ms, result *r)
{
    cm_hdr h[] = {{"X-Test", "tls"}, {"Content-Type", "application/json"}};
    cm_msg req = {h, 2, (const uint8_t *)body, strlen(body)};
    CHECK_EQ_INT(cm_transport_roundtrip(t, addr, &req, timeout_ms, on_result, r, NULL), 0);
    CHECK_EQ_INT(r->done, 0);
    run_until(&r->done, 30000);
}

static void
test_calls(void)
{
    cm_transport_opts so;
    server_opts(&so);
    server s;
    server_start(&s, &so);
    cm_transport *c = tls_client(path("ca.pem"), 0, NULL);
    result r = {0};
    call(c, s.addr, "{\"a\":1}", 15000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "{\"a\":1}");
    CHECK(strstr(s.last, "X-Test=tls\n") != NULL);
    result_free(&r);

    /* The pooled connection keeps its session. */
    call(c, s.addr, "second", 15000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "second");
    result_free(&r);
    cm_pool_stats ps;
    cm_transport_get_pool_stats(c, &ps);
    CHECK_EQ_INT(ps.dialed, 1);
    CHECK_EQ_INT(ps.reused, 1);

    /* A body of many records, both ways. */
    size_t big = 1024 * 1024 + 7;
    char *b = malloc(big + 1);
    CHECK(b != NULL);
    for (size_t i = 0; i < big; i++) {
        b[i] = (char)('a' + i % 26);
    }
    b[big] = '\0';
    call(c, s.addr, b, 20000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(r.body != NULL && strcmp(r.body, b) == 0);
    result_free(&r);
    free(b);

    /* By name: the certificate names localhost too. */
    char byname[64];
    snprintf(byname, sizeof(byname), "localhost:%d", s.port);
    call(c, byname, "by name", 15000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "by name");
    result_free(&r);

    /* No early reply on TLS (it would write around the session): the loop's reply alone. */
    s.mode = REPLY_NEVER;
    cm_msg req = {NULL, 0, (const uint8_t *)"x", 1};
    CHECK_EQ_INT(cm_transport_roundtrip(c, s.addr, &req, 15000, on_result, &r, NULL), 0);
    while (s.nheld == 0) {
        uv_run(L, UV_RUN_ONCE);
    }
    cm_msg rsp = {NULL, 0, (const uint8_t *)"late", 4};
    CHECK_EQ_INT(cm_tconn_reply_early(s.held[0], &rsp), CM_ENOTSUP);
    CHECK_EQ_INT(cm_tconn_reply(s.held[0], &rsp, 0), 0);
    s.nheld = 0;
    s.mode = REPLY_NOW;
    run_until(&r.done, 15000);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "late");
    result_free(&r);

    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.accepted, 2);
    CHECK_EQ_INT(st.requests, 5);
    CHECK_EQ_INT(st.tls_failed, 0);
    client_close(c);
    server_stop(&s);
}

/* A certificate the client must refuse: CM_ECERT, nothing sent, the reason logged. */
static void
refused(cm_transport *c, const char *addr, const char *reason)
{
    result r = {0};
    logcap_start();
    call(c, addr, "x", 15000, &r);
    char *log = logcap_end();
    CHECK_EQ_INT(r.status, CM_ECERT);
    CHECK(r.flags & CM_RT_UNSENT);
    CHECK(strstr(log, "the server's certificate is not trusted") != NULL);
    CHECK(strstr(log, reason) != NULL);
    free(log);
    result_free(&r);
}

static void
test_verification(void)
{
    cm_transport_opts so;
    server_opts(&so);
    server s;
    server_start(&s, &so);

    /* Another CA. */
    cm_transport *c = tls_client(path("other-ca.pem"), 0, NULL);
    refused(c, s.addr, "unable to get local issuer certificate");
    client_close(c);
    /* The system store does not know the test CA either. */
    c = tls_client(NULL, 0, NULL);
    refused(c, s.addr, "unable to get local issuer certificate");
    client_close(c);
    /* The right CA, the wrong name. */
    c = tls_client(path("ca.pem"), 0, "wrong.example");
    refused(c, s.addr, "hostname mismatch");
    client_close(c);
    /* ... and the right name given explicitly. */
    c = tls_client(path("ca.pem"), 0, "localhost");
    result r = {0};
    call(c, s.addr, "named", 15000, &r);
    CHECK_EQ_INT(r.status, 0);
    result_free(&r);
    client_close(c);
    CHECK_EQ_INT(s.seen, 1);
    run_for(50);
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.tls_failed, 3);
    CHECK_EQ_INT(st.active, 0);

    /* The insecure opt-in accepts the unknown CA, and says so once. */
    logcap_start();
    c = tls_client(path("other-ca.pem"), 1, NULL);
    call(c, s.addr, "insecure", 15000, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "insecure");
    result_free(&r);
    call(c, s.addr, "again", 15000, &r);
    CHECK_EQ_INT(r.status, 0);
    result_free(&r);
    char *log = logcap_end();
    CHECK_EQ_INT(logcap_count(log, "[transport.http] TLS verification is off (tls_insecure, "
                                   "MICRO_TRANSPORT_TLS_INSECURE): this client accepts any "
                                   "server certificate"),
                 1);
    free(log);
    client_close(c);
    server_stop(&s);

    /* A self-signed server certificate is refused unless the client trusts it as a CA. */
    cm_transport_opts_init(&so);
    so.tls_cert_file = path("self.pem");
    so.tls_key_file = path("self.key");
    server_start(&s, &so);
    c = tls_client(path("ca.pem"), 0, NULL);
    refused(c, s.addr, "self-signed certificate");
    client_close(c);
    c = tls_client(path("self.pem"), 0, NULL);
    call(c, s.addr, "self", 15000, &r);
    CHECK_EQ_INT(r.status, 0);
    result_free(&r);
    client_close(c);
    server_stop(&s);
}

static void
test_crossed(void)
{
    /* A plain client to a TLS listener: Go's plain-text 400. */
    cm_transport_opts so;
    server_opts(&so);
    server s;
    server_start(&s, &so);
    cm_transport *plain;
    CHECK_EQ_INT(cm_transport_new(CL, "http", NULL, &plain), 0);
    result r = {0};
    call(plain, s.addr, "plain", 15000, &r);
    CHECK_EQ_INT(r.status, CM_EPROTO);
    CHECK_EQ_STR(r.code, "400");
    CHECK_EQ_STR(r.body, "Client sent an HTTP request to an HTTPS server.\n");
    result_free(&r);
    CHECK_EQ_INT(s.seen, 0);
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.tls_failed, 1);
    server_stop(&s);

    /* A TLS client to a plain listener: CM_ETLS, and the log says why. */
    server_start(&s, NULL);
    cm_transport *c = tls_client(path("ca.pem"), 0, NULL);
    logcap_start();
    call(c, s.addr, "x", 15000, &r);
    char *log = logcap_end();
    CHECK_EQ_INT(r.status, CM_ETLS);
    CHECK(r.flags & CM_RT_UNSENT);
    CHECK(strstr(log, "the server answered in plain HTTP") != NULL);
    free(log);
    result_free(&r);
    CHECK_EQ_INT(s.seen, 0);
    /* The plain client still works there. */
    call(plain, s.addr, "plain", 15000, &r);
    CHECK_EQ_INT(r.status, 0);
    result_free(&r);
    client_close(c);
    client_close(plain);
    server_stop(&s);
}

typedef struct rawjob {
    int port;
    const char *send; /* NULL: nothing */
    size_t nsend;
    int eof;
    size_t got;
    uint64_t ms;
} rawjob;

static void
stall_job(void *arg)
{
    rawjob *j = arg;
    uint64_t t0 = uv_hrtime();
    int fd = raw_connect(j->port);
    if (j->send) {
        raw_send(fd, j->send, j->nsend);
    }
    char buf[4096];
    j->got = raw_read_all(fd, buf, sizeof(buf), &j->eof);
    j->ms = (uv_hrtime() - t0) / 1000000;
    close(fd);
}

/* The header timeout bounds a handshake that does not come, or stops half way. */
static void
test_server_stall(void)
{
    cm_transport_opts so;
    server_opts(&so);
    so.header_timeout_ms = 300;
    server s;
    server_start(&s, &so);
    /* The start of a ClientHello record: type 22, TLS 1.0, 512 bytes announced. */
    static const char partial[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    rawjob jobs[2] = {{s.port, NULL, 0, 0, 0, 0}, {s.port, partial, sizeof(partial) - 1, 0, 0, 0}};
    for (int i = 0; i < 2; i++) {
        in_thread(stall_job, &jobs[i]);
        CHECK(jobs[i].eof);
        CHECK_EQ_INT(jobs[i].got, 0);
        CHECK(jobs[i].ms >= 250 && jobs[i].ms < 2000);
    }
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.timeouts, 2);
    CHECK_EQ_INT(st.tls_failed, 2);
    server_stop(&s);
}

/* A server that accepts connections (the kernel does: listen without accept) and never answers:
 * the dial timeout bounds the handshake even without a round trip timeout. */
static void
test_client_stall(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK_EQ_INT(listen(fd, 8), 0);
    socklen_t len = sizeof(sa);
    CHECK_EQ_INT(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));

    cm_transport_opts o;
    cm_transport_opts_init(&o);
    o.tls_ca_file = path("ca.pem"); /* TLS on by the CA alone */
    o.dial_timeout_ms = 300;
    cm_transport *c;
    CHECK_EQ_INT(cm_transport_new(CL, "http", &o, &c), 0);
    result r = {0};
    uint64_t t0 = uv_hrtime();
    logcap_start();
    call(c, addr, "x", 0, &r);
    char *log = logcap_end();
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    CHECK_EQ_INT(r.status, CM_ETIMEDOUT);
    CHECK(r.flags & CM_RT_UNSENT);
    CHECK(ms >= 250 && ms < 2000);
    CHECK(strstr(log, "the TLS handshake timed out") != NULL);
    free(log);
    result_free(&r);
    client_close(c);
    close(fd);
}

/* ---- a raw TLS client (OpenSSL, blocking, on a helper thread) ---- */

typedef struct tlsjob {
    int port;
    const char *head; /* sent first */
    const char *body; /* sent after "100 Continue" when expect is set, else with head */
    int expect;       /* wait for "HTTP/1.1 100 Continue" before the body */
    int half_close;   /* close_notify (and TCP FIN) after the request */
    char got[8192];   /* everything read until the server closed, or 3 s */
    int closed;       /* the server closed the connection */
    int continue_seen;
} tlsjob;

static SSL *
tls_connect(int port, SSL_CTX **ctx, int *fd)
{
    *ctx = SSL_CTX_new(TLS_client_method());
    CHECK(*ctx != NULL);
    CHECK_EQ_INT(SSL_CTX_load_verify_locations(*ctx, path("ca.pem"), NULL), 1);
    SSL_CTX_set_verify(*ctx, SSL_VERIFY_PEER, NULL);
    *fd = raw_connect(port);
    SSL *ssl = SSL_new(*ctx);
    CHECK(ssl != NULL);
    SSL_set_fd(ssl, *fd);
    CHECK_EQ_INT(SSL_set1_host(ssl, "localhost"), 1);
    CHECK_EQ_INT(SSL_connect(ssl), 1);
    return ssl;
}

static void
tls_send(SSL *ssl, const char *s)
{
    if (*s) {
        CHECK_EQ_INT(SSL_write(ssl, s, (int)strlen(s)), (int)strlen(s));
    }
}

static void
tls_job(void *arg)
{
    tlsjob *j = arg;
    SSL_CTX *ctx;
    int fd;
    SSL *ssl = tls_connect(j->port, &ctx, &fd);
    tls_send(ssl, j->head);
    size_t n = 0;
    if (j->expect) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        while (n < sizeof(cont) - 1) {
            int r = SSL_read(ssl, j->got + n, (int)(sizeof(cont) - 1 - n));
            CHECK(r > 0);
            n += (size_t)r;
        }
        j->continue_seen = memcmp(j->got, cont, n) == 0;
        n = 0;
    }
    tls_send(ssl, j->body);
    if (j->half_close) {
        CHECK(SSL_shutdown(ssl) >= 0);
        shutdown(fd, SHUT_WR);
    }
    for (;;) {
        int r = SSL_read(ssl, j->got + n, (int)(sizeof(j->got) - 1 - n));
        if (r <= 0) {
            int e = SSL_get_error(ssl, r);
            j->closed = e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL;
            break;
        }
        n += (size_t)r;
    }
    j->got[n] = '\0';
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
}

/* The server's HTTP handling is the same over TLS: half-close, 100-continue, limits, strict
 * parsing and keep-alive. */
static void
test_server_http(void)
{
    cm_transport_opts so;
    server_opts(&so);
    so.max_body_bytes = 1000;
    server s;
    server_start(&s, &so);

    /* A request, then close_notify and FIN: the reply still comes, then the close. */
    tlsjob j = {
        s.port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", "hello", 0, 1, {0}, 0,
        0};
    in_thread(tls_job, &j);
    CHECK(strncmp(j.got, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(j.got, "\r\n\r\nhello") != NULL);
    CHECK(j.closed);

    /* Expect: 100-continue. */
    tlsjob k = {s.port,
                "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"
                "Connection: close\r\n\r\n",
                "abc",
                1,
                0,
                {0},
                0,
                0};
    in_thread(tls_job, &k);
    CHECK(k.continue_seen);
    CHECK(strncmp(k.got, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(k.got, "\r\n\r\nabc") != NULL);
    CHECK(k.closed);

    /* Over the body limit: the callback answers the refusal, and the connection closes. */
    tlsjob l = {
        s.port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", "", 0, 0, {0}, 0, 0};
    in_thread(tls_job, &l);
    CHECK(strstr(l.got, "X-Refused: CM_ETOOBIG\r\n") != NULL);
    CHECK(l.closed);
    CHECK_EQ_INT(s.last_refusal, CM_ETOOBIG);

    /* The strict reading: whitespace before a colon is a 400. */
    tlsjob m = {
        s.port, "POST / HTTP/1.1\r\nHost : x\r\nContent-Length: 0\r\n\r\n", "", 0, 0, {0}, 0, 0};
    in_thread(tls_job, &m);
    CHECK(strncmp(m.got, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    CHECK(strstr(m.got, "whitespace between a header name and its colon") != NULL);
    CHECK(m.closed);

    /* Two requests in one write (keep-alive, pipelined) get two replies in order. */
    tlsjob p = {s.port,
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo",
                "",
                0,
                0,
                {0},
                0,
                0};
    in_thread(tls_job, &p);
    char *one = strstr(p.got, "\r\n\r\none");
    char *two = strstr(p.got, "\r\n\r\ntwo");
    CHECK(one != NULL && two != NULL && one < two);
    CHECK(p.closed);

    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.tls_failed, 0);
    CHECK_EQ_INT(st.accepted, 5);
    server_stop(&s);
}

static void
test_config_errors(void)
{
    cm_transport_opts o;
    cm_transport *t;
    cm_transport_opts_init(&o);
    o.tls_cert_file = path("missing.pem");
    logcap_start();
    CHECK_EQ_INT(cm_transport_new(CL, "http", &o, &t), CM_EINVAL);
    char *log = logcap_end();
    CHECK(strstr(log, "cannot use certificate") != NULL && strstr(log, "missing.pem") != NULL);
    free(log);
    /* A key that is not the certificate's. */
    o.tls_cert_file = path("server.pem");
    o.tls_key_file = path("self.key");
    CHECK_EQ_INT(cm_transport_new(CL, "http", &o, &t), CM_EINVAL);
    o.tls_key_file = NULL;
    o.tls_cert_file = NULL;
    o.tls_ca_file = path("missing-ca.pem");
    CHECK_EQ_INT(cm_transport_new(CL, "http", &o, &t), CM_EINVAL);

    /* TLS without a certificate: a client, not a listener. */
    cm_transport_opts_init(&o);
    o.tls = 1;
    CHECK_EQ_INT(cm_transport_new(CL, "http", &o, &t), 0);
    cm_listener *l;
    logcap_start();
    CHECK_EQ_INT(cm_transport_listen(t, "127.0.0.1:0", on_request, NULL, &l), CM_EINVAL);
    log = logcap_end();
    CHECK(strstr(log, "a TLS listener needs a certificate") != NULL);
    free(log);
    client_close(t);
}

int
main(int argc, char **argv)
{
    CHECK(argc == 2);
    snprintf(dir, sizeof(dir), "%s", "/tmp/cmicro-tls-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    char *cmd = strdupf("sh '%s' '%s'", argv[1], dir);
    CHECK_EQ_INT(system(cmd), 0);
    free(cmd);
    harness_init();
    RUN(test_calls);
    RUN(test_verification);
    RUN(test_crossed);
    RUN(test_server_stall);
    RUN(test_server_http);
    RUN(test_client_stall);
    RUN(test_config_errors);
    harness_done();
    cmd = strdupf("rm -rf '%s'", dir);
    CHECK_EQ_INT(system(cmd), 0);
    free(cmd);
    TEST_DONE();
}
