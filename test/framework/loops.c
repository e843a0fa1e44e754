/* A server on several event loops (cm_server_opts.loops), at 1 and at 2 loops, on loopback:
 * 64 connections' calls are all answered and, at 2, both loops accepted some of them
 * (SO_REUSEPORT); a graceful stop with calls in flight on every loop drains them all; streams
 * are served on both loops; a service's GET answers (served on loop 0) come back through
 * connections of either loop; MICRO_SERVER_LOOPS and the service option. */
#include "rpctest.pb-c.h"
#include "test.h"
#include "testsrv.h"

#include <cmicro/cmicro.h>
#include <curl/curl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <uv.h>

#define CONNS 64

/* A gate in the handler: calls wait there until CONNS of them are in (5 s at most), so that the
 * client holds CONNS connections at once, however late its threads start. */
static uv_mutex_t gate_mu;
static uv_cond_t gate_cv;
static int gate_in;

static void
gate_wait(void)
{
    uv_mutex_lock(&gate_mu);
    if (++gate_in % CONNS == 0) {
        uv_cond_broadcast(&gate_cv);
    } else {
        int round = gate_in / CONNS;
        uint64_t end = uv_hrtime() + 5000000000u;
        while (gate_in / CONNS == round && uv_hrtime() < end) {
            uv_cond_timedwait(&gate_cv, &gate_mu, 100000000u);
        }
    }
    uv_mutex_unlock(&gate_mu);
}

static int
echo(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    (void)user;
    const Rpctest__Req *req = vreq;
    Rpctest__Rsp *rsp = vrsp;
    if (req->sleep_ms < 0) { /* the gate, then -sleep_ms ms */
        gate_wait();
    }
    if (req->sleep_ms != 0) {
        uv_sleep((unsigned)abs(req->sleep_ms));
    }
    rsp->msg = cm_ctx_sprintf(ctx, "Hello %s", req->name);
    rsp->n = req->n * 2;
    return 0;
}

/* Echoes every message of the stream until the client ends it. */
static int
bidi(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
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
        out.n = in->n + 1;
        out.msg = in->name;
        rc = cm_stream_send(st, &out);
        cm_message_free(&rpctest__req__descriptor, in);
        if (rc < 0) {
            return rc;
        }
    }
}

static void
srv_start(testsrv *t, unsigned loops)
{
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "rpctest";
    o.address = "127.0.0.1:0";
    o.workers = CONNS;
    o.drain_timeout_ms = 5000;
    o.loops = loops;
    testsrv_new(t, &o);
    cm_handler h = {
        "Test.Echo", &rpctest__req__descriptor, &rpctest__rsp__descriptor, echo, 0, NULL, NULL,
        NULL};
    CHECK_EQ_INT(cm_server_handle(t->s, &h, NULL), 0);
    cm_handler hs = {"Test.Bidi",
                     &rpctest__req__descriptor,
                     &rpctest__rsp__descriptor,
                     bidi,
                     CM_HANDLER_STREAM,
                     NULL,
                     NULL,
                     NULL};
    CHECK_EQ_INT(cm_server_handle(t->s, &hs, NULL), 0);
    testsrv_start(t);
    CHECK_EQ_INT(cm_server_loops(t->s), loops);
}

/* ---- callers: one thread per connection ---- */

static testsrv S;
static cm_client *C;
static uv_barrier_t go;

typedef struct caller {
    uv_thread_t thread;
    int id;
    int calls;
    int sleep_ms;
    int ok;
} caller;

static int
call_once(int id, int sleep_ms)
{
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = S.addr;
    co.timeout_ms = 10000;
    co.max_attempts = 1;
    char name[32];
    snprintf(name, sizeof name, "c%d", id);
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = name;
    req.n = id;
    req.sleep_ms = sleep_ms;
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    int rc = cm_client_call(C, "rpctest", "Test.Echo", &rpctest__req__descriptor, &req,
                            &rpctest__rsp__descriptor, (void **)&rsp, &co, &err);
    if (rc != 0) {
        fprintf(stderr, "call %d: %s\n", id, cm_strerror(rc));
        cm_error_free(err);
        return 0;
    }
    char want[40];
    snprintf(want, sizeof want, "Hello %s", name);
    int ok = strcmp(rsp->msg, want) == 0 && rsp->n == 2 * id;
    cm_message_free(&rpctest__rsp__descriptor, rsp);
    return ok;
}

static void
caller_main(void *arg)
{
    caller *c = arg;
    uv_barrier_wait(&go);
    for (int i = 0; i < c->calls; i++) {
        /* The first call of every thread is in flight with all the others (sleep_ms -1: the
         * gate): the client opens a connection for each. */
        c->ok += call_once(c->id, i == 0 ? c->sleep_ms : 0);
    }
}

/* CONNS threads make calls calls each, the first sleeping sleep_ms in the handler; runs fn
 * while they are under way (may be NULL). Returns the calls answered correctly. */
static int
run_callers(int calls, int sleep_ms, void (*during)(void))
{
    caller cs[CONNS];
    uv_barrier_init(&go, CONNS + 1);
    for (int i = 0; i < CONNS; i++) {
        cs[i] = (caller){.id = i + 1, .calls = calls, .sleep_ms = sleep_ms};
        CHECK_EQ_INT(uv_thread_create(&cs[i].thread, caller_main, &cs[i]), 0);
    }
    uv_barrier_wait(&go);
    if (during != NULL) {
        during();
    }
    int ok = 0;
    for (int i = 0; i < CONNS; i++) {
        uv_thread_join(&cs[i].thread);
        ok += cs[i].ok;
    }
    uv_barrier_destroy(&go);
    return ok;
}

static void
check_spread(unsigned loops, uint64_t want_calls)
{
    cm_server_stats all, one;
    cm_server_get_stats(S.s, &all);
    uint64_t accepted = 0, calls = 0;
    for (unsigned i = 0; i < loops; i++) {
        CHECK_EQ_INT(cm_server_get_loop_stats(S.s, i, &one), 0);
        fprintf(stderr, "   loop %u: accepted %llu, calls %llu\n", i,
                (unsigned long long)one.accepted, (unsigned long long)one.calls);
        CHECK(one.accepted > 0); /* 64 connections all on one of 2 listeners: p = 2^-63 */
        CHECK(one.calls > 0);
        accepted += one.accepted;
        calls += one.calls;
    }
    CHECK_EQ_INT(cm_server_get_loop_stats(S.s, loops, &one), CM_EINVAL);
    CHECK_EQ_INT(accepted, all.accepted);
    CHECK(all.accepted >= CONNS);
    CHECK_EQ_INT(calls, all.calls);
    CHECK_EQ_INT(all.calls, want_calls);
    CHECK_EQ_INT(all.errors, 0);
}

static void
test_many_connections(unsigned loops)
{
    cm_server_stats before;
    cm_server_get_stats(S.s, &before);
    int ok = run_callers(20, -1, NULL);
    CHECK_EQ_INT(ok, CONNS * 20);
    check_spread(loops, before.calls + CONNS * 20);
}

/* ---- streams ---- */

#define STREAMS 32

static void
test_streams(unsigned loops)
{
    cm_stream *st[STREAMS];
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = S.addr;
    co.timeout_ms = 10000;
    for (int i = 0; i < STREAMS; i++) {
        cm_error *err = NULL;
        CHECK_EQ_INT(cm_client_stream(C, "rpctest", "Test.Bidi", &rpctest__req__descriptor,
                                      &rpctest__rsp__descriptor, &co, NULL, &st[i], &err),
                     0);
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < STREAMS; i++) {
            Rpctest__Req r = RPCTEST__REQ__INIT;
            r.name = "m";
            r.n = i * 10 + round;
            CHECK_EQ_INT(cm_stream_send(st[i], &r), 0);
        }
        for (int i = 0; i < STREAMS; i++) {
            Rpctest__Rsp *m;
            CHECK_EQ_INT(cm_stream_recv(st[i], (void **)&m), 0);
            CHECK_EQ_INT(m->n, i * 10 + round + 1);
            cm_message_free(&rpctest__rsp__descriptor, m);
        }
    }
    /* Every stream is open now, each on its own connection: each loop holds some. */
    for (unsigned i = 0; i < loops; i++) {
        cm_server_stats one;
        CHECK_EQ_INT(cm_server_get_loop_stats(S.s, i, &one), 0);
        fprintf(stderr, "   loop %u: %llu connections open\n", i, (unsigned long long)one.active);
        CHECK(one.active > 0);
    }
    for (int i = 0; i < STREAMS; i++) {
        CHECK_EQ_INT(cm_stream_close_send(st[i]), 0);
        void *m;
        int rc = cm_stream_recv(st[i], &m);
        CHECK(rc == CM_EOF || rc == CM_ECLOSED);
        CHECK(cm_stream_error(st[i]) == NULL);
        cm_stream_free(st[i]);
    }
}

/* ---- the drain ---- */

static unsigned drain_loops;

/* While the callers' calls sleep in the handler: waits until all of them are in flight, on
 * every loop, then stops the server; the stop must wait for them. */
static void
stop_while_busy(void)
{
    for (int waited = 0;; waited++) {
        unsigned busy = 0;
        uint64_t inflight = 0;
        for (unsigned i = 0; i < drain_loops; i++) {
            cm_server_stats one;
            cm_server_get_loop_stats(S.s, i, &one);
            busy += one.inflight > 0;
            inflight += one.inflight;
        }
        if (busy == drain_loops && inflight == CONNS) {
            break;
        }
        CHECK(waited < 500);
        uv_sleep(10);
    }
    testsrv_stop(&S);
}

static void
test_drain(unsigned loops)
{
    drain_loops = loops;
    /* Every call answered: the stop waited for them (at its drain timeout, 5 s, it would have
     * closed their connections). */
    int ok = run_callers(1, -400, stop_while_busy);
    CHECK_EQ_INT(ok, CONNS);
    testsrv_wait_stopped(&S);
    cm_server_stats all;
    cm_server_get_stats(S.s, &all);
    CHECK_EQ_INT(all.inflight, 0);
    CHECK_EQ_INT(all.active, 0); /* the listeners are closed */
    /* Nothing listens any more. */
    CHECK(call_once(1, 0) == 0);
}

static void
run_loops(unsigned loops)
{
    fprintf(stderr, "-- %u loop(s): %d connections, 20 calls each\n", loops, CONNS);
    srv_start(&S, loops);
    test_many_connections(loops);
    fprintf(stderr, "-- %u loop(s): %d streams\n", loops, STREAMS);
    test_streams(loops);
    fprintf(stderr, "-- %u loop(s): a graceful stop drains the calls of every loop\n", loops);
    test_drain(loops);
    testsrv_free(&S);
}

/* ---- a service: options, env, GET answers through every loop ---- */

static size_t
discard(char *p, size_t size, size_t n, void *user)
{
    (void)p;
    (void)user;
    return size * n;
}

static long
get_status(const char *addr, const char *path)
{
    char url[256];
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    CURL *e = curl_easy_init();
    CHECK(e != NULL);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    CHECK_EQ_INT(curl_easy_perform(e), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    return status;
}

static void
service_opts(cm_service_opts *o)
{
    cm_service_opts_init(o);
    o->name = "loops.test";
    o->address = "127.0.0.1:0";
    o->registry = "memory";
    o->deregister_wait_ms = 10;
}

static void
test_service(void)
{
    cm_service_opts o;
    service_opts(&o);
    cm_service *svc;
    setenv("MICRO_SERVER_LOOPS", "65", 1);
    CHECK_EQ_INT(cm_service_new(&o, &svc), CM_EINVAL);
    setenv("MICRO_SERVER_LOOPS", "2", 1);
    o.loops = 1; /* code wins over the env */
    CHECK_EQ_INT(cm_service_new(&o, &svc), 0);
    CHECK_EQ_INT(cm_server_loops(cm_service_server(svc)), 1);
    cm_service_free(svc);

    service_opts(&o);
    testsvc r = {0};
    CHECK_EQ_INT(cm_service_new(&o, &r.svc), 0);
    cm_server *srv = cm_service_server(r.svc);
    CHECK_EQ_INT(cm_server_loops(srv), 2);
    const char *a = testsvc_run(&r);
    /* One connection each: GETs reach both loops and are answered from loop 0. */
    for (int i = 0; i < CONNS; i++) {
        CHECK_EQ_INT(get_status(a, i % 2 ? "/health/live" : "/metrics"), 200);
        CHECK_EQ_INT(get_status(a, "/nothing"), 404);
    }
    for (unsigned i = 0; i < 2; i++) {
        cm_server_stats one;
        CHECK_EQ_INT(cm_server_get_loop_stats(srv, i, &one), 0);
        fprintf(stderr, "   loop %u: accepted %llu\n", i, (unsigned long long)one.accepted);
        CHECK(one.accepted > 0);
    }
    testsvc_end(&r);
    unsetenv("MICRO_SERVER_LOOPS");
}

int
main(void)
{
    setenv("CMICRO_QUIET", "1", 1);
    uv_mutex_init(&gate_mu);
    uv_cond_init(&gate_cv);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cm_client_opts co;
    cm_client_opts_init(&co);
    co.transport_opts.pool_size = CONNS;
    CHECK_EQ_INT(cm_client_new(NULL, &co, &C), 0);
    run_loops(1);
    run_loops(2);
    cm_client_free(C);
    RUN(test_service);
    curl_global_cleanup();
    TEST_DONE();
}
