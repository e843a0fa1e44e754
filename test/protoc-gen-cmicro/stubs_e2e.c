/* The generated stubs over real sockets on 127.0.0.1: handlers installed with the generated
 * <service>_register(), called with the generated sync and async client stubs, in both
 * content types. */
#include "echo.cmicro.h"
#include "hello.cmicro.h"
#include "test.h"
#include <uv.h>

#include <stdio.h>

/* ---- the services ---- */

static int say_user;

static int
say(cm_ctx *ctx, const SayRequest *req, SayResponse *rsp, void *user)
{
    size_t n = strlen(req->name) + sizeof("Hello ");

    CHECK(user == &say_user);
    rsp->message = cm_ctx_alloc(ctx, n);
    if (rsp->message == NULL) {
        return CM_ENOMEM;
    }
    snprintf(rsp->message, n, "Hello %s", req->name);
    return 0;
}

static int
echo_call(cm_ctx *ctx, const Cmicro__Test__V1__EchoRequest *req,
          Cmicro__Test__V1__EchoResponse *rsp, void *user)
{
    (void)user;
    rsp->message = cm_ctx_strdup(ctx, req->message);
    rsp->status = CMICRO__TEST__V1__STATUS__STATUS_OK;
    return rsp->message == NULL ? CM_ENOMEM : 0;
}

static int
echo_fail(cm_ctx *ctx, const Cmicro__Test__V1__EchoRequest *req,
          Cmicro__Test__V1__EchoResponse *rsp, void *user)
{
    (void)rsp;
    (void)user;
    return cm_ctx_error(ctx, 400, "refused %s", req->message);
}

static const hello_handlers hello_table = {.say = say, .user = &say_user};
/* Echo.Empty stays unregistered. */
static const cmicro_test_v1_echo_handlers echo_table = {.call = echo_call, .fail = echo_fail,
                                                        .flags = CM_HANDLER_INLINE};

/* ---- server ---- */

static cm_loop *loop;
static cm_server *server;
static char addr[128];
static uv_mutex_t mu;
static uv_cond_t cv;
static int done;

static void
server_start(void)
{
    cm_server_opts o;

    uv_mutex_init(&mu);
    uv_cond_init(&cv);
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    cm_server_opts_init(&o);
    o.name = "stubs";
    o.address = "127.0.0.1:0";
    CHECK_EQ_INT(cm_server_new(loop, &o, &server), 0);
    CHECK_EQ_INT(hello_register(server, &hello_table), 0);
    CHECK_EQ_INT(cmicro_test_v1_echo_register(server, &echo_table), 0);
    CHECK_EQ_INT(hello_register(server, &hello_table), CM_EEXIST);
    CHECK_EQ_INT(cm_server_start(server), 0);
    snprintf(addr, sizeof(addr), "%s", cm_server_address(server));
    CHECK_EQ_INT(cm_loop_start(loop), 0);
}

static void
on_stopped(void *arg)
{
    (void)arg;
    uv_mutex_lock(&mu);
    done = 1;
    uv_cond_signal(&cv);
    uv_mutex_unlock(&mu);
}

static void
do_stop(void *arg)
{
    (void)arg;
    CHECK_EQ_INT(cm_server_stop(server, on_stopped, NULL), 0);
}

static void
free_server(void *arg)
{
    cm_server_free(arg);
}

static void
wait_done(void)
{
    uv_mutex_lock(&mu);
    while (!done) {
        uv_cond_wait(&cv, &mu);
    }
    done = 0;
    uv_mutex_unlock(&mu);
}

static void
server_free(void)
{
    CHECK_EQ_INT(cm_loop_post(loop, do_stop, NULL), 0);
    wait_done();
    CHECK_EQ_INT(cm_loop_post(loop, free_server, server), 0);
    cm_loop_stop(loop);
    cm_loop_free(loop);
    uv_cond_destroy(&cv);
    uv_mutex_destroy(&mu);
}

/* ---- tests ---- */

static cm_client *client;

static void
test_sync(void)
{
    static const char *const cts[] = {CM_CT_PROTOBUF, CM_CT_JSON};

    for (int i = 0; i < 2; i++) {
        cm_call_opts o;
        SayRequest req = SAY_REQUEST__INIT;
        SayResponse *rsp = NULL;
        cm_error *err = NULL;

        cm_call_opts_init(&o);
        o.address = addr;
        o.content_type = cts[i];
        req.name = "BOSSMA";
        CHECK_EQ_INT(hello_say(client, "stubs", &req, &rsp, &o, &err), 0);
        CHECK(err == NULL);
        CHECK_EQ_STR(rsp->message, "Hello BOSSMA");
        hello_say_free(rsp);

        Cmicro__Test__V1__EchoRequest ereq = CMICRO__TEST__V1__ECHO_REQUEST__INIT;
        Cmicro__Test__V1__EchoResponse *ersp = NULL;
        ereq.message = "ping";
        CHECK_EQ_INT(cmicro_test_v1_echo_call(client, "stubs", &ereq, &ersp, &o, &err), 0);
        CHECK_EQ_STR(ersp->message, "ping");
        CHECK_EQ_INT(ersp->status, CMICRO__TEST__V1__STATUS__STATUS_OK);
        cmicro_test_v1_echo_call_free(ersp);
    }
}

static void
test_errors(void)
{
    cm_call_opts o;
    Cmicro__Test__V1__EchoRequest req = CMICRO__TEST__V1__ECHO_REQUEST__INIT;
    Cmicro__Test__V1__EchoResponse *rsp = NULL;
    Cmicro__Test__V1__EmptyRequest ereq = CMICRO__TEST__V1__EMPTY_REQUEST__INIT;
    cm_error *err = NULL;

    cm_call_opts_init(&o);
    o.address = addr;
    o.max_attempts = 1;
    req.message = "this";
    CHECK_EQ_INT(cmicro_test_v1_echo_fail(client, "stubs", &req, &rsp, &o, &err), CM_EREMOTE);
    CHECK(rsp == NULL);
    CHECK(err != NULL);
    CHECK_EQ_INT(err->code, 400);
    CHECK_EQ_STR(err->detail, "refused this");
    cm_error_free(err);
    err = NULL;

    /* A NULL slot is not installed: the server does not know the method. */
    CHECK(cmicro_test_v1_echo_empty(client, "stubs", &ereq, NULL, &o, &err) < 0);
    CHECK(err != NULL);
    cm_error_free(err);
}

static int async_status = 1;
static char async_message[64];

static void
on_say(int status, SayResponse *rsp, const cm_error *err, void *user)
{
    CHECK(user == &async_status);
    CHECK(status == 0 || err != NULL);
    if (rsp != NULL) {
        snprintf(async_message, sizeof(async_message), "%s", rsp->message);
    }
    hello_say_free(rsp);
    uv_mutex_lock(&mu);
    async_status = status;
    done = 1;
    uv_cond_signal(&cv);
    uv_mutex_unlock(&mu);
}

static void
test_async(void)
{
    cm_call_opts o;
    SayRequest req = SAY_REQUEST__INIT;

    cm_call_opts_init(&o);
    o.address = addr;
    req.name = "async";
    CHECK_EQ_INT(hello_say_async(client, "stubs", &req, &o, on_say, &async_status), 0);
    wait_done();
    CHECK_EQ_INT(async_status, 0);
    CHECK_EQ_STR(async_message, "Hello async");
    CHECK_EQ_INT(hello_say_async(client, "stubs", &req, &o, NULL, NULL), CM_EINVAL);
}

int
main(void)
{
    server_start();
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &client), 0);
    RUN(test_sync);
    RUN(test_errors);
    RUN(test_async);
    cm_client_free(client);
    server_free();
    TEST_DONE();
}
