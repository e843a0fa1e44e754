/* Streams, C client against C server over the HTTP transport on loopback: server-stream,
 * client-stream (ended by close-send and by a message marked last, as go-micro clients must),
 * bidi, a handler's go-micro error mid-stream, the deadline ending both sides, flow control
 * bounding what a writer queues for a reader that sleeps, and the drain of a stopping server
 * canceling a stream. Proto and JSON codecs. With a CA script as argument (test/common/
 * make-test-ca.sh) all of it again over TLS, and a client that does not trust the server's
 * certificate fails to open a stream with CM_ECERT. */
#include "rpctest.pb-c.h"
#include "test.h"
#include "testsrv.h"

#include <cmicro/cmicro.h>
#include <stdatomic.h>
#include <uv.h>

#define WINDOW (16 * 1024)

static atomic_int slow_status;   /* what Test.Slow's send returned when it stopped */
static atomic_int cancel_status; /* what Test.Hold's recv returned */
static atomic_size_t flow_max;   /* Test.Count's most queued bytes */
static atomic_int hold_started;

static int
count(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    Rpctest__Req *in;
    int rc = cm_stream_recv(st, (void **)&in);
    if (rc < 0) {
        return rc;
    }
    int64_t n = in->n;
    int32_t fail = in->fail_code;
    int32_t sleep_ms = in->sleep_ms;
    size_t pad = strlen(in->name);
    cm_message_free(&rpctest__req__descriptor, in);
    char *msg = calloc(1, pad + 1);
    memset(msg, 'x', pad);
    for (int64_t i = 0; i < n; i++) {
        Rpctest__Rsp out = RPCTEST__RSP__INIT;
        out.n = i;
        out.msg = msg;
        if ((rc = cm_stream_send(st, &out)) < 0) {
            break;
        }
        if (sleep_ms > 0) {
            uv_sleep((unsigned)sleep_ms);
        }
    }
    free(msg);
    cm_stream_stats ss;
    cm_stream_get_stats(st, &ss);
    atomic_store(&flow_max, ss.max_queued);
    if (rc < 0) {
        return rc;
    }
    return fail ? cm_ctx_error(ctx, fail, "failed after %lld messages", (long long)n) : 0;
}

static int
sum(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    int64_t total = 0, seen = 0;
    for (;;) {
        Rpctest__Req *in;
        int rc = cm_stream_recv(st, (void **)&in);
        if (rc == CM_EOF) {
            break;
        }
        if (rc < 0) {
            return rc;
        }
        total += in->n;
        seen++;
        int last = strcmp(in->name, "last") == 0;
        cm_message_free(&rpctest__req__descriptor, in);
        if (last) {
            break;
        }
    }
    Rpctest__Rsp out = RPCTEST__RSP__INIT;
    out.n = total;
    char text[64];
    snprintf(text, sizeof text, "%lld messages", (long long)seen);
    out.msg = text;
    return cm_stream_send(st, &out);
}

static int
echo(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    for (;;) {
        Rpctest__Req *in;
        int rc = cm_stream_recv(st, (void **)&in);
        if (rc == CM_EOF) {
            return 0;
        }
        if (rc < 0) {
            return rc;
        }
        Rpctest__Rsp out = RPCTEST__RSP__INIT;
        out.n = in->n * 2;
        out.msg = in->name;
        const char *h = cm_ctx_get(ctx, "X-Tenant");
        out.header = (char *)(h ? h : "");
        rc = cm_stream_send(st, &out);
        cm_message_free(&rpctest__req__descriptor, in);
        if (rc < 0) {
            return rc;
        }
    }
}

/* Sends every 50 ms until the stream ends (its deadline). */
static int
slow(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    void *in;
    int rc = cm_stream_recv(st, &in);
    if (rc < 0) {
        return rc;
    }
    cm_message_free(&rpctest__req__descriptor, in);
    Rpctest__Rsp out = RPCTEST__RSP__INIT;
    while ((rc = cm_stream_send(st, &out)) == 0) {
        uv_sleep(50);
    }
    atomic_store(&slow_status, rc);
    return rc;
}

/* Waits for messages that never come (the drain cancels it). */
static int
hold(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    void *in = NULL;
    atomic_store(&hold_started, 1);
    int rc;
    while ((rc = cm_stream_recv(st, &in)) == 0) {
        cm_message_free(&rpctest__req__descriptor, in);
    }
    atomic_store(&cancel_status, rc);
    return rc;
}

/* TLS: the directory of the test PKI, "" for plain HTTP. */
static char tls_dir[256];

static const char *
tls_path(const char *name)
{
    static char buf[3][512];
    static int i;
    i = (i + 1) % 3;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", tls_dir, name);
    return buf[i];
}

static void
srv_start(testsrv *t)
{
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "rpctest";
    o.address = "127.0.0.1:0";
    o.workers = 6;
    o.drain_timeout_ms = 300;
    if (tls_dir[0]) {
        o.transport_opts.tls_cert_file = tls_path("server.pem");
        o.transport_opts.tls_key_file = tls_path("server.key");
    }
    testsrv_new(t, &o);
    static const char *const md[] = {"stream", "true", NULL};
    struct {
        const char *ep;
        cm_handler_fn fn;
    } hs[] = {{"Test.Count", count},
              {"Test.Sum", sum},
              {"Test.Echo", echo},
              {"Test.Slow", slow},
              {"Test.Hold", hold}};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        cm_handler h = {hs[i].ep,
                        &rpctest__req__descriptor,
                        &rpctest__rsp__descriptor,
                        hs[i].fn,
                        CM_HANDLER_STREAM,
                        NULL,
                        NULL,
                        md};
        CHECK_EQ_INT(cm_server_handle(t->s, &h, NULL), 0);
    }
    testsrv_start(t);
}

static testsrv S;
static cm_client *C;
static const char *CT;

static cm_stream *
open_stream(const char *ep, uint64_t timeout_ms, size_t window, const cm_md *md)
{
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = S.addr;
    co.content_type = CT;
    co.timeout_ms = timeout_ms;
    co.md = md;
    cm_stream_opts so;
    cm_stream_opts_init(&so);
    if (window) {
        so.window_bytes = window;
    }
    cm_stream *st = NULL;
    cm_error *err = NULL;
    int rc = cm_client_stream(C, "rpctest", ep, &rpctest__req__descriptor,
                              &rpctest__rsp__descriptor, &co, &so, &st, &err);
    if (rc != 0) {
        fprintf(stderr, "open %s: %s %s\n", ep, cm_strerror(rc), err ? cm_error_to_json(err) : "");
    }
    CHECK_EQ_INT(rc, 0);
    return st;
}

static void
send_req(cm_stream *st, const char *name, int64_t n, int32_t fail, int32_t sleep_ms)
{
    Rpctest__Req r = RPCTEST__REQ__INIT;
    r.name = (char *)name;
    r.n = n;
    r.fail_code = fail;
    r.sleep_ms = sleep_ms;
    CHECK_EQ_INT(cm_stream_send(st, &r), 0);
}

static void
test_server_stream(void)
{
    cm_stream *st = open_stream("Test.Count", 0, 0, NULL);
    send_req(st, "", 300, 0, 0);
    for (int64_t i = 0; i < 300; i++) {
        Rpctest__Rsp *m;
        CHECK_EQ_INT(cm_stream_recv(st, (void **)&m), 0);
        CHECK_EQ_INT(m->n, i);
        cm_message_free(&rpctest__rsp__descriptor, m);
    }
    void *m;
    CHECK_EQ_INT(cm_stream_recv(st, &m), CM_EOF);
    CHECK_EQ_INT(cm_stream_recv(st, &m), CM_EOF);
    CHECK(cm_stream_error(st) == NULL);
    cm_stream_free(st);
}

static void
check_sum(cm_stream *st, int64_t want, const char *text)
{
    Rpctest__Rsp *m;
    CHECK_EQ_INT(cm_stream_recv(st, (void **)&m), 0);
    CHECK_EQ_INT(m->n, want);
    CHECK_EQ_STR(m->msg, text);
    cm_message_free(&rpctest__rsp__descriptor, m);
}

static void
test_client_stream(void)
{
    /* Ended by close-send: the server's recv sees EOS; it sends no EOS back (go-micro's rule),
     * so the client's next recv sees the connection end. */
    cm_stream *st = open_stream("Test.Sum", 0, 0, NULL);
    for (int i = 1; i <= 50; i++) {
        send_req(st, "", i, 0, 0);
    }
    CHECK_EQ_INT(cm_stream_close_send(st), 0);
    Rpctest__Req r = RPCTEST__REQ__INIT;
    CHECK_EQ_INT(cm_stream_send(st, &r), CM_EOF);
    check_sum(st, 1275, "50 messages");
    void *m;
    int rc = cm_stream_recv(st, &m);
    CHECK(rc == CM_ECLOSED || rc == CM_EOF);
    cm_stream_free(st);

    /* Ended by a message marked last, as a go-micro client must (it cannot half-close): the
     * server sends the sum, then EOS. */
    st = open_stream("Test.Sum", 0, 0, NULL);
    for (int i = 1; i <= 9; i++) {
        send_req(st, "", i, 0, 0);
    }
    send_req(st, "last", 10, 0, 0);
    check_sum(st, 55, "10 messages");
    CHECK_EQ_INT(cm_stream_recv(st, &m), CM_EOF);
    cm_stream_free(st);
}

static void
test_bidi(void)
{
    cm_md *md = cm_md_new();
    cm_md_set(md, "x-tenant", "acme");
    cm_stream *st = open_stream("Test.Echo", 0, 0, md);
    cm_md_free(md);
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "m%d", i);
        send_req(st, name, i, 0, 0);
        Rpctest__Rsp *m;
        CHECK_EQ_INT(cm_stream_recv(st, (void **)&m), 0);
        CHECK_EQ_INT(m->n, 2 * i);
        CHECK_EQ_STR(m->msg, name);
        CHECK_EQ_STR(m->header, "acme");
        cm_message_free(&rpctest__rsp__descriptor, m);
    }
    CHECK_EQ_INT(cm_stream_close_send(st), 0);
    void *m;
    int rc = cm_stream_recv(st, &m);
    CHECK(rc == CM_ECLOSED || rc == CM_EOF);
    cm_stream_free(st);
}

static void
test_error(void)
{
    cm_stream *st = open_stream("Test.Count", 0, 0, NULL);
    send_req(st, "", 5, 409, 0);
    for (int64_t i = 0; i < 5; i++) {
        Rpctest__Rsp *m;
        CHECK_EQ_INT(cm_stream_recv(st, (void **)&m), 0);
        CHECK_EQ_INT(m->n, i);
        cm_message_free(&rpctest__rsp__descriptor, m);
    }
    void *m;
    CHECK_EQ_INT(cm_stream_recv(st, &m), CM_EREMOTE);
    const cm_error *e = cm_stream_error(st);
    CHECK(e != NULL);
    CHECK_EQ_INT(e->code, 409);
    CHECK_EQ_STR(e->id, "rpctest");
    CHECK_EQ_STR(e->detail, "failed after 5 messages");
    Rpctest__Req r = RPCTEST__REQ__INIT;
    CHECK_EQ_INT(cm_stream_send(st, &r), CM_EREMOTE);
    cm_stream_free(st);
}

static void
test_deadline(void)
{
    atomic_store(&slow_status, 1);
    uint64_t t0 = cm_now_ms();
    cm_stream *st = open_stream("Test.Slow", 400, 0, NULL);
    CHECK(cm_stream_remaining_ms(st) > 0);
    send_req(st, "", 0, 0, 0);
    int rc;
    void *m;
    int got = 0;
    while ((rc = cm_stream_recv(st, &m)) == 0) {
        cm_message_free(&rpctest__rsp__descriptor, m);
        got++;
    }
    uint64_t took = cm_now_ms() - t0;
    CHECK_EQ_INT(rc, CM_ETIMEDOUT);
    CHECK(got >= 3);
    CHECK(took >= 390 && took < 1500);
    /* The server's side ends too: its send fails once the deadline passed. */
    for (int i = 0; i < 100 && atomic_load(&slow_status) == 1; i++) {
        uv_sleep(20);
    }
    rc = atomic_load(&slow_status);
    CHECK(rc == CM_ETIMEDOUT || rc == CM_ECLOSED);
    cm_stream_free(st);
}

static void
test_flow_control(void)
{
    /* 2000 messages of ~1 KiB to a reader that sleeps first: the server's queue stays within
     * its window (plus one message) and every message arrives in order. */
    cm_stream *st = open_stream("Test.Count", 0, WINDOW, NULL);
    char pad[1001];
    memset(pad, 'p', 1000);
    pad[1000] = '\0';
    send_req(st, pad, 2000, 0, 0);
    uv_sleep(500);
    for (int64_t i = 0; i < 2000; i++) {
        Rpctest__Rsp *m;
        CHECK_EQ_INT(cm_stream_recv(st, (void **)&m), 0);
        CHECK_EQ_INT(m->n, i);
        CHECK_EQ_INT(strlen(m->msg), 1000);
        cm_message_free(&rpctest__rsp__descriptor, m);
    }
    void *m;
    CHECK_EQ_INT(cm_stream_recv(st, &m), CM_EOF);
    cm_stream_stats ss;
    cm_stream_get_stats(st, &ss);
    CHECK_EQ_INT(ss.received, 2000);
    cm_stream_free(st);
    size_t max = atomic_load(&flow_max);
    fprintf(stderr, "server queued at most %zu bytes (window %d)\n", max, 64 * 1024);
    CHECK(max > 0 && max <= 64 * 1024 + 1100);
}

/* The loop thread's API: the notify hook drains the stream with try_recv (never blocking) and
 * answers with try_send, on the client's loop thread. */
typedef struct async_reader {
    uv_mutex_t mu;
    uv_cond_t cv;
    int64_t next;  /* the next seq expected */
    int end;       /* the status that ended it */
    int blocking;  /* what a blocking recv answered on the loop thread */
    int sent_back; /* try_send on the loop thread worked */
} async_reader;

static void
on_notify(cm_stream *st, void *arg)
{
    async_reader *r = arg;
    void *m;
    int rc;
    r->blocking = cm_stream_recv(st, &m); /* the loop thread may not block */
    while ((rc = cm_stream_try_recv(st, &m)) == 0) {
        Rpctest__Rsp *rsp = m;
        if (rsp->n == r->next) {
            r->next++;
        }
        cm_message_free(&rpctest__rsp__descriptor, m);
    }
    if (rc != CM_EAGAIN) {
        Rpctest__Req req = RPCTEST__REQ__INIT;
        uv_mutex_lock(&r->mu);
        r->sent_back = cm_stream_try_send(st, &req);
        r->end = rc;
        uv_cond_signal(&r->cv);
        uv_mutex_unlock(&r->mu);
    }
}

static async_reader r; /* static: a notify already running when the hook is removed finds it */

static void
test_async(void)
{
    static int init;
    if (!init) {
        uv_mutex_init(&r.mu);
        uv_cond_init(&r.cv);
        init = 1;
    }
    r.next = r.end = r.blocking = r.sent_back = 0;
    cm_stream *st = open_stream("Test.Count", 0, 0, NULL);
    send_req(st, "", 1000, 0, 0);
    cm_stream_set_notify(st, on_notify, &r);
    uv_mutex_lock(&r.mu);
    while (r.end == 0) {
        uv_cond_wait(&r.cv, &r.mu);
    }
    uv_mutex_unlock(&r.mu);
    CHECK_EQ_INT(r.end, CM_EOF);
    CHECK_EQ_INT(r.next, 1000);
    CHECK_EQ_INT(r.blocking, CM_ESTATE);
    CHECK(r.sent_back == 0 || r.sent_back == CM_ECLOSED); /* the server may have closed */
    cm_stream_set_notify(st, NULL, NULL);
    cm_stream_free(st);
}

/* A notify hook is borrowed until cm_stream_free: a call under way (slow here) ends before the
 * free returns, and none comes after, while the server still sends. */
static atomic_int note_first, note_freed, note_after;

static void
on_slow_note(cm_stream *s, void *arg)
{
    (*(int *)arg)++; /* freed right after cm_stream_free */
    atomic_fetch_add(&note_after, atomic_load(&note_freed));
    void *m;
    if (cm_stream_try_recv(s, &m) == 0) {
        cm_message_free(&rpctest__rsp__descriptor, m);
        if (!atomic_exchange(&note_first, 1)) {
            uv_sleep(300);
        }
    }
}

static void
test_notify_until_free(void)
{
    atomic_store(&note_first, 0);
    atomic_store(&note_freed, 0);
    cm_stream *st = open_stream("Test.Count", 0, 4 << 20, NULL);
    int *calls = calloc(1, sizeof(*calls));
    send_req(st, "", 20000, 0, 0);
    cm_stream_set_notify(st, on_slow_note, calls);
    while (!atomic_load(&note_first)) {
        uv_sleep(1);
    }
    cm_stream_free(st); /* while the first call sleeps */
    atomic_store(&note_freed, 1);
    free(calls);
    uv_sleep(300);
    CHECK_EQ_INT(atomic_load(&note_after), 0);
}

/* Messages sent at once after the opening, likely before the connection is up, with a window
 * smaller than one message: each send waits for the previous one to be written, also for those
 * that were written when the connection came up (a regression: their count stayed). */
static void
test_early_sends(void)
{
    /* By name: the lookup (on libuv's threads) delays the connect past the first sends. */
    char saved[128];
    snprintf(saved, sizeof saved, "%s", S.addr);
    snprintf(S.addr, sizeof S.addr, "localhost:%s", strrchr(saved, ':') + 1);
    cm_stream *st = open_stream("Test.Sum", 5000, 1024, NULL);
    snprintf(S.addr, sizeof S.addr, "%s", saved);
    char pad[2049];
    memset(pad, 'e', 2048);
    pad[2048] = '\0';
    for (int i = 1; i <= 20; i++) {
        send_req(st, pad, i, 0, 0);
    }
    CHECK_EQ_INT(cm_stream_close_send(st), 0);
    check_sum(st, 210, "20 messages");
    cm_stream_stats ss;
    cm_stream_get_stats(st, &ss);
    CHECK(ss.max_queued < 1024 + 2048 + 1024);
    cm_stream_free(st);
}

static void
run_codec(const char *ct)
{
    CT = ct;
    fprintf(stderr, "== %s\n", ct);
    RUN(test_server_stream);
    RUN(test_client_stream);
    RUN(test_bidi);
    RUN(test_error);
    RUN(test_deadline);
    RUN(test_flow_control);
    RUN(test_async);
    RUN(test_early_sends);
    RUN(test_notify_until_free);
}

static void
test_drain(void)
{
    CT = CM_CT_PROTOBUF;
    atomic_store(&cancel_status, 1);
    cm_stream *st = open_stream("Test.Hold", 0, 0, NULL);
    send_req(st, "", 0, 0, 0);
    for (int i = 0; i < 100 && !atomic_load(&hold_started); i++) {
        uv_sleep(10);
    }
    CHECK(atomic_load(&hold_started));
    uint64_t t0 = cm_now_ms();
    testsrv_free(&S); /* a graceful stop: the drain timeout (300 ms) cancels the stream */
    uint64_t took = cm_now_ms() - t0;
    CHECK(took >= 250 && took < 3000);
    CHECK_EQ_INT(atomic_load(&cancel_status), CM_ECANCELED);
    void *m;
    int rc = cm_stream_recv(st, &m);
    CHECK(rc == CM_ECLOSED || rc == CM_EREMOTE);
    cm_stream_free(st);
}

static cm_client *
tls_client(const char *ca)
{
    cm_client_opts o;
    cm_client_opts_init(&o);
    o.transport_opts.tls_ca_file = tls_path(ca);
    cm_client *c = NULL;
    CHECK_EQ_INT(cm_client_new(NULL, &o, &c), 0);
    return c;
}

/* A client that trusts another CA: the handshake fails, and so does the stream, with why. */
static void
test_tls_untrusted(void)
{
    cm_client *c = tls_client("other-ca.pem");
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = S.addr;
    co.timeout_ms = 5000;
    cm_stream *st = NULL;
    cm_error *err = NULL;
    int rc = cm_client_stream(c, "rpctest", "Test.Echo", &rpctest__req__descriptor,
                              &rpctest__rsp__descriptor, &co, NULL, &st, &err);
    if (rc == 0) { /* the stream opens at once; the handshake's failure ends it */
        Rpctest__Req r = RPCTEST__REQ__INIT;
        cm_stream_send(st, &r);
        void *m = NULL;
        rc = cm_stream_recv(st, &m);
        CHECK(m == NULL);
        err = cm_stream_error(st) ? cm_error_dup(cm_stream_error(st)) : NULL;
        cm_stream_free(st);
    }
    fprintf(stderr, "   untrusted: %s: %s\n", cm_err_name(rc), err ? err->detail : "");
    CHECK_EQ_INT(rc, CM_ECERT);
    cm_error_free(err);
    cm_client_free(c);
}

int
main(int argc, char **argv)
{
    if (argc > 1) {
        snprintf(tls_dir, sizeof tls_dir, "%s", "/tmp/cmicro-stream-tls-XXXXXX");
        CHECK(mkdtemp(tls_dir) != NULL);
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "sh '%s' '%s'", argv[1], tls_dir);
        CHECK_EQ_INT(system(cmd), 0);
    }
    srv_start(&S);
    if (tls_dir[0]) {
        C = tls_client("ca.pem");
    } else {
        CHECK_EQ_INT(cm_client_new(NULL, NULL, &C), 0);
    }
    run_codec(CM_CT_PROTOBUF);
    run_codec(CM_CT_JSON);
    if (tls_dir[0]) {
        RUN(test_tls_untrusted);
    }
    RUN(test_drain);
    cm_client_free(C);
    if (tls_dir[0]) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tls_dir);
        CHECK_EQ_INT(system(cmd), 0);
    }
    TEST_DONE();
}
