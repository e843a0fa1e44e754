/* A service's /metrics while it serves a stream: micro_server_streams counts it, the messages
 * it has sent and received so far show in micro_server_stream_messages, and the built-in metrics
 * wrapper counts the stream as one call of its endpoint in flight; when the stream ends, the
 * gauges are back to 0 and micro_request_total counts one call of the endpoint. */
#include "rpctest.pb-c.h"
#include "test.h"
#include <uv.h>

#include <cmicro/cmicro.h>
#include <signal.h>
#include <stdio.h>

/* Echoes every message until the caller ends its side. */
static int
echo(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    for (;;) {
        Rpctest__Req *in;
        int rc = cm_stream_recv(st, (void **)&in);
        if (rc < 0) {
            return rc == CM_EOF ? 0 : rc;
        }
        Rpctest__Rsp out = RPCTEST__RSP__INIT;
        out.n = in->n;
        rc = cm_stream_send(st, &out);
        cm_message_free(&rpctest__req__descriptor, in);
        if (rc < 0) {
            return rc;
        }
    }
}

typedef struct scrape {
    cm_service *svc;
    cm_buf text;
    uv_sem_t done;
} scrape;

static void
render(void *arg)
{
    scrape *s = arg;
    s->text.len = 0;
    CHECK_EQ_INT(cm_metrics_render(cm_service_metrics(s->svc), &s->text), 0);
    CHECK_EQ_INT(cm_buf_append(&s->text, "", 1), 0);
    uv_sem_post(&s->done);
}

/* /metrics, rendered on the service's loop. */
static const char *
metrics(scrape *s)
{
    CHECK_EQ_INT(cm_loop_post(cm_service_loop(s->svc), render, s), 0);
    uv_sem_wait(&s->done);
    return (const char *)s->text.data;
}

static void
run_service(void *arg)
{
    CHECK_EQ_INT(cm_service_run(arg), 0);
}

int
main(void)
{
    setenv("CMICRO_QUIET", "1", 1);
    signal(SIGPIPE, SIG_IGN); /* the refused stream's EOS may meet a reset */
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "stream.metrics";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.deregister_wait_ms = 10;
    cm_service *svc;
    setenv("MICRO_SERVER_MAX_STREAMS", "1", 1);
    CHECK_EQ_INT(cm_service_new(&o, &svc), 0);
    unsetenv("MICRO_SERVER_MAX_STREAMS");
    static const char *const md[] = {"stream", "true", NULL};
    cm_handler h = {"Test.Echo",
                    &rpctest__req__descriptor,
                    &rpctest__rsp__descriptor,
                    echo,
                    CM_HANDLER_STREAM,
                    NULL,
                    NULL,
                    md};
    CHECK_EQ_INT(cm_server_handle(cm_service_server(svc), &h, NULL), 0);
    uv_thread_t th;
    CHECK_EQ_INT(uv_thread_create(&th, run_service, svc), 0);
    const char *addr = NULL;
    for (int i = 0; i < 500 && (addr = cm_service_advertised(svc)) == NULL; i++) {
        uv_sleep(10);
    }
    CHECK(addr != NULL);
    scrape s;
    memset(&s, 0, sizeof s);
    s.svc = svc;
    CHECK_EQ_INT(uv_sem_init(&s.done, 0), 0);
    CHECK(strstr(metrics(&s), "\nmicro_server_streams 0\n") != NULL);

    cm_client *c;
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &c), 0);
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = cm_server_address(cm_service_server(svc));
    cm_stream *st;
    CHECK_EQ_INT(cm_client_stream(c, "stream.metrics", "Test.Echo", &rpctest__req__descriptor,
                                  &rpctest__rsp__descriptor, &co, NULL, &st, NULL),
                 0);
    for (int i = 0; i < 3; i++) {
        Rpctest__Req req = RPCTEST__REQ__INIT;
        req.n = i;
        CHECK_EQ_INT(cm_stream_send(st, &req), 0);
        void *rsp;
        CHECK_EQ_INT(cm_stream_recv(st, &rsp), 0);
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    }
    const char *t = metrics(&s);
    CHECK(strstr(t, "\nmicro_server_streams 1\n") != NULL);
    CHECK(strstr(t, "micro_server_endpoint_inflight{service=\"stream.metrics\",endpoint=\"Test."
                    "Echo\"} 1\n") != NULL);
    CHECK(strstr(t, "endpoint=\"Test.Echo\",status=\"success\"") == NULL);
    /* MICRO_SERVER_MAX_STREAMS=1: a second stream is refused with go-micro's 429. */
    cm_stream *two;
    CHECK_EQ_INT(cm_client_stream(c, "stream.metrics", "Test.Echo", &rpctest__req__descriptor,
                                  &rpctest__rsp__descriptor, &co, NULL, &two, NULL),
                 0);
    void *none;
    CHECK_EQ_INT(cm_stream_recv(two, &none), CM_EREMOTE);
    const cm_error *e = cm_stream_error(two);
    CHECK(e != NULL && e->code == 429);
    CHECK(strstr(e->detail, "limit 1, MICRO_SERVER_MAX_STREAMS") != NULL);
    cm_stream_free(two);
    CHECK(strstr(metrics(&s), "micro_server_refused_total{reason=\"max_streams\"} 1\n") != NULL);
    CHECK(strstr(t, "micro_server_stream_messages{direction=\"sent\"} 3\n") != NULL);
    /* the opening message and three more */
    CHECK(strstr(t, "micro_server_stream_messages{direction=\"received\"} 4\n") != NULL ||
          strstr(t, "micro_server_stream_messages{direction=\"received\"} 3\n") != NULL);
    CHECK_EQ_INT(cm_stream_close_send(st), 0);
    void *rsp;
    int end = cm_stream_recv(st, &rsp); /* as go-micro's, the server sends no EOS of its own */
    CHECK(end == CM_EOF || end == CM_ECLOSED);
    cm_stream_free(st);
    int zero = 0;
    for (int i = 0; i < 300 && !zero; i++) {
        zero = strstr(metrics(&s), "\nmicro_server_streams 0\n") != NULL;
        if (!zero) {
            uv_sleep(10);
        }
    }
    CHECK(zero);
    t = metrics(&s);
    if (strstr(t, "micro_request_total{service=\"stream.metrics\",endpoint=\"Test.Echo\","
                  "status=\"success\",code=\"200\"} 1\n") == NULL) {
        fprintf(stderr, "%s\n", t);
        CHECK(0);
    }
    CHECK(strstr(t, "micro_server_endpoint_inflight{service=\"stream.metrics\",endpoint=\"Test."
                    "Echo\"} 0\n") != NULL);
    cm_client_free(c);
    cm_service_stop(svc);
    uv_thread_join(&th);
    cm_buf_free(&s.text);
    uv_sem_destroy(&s.done);
    cm_service_free(svc);
    TEST_DONE();
}
