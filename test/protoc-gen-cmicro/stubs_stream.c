/* The stubs of streaming.proto end to end: a service built from them (memory registry) publishes
 * go-micro's shape of stream endpoints (request Context, response Stream, metadata stream=true,
 * plus the rpc comment), and its client, picking the node through the registry, runs each kind:
 * Watch (server-stream), Record (client-stream), Chat (bidi), next to the unary Now. */
#include "streaming.cmicro.h"
#include "test.h"

#include <uv.h>

typedef Cmicro__Test__Stream__Tick Tick;

static int
now(cm_ctx *ctx, const Tick *req, Tick *rsp, void *user)
{
    (void)ctx;
    (void)user;
    rsp->n = req->n + 1;
    return 0;
}

static int
watch(cm_ctx *ctx, const Tick *req, cm_stream *st, void *user)
{
    (void)ctx;
    (void)user;
    for (int64_t i = req->n; i > 0; i--) {
        Tick t = CMICRO__TEST__STREAM__TICK__INIT;
        t.n = i;
        int rc = cmicro_test_stream_clock_watch_server_send(st, &t);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int
record(cm_ctx *ctx, cm_stream *st, void *user)
{
    (void)ctx;
    (void)user;
    int64_t total = 0;
    Tick *in;
    int rc;
    while ((rc = cmicro_test_stream_clock_record_server_recv(st, &in)) == 0) {
        total += in->n;
        cmicro_test_stream_clock_record_free_request(in);
    }
    if (rc != CM_EOF) {
        return rc;
    }
    Tick t = CMICRO__TEST__STREAM__TICK__INIT;
    t.n = total;
    return cmicro_test_stream_clock_record_server_send(st, &t);
}

static int
chat(cm_ctx *ctx, cm_stream *st, void *user)
{
    (void)user;
    Tick *in;
    int rc;
    while ((rc = cmicro_test_stream_clock_chat_server_recv(st, &in)) == 0) {
        Tick t = CMICRO__TEST__STREAM__TICK__INIT;
        t.n = -in->n;
        t.note = in->note;
        rc = cmicro_test_stream_clock_chat_server_send(st, &t);
        cmicro_test_stream_clock_chat_free_request(in);
        if (rc < 0) {
            return rc;
        }
    }
    return rc == CM_EOF ? 0 : cm_ctx_error(ctx, 500, "recv: %s", cm_strerror(rc));
}

static void
run(void *arg)
{
    CHECK_EQ_INT(cm_service_run(arg), 0);
}

typedef struct seen {
    cm_registry *reg;
    const char *name;
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
    cm_reg_service_list *list;
} seen;

static void
on_list(int status, const cm_reg_service_list *l, void *user)
{
    seen *s = user;
    CHECK_EQ_INT(status, 0);
    uv_mutex_lock(&s->mu);
    s->list = cm_reg_service_list_dup(l);
    s->done = 1;
    uv_cond_signal(&s->cv);
    uv_mutex_unlock(&s->mu);
}

/* On the probe's loop thread: registry functions run there. */
static void
start_lookup(void *arg)
{
    seen *s = arg;
    CHECK_EQ_INT(cm_registry_get_service(s->reg, s->name, on_list, s), 0);
}

static void
close_registry(void *arg)
{
    cm_registry_close(arg, NULL, NULL);
}

/* The service as the memory registry (shared within the process) has it, seen from a registry
 * of our own on a loop of our own. */
static cm_reg_service_list *
lookup(const char *name)
{
    cm_loop *loop;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    seen s;
    memset(&s, 0, sizeof s);
    s.name = name;
    CHECK_EQ_INT(cm_registry_new(loop, "memory", NULL, &s.reg), 0);
    uv_mutex_init(&s.mu);
    uv_cond_init(&s.cv);
    CHECK_EQ_INT(cm_loop_start(loop), 0);
    CHECK_EQ_INT(cm_loop_post(loop, start_lookup, &s), 0);
    uv_mutex_lock(&s.mu);
    while (!s.done) {
        uv_cond_wait(&s.cv, &s.mu);
    }
    uv_mutex_unlock(&s.mu);
    CHECK_EQ_INT(cm_loop_post(loop, close_registry, s.reg), 0);
    cm_loop_free(loop);
    uv_cond_destroy(&s.cv);
    uv_mutex_destroy(&s.mu);
    return s.list;
}

static void
check_endpoint(const cm_endpoint *e, const char *name, const char *description)
{
    CHECK_EQ_STR(e->name, name);
    CHECK_EQ_STR(e->request->name, "Context");
    CHECK_EQ_STR(e->request->type, "Context");
    CHECK_EQ_INT(e->request->nvalues, 0);
    CHECK_EQ_STR(e->response->name, "Stream");
    CHECK_EQ_STR(e->response->type, "Stream");
    CHECK_EQ_STR(cm_md_get(e->metadata, "stream"), "true");
    CHECK_EQ_INT(cm_md_count(e->metadata), description ? 2 : 1);
    if (description) {
        CHECK_EQ_STR(cm_md_get(e->metadata, "description"), description);
    }
}

static void
check_registry(void)
{
    cm_reg_service_list *l = NULL;
    for (int i = 0; i < 200; i++) {
        cm_reg_service_list_free(l);
        l = lookup("clock");
        if (l->n > 0) {
            break;
        }
        uv_sleep(10);
    }
    CHECK(l->n == 1);
    const cm_reg_service *s = l->items[0];
    CHECK_EQ_INT(s->nendpoints, 4); /* sorted: Chat, Now, Record, Watch */
    check_endpoint(&s->endpoints[0], "Clock.Chat", NULL);
    CHECK_EQ_STR(s->endpoints[1].name, "Clock.Now");
    CHECK_EQ_STR(s->endpoints[1].request->name, "Tick");
    CHECK_EQ_INT(cm_md_count(s->endpoints[1].metadata), 0);
    check_endpoint(&s->endpoints[2], "Clock.Record", NULL);
    check_endpoint(&s->endpoints[3], "Clock.Watch", "Ticks from n down to 1.");
    cm_reg_service_list_free(l);
}

static void
check_calls(cm_client *c)
{
    Tick req = CMICRO__TEST__STREAM__TICK__INIT;
    Tick *rsp = NULL;
    req.n = 41;
    CHECK_EQ_INT(cmicro_test_stream_clock_now(c, "clock", &req, &rsp, NULL, NULL), 0);
    CHECK_EQ_INT(rsp->n, 42);
    cmicro_test_stream_clock_now_free(rsp);

    cm_stream *st;
    req.n = 5;
    CHECK_EQ_INT(cmicro_test_stream_clock_watch(c, "clock", &req, NULL, &st, NULL), 0);
    for (int64_t want = 5; want > 0; want--) {
        CHECK_EQ_INT(cmicro_test_stream_clock_watch_recv(st, &rsp), 0);
        CHECK_EQ_INT(rsp->n, want);
        cmicro_test_stream_clock_watch_free(rsp);
    }
    CHECK_EQ_INT(cmicro_test_stream_clock_watch_recv(st, &rsp), CM_EOF);
    cm_stream_free(st);

    CHECK_EQ_INT(cmicro_test_stream_clock_record(c, "clock", NULL, &st, NULL), 0);
    for (int i = 1; i <= 4; i++) {
        req.n = i;
        CHECK_EQ_INT(cmicro_test_stream_clock_record_send(st, &req), 0);
    }
    CHECK_EQ_INT(cmicro_test_stream_clock_record_close_send(st), 0);
    CHECK_EQ_INT(cmicro_test_stream_clock_record_recv(st, &rsp), 0);
    CHECK_EQ_INT(rsp->n, 10);
    cmicro_test_stream_clock_record_free(rsp);
    cm_stream_free(st);

    CHECK_EQ_INT(cmicro_test_stream_clock_chat(c, "clock", NULL, &st, NULL), 0);
    for (int i = 1; i <= 3; i++) {
        req.n = i;
        req.note = (char *)"hi";
        CHECK_EQ_INT(cmicro_test_stream_clock_chat_send(st, &req), 0);
        CHECK_EQ_INT(cmicro_test_stream_clock_chat_recv(st, &rsp), 0);
        CHECK_EQ_INT(rsp->n, -i);
        CHECK_EQ_STR(rsp->note, "hi");
        cmicro_test_stream_clock_chat_free(rsp);
    }
    CHECK_EQ_INT(cmicro_test_stream_clock_chat_close_send(st), 0);
    cm_stream_free(st);
}

int
main(void)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "clock";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.deregister_wait_ms = 10;
    cm_service *svc;
    CHECK_EQ_INT(cm_service_new(&o, &svc), 0);
    static const cmicro_test_stream_clock_handlers h = {
        .now = now, .watch = watch, .record = record, .chat = chat};
    CHECK_EQ_INT(cmicro_test_stream_clock_register(cm_service_server(svc), &h), 0);
    uv_thread_t t;
    CHECK_EQ_INT(uv_thread_create(&t, run, svc), 0);
    check_registry();
    check_calls(cm_service_client(svc));
    cm_service_stop(svc);
    uv_thread_join(&t);
    cm_service_free(svc);
    TEST_DONE();
}
