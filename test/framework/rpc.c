/* The server and the client together over real sockets on 127.0.0.1. */
#include "rpctest.pb-c.h"
#include "test.h"
#include "testsrv.h"
#include <uv.h>

#include <cmicro/cmicro.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

/* ---- the service under test ---- */

static atomic_int running, max_running;

static int
echo(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    (void)user;
    const Rpctest__Req *req = vreq;
    Rpctest__Rsp *rsp = vrsp;
    if (req->sleep_ms > 0) {
        int now = atomic_fetch_add(&running, 1) + 1;
        int seen = atomic_load(&max_running);
        while (now > seen && !atomic_compare_exchange_weak(&max_running, &seen, now)) {
        }
        usleep((useconds_t)req->sleep_ms * 1000);
        atomic_fetch_sub(&running, 1);
    }
    if (req->fail_code != 0) {
        return cm_ctx_error(ctx, req->fail_code, "failed on purpose for %s", req->name);
    }
    size_t n = strlen(req->name) + 7;
    rsp->msg = cm_ctx_alloc(ctx, n);
    snprintf(rsp->msg, n, "Hello %s", req->name);
    rsp->n = req->n * 2;
    if (req->echo_header[0] != '\0') {
        const char *v = cm_ctx_get(ctx, req->echo_header);
        rsp->header = cm_ctx_strdup(ctx, v ? v : "(none)");
    }
    return 0;
}

static int
raw_reverse(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    (void)user;
    const ProtobufCBinaryData *req = vreq;
    ProtobufCBinaryData *rsp = vrsp;
    rsp->data = cm_ctx_alloc(ctx, req->len + 1);
    for (size_t i = 0; i < req->len; i++) {
        rsp->data[i] = req->data[req->len - 1 - i];
    }
    rsp->len = req->len;
    return 0;
}

static int
fail_plain(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)rsp;
    (void)user;
    return CM_ENOTSUP;
}

static void
srv_start(testsrv *t, unsigned drain_ms, unsigned max_calls)
{
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "rpctest";
    o.address = "127.0.0.1:0";
    o.workers = 4;
    o.drain_timeout_ms = drain_ms;
    o.transport_opts.max_calls = max_calls;
    testsrv_new(t, &o);
    cm_handler h = {
        "Test.Echo", &rpctest__req__descriptor, &rpctest__rsp__descriptor, echo, 0, NULL, NULL,
        NULL};
    CHECK_EQ_INT(cm_server_handle(t->s, &h, NULL), 0);
    CHECK_EQ_INT(cm_server_handle(t->s, &h, NULL), CM_EEXIST);
    h.endpoint = "Test.Inline";
    h.flags = CM_HANDLER_INLINE;
    CHECK_EQ_INT(cm_server_handle(t->s, &h, NULL), 0);
    cm_handler raw = {"Raw.Reverse", NULL, NULL, raw_reverse, CM_HANDLER_INLINE, NULL, NULL, NULL};
    CHECK_EQ_INT(cm_server_handle(t->s, &raw, NULL), 0);
    cm_handler plain = {"Test.Plain", NULL, NULL, fail_plain, 0, NULL, NULL, NULL};
    CHECK_EQ_INT(cm_server_handle(t->s, &plain, NULL), 0);
    cm_handler bad = {"NoDot", NULL, NULL, fail_plain, 0, NULL, NULL, NULL};
    CHECK_EQ_INT(cm_server_handle(t->s, &bad, NULL), CM_EINVAL);
    testsrv_start(t);
    CHECK(strncmp(t->addr, "127.0.0.1:", 10) == 0);
}

/* ---- helpers ---- */

static cm_client *client;

static int
call(const char *addr, const char *endpoint, const char *ct, Rpctest__Req *req, Rpctest__Rsp **rsp,
     cm_error **err, const cm_call_opts *extra)
{
    cm_call_opts o;
    if (extra) {
        o = *extra;
    } else {
        cm_call_opts_init(&o);
    }
    o.address = addr;
    o.content_type = ct;
    return cm_client_call(client, "rpctest", endpoint, &rpctest__req__descriptor, req,
                          &rpctest__rsp__descriptor, (void **)rsp, &o, err);
}

/* ---- tests ---- */

static testsrv S;

static void
test_round_trips(void)
{
    const char *cts[] = {CM_CT_PROTOBUF, CM_CT_JSON};
    const char *eps[] = {"Test.Echo", "Test.Inline"};
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 2; j++) {
            Rpctest__Req req = RPCTEST__REQ__INIT;
            req.name = "BOSSMA";
            req.n = 1234567890123LL;
            Rpctest__Rsp *rsp = NULL;
            cm_error *err = NULL;
            int rc = call(S.addr, eps[j], cts[i], &req, &rsp, &err, NULL);
            if (rc != 0) {
                fprintf(stderr, "%s %s: %s %s\n", cts[i], eps[j], cm_err_name(rc),
                            err ? err->detail : "");
            }
            CHECK_EQ_INT(rc, 0);
            CHECK(err == NULL);
            CHECK_EQ_STR(rsp->msg, "Hello BOSSMA");
            CHECK_EQ_INT(rsp->n, 2469135780246LL);
            cm_message_free(&rpctest__rsp__descriptor, rsp);
        }
    }
    /* An empty request (zero bytes of protobuf) is the default message. */
    Rpctest__Req empty = RPCTEST__REQ__INIT;
    Rpctest__Rsp *rsp = NULL;
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &empty, &rsp, NULL, NULL), 0);
    CHECK_EQ_STR(rsp->msg, "Hello ");
    cm_message_free(&rpctest__rsp__descriptor, rsp);

    /* Raw bytes. */
    ProtobufCBinaryData in = {5, (uint8_t *)"abcde"};
    ProtobufCBinaryData *out = NULL;
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = S.addr;
    o.content_type = CM_CT_BYTES;
    CHECK_EQ_INT(cm_client_call(client, "rpctest", "Raw.Reverse", NULL, &in, NULL, (void **)&out,
                                &o, NULL),
                 0);
    CHECK_EQ_INT(out->len, 5);
    CHECK(memcmp(out->data, "edcba", 5) == 0);
    cm_message_free(NULL, out);
}

static void
test_errors(void)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "x";
    req.fail_code = 409;
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_JSON, &req, &rsp, &err, NULL), CM_EREMOTE);
    CHECK(rsp == NULL);
    CHECK_EQ_STR(err->id, "rpctest");
    CHECK_EQ_INT(err->code, 409);
    CHECK_EQ_STR(err->detail, "failed on purpose for x");
    CHECK_EQ_STR(err->status, "Conflict");
    cm_error_free(err);

    /* A handler's plain error code becomes a 500 with its text. */
    req.fail_code = 0;
    CHECK_EQ_INT(call(S.addr, "Test.Plain", CM_CT_PROTOBUF, &req, &rsp, &err, NULL), CM_EREMOTE);
    CHECK_EQ_INT(err->code, 500);
    CHECK_EQ_STR(err->detail, cm_strerror(CM_ENOTSUP));
    cm_error_free(err);

    /* Routing errors are worded as go-micro's, with the server's name as id and a code. */
    struct {
        const char *ep;
        const char *detail;
        int code;
    } cases[] = {
        {"Test.Nope", "rpc: can't find method Nope", 404},
        {"Nope.Echo", "rpc: can't find service Nope", 404},
        {"Nope", "rpc: service/endpoint request ill-formed: Nope", 400},
        {"A.B.C", "rpc: service/endpoint request ill-formed: A.B.C", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ_INT(call(S.addr, cases[i].ep, CM_CT_PROTOBUF, &req, &rsp, &err, NULL),
                     CM_EREMOTE);
        CHECK_EQ_STR(err->detail, cases[i].detail);
        CHECK_EQ_INT(err->code, cases[i].code);
        CHECK_EQ_STR(err->id, "rpctest");
        cm_error_free(err);
    }
}

/* The Timeout header an attempt sent, in ms, as the handler saw it. */
static uint64_t
timeout_seen_ms(const Rpctest__Rsp *rsp)
{
    return strtoull(rsp->header, NULL, 10) / 1000000u;
}

static void
test_deadline(void)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "slow";
    req.sleep_ms = 800;
    req.echo_header = "Timeout";
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    cm_call_opts o;
    cm_call_opts_init(&o);

    /* Not idempotent: no retry could follow an attempt's timeout, so the attempt runs to the
     * call's deadline (not the 200 ms attempt limit), and the Timeout header says so. */
    o.attempt_timeout_ms = 200;
    o.timeout_ms = 3000;
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, &err, &o), 0);
    CHECK_EQ_STR(rsp->msg, "Hello slow");
    CHECK(timeout_seen_ms(rsp) > 2500 && timeout_seen_ms(rsp) <= 3000);
    cm_message_free(&rpctest__rsp__descriptor, rsp);

    /* The call's own timeout fires: the error names it and says no retry follows. */
    o.timeout_ms = 300;
    uint64_t t0 = cm_now_ms();
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, &err, &o), CM_ETIMEDOUT);
    uint64_t took = cm_now_ms() - t0;
    CHECK(took >= 290 && took < 700);
    CHECK_EQ_INT(err->code, 408);
    fprintf(stderr, "   %s\n", err->detail);
    CHECK(strstr(err->detail, "call's timeout of 300 ms") != NULL);
    CHECK(strstr(err->detail, "attempt 1 of 6") != NULL);
    CHECK(strstr(err->detail, "no retry") != NULL);
    cm_error_free(err);

    /* Idempotent: each attempt is bounded by the attempt timeout and retried after go-micro's
     * back-off until the next back-off would pass the call's timeout: attempt 1 at 0-200 ms,
     * 100 ms of back-off, attempt 2 at 300-500 ms, then 600 ms of back-off would end past
     * 1000 ms. */
    o.idempotent = 1;
    o.attempt_timeout_ms = 200;
    o.timeout_ms = 1000;
    t0 = cm_now_ms();
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, &err, &o), CM_ETIMEDOUT);
    took = cm_now_ms() - t0;
    fprintf(stderr, "   %s (%llu ms)\n", err->detail, (unsigned long long)took);
    CHECK(took >= 490 && took < 800);
    CHECK(strstr(err->detail, "attempt timeout of 200 ms") != NULL);
    CHECK(strstr(err->detail, "attempt 2 of 6") != NULL);
    CHECK(strstr(err->detail, "no retry: the call's timeout passes first") != NULL);
    cm_error_free(err);

    /* The server survives and serves the next call. */
    req.sleep_ms = 0;
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, &err, NULL), 0);
    CHECK_EQ_STR(rsp->msg, "Hello slow");
    CHECK(timeout_seen_ms(rsp) > 29000); /* the client's 30 s request timeout */
    cm_message_free(&rpctest__rsp__descriptor, rsp);
    usleep(900 * 1000); /* let the abandoned handlers finish before the next test */
}

static void
test_retry_to_live_address(void)
{
    /* A port nobody listens on: bind one, close it. */
    uv_loop_t l;
    uv_loop_init(&l);
    uv_tcp_t t;
    uv_tcp_init(&l, &t);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    CHECK_EQ_INT(uv_tcp_bind(&t, (struct sockaddr *)&sa, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&l, UV_RUN_DEFAULT);
    uv_loop_close(&l);

    char addrs[256];
    snprintf(addrs, sizeof(addrs), "127.0.0.1:%d,%s", port, S.addr);
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "retry";
    for (int i = 0; i < 4; i++) {
        Rpctest__Rsp *rsp = NULL;
        cm_error *err = NULL;
        cm_call_opts o;
        cm_call_opts_init(&o);
        o.max_attempts = 2;
        CHECK_EQ_INT(call(addrs, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, &err, &o), 0);
        CHECK_EQ_STR(rsp->msg, "Hello retry");
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    }
    /* With one attempt, the dead address fails the call with a connection error. */
    snprintf(addrs, sizeof(addrs), "127.0.0.1:%d", port);
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.max_attempts = 1;
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    CHECK_EQ_INT(call(addrs, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, &err, &o), UV_ECONNREFUSED);
    CHECK(strstr(err->detail, "connection error") != NULL);
    cm_error_free(err);
}

/* Requests the transport refuses over its limits reach the server as codes; the server answers
 * with go-micro's 431 and 413 errors (the transport knows nothing of cm_error). */
static void
test_transport_limits(void)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.max_attempts = 1;
    cm_md *md = cm_md_new();
    o.md = md;
    char *big = malloc(70001);
    memset(big, 'a', 70000);
    big[70000] = '\0';
    CHECK_EQ_INT(cm_md_set(md, "X-Big", big), 0);
    req.name = "limits";
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, &err, &o), CM_EREMOTE);
    CHECK_EQ_STR(err->id, "cmicro.transport");
    CHECK_EQ_INT(err->code, 431);
    CHECK_EQ_STR(err->detail, "request header block exceeds 65536 bytes (max_header_bytes)");
    CHECK_EQ_STR(err->status, "Request Header Fields Too Large");
    cm_error_free(err);
    err = NULL;
    cm_md_free(md);
    o.md = NULL;
    free(big);

    size_t n = 5u << 20;
    big = malloc(n + 1);
    memset(big, 'b', n);
    big[n] = '\0';
    req.name = big;
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, &err, &o), CM_EREMOTE);
    CHECK_EQ_STR(err->id, "cmicro.transport");
    CHECK_EQ_INT(err->code, 413);
    CHECK_EQ_STR(err->detail, "request body exceeds 4194304 bytes (max_body_bytes)");
    CHECK_EQ_STR(err->status, "Request Entity Too Large");
    cm_error_free(err);
    free(big);

    /* The server goes on serving. */
    req.name = "after";
    err = NULL;
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, &err, NULL), 0);
    CHECK_EQ_STR(rsp->msg, "Hello after");
    cm_message_free(&rpctest__rsp__descriptor, rsp);
}

static void
test_pooling(void)
{
    cm_server_stats before, after;
    cm_server_get_stats(S.s, &before);
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "pool";
    for (int i = 0; i < 1000; i++) {
        Rpctest__Rsp *rsp = NULL;
        CHECK_EQ_INT(call(S.addr, "Test.Inline", CM_CT_PROTOBUF, &req, &rsp, NULL, NULL), 0);
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    }
    cm_server_get_stats(S.s, &after);
    /* The client already holds pooled connections from earlier tests: no new ones. */
    CHECK(after.calls - before.calls == 1000);
    CHECK(after.accepted - before.accepted <= 1);
}

static void
test_metadata(void)
{
    cm_md *md = cm_md_new();
    cm_md_set(md, "x-user-id", "42");
    cm_md_set(md, "Micro-Endpoint", "Evil.Override");
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "md";
    req.echo_header = "X-User-Id";
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.md = md;
    Rpctest__Rsp *rsp = NULL;
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, NULL, &o), 0);
    CHECK_EQ_STR(rsp->header, "42");
    cm_message_free(&rpctest__rsp__descriptor, rsp);
    /* Framework headers in metadata are not sent: the endpoint was not overridden. */
    req.echo_header = "Micro-Endpoint";
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, NULL, &o), 0);
    CHECK_EQ_STR(rsp->header, "Test.Echo");
    cm_message_free(&rpctest__rsp__descriptor, rsp);
    /* The Timeout header carries the attempt's budget in nanoseconds: the attempt timeout for an
     * idempotent call that can be retried, the call's remaining time otherwise. */
    req.echo_header = "Timeout";
    o.idempotent = 1;
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, NULL, &o), 0);
    CHECK_EQ_STR(rsp->header, "5000000000");
    cm_message_free(&rpctest__rsp__descriptor, rsp);
    CHECK_EQ_INT(call(S.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, NULL, NULL), 0);
    CHECK(timeout_seen_ms(rsp) > 29000 && timeout_seen_ms(rsp) <= 30000);
    cm_message_free(&rpctest__rsp__descriptor, rsp);
    cm_md_free(md);
}

static void
test_bad_bodies(void)
{
    /* Raw bytes sent to a typed endpoint as protobuf: garbage protobuf. */
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
    ProtobufCBinaryData in = {sizeof(garbage), (uint8_t *)garbage};
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = S.addr;
    o.content_type = CM_CT_PROTOBUF;
    CHECK_EQ_INT(cm_client_call(client, "rpctest", "Test.Echo", NULL, &in,
                                &rpctest__rsp__descriptor, (void **)&rsp, &o, &err),
                 CM_EREMOTE);
    CHECK_EQ_INT(err->code, 400);
    cm_error_free(err);
    /* Invalid JSON. */
    ProtobufCBinaryData js = {9, (uint8_t *)"{\"name\":1"};
    o.content_type = CM_CT_JSON;
    CHECK_EQ_INT(cm_client_call(client, "rpctest", "Test.Echo", NULL, &js,
                                &rpctest__rsp__descriptor, (void **)&rsp, &o, &err),
                 CM_EREMOTE);
    CHECK_EQ_INT(err->code, 400);
    cm_error_free(err);
    /* A content type with no codec is refused before anything is sent. */
    o.content_type = "application/xml";
    CHECK_EQ_INT(cm_client_call(client, "rpctest", "Test.Echo", NULL, &in,
                                &rpctest__rsp__descriptor, (void **)&rsp, &o, &err),
                 CM_ECONTENTTYPE);
}

typedef struct async_res {
    uv_mutex_t mu;
    uv_cond_t cv;
    int n;
    int status[8];
    char msg[8][64];
    int code[8]; /* the error's code (an HTTP status from the server), or 0 */
    char detail[8][64];
} async_res;

static void
on_async(int status, void *rsp, const cm_error *err, void *user)
{
    async_res *r = user;
    uv_mutex_lock(&r->mu);
    r->status[r->n] = status;
    r->code[r->n] = err != NULL ? (int)err->code : 0;
    snprintf(r->detail[r->n], 64, "%s", err != NULL && err->detail ? err->detail : "");
    if (status == 0) {
        snprintf(r->msg[r->n], 64, "%s", ((Rpctest__Rsp *)rsp)->msg);
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    }
    r->n++;
    uv_cond_signal(&r->cv);
    uv_mutex_unlock(&r->mu);
}

static void
async_init(async_res *r)
{
    memset(r, 0, sizeof(*r));
    uv_mutex_init(&r->mu);
    uv_cond_init(&r->cv);
}

static void
async_wait(async_res *r, int n)
{
    uv_mutex_lock(&r->mu);
    while (r->n < n) {
        uv_cond_wait(&r->cv, &r->mu);
    }
    uv_mutex_unlock(&r->mu);
}

static void
async_fini(async_res *r)
{
    uv_cond_destroy(&r->cv);
    uv_mutex_destroy(&r->mu);
}

/* With one call slot: a call in flight when the server stops finishes; one waiting for the slot
 * is answered 503 "server is stopping" at once (not run: safe to send elsewhere), not dropped
 * with its connection; a new call is refused. */
static void
test_graceful_stop(void)
{
    testsrv t;
    srv_start(&t, 5000, 1);
    async_res r;
    async_init(&r);
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = t.addr;
    o.max_attempts = 1;
    Rpctest__Req req = RPCTEST__REQ__INIT;
    const char *names[] = {"inflight", "waiting"};
    for (int i = 0; i < 2; i++) {
        req.name = (char *)names[i];
        req.sleep_ms = i == 0 ? 300 : 0;
        CHECK_EQ_INT(cm_client_call_async(client, "rpctest", "Test.Echo", &rpctest__req__descriptor,
                                          &req, &rpctest__rsp__descriptor, &o, on_async, &r),
                     0);
        usleep(100 * 1000); /* the first runs in a worker; the second waits for its slot */
    }
    testsrv_stop(&t);
    async_wait(&r, 1);
    CHECK_EQ_INT(r.status[0], CM_EREMOTE); /* the waiting one */
    CHECK_EQ_INT(r.code[0], 503);
    CHECK_EQ_STR(r.detail[0], "server is stopping");
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    CHECK(call(t.addr, "Test.Echo", CM_CT_PROTOBUF, &req, &rsp, &err, &o) != 0);
    cm_error_free(err);
    testsrv_wait_stopped(&t);
    async_wait(&r, 2);
    CHECK_EQ_INT(r.status[1], 0);
    CHECK_EQ_STR(r.msg[1], "Hello inflight");
    testsrv_free(&t);
    async_fini(&r);
}

static void
test_async_many(void)
{
    async_res r;
    async_init(&r);
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "par";
    req.sleep_ms = 100;
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = S.addr;
    atomic_store(&max_running, 0);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(cm_client_call_async(client, "rpctest", "Test.Echo",
                                          &rpctest__req__descriptor, &req,
                                          &rpctest__rsp__descriptor, &o, on_async, &r),
                     0);
    }
    async_wait(&r, 4);
    /* The blocking handlers ran side by side on the worker pool. */
    CHECK(atomic_load(&max_running) >= 2);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(r.status[i], 0);
    }
    async_fini(&r);
}

/* A chain of calls made from the callbacks (the loop thread), borrowing their responses: every
 * response is the one asked for although call blocks, bodies and arenas are reused; blocks too
 * big for the pool (many headers) and bodies too big to keep take the other path. */
typedef struct chain {
    int i, n, bad;
    char name[80 * 1024];
    cm_md *md;
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
} chain;

static void chain_next(chain *ch);

static void
on_chain(int status, void *rsp, const cm_error *err, void *user)
{
    chain *ch = user;
    const Rpctest__Rsp *r = rsp;
    if (status != 0 || r == NULL || strncmp(r->msg, "Hello ", 6) != 0 ||
        strcmp(r->msg + 6, ch->name) != 0) {
        fprintf(stderr, "chain call %d: status %d (%s)\n", ch->i, status,
                err && err->detail ? err->detail : "");
        ch->bad++;
    }
    if (++ch->i == ch->n) {
        uv_mutex_lock(&ch->mu);
        ch->done = 1;
        uv_cond_signal(&ch->cv);
        uv_mutex_unlock(&ch->mu);
        return;
    }
    chain_next(ch);
}

static void
chain_next(chain *ch)
{
    int i = ch->i;
    size_t len = (size_t)snprintf(ch->name, 64, "borrowed-%d-", i);
    size_t want = i % 50 == 7 ? 70 * 1024 : (size_t)(i % 13) * 37;
    for (; len < want; len++) {
        ch->name[len] = (char)('a' + len % 26);
    }
    ch->name[len] = '\0';
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = ch->name;
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = S.addr;
    o.borrow_response = 1;
    o.md = i % 10 == 3 ? ch->md : NULL;
    int rc = cm_client_call_async(client, "rpctest", "Test.Echo", &rpctest__req__descriptor, &req,
                                  &rpctest__rsp__descriptor, &o, on_chain, ch);
    if (rc != 0) {
        fprintf(stderr, "chain call %d: %s\n", i, cm_strerror(rc));
        ch->bad++;
        ch->i = ch->n - 1;
        on_chain(-1, NULL, NULL, ch);
    }
}

static void
test_borrowed_responses(void)
{
    chain *ch = calloc(1, sizeof(*ch));
    CHECK(ch != NULL);
    ch->n = 300;
    ch->md = cm_md_new();
    char key[16];
    for (int k = 0; k < 40; k++) { /* more headers than a pooled block holds */
        snprintf(key, sizeof(key), "x-k%d", k);
        CHECK_EQ_INT(cm_md_set(ch->md, key, "v"), 0);
    }
    uv_mutex_init(&ch->mu);
    uv_cond_init(&ch->cv);
    chain_next(ch); /* the first from this thread, the rest from the loop thread */
    uv_mutex_lock(&ch->mu);
    while (!ch->done) {
        uv_cond_wait(&ch->cv, &ch->mu);
    }
    uv_mutex_unlock(&ch->mu);
    CHECK_EQ_INT(ch->bad, 0);
    CHECK_EQ_INT(ch->i, 300);
    /* A blocking call ignores the option: its response is owned. */
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "sync";
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = S.addr;
    o.borrow_response = 1;
    void *rsp = NULL;
    CHECK_EQ_INT(cm_client_call(client, "rpctest", "Test.Echo", &rpctest__req__descriptor, &req,
                                &rpctest__rsp__descriptor, &rsp, &o, NULL),
                 0);
    CHECK_EQ_STR(((Rpctest__Rsp *)rsp)->msg, "Hello sync");
    cm_message_free(&rpctest__rsp__descriptor, rsp);
    cm_md_free(ch->md);
    uv_cond_destroy(&ch->cv);
    uv_mutex_destroy(&ch->mu);
    free(ch);
}

/* Calls that were started but never ran on their loop when the client goes: their callbacks
 * still run once, with CM_ECANCELED, and nothing touches the freed client. Both the loop's
 * cross-thread queue (the loop not running) and its local queue (posted on the loop thread). */
typedef struct freed {
    cm_loop *loop;
    cm_client *c;
    int cbs, canceled;
} freed;

static void
on_freed_call(int status, void *rsp, const cm_error *err, void *user)
{
    (void)err;
    freed *f = user;
    f->cbs++;
    f->canceled += status == CM_ECANCELED;
    if (rsp != NULL) {
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    }
}

static void
start_then_free(freed *f)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "never";
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = S.addr;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(cm_client_call_async(f->c, "rpctest", "Test.Echo", &rpctest__req__descriptor,
                                          &req, &rpctest__rsp__descriptor, &o, on_freed_call, f),
                     0);
    }
    cm_client_free(f->c);
    f->c = NULL;
}

static void
on_loop_thread(void *arg)
{
    freed *f = arg;
    start_then_free(f);
    cm_loop_stop(f->loop);
}

static void
on_call_then_free(int status, void *rsp, const cm_error *err, void *user)
{
    on_freed_call(status, rsp, err, user);
    freed *f = user;
    cm_client_free(f->c); /* inside its own call's callback */
    f->c = NULL;
    cm_loop_stop(f->loop);
}

static void
start_one(void *arg)
{
    freed *f = arg;
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "once";
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = S.addr;
    CHECK_EQ_INT(cm_client_call_async(f->c, "rpctest", "Test.Echo", &rpctest__req__descriptor,
                                      &req, &rpctest__rsp__descriptor, &o, on_call_then_free, f),
                 0);
}

static void
start_refused(void *arg)
{
    freed *f = arg;
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.name = "refused";
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = "127.0.0.1:1"; /* refused: retried after a 100 ms back-off */
    o.max_attempts = 3;
    CHECK_EQ_INT(cm_client_call_async(f->c, "rpctest", "Test.Echo", &rpctest__req__descriptor,
                                      &req, &rpctest__rsp__descriptor, &o, on_freed_call, f),
                 0);
}

static void
free_in_backoff(uv_timer_t *t)
{
    freed *f = t->data;
    CHECK_EQ_INT(f->cbs, 0); /* the call waits in its back-off */
    cm_client_free(f->c);
    f->c = NULL;
    uv_close((uv_handle_t *)t, NULL);
    cm_loop_stop(f->loop);
}

/* One case: a client on a loop of the test's, on_loop posted and the loop run (NULL: the calls
 * are started and the client freed before the loop ever runs), the client freed by a timer
 * after free_after_ms when non-zero; then the callbacks the calls got. */
static void
free_case(void (*on_loop)(void *), uint64_t free_after_ms, int want_cbs, int want_canceled)
{
    freed f = {0};
    CHECK_EQ_INT(cm_loop_new(&f.loop), 0);
    CHECK_EQ_INT(cm_client_new(f.loop, NULL, &f.c), 0);
    uv_timer_t t;
    if (free_after_ms > 0) {
        uv_timer_init(cm_loop_uv(f.loop), &t);
        t.data = &f;
        uv_timer_start(&t, free_in_backoff, free_after_ms, 0);
    }
    if (on_loop != NULL) {
        CHECK_EQ_INT(cm_loop_post(f.loop, on_loop, &f), 0);
        CHECK_EQ_INT(cm_loop_run(f.loop), 0);
    } else {
        start_then_free(&f);
    }
    cm_loop_free(f.loop);
    CHECK_EQ_INT(f.cbs, want_cbs);
    CHECK_EQ_INT(f.canceled, want_canceled);
}

static void
test_free_with_unstarted_calls(void)
{
    free_case(NULL, 0, 3, 3);          /* queued, the loop not running */
    free_case(on_loop_thread, 0, 3, 3); /* queued from the loop thread */
    free_case(start_one, 0, 1, 0);      /* freed inside its own call's callback */
    free_case(start_refused, 40, 1, 1); /* freed while a call waits in its back-off */
}

int
main(void)
{
    srv_start(&S, 2000, 0);
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &client), 0);
    RUN(test_round_trips);
    RUN(test_errors);
    RUN(test_deadline);
    RUN(test_retry_to_live_address);
    RUN(test_transport_limits);
    RUN(test_pooling);
    RUN(test_metadata);
    RUN(test_bad_bodies);
    RUN(test_async_many);
    RUN(test_borrowed_responses);
    RUN(test_free_with_unstarted_calls);
    RUN(test_graceful_stop);
    cm_client_free(client);
    testsrv_free(&S);
    TEST_DONE();
}
