/* The hand-off to the worker pool through a real server and client on 127.0.0.1: as many
 * blocking handlers at once as there are workers, quick calls answered while others block, and a
 * graceful stop in the middle of a stream of calls. No timing is asserted: a handler that waits
 * for others gives up after WAIT_MS and fails its call. */
#include "rpctest.pb-c.h"
#include "test.h"
#include <uv.h>

#include <cmicro/cmicro.h>
#include <stdatomic.h>
#include <stdio.h>

#define WAIT_MS 10000
#define WORKERS 6

static atomic_int entered;  /* handlers of Test.Wait that began */
static atomic_int answered; /* calls answered (client side) */
static atomic_int handled;  /* handlers of Test.Echo that ran */

static int
wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < WAIT_MS; i++) {
        if (atomic_load(v) >= want) {
            return 1;
        }
        uv_sleep(1);
    }
    return 0;
}

/* Blocks until req->n handlers are in (n > 0), or until req->n quick calls have been answered
 * to the client (n < 0). */
static int
wait_handler(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    (void)user;
    const Rpctest__Req *req = vreq;
    Rpctest__Rsp *rsp = vrsp;
    atomic_fetch_add(&entered, 1);
    int ok = req->n > 0 ? wait_for(&entered, (int)req->n) : wait_for(&answered, (int)-req->n);
    if (!ok) {
        return cm_ctx_error(ctx, 500, "gave up waiting");
    }
    rsp->n = req->n;
    return 0;
}

static int
echo(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    (void)ctx;
    (void)user;
    const Rpctest__Req *req = vreq;
    Rpctest__Rsp *rsp = vrsp;
    atomic_fetch_add(&handled, 1);
    if (req->sleep_ms > 0) {
        uv_sleep((unsigned)req->sleep_ms);
    }
    rsp->n = req->n;
    return 0;
}

/* ---- server on its own loop thread ---- */

static cm_loop *loop;
static cm_server *server;
static char addr[128];
static uv_mutex_t mu;
static uv_cond_t cv;
static int stopped;
static int stop_posted; /* main thread only */

static void
srv_start(void)
{
    stopped = 0;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "handoff";
    o.address = "127.0.0.1:0";
    o.workers = WORKERS;
    o.drain_timeout_ms = WAIT_MS;
    CHECK_EQ_INT(cm_server_new(loop, &o, &server), 0);
    cm_handler h = {"Test.Wait",
                    &rpctest__req__descriptor,
                    &rpctest__rsp__descriptor,
                    wait_handler,
                    0,
                    NULL,
                    NULL,
                    NULL};
    CHECK_EQ_INT(cm_server_handle(server, &h, NULL), 0);
    h.endpoint = "Test.Echo";
    h.fn = echo;
    CHECK_EQ_INT(cm_server_handle(server, &h, NULL), 0);
    CHECK_EQ_INT(cm_server_start(server), 0);
    snprintf(addr, sizeof(addr), "%s", cm_server_address(server));
    CHECK_EQ_INT(cm_loop_start(loop), 0);
}

static void
on_stopped(void *arg)
{
    (void)arg;
    uv_mutex_lock(&mu);
    stopped = 1;
    uv_cond_signal(&cv);
    uv_mutex_unlock(&mu);
}

static int stop_rc; /* set on the loop thread, read once stopped */

static void
do_stop(void *arg)
{
    (void)arg;
    stop_rc = cm_server_stop(server, on_stopped, NULL);
    if (stop_rc < 0) {
        on_stopped(NULL);
    }
}

static void
free_server(void *arg)
{
    cm_server_free(arg);
}

static void
srv_stop_and_free(void)
{
    if (!stop_posted) {
        CHECK_EQ_INT(cm_loop_post(loop, do_stop, NULL), 0);
    }
    uv_mutex_lock(&mu);
    while (!stopped) {
        uv_cond_wait(&cv, &mu);
    }
    uv_mutex_unlock(&mu);
    CHECK_EQ_INT(stop_rc, 0);
    CHECK_EQ_INT(cm_loop_post(loop, free_server, server), 0);
    cm_loop_stop(loop);
    cm_loop_free(loop);
}

/* ---- calls ---- */

static cm_client *client;

typedef struct results {
    int n, ok, failed;
    int64_t bad_n; /* responses whose n is not the request's */
} results;

typedef struct one_call {
    results *r;
    int64_t n;
} one_call;

static void
on_answer(int status, void *rsp, const cm_error *err, void *user)
{
    (void)err;
    one_call *c = user;
    uv_mutex_lock(&mu);
    if (status == 0) {
        c->r->ok++;
        if (((Rpctest__Rsp *)rsp)->n != c->n) {
            c->r->bad_n++;
        }
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    } else {
        c->r->failed++;
    }
    c->r->n++;
    uv_cond_broadcast(&cv);
    uv_mutex_unlock(&mu);
    atomic_fetch_add(&answered, 1);
}

static void
start_call(const char *endpoint, one_call *c, int64_t n, int sleep_ms)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "x";
    req.n = n;
    req.sleep_ms = sleep_ms;
    c->n = n;
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = addr;
    o.max_attempts = 1;
    o.timeout_ms = 2 * WAIT_MS;
    CHECK_EQ_INT(cm_client_call_async(client, "handoff", endpoint, &rpctest__req__descriptor, &req,
                                      &rpctest__rsp__descriptor, &o, on_answer, c),
                 0);
}

static void
wait_answers(results *r, int n)
{
    uv_mutex_lock(&mu);
    while (r->n < n) {
        uv_cond_wait(&cv, &mu);
    }
    uv_mutex_unlock(&mu);
}

/* As many blocking handlers as workers, each waiting for all the others to be in: they can only
 * finish if the pool runs them all at once. Twice, so that the second round finds the workers
 * back asleep. */
static void
test_blocking_side_by_side(void)
{
    for (int round = 0; round < 2; round++) {
        atomic_store(&entered, 0);
        results r = {0};
        one_call calls[WORKERS];
        for (int i = 0; i < WORKERS; i++) {
            calls[i].r = &r;
            start_call("Test.Wait", &calls[i], WORKERS, 0);
        }
        wait_answers(&r, WORKERS);
        CHECK_EQ_INT(r.ok, WORKERS);
        CHECK_EQ_INT(r.bad_n, 0);
    }
}

/* A handler that blocks until 300 quick calls queued after it have been answered. */
static void
test_blocked_holds_nothing_back(void)
{
    enum { QUICK = 300 };
    atomic_store(&entered, 0);
    atomic_store(&answered, 0);
    static one_call calls[QUICK + 1];
    results r = {0};
    for (int i = 0; i <= QUICK; i++) {
        calls[i].r = &r;
    }
    start_call("Test.Wait", &calls[0], -QUICK, 0);
    CHECK(wait_for(&entered, 1));
    for (int i = 1; i <= QUICK; i++) {
        start_call("Test.Echo", &calls[i], i, 0);
    }
    wait_answers(&r, QUICK + 1);
    CHECK_EQ_INT(r.ok, QUICK + 1);
    CHECK_EQ_INT(r.bad_n, 0);
}

/* A graceful stop while 400 calls (1 ms handlers) stream in, once the first have been handled:
 * every call is answered once, every handler that ran answered its call with success, and those
 * refused never reached a handler. */
static void
test_stop_under_load(void)
{
    enum { N = 400 };
    static one_call calls[N];
    results r = {0};
    atomic_store(&handled, 0);
    for (int i = 0; i < N; i++) {
        calls[i].r = &r;
        start_call("Test.Echo", &calls[i], i, 1);
        if (i == N / 4) {
            CHECK(wait_for(&handled, 20)); /* the stream is flowing */
            CHECK_EQ_INT(cm_loop_post(loop, do_stop, NULL), 0);
            stop_posted = 1;
        }
    }
    wait_answers(&r, N);
    fprintf(stderr, "%d answered, %d refused\n", r.ok, r.failed);
    CHECK_EQ_INT(r.ok + r.failed, N);
    CHECK_EQ_INT(r.bad_n, 0);
    CHECK(r.ok > 0);
    CHECK_EQ_INT(r.ok, atomic_load(&handled));
    srv_stop_and_free();
}

int
main(void)
{
    uv_mutex_init(&mu);
    uv_cond_init(&cv);
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &client), 0);
    srv_start();
    RUN(test_blocking_side_by_side);
    RUN(test_blocked_holds_nothing_back);
    RUN(test_stop_under_load);
    cm_client_free(client);
    uv_cond_destroy(&cv);
    uv_mutex_destroy(&mu);
    TEST_DONE();
}
