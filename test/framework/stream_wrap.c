/* Stream handlers inside the server's handler wrappers and limits, and on threads of their own:
 * a wrapper that counts sees a stream once, flagged, with its metadata and no messages; a
 * wrapper that refuses ends the stream with its error before the handler runs; with
 * max_concurrent 1 a second stream to the endpoint is refused with go-micro's 429; with more
 * streams open than workers, unary calls are still answered, and past max_streams a new stream
 * is refused with 429. */
#include "rpctest.pb-c.h"
#include "test.h"

#include <cmicro/cmicro.h>
#include <signal.h>
#include <stdatomic.h>
#include <uv.h>

static atomic_int handler_runs, handler_ends;

/* Echoes every message until the caller ends its side. */
static int
echo(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    atomic_fetch_add(&handler_runs, 1);
    cm_stream *st = rsp;
    int rc;
    for (;;) {
        Rpctest__Req *in;
        if ((rc = cm_stream_recv(st, (void **)&in)) < 0) {
            break;
        }
        Rpctest__Rsp out = RPCTEST__RSP__INIT;
        out.n = in->n;
        rc = cm_stream_send(st, &out);
        cm_message_free(&rpctest__req__descriptor, in);
        if (rc < 0) {
            break;
        }
    }
    atomic_fetch_add(&handler_ends, 1);
    return rc == CM_EOF ? 0 : rc;
}

static int
unary(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)user;
    ((Rpctest__Rsp *)rsp)->n = ((const Rpctest__Req *)req)->n + 1;
    return 0;
}

/* ---- wrappers ---- */

typedef struct seen {
    atomic_int before, after, streams, flagged, no_msgs, tenant, after_status, after_code;
} seen;
static seen SEEN;

static int
count_before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    (void)state;
    (void)err;
    seen *s = arg;
    atomic_fetch_add(&s->before, 1);
    if (w->stream) {
        atomic_fetch_add(&s->streams, 1);
        atomic_fetch_add(&s->flagged, cm_ctx_is_stream(w->ctx) != 0);
        atomic_fetch_add(&s->no_msgs, w->req == NULL && w->req_desc == &rpctest__req__descriptor);
        const char *t = cm_msg_header(w->md, "X-Tenant");
        atomic_fetch_add(&s->tenant, t != NULL && strcmp(t, "acme") == 0);
    }
    return 0;
}

static void
count_after(const cm_wrap_info *w, void *arg, void *state)
{
    (void)state;
    seen *s = arg;
    atomic_store(&s->after_status, w->status);
    atomic_store(&s->after_code, w->error ? w->error->code : 0);
    CHECK(w->rsp == NULL || !w->stream);
    atomic_fetch_add(&s->after, 1);
}

/* Refuses the calls whose metadata asks for it. */
static int
guard_before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    (void)arg;
    (void)state;
    if (cm_msg_header(w->md, "X-Refuse") == NULL) {
        return 0;
    }
    *err = cm_error_new("rpctest.guard", 403, "%s refused by the guard", w->endpoint);
    return CM_EREMOTE;
}

/* ---- a server on its own loop ---- */

typedef struct srv {
    cm_loop *loop;
    cm_server *s;
    char addr[128];
    uv_sem_t stopped;
} srv;

static void
srv_start(srv *t, const cm_server_opts *o, int wrappers)
{
    memset(t, 0, sizeof(*t));
    CHECK_EQ_INT(uv_sem_init(&t->stopped, 0), 0);
    CHECK_EQ_INT(cm_loop_new(&t->loop), 0);
    CHECK_EQ_INT(cm_server_new(t->loop, o, &t->s), 0);
    static const char *const md[] = {"stream", "true", NULL};
    cm_handler h = {"Test.Echo",
                    &rpctest__req__descriptor,
                    &rpctest__rsp__descriptor,
                    echo,
                    CM_HANDLER_STREAM,
                    NULL,
                    NULL,
                    md};
    CHECK_EQ_INT(cm_server_handle(t->s, &h, NULL), 0);
    cm_handler u = {
        "Test.Unary", &rpctest__req__descriptor, &rpctest__rsp__descriptor, unary, 0, NULL, NULL,
        NULL};
    CHECK_EQ_INT(cm_server_handle(t->s, &u, NULL), 0);
    if (wrappers) {
        cm_wrapper cw = {"count", count_before, count_after, &SEEN};
        cm_wrapper gw = {"guard", guard_before, NULL, NULL};
        CHECK_EQ_INT(cm_server_wrap(t->s, &cw), 0);
        CHECK_EQ_INT(cm_server_wrap(t->s, &gw), 0);
    }
    CHECK_EQ_INT(cm_server_start(t->s), 0);
    snprintf(t->addr, sizeof(t->addr), "%s", cm_server_address(t->s));
    CHECK_EQ_INT(cm_loop_start(t->loop), 0);
}

static void
on_stopped(void *arg)
{
    uv_sem_post(&((srv *)arg)->stopped);
}

static void
do_stop(void *arg)
{
    srv *t = arg;
    CHECK_EQ_INT(cm_server_stop(t->s, on_stopped, t), 0);
}

static void
srv_stop(srv *t)
{
    CHECK_EQ_INT(cm_loop_post(t->loop, do_stop, t), 0);
    uv_sem_wait(&t->stopped);
    cm_loop_stop(t->loop);
    cm_server_free(t->s);
    cm_loop_free(t->loop);
    uv_sem_destroy(&t->stopped);
}

static cm_client *C;

static cm_stream *
open_stream(srv *t, const cm_md *md)
{
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = t->addr;
    co.md = md;
    co.timeout_ms = 5000;
    cm_stream *st = NULL;
    cm_error *err = NULL;
    int rc = cm_client_stream(C, "rpctest", "Test.Echo", &rpctest__req__descriptor,
                              &rpctest__rsp__descriptor, &co, NULL, &st, &err);
    CHECK_EQ_INT(rc, 0);
    return st;
}

/* One message there and back: the handler runs. */
static void
round_trip(cm_stream *st, int64_t n)
{
    Rpctest__Req r = RPCTEST__REQ__INIT;
    r.n = n;
    CHECK_EQ_INT(cm_stream_send(st, &r), 0);
    Rpctest__Rsp *m;
    CHECK_EQ_INT(cm_stream_recv(st, (void **)&m), 0);
    CHECK_EQ_INT(m->n, n);
    cm_message_free(&rpctest__rsp__descriptor, m);
}

/* The stream's first receive: the server's go-micro error, which the test checks. */
static void
expect_refused(cm_stream *st, const char *id, int32_t code, const char *detail_part)
{
    Rpctest__Req r = RPCTEST__REQ__INIT;
    int rc = cm_stream_send(st, &r); /* may find the stream already ended */
    CHECK(rc == 0 || rc == CM_EREMOTE || rc == CM_ECLOSED);
    void *m = NULL;
    CHECK_EQ_INT(cm_stream_recv(st, &m), CM_EREMOTE);
    const cm_error *e = cm_stream_error(st);
    CHECK(e != NULL);
    CHECK_EQ_STR(e->id, id);
    CHECK_EQ_INT(e->code, code);
    if (strstr(e->detail, detail_part) == NULL) {
        fprintf(stderr, "detail \"%s\" lacks \"%s\"\n", e->detail, detail_part);
        CHECK(0);
    }
    cm_stream_free(st);
}

static void
end_stream(cm_stream *st)
{
    CHECK_EQ_INT(cm_stream_close_send(st), 0);
    void *m = NULL;
    int rc = cm_stream_recv(st, &m);
    CHECK(rc == CM_EOF || rc == CM_ECLOSED);
    cm_stream_free(st);
}

/* Waits (up to 5 s) until *v reaches want. */
static void
wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 500 && atomic_load(v) < want; i++) {
        uv_sleep(10);
    }
    CHECK_EQ_INT(atomic_load(v), want);
}

static void
test_wrappers(void)
{
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "rpctest";
    o.address = "127.0.0.1:0";
    srv t;
    srv_start(&t, &o, 1);
    atomic_store(&handler_runs, 0);
    atomic_store(&handler_ends, 0);

    cm_md *md = cm_md_new();
    CHECK(md != NULL);
    CHECK_EQ_INT(cm_md_set(md, "X-Tenant", "acme"), 0);
    cm_stream *st = open_stream(&t, md);
    round_trip(st, 1);
    round_trip(st, 2);
    CHECK_EQ_INT(atomic_load(&SEEN.before), 1); /* once for the stream, not per message */
    CHECK_EQ_INT(atomic_load(&SEEN.after), 0);  /* the stream is still open */
    end_stream(st);
    wait_for(&SEEN.after, 1);
    CHECK_EQ_INT(atomic_load(&SEEN.streams), 1);
    CHECK_EQ_INT(atomic_load(&SEEN.flagged), 1);
    CHECK_EQ_INT(atomic_load(&SEEN.no_msgs), 1);
    CHECK_EQ_INT(atomic_load(&SEEN.tenant), 1);
    CHECK_EQ_INT(atomic_load(&SEEN.after_status), 0);

    /* A unary call is not flagged as a stream. */
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = t.addr;
    Rpctest__Req r = RPCTEST__REQ__INIT;
    r.n = 41;
    Rpctest__Rsp *rsp = NULL;
    CHECK_EQ_INT(cm_client_call(C, "rpctest", "Test.Unary", &rpctest__req__descriptor, &r,
                                &rpctest__rsp__descriptor, (void **)&rsp, &co, NULL),
                 0);
    CHECK_EQ_INT(rsp->n, 42);
    cm_message_free(&rpctest__rsp__descriptor, rsp);
    wait_for(&SEEN.after, 2);
    CHECK_EQ_INT(atomic_load(&SEEN.before), 2);
    CHECK_EQ_INT(atomic_load(&SEEN.streams), 1);

    /* The guard refuses: the caller reads its error; the handler never runs; the outer
     * wrapper's after sees the refusal. */
    CHECK_EQ_INT(cm_md_set(md, "X-Refuse", "1"), 0);
    expect_refused(open_stream(&t, md), "rpctest.guard", 403, "Test.Echo refused by the guard");
    wait_for(&SEEN.after, 3);
    CHECK_EQ_INT(atomic_load(&SEEN.after_status), CM_EREMOTE);
    CHECK_EQ_INT(atomic_load(&SEEN.after_code), 403);
    CHECK_EQ_INT(atomic_load(&handler_runs), 1);
    cm_md_free(md);
    srv_stop(&t);
}

static void
test_max_concurrent(void)
{
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "rpctest";
    o.address = "127.0.0.1:0";
    o.max_concurrent = 1;
    srv t;
    srv_start(&t, &o, 0);
    atomic_store(&handler_ends, 0);
    cm_stream *first = open_stream(&t, NULL);
    round_trip(first, 1);
    expect_refused(open_stream(&t, NULL), "rpctest", 429, "too many concurrent calls to Test.Echo");
    round_trip(first, 2); /* the first goes on */
    end_stream(first);
    wait_for(&handler_ends, 1);
    /* Its slot is free again. */
    cm_stream *third = open_stream(&t, NULL);
    round_trip(third, 3);
    end_stream(third);
    srv_stop(&t);
}

/* More streams open than workers: unary calls are answered all the same; past max_streams a
 * stream is refused. */
static void
test_unary_beside_streams(void)
{
    enum { WORKERS = 2, STREAMS = 4 };
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "rpctest";
    o.address = "127.0.0.1:0";
    o.workers = WORKERS;
    o.max_streams = STREAMS;
    srv t;
    srv_start(&t, &o, 0);
    atomic_store(&handler_ends, 0);
    cm_stream *st[STREAMS];
    for (int i = 0; i < STREAMS; i++) {
        st[i] = open_stream(&t, NULL);
        round_trip(st[i], i);
    }
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = t.addr;
    co.timeout_ms = 2000;
    for (int i = 0; i < 2 * WORKERS; i++) {
        Rpctest__Req r = RPCTEST__REQ__INIT;
        r.n = i;
        Rpctest__Rsp *rsp = NULL;
        CHECK_EQ_INT(cm_client_call(C, "rpctest", "Test.Unary", &rpctest__req__descriptor, &r,
                                    &rpctest__rsp__descriptor, (void **)&rsp, &co, NULL),
                     0);
        CHECK_EQ_INT(rsp->n, i + 1);
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    }
    expect_refused(open_stream(&t, NULL), "rpctest", 429, "too many streams open (limit 4");
    for (int i = 0; i < STREAMS; i++) {
        round_trip(st[i], 10 + i); /* all still served */
    }
    end_stream(st[0]);
    wait_for(&handler_ends, 1);
    /* A slot is free again, and its thread serves the next stream. */
    cm_stream *again = NULL;
    for (int i = 0; i < 100 && again == NULL; i++) {
        cm_stream *s = open_stream(&t, NULL);
        Rpctest__Req r = RPCTEST__REQ__INIT;
        void *m = NULL;
        if (cm_stream_send(s, &r) == 0 && cm_stream_recv(s, &m) == 0) {
            cm_message_free(&rpctest__rsp__descriptor, m);
            again = s;
        } else {
            cm_stream_free(s); /* the loop had not yet counted the end of the first */
            uv_sleep(10);
        }
    }
    CHECK(again != NULL);
    end_stream(again);
    for (int i = 1; i < STREAMS; i++) {
        end_stream(st[i]);
    }
    srv_stop(&t);
}

int
main(void)
{
    setenv("CMICRO_QUIET", "1", 1);
    /* A refused stream's server closes the connection with the caller's messages unread: the
     * caller's next write (its EOS) may meet a reset. */
    signal(SIGPIPE, SIG_IGN);
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &C), 0);
    RUN(test_wrappers);
    RUN(test_max_concurrent);
    RUN(test_unary_beside_streams);
    cm_client_free(C);
    TEST_DONE();
}
