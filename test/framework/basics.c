/* Errors, metadata, header helpers, the loop and the worker pool. */
#include "framework_int.h"
#include "server_int.h"
#include "test.h"

#include <stdatomic.h>

static void
test_errors(void)
{
    CHECK_EQ_STR(cm_strerror(CM_ETIMEDOUT), "timed out");
    CHECK_EQ_STR(cm_err_name(CM_ETIMEDOUT), "CM_ETIMEDOUT");
    CHECK_EQ_STR(cm_err_name(UV_ECONNREFUSED), "ECONNREFUSED");
    CHECK(strlen(cm_strerror(UV_ECONNREFUSED)) > 0);

    cm_error *e = cm_error_bad_request("helloworld", "name %s", "required");
    CHECK(e != NULL);
    char *j = cm_error_to_json(e);
    CHECK_EQ_STR(j, "{\"id\":\"helloworld\",\"code\":400,\"detail\":\"name required\","
                    "\"status\":\"Bad Request\"}");
    cm_error *p = cm_error_parse(j, strlen(j));
    CHECK_EQ_STR(p->id, "helloworld");
    CHECK_EQ_INT(p->code, 400);
    CHECK_EQ_STR(p->detail, "name required");
    CHECK_EQ_STR(p->status, "Bad Request");
    free(j);
    cm_error_free(p);
    cm_error_free(e);

    /* Each constructor carries go-micro's code and status text. */
    struct {
        cm_error *(*fn)(const char *, const char *, ...);
        int code;
        const char *status;
    } ctors[] = {
        {cm_error_bad_request, 400, "Bad Request"},
        {cm_error_unauthorized, 401, "Unauthorized"},
        {cm_error_forbidden, 403, "Forbidden"},
        {cm_error_not_found, 404, "Not Found"},
        {cm_error_method_not_allowed, 405, "Method Not Allowed"},
        {cm_error_timeout, 408, "Request Timeout"},
        {cm_error_conflict, 409, "Conflict"},
        {cm_error_internal, 500, "Internal Server Error"},
    };
    for (size_t i = 0; i < sizeof(ctors) / sizeof(ctors[0]); i++) {
        cm_error *x = ctors[i].fn("svc", "d");
        CHECK_EQ_INT(x->code, ctors[i].code);
        CHECK_EQ_STR(x->status, ctors[i].status);
        cm_error_free(x);
    }

    /* Plain text is go-micro's Parse fallback: the detail, code 0. */
    p = cm_error_parse("rpc: can't find service Foo", 27);
    CHECK_EQ_STR(p->detail, "rpc: can't find service Foo");
    CHECK_EQ_INT(p->code, 0);
    CHECK_EQ_STR(p->id, "");
    cm_error_free(p);
    /* JSON of the wrong shape is text too. */
    p = cm_error_parse("{\"code\":\"x\"}", 12);
    CHECK_EQ_STR(p->detail, "{\"code\":\"x\"}");
    cm_error_free(p);
    /* Newlines never reach a header value. */
    e = cm_error_internal("a", "line1\nline2\r");
    CHECK_EQ_STR(e->detail, "line1 line2 ");
    cm_error_free(e);
    /* Empty fields are omitted, as go-micro's omitempty does. */
    e = cm_error_new("", 0, "only detail");
    j = cm_error_to_json(e);
    CHECK_EQ_STR(j, "{\"detail\":\"only detail\"}");
    free(j);
    cm_error_free(e);
    /* Long details are not truncated. */
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    e = cm_error_internal("a", "%s", big);
    CHECK_EQ_INT(strlen(e->detail), 999);
    cm_error_free(e);
}

static void
test_md(void)
{
    cm_md *md = cm_md_new();
    CHECK(md != NULL);
    CHECK_EQ_INT(cm_md_set(md, "X-User", "1"), 0);
    CHECK_EQ_INT(cm_md_set(md, "x-user", "2"), 0);
    CHECK_EQ_INT(cm_md_count(md), 1);
    CHECK_EQ_STR(cm_md_get(md, "X-USER"), "2");
    CHECK_EQ_INT(cm_md_set(md, "bad", "a\r\nInjected: 1"), CM_EINVAL);
    CHECK_EQ_INT(cm_md_set(md, "", "v"), CM_EINVAL);
    CHECK_EQ_INT(cm_md_set(md, "b", "v"), 0);
    const char *k, *v;
    CHECK_EQ_INT(cm_md_at(md, 1, &k, &v), 0);
    CHECK_EQ_STR(k, "b");
    CHECK_EQ_INT(cm_md_del(md, "x-user"), 0);
    CHECK_EQ_INT(cm_md_del(md, "x-user"), CM_ENOTFOUND);
    CHECK_EQ_INT(cm_md_count(md), 1);
    CHECK_EQ_INT(cm_md_at(md, 1, &k, &v), CM_EINVAL);
    cm_md_free(md);
}

static void
test_headers(void)
{
    char out[64];
    CHECK_EQ_INT(cm__canonical_key("x-user-id", out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "X-User-Id");
    CHECK_EQ_INT(cm__canonical_key("MICRO-ID", out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "Micro-Id");
    CHECK_EQ_INT(cm__canonical_key("has space", out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "has space");
    CHECK(cm__is_framework_header("micro-endpoint"));
    CHECK(cm__is_framework_header("Timeout"));
    CHECK(!cm__is_framework_header("X-User-Id"));
}

static atomic_int posted;

static void
on_post(void *arg)
{
    atomic_fetch_add(&posted, *(int *)arg);
}

typedef struct job {
    cm__job base;
    int worked;
    int done;
} job;

static void
job_work(cm__job *j)
{
    ((job *)j)->worked = 1;
}

static void
job_done(cm__job *j)
{
    ((job *)j)->done = ((job *)j)->worked;
}

static void
test_loop_and_workers(void)
{
    cm_loop *l;
    CHECK_EQ_INT(cm_loop_new(&l), 0);
    CHECK_EQ_INT(cm_loop_start(l), 0);
    CHECK_EQ_INT(cm_loop_start(l), CM_ESTATE);
    static int one = 1;
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ_INT(cm_loop_post(l, on_post, &one), 0);
    }
    CHECK(!cm_loop_on_loop_thread(l));
    cm_loop_free(l); /* runs what is still queued */
    CHECK_EQ_INT(atomic_load(&posted), 1000);

    CHECK_EQ_INT(cm_loop_new(&l), 0);
    cm__workers *w;
    CHECK_EQ_INT(cm__workers_new(cm_loop_uv(l), 3, 3, &w), 0);
    job jobs[50];
    memset(jobs, 0, sizeof(jobs));
    for (int i = 0; i < 50; i++) {
        jobs[i].base.work = job_work;
        jobs[i].base.done = job_done;
        cm__workers_submit(w, &jobs[i].base);
    }
    cm__workers_free(w);
    for (int i = 0; i < 50; i++) {
        CHECK_EQ_INT(jobs[i].done, 1);
    }
    cm_loop_free(l);
}

/* The pool of call contexts keeps at most CM__CTX_KEEP free ones: a burst of calls does not pin
 * its memory. */
static void
test_ctx_pool(void)
{
    cm_loop *l;
    CHECK_EQ_INT(cm_loop_new(&l), 0);
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "pool";
    cm_server *s;
    CHECK_EQ_INT(cm_server_new(l, &o, &s), 0);
    enum { BURST = 3000 };
    static cm_ctx *cs[BURST];
    for (int i = 0; i < BURST; i++) {
        cs[i] = cm__ctx_get(s);
        CHECK(cs[i] != NULL);
    }
    CHECK_EQ_INT(s->loops[0].nfree, 0);
    for (int i = 0; i < BURST; i++) {
        cm__ctx_put(cs[i]);
    }
    CHECK_EQ_INT(s->loops[0].nfree, CM__CTX_KEEP);
    cm_ctx *c = cm__ctx_get(s);
    CHECK(c == cs[CM__CTX_KEEP - 1]); /* the last one kept */
    CHECK_EQ_INT(s->loops[0].nfree, CM__CTX_KEEP - 1);
    cm__ctx_put(c);
    cm_server_free(s);
    cm_loop_free(l);
}

static void
test_arena(void)
{
    cm__arena a;
    cm__arena_init(&a);
    char *p = cm__arena_alloc(&a, 10);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p % _Alignof(max_align_t)) == 0);
    char *big = cm__arena_alloc(&a, 100000);
    CHECK(big != NULL);
    memset(big, 1, 100000);
    /* The big chunk is kept (it is the newest) when keep allows it: the next allocation reuses
     * it from its start. */
    cm__arena_reset(&a, 200000);
    char *q = cm__arena_alloc(&a, 10);
    CHECK(q == big);
    /* Over keep, it goes: a later allocation gets a new chunk. */
    cm__arena_reset(&a, 4096);
    CHECK(a.head == NULL);
    q = cm__arena_alloc(&a, 10);
    CHECK(q != NULL);
    cm__arena_fini(&a);
}

int
main(void)
{
    RUN(test_errors);
    RUN(test_md);
    RUN(test_headers);
    RUN(test_loop_and_workers);
    RUN(test_arena);
    RUN(test_ctx_pool);
    TEST_DONE();
}
