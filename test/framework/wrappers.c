/* Wrappers of each kind over real sockets: their order, what they see, short-circuits with a
 * go-micro error, headers they add, and the attempts of a retried call. */
#include "rpctest.pb-c.h"
#include "test.h"
#include "test_loop.h"
#include <uv.h>

#include <cmicro/cmicro.h>
#include <stdatomic.h>
#include <stdio.h>

#define RUN_F(fn, arg)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "-- %s\n", #fn);                                                           \
        fn(arg);                                                                                   \
    } while (0)

/* ---- a trace of hook calls ---- */

static uv_mutex_t log_mu;
static char trace[2048];

static void
note(const char *fmt, const char *a, int b)
{
    char one[128];
    snprintf(one, sizeof(one), fmt, a, b);
    uv_mutex_lock(&log_mu);
    if (trace[0] != '\0') {
        strncat(trace, " ", sizeof(trace) - strlen(trace) - 1);
    }
    strncat(trace, one, sizeof(trace) - strlen(trace) - 1);
    uv_mutex_unlock(&log_mu);
}

static void
trace_take(char *out, size_t len)
{
    uv_mutex_lock(&log_mu);
    snprintf(out, len, "%s", trace);
    trace[0] = '\0';
    uv_mutex_unlock(&log_mu);
}

/* What the wrapper named arg saw last. */
typedef struct seen {
    const char *name;
    int deny_code;       /* short-circuit with this code when the endpoint ends in "Deny" */
    const char *add_key; /* a header to add in before */
    char endpoint[64];
    char service[64];
    char node[64];
    char md_user[64];
    long long req_n, rsp_n;
    int status, err_code, attempt;
    int64_t deadline_ms;
    int state_ok;
} seen;

static int
ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

static int
before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    seen *s = arg;
    note("%s.before%d", s->name, w->attempt);
    snprintf(s->endpoint, sizeof s->endpoint, "%s", w->endpoint);
    snprintf(s->service, sizeof s->service, "%s", w->service);
    snprintf(s->node, sizeof s->node, "%s", w->node ? w->node : "");
    const char *u = w->md ? cm_msg_header(w->md, "X-User") : NULL;
    snprintf(s->md_user, sizeof s->md_user, "%s", u ? u : "");
    s->deadline_ms = w->deadline_ms;
    s->attempt = w->attempt;
    s->req_n = w->req && w->req_desc ? ((const Rpctest__Req *)w->req)->n : -1;
    if (s->deny_code && ends_with(w->endpoint, "Deny")) {
        *err = cm_error_new("wrap.test", s->deny_code, "denied by %s", s->name);
        return CM_EREMOTE;
    }
    if (s->add_key != NULL) {
        CHECK_EQ_INT(cm_wrap_set_header(w, s->add_key, s->name), 0);
    }
    *state = s;
    return 0;
}

static void
after(const cm_wrap_info *w, void *arg, void *state)
{
    seen *s = arg;
    note("%s.after%d", s->name, w->attempt);
    s->state_ok = state == s;
    s->status = w->status;
    s->err_code = w->error ? w->error->code : 0;
    s->rsp_n = w->rsp && w->rsp_desc ? ((const Rpctest__Rsp *)w->rsp)->n : -1;
}

/* ---- the server ---- */

static int
echo(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    (void)user;
    const Rpctest__Req *req = vreq;
    Rpctest__Rsp *rsp = vrsp;
    note("%shandler", "", 0);
    if (req->fail_code != 0) {
        return cm_ctx_error(ctx, req->fail_code, "failed on purpose");
    }
    rsp->n = req->n * 2;
    const char *h = cm_ctx_get(ctx, req->echo_header[0] ? req->echo_header : "X-None");
    rsp->header = cm_ctx_strdup(ctx, h ? h : "(none)");
    return 0;
}

static seen H1 = {"H1", 0, "X-H1", {0}, {0}, {0}, {0}, 0, 0, 0, 0, 0, 0, 0};
static seen H2 = {"H2", 403, NULL, {0}, {0}, {0}, {0}, 0, 0, 0, 0, 0, 0, 0};
static seen C1 = {"C1", 0, NULL, {0}, {0}, {0}, {0}, 0, 0, 0, 0, 0, 0, 0};
static seen C2 = {"C2", 429, "X-C2", {0}, {0}, {0}, {0}, 0, 0, 0, 0, 0, 0, 0};
static seen A1 = {"A1", 0, "X-A1", {0}, {0}, {0}, {0}, 0, 0, 0, 0, 0, 0, 0};

typedef struct fixture {
    atomic_int stopped;
    cm_loop *loop;
    cm_server *s;
    cm_client *c;
    char addr[128];
} fixture;

static void
start_server(void *arg)
{
    fixture *f = arg;
    CHECK_EQ_INT(cm_server_start(f->s), 0);
    snprintf(f->addr, sizeof f->addr, "%s", cm_server_address(f->s));
}

static void
setup(fixture *f)
{
    memset(f, 0, sizeof(*f));
    CHECK_EQ_INT(cm_loop_new(&f->loop), 0);
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "wrap.server";
    o.address = "127.0.0.1:0";
    CHECK_EQ_INT(cm_server_new(f->loop, &o, &f->s), 0);
    const char *eps[] = {"Echo.Call", "Echo.Deny", "Echo.Fail"};
    for (size_t i = 0; i < 3; i++) {
        cm_handler h = {eps[i],
                        &rpctest__req__descriptor,
                        &rpctest__rsp__descriptor,
                        echo,
                        i == 0 ? CM_HANDLER_INLINE : 0u,
                        NULL,
                        NULL,
                        NULL};
        CHECK_EQ_INT(cm_server_handle(f->s, &h, NULL), 0);
    }
    cm_wrapper w1 = {"H1", before, after, &H1};
    cm_wrapper w2 = {"H2", before, after, &H2};
    CHECK_EQ_INT(cm_server_wrap(f->s, &w1), 0);
    CHECK_EQ_INT(cm_server_wrap(f->s, &w2), 0);
    cm_wrapper none = {"none", NULL, NULL, NULL};
    CHECK_EQ_INT(cm_server_wrap(f->s, &none), CM_EINVAL);
    CHECK_EQ_INT(cm_server_wrap_subscriber(f->s, &w1), 0);
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &f->c), 0); /* a loop of its own */
    cm_wrapper c1 = {"C1", before, after, &C1};
    cm_wrapper c2 = {"C2", before, after, &C2};
    cm_wrapper a1 = {"A1", before, after, &A1};
    CHECK_EQ_INT(cm_client_wrap(f->c, &c1), 0);
    CHECK_EQ_INT(cm_client_wrap(f->c, &c2), 0);
    CHECK_EQ_INT(cm_client_wrap_call(f->c, &a1), 0);
    CHECK_EQ_INT(cm_loop_start(f->loop), 0);
    CHECK_EQ_INT(cm_loop_post(f->loop, start_server, f), 0);
    for (int i = 0; i < 200 && f->addr[0] == '\0'; i++) {
        uv_sleep(10);
    }
    CHECK(f->addr[0] != '\0');
    CHECK_EQ_INT(cm_server_wrap(f->s, &w1), CM_ESTATE); /* started */
}

static int
call(fixture *f, const char *ep, const char *address, Rpctest__Req *req, Rpctest__Rsp **rsp,
     cm_error **err)
{
    cm_md *md = cm_md_new();
    cm_md_set(md, "X-User", "ada");
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = address;
    co.md = md;
    co.timeout_ms = 3000;
    co.max_attempts = 2;
    *rsp = NULL;
    *err = NULL;
    int rc = cm_client_call(f->c, "wrap.server", ep, &rpctest__req__descriptor, req,
                            &rpctest__rsp__descriptor, (void **)rsp, &co, err);
    cm_md_free(md);
    return rc;
}

static void
test_order_and_view(fixture *f)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.n = 21;
    req.echo_header = "X-A1";
    Rpctest__Rsp *rsp;
    cm_error *err;
    CHECK_EQ_INT(call(f, "Echo.Call", f->addr, &req, &rsp, &err), 0);
    CHECK_EQ_INT(rsp->n, 42);
    CHECK_EQ_STR(rsp->header, "A1"); /* the call wrapper's header reached the handler */
    cm_message_free(&rpctest__rsp__descriptor, rsp);
    char t[2048];
    trace_take(t, sizeof t);
    CHECK_EQ_STR(t, "C1.before0 C2.before0 A1.before1 H1.before0 H2.before0 handler H2.after0 "
                    "H1.after0 A1.after1 C2.after0 C1.after0");
    /* The server side's view. */
    CHECK_EQ_STR(H1.endpoint, "Echo.Call");
    CHECK_EQ_STR(H1.service, "wrap.server");
    CHECK(strncmp(H1.node, "127.0.0.1:", 10) == 0);
    CHECK_EQ_STR(H1.md_user, "ada");
    CHECK(H1.deadline_ms > 0);
    CHECK_EQ_INT(H1.req_n, 21);
    CHECK_EQ_INT(H1.rsp_n, 42);
    CHECK_EQ_INT(H1.status, 0);
    CHECK(H1.state_ok && H2.state_ok);
    /* The client side's view. */
    CHECK_EQ_STR(C1.endpoint, "Echo.Call");
    CHECK_EQ_STR(C1.service, "wrap.server");
    CHECK_EQ_INT(C1.req_n, 21);
    CHECK_EQ_INT(C1.rsp_n, 42);
    CHECK_EQ_STR(C1.md_user, "ada");
    CHECK_EQ_STR(A1.node, f->addr);
    CHECK_EQ_INT(A1.attempt, 1);
    CHECK_EQ_INT(A1.req_n, -1); /* encoded by then */
    CHECK_EQ_INT(A1.rsp_n, 42);
    /* A client wrapper's header is sent too. */
    req.echo_header = "X-C2";
    CHECK_EQ_INT(call(f, "Echo.Call", f->addr, &req, &rsp, &err), 0);
    CHECK_EQ_STR(rsp->header, "C2");
    cm_message_free(&rpctest__rsp__descriptor, rsp);
    trace_take(t, sizeof t);
}

static void
test_server_short_circuit(fixture *f)
{
    /* C2 denies endpoints ending in "Deny": call them by another name through a second
     * client with no wrappers, so that H2's refusal is what is seen. */
    cm_client *plain;
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &plain), 0);
    Rpctest__Req req = RPCTEST__REQ__INIT;
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = f->addr;
    void *rsp = NULL;
    cm_error *err = NULL;
    int rc = cm_client_call(plain, "wrap.server", "Echo.Deny", &rpctest__req__descriptor, &req,
                            &rpctest__rsp__descriptor, &rsp, &co, &err);
    CHECK_EQ_INT(rc, CM_EREMOTE);
    CHECK_EQ_INT(err->code, 403);
    CHECK_EQ_STR(err->id, "wrap.test");
    CHECK_EQ_STR(err->detail, "denied by H2");
    cm_error_free(err);
    char t[2048];
    trace_take(t, sizeof t);
    CHECK_EQ_STR(t, "H1.before0 H2.before0 H1.after0"); /* no handler, no H2.after */
    CHECK_EQ_INT(H1.status, CM_EREMOTE);
    CHECK_EQ_INT(H1.err_code, 403);
    CHECK_EQ_INT(H1.rsp_n, -1);
    /* A handler's own error, seen by the wrappers. */
    req.fail_code = 409;
    rc = cm_client_call(plain, "wrap.server", "Echo.Fail", &rpctest__req__descriptor, &req,
                        &rpctest__rsp__descriptor, &rsp, &co, &err);
    CHECK_EQ_INT(rc, CM_EREMOTE);
    CHECK_EQ_INT(err->code, 409);
    cm_error_free(err);
    trace_take(t, sizeof t);
    CHECK_EQ_STR(t, "H1.before0 H2.before0 handler H2.after0 H1.after0");
    CHECK_EQ_INT(H2.err_code, 409);
    CHECK_EQ_INT(H1.status, CM_EREMOTE);
    cm_client_free(plain);
}

static void
test_client_short_circuit(fixture *f)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    Rpctest__Rsp *rsp;
    cm_error *err;
    CHECK_EQ_INT(call(f, "Echo.Deny", f->addr, &req, &rsp, &err), CM_EREMOTE);
    CHECK_EQ_INT(err->code, 429);
    CHECK_EQ_STR(err->detail, "denied by C2");
    cm_error_free(err);
    char t[2048];
    trace_take(t, sizeof t);
    CHECK_EQ_STR(t, "C1.before0 C2.before0 C1.after0"); /* nothing was sent */
    CHECK_EQ_INT(C1.status, CM_EREMOTE);
    CHECK_EQ_INT(C1.err_code, 429);
}

static void
test_attempts(fixture *f)
{
    /* The first address refuses the connection: the call is retried on the second. */
    char list[300];
    snprintf(list, sizeof list, "127.0.0.1:1,%s", f->addr);
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.n = 5;
    Rpctest__Rsp *rsp;
    cm_error *err;
    /* The attempts rotate from a per-client counter: try until one call starts on the dead
     * address, so that both attempts are seen. */
    char t[2048] = "";
    for (int i = 0; i < 4 && strstr(t, "A1.before2") == NULL; i++) {
        CHECK_EQ_INT(call(f, "Echo.Call", list, &req, &rsp, &err), 0);
        CHECK_EQ_INT(rsp->n, 10);
        cm_message_free(&rpctest__rsp__descriptor, rsp);
        trace_take(t, sizeof t);
    }
    CHECK_EQ_STR(t, "C1.before0 C2.before0 A1.before1 A1.after1 A1.before2 H1.before0 "
                    "H2.before0 handler H2.after0 H1.after0 A1.after2 C2.after0 C1.after0");
    CHECK_EQ_INT(A1.attempt, 2);
    CHECK_EQ_INT(A1.status, 0);
    CHECK_EQ_STR(A1.node, f->addr);
}

static void
on_stopped(void *arg)
{
    atomic_store(&((fixture *)arg)->stopped, 1);
}

static void
stop_server(void *arg)
{
    fixture *f = arg;
    CHECK_EQ_INT(cm_server_stop(f->s, on_stopped, f), 0);
}

static void
test_limits(void)
{
    cm_loop *loop;
    cm_server *s;
    cm_client *c;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    CHECK_EQ_INT(cm_server_new(loop, NULL, &s), 0);
    CHECK_EQ_INT(cm_client_new(loop, NULL, &c), 0);
    cm_wrapper w = {"w", before, NULL, &C1};
    for (int i = 0; i < CM_WRAP_MAX; i++) {
        CHECK_EQ_INT(cm_server_wrap(s, &w), 0);
        CHECK_EQ_INT(cm_client_wrap_call(c, &w), 0);
    }
    CHECK_EQ_INT(cm_server_wrap(s, &w), CM_ENOMEM);
    CHECK_EQ_INT(cm_client_wrap_call(c, &w), CM_ENOMEM);
    CHECK_EQ_INT(cm_client_wrap(c, NULL), CM_EINVAL);
    cm_client_free(c);
    cm_server_free(s);
    cm_loop_free(loop);
}

int
main(void)
{
    setenv("CMICRO_QUIET", "1", 1);
    uv_mutex_init(&log_mu);
    fixture f;
    setup(&f);
    RUN_F(test_order_and_view, &f);
    RUN_F(test_server_short_circuit, &f);
    RUN_F(test_client_short_circuit, &f);
    RUN_F(test_attempts, &f);
    cm_wrapper late = {"late", before, after, &C1};
    CHECK_EQ_INT(cm_client_wrap(f.c, &late), CM_ESTATE); /* after the first call */
    cm_client_free(f.c);
    CHECK_EQ_INT(cm_loop_post(f.loop, stop_server, &f), 0);
    for (int i = 0; i < 300 && !atomic_load(&f.stopped); i++) {
        uv_sleep(10);
    }
    CHECK(atomic_load(&f.stopped));
    test_on_loop(f.loop, test_free_server, f.s);
    cm_loop_stop(f.loop);
    cm_loop_free(f.loop);
    RUN(test_limits);
    TEST_DONE();
}
