/* The server's built-in limits under load: a concurrency limit per endpoint and a token-bucket
 * rate limit, each refusing with go-micro's 429, from code and from the environment. */
#include "rpctest.pb-c.h"
#include "test.h"
#include <uv.h>

#include <cmicro/cmicro.h>
#include <stdatomic.h>
#include <unistd.h>

static int
work(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    (void)ctx;
    (void)user;
    const Rpctest__Req *req = vreq;
    ((Rpctest__Rsp *)vrsp)->n = req->n;
    if (req->sleep_ms > 0) {
        usleep((useconds_t)req->sleep_ms * 1000);
    }
    return 0;
}

typedef struct tally {
    atomic_int ok, refused, other, done;
} tally;

static void
on_done(int status, void *rsp, const cm_error *err, void *user)
{
    tally *t = user;
    if (status == 0) {
        atomic_fetch_add(&t->ok, 1);
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    } else if (status == CM_EREMOTE && err != NULL && err->code == 429) {
        atomic_fetch_add(&t->refused, 1);
    } else {
        atomic_fetch_add(&t->other, 1);
    }
    atomic_fetch_add(&t->done, 1);
}

typedef struct runner {
    cm_service *svc;
    uv_thread_t thread;
} runner;

static void
run_main(void *arg)
{
    cm_service_run(((runner *)arg)->svc);
}

static void
start(runner *r, unsigned max_concurrent, unsigned rate, unsigned burst)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "limits.test";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.max_concurrent = max_concurrent;
    o.rate_limit = rate;
    o.rate_burst = burst;
    o.workers = 16;
    o.deregister_wait_ms = 10;
    CHECK_EQ_INT(cm_service_new(&o, &r->svc), 0);
    cm_handler h = {
        "Work.Do", &rpctest__req__descriptor, &rpctest__rsp__descriptor, work, 0, NULL, NULL, NULL};
    CHECK_EQ_INT(cm_server_handle(cm_service_server(r->svc), &h, NULL), 0);
    h.endpoint = "Work.Other";
    CHECK_EQ_INT(cm_server_handle(cm_service_server(r->svc), &h, NULL), 0);
    CHECK_EQ_INT(uv_thread_create(&r->thread, run_main, r), 0);
    for (int i = 0; i < 300 && cm_server_address(cm_service_server(r->svc)) == NULL; i++) {
        usleep(10 * 1000);
    }
    CHECK(cm_server_address(cm_service_server(r->svc)) != NULL);
}

static void
stop(runner *r)
{
    cm_service_stop(r->svc);
    uv_thread_join(&r->thread);
    cm_service_free(r->svc);
}

/* Fires n calls to endpoint at once and waits for them all. */
static void
fire(cm_client *c, const char *addr, const char *endpoint, int n, int sleep_ms, tally *t)
{
    memset(t, 0, sizeof(*t));
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.sleep_ms = sleep_ms;
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = addr;
    co.max_attempts = 1;
    co.timeout_ms = 5000;
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(cm_client_call_async(c, "limits.test", endpoint, &rpctest__req__descriptor,
                                          &req, &rpctest__rsp__descriptor, &co, on_done, t),
                     0);
    }
    for (int i = 0; i < 1000 && atomic_load(&t->done) < n; i++) {
        usleep(10 * 1000);
    }
    CHECK_EQ_INT(atomic_load(&t->done), n);
    CHECK_EQ_INT(atomic_load(&t->other), 0);
}

static void
test_concurrency(void)
{
    runner r;
    start(&r, 3, 0, 0);
    const char *addr = cm_server_address(cm_service_server(r.svc));
    cm_client *c;
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &c), 0);
    tally t;
    /* 12 calls that each hold the handler for 300 ms: 3 at a time, the rest refused. */
    fire(c, addr, "Work.Do", 12, 300, &t);
    CHECK_EQ_INT(atomic_load(&t.ok), 3);
    CHECK_EQ_INT(atomic_load(&t.refused), 9);
    /* The limit is per endpoint, and frees up as calls end. */
    fire(c, addr, "Work.Other", 3, 100, &t);
    CHECK_EQ_INT(atomic_load(&t.ok), 3);
    fire(c, addr, "Work.Do", 3, 0, &t);
    CHECK_EQ_INT(atomic_load(&t.ok), 3);
    cm_client_free(c);
    stop(&r);
}

static void
test_rate(void)
{
    setenv("MICRO_SERVER_RATE_LIMIT", "20", 1);
    setenv("MICRO_SERVER_RATE_BURST", "10", 1);
    runner r;
    start(&r, 0, 0, 0);
    unsetenv("MICRO_SERVER_RATE_LIMIT");
    unsetenv("MICRO_SERVER_RATE_BURST");
    const char *addr = cm_server_address(cm_service_server(r.svc));
    cm_client *c;
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &c), 0);
    tally t;
    /* A burst of 60: the bucket's 10, plus what refills while they run (20/s). */
    uint64_t t0 = uv_hrtime();
    fire(c, addr, "Work.Do", 60, 0, &t);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    int ok = atomic_load(&t.ok);
    fprintf(stderr, "burst of 60 in %.3f s: %d served, %d refused\n", secs, ok,
            atomic_load(&t.refused));
    CHECK(ok >= 10 && ok <= 10 + (int)(secs * 20) + 1);
    CHECK_EQ_INT(ok + atomic_load(&t.refused), 60);
    /* After a second the bucket is full again. */
    usleep(1000 * 1000);
    fire(c, addr, "Work.Do", 10, 0, &t);
    CHECK_EQ_INT(atomic_load(&t.ok), 10);
    cm_client_free(c);
    stop(&r);
}

int
main(void)
{
    setenv("CMICRO_QUIET", "1", 1);
    RUN(test_concurrency);
    RUN(test_rate);
    TEST_DONE();
}
