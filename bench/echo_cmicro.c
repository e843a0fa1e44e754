/* The benchmark's cmicro echo service: one inline handler (runs on the loop thread, no
 * hand-off), the protobuf codec, EchoMsg answered with the request's payload (borrowed from the
 * request: no copy). A bare cm_server on a cm_loop, with no registry, so that nothing but the
 * benchmark's traffic on 127.0.0.1 is sent. It stops on SIGINT or SIGTERM.
 *
 *   echo-cmicro [PORT]   prints "listening 127.0.0.1:PORT" once it accepts
 *
 * BENCH_SERVICE=1 runs the same handler in a cm_service instead (the memory registry, so still
 * nothing leaves 127.0.0.1), configured by the environment like any service: the default
 * configuration, with the built-in metrics, trace context and wrappers (MICRO_METRICS=off and
 * MICRO_TRACE=off turn them off). BENCH_WORKER=1 runs the handler on the worker pool (the
 * default for handlers) instead of inline.
 */
#include "echo.pb-c.h"
#include <uv.h>

#include <cmicro/cmicro.h>
#include <stdio.h>
#include <stdlib.h>

static cm_loop *loop;
static cm_server *server;
static uv_signal_t sigs[2];

static int
echo(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    (void)ctx;
    (void)user;
    const Bench__EchoMsg *req = vreq;
    Bench__EchoMsg *rsp = vrsp;
    rsp->payload = req->payload; /* lives until the call completes */
    return 0;
}

static void
on_stopped(void *arg)
{
    (void)arg;
    uv_close((uv_handle_t *)&sigs[0], NULL);
    uv_close((uv_handle_t *)&sigs[1], NULL);
    cm_loop_stop(loop);
}

static void
on_signal(uv_signal_t *s, int sig)
{
    (void)s;
    (void)sig;
    if (cm_server_stop(server, on_stopped, NULL) < 0) {
        on_stopped(NULL);
    }
}

static void
announce(void *arg)
{
    cm_server *s = arg;
    const char *a = NULL;
    for (int i = 0; i < 1000 && (a = cm_server_address(s)) == NULL; i++) {
        uv_sleep(5);
    }
    printf("listening %s\n", a ? a : "?");
    fflush(stdout);
}

/* The handler in a cm_service, with the environment's configuration. */
static int
run_service(const char *addr, const cm_handler *h)
{
    setenv("MICRO_REGISTRY", "memory", 0);
    setenv("CMICRO_QUIET", "1", 0);
    cm_service_opts so;
    cm_service_opts_init(&so);
    so.name = "bench";
    so.address = addr;
    so.drain_timeout_ms = 1000;
    so.deregister_wait_ms = 1;
    cm_service *svc;
    if (cm_service_new(&so, &svc) < 0) {
        fprintf(stderr, "echo-cmicro: %s\n", cm_service_why());
        return 1;
    }
    int rc = cm_server_handle(cm_service_server(svc), h, NULL);
    uv_thread_t t;
    uv_thread_create(&t, announce, cm_service_server(svc));
    if (rc == 0) {
        rc = cm_service_run(svc);
    }
    uv_thread_join(&t);
    cm_service_free(svc);
    return rc < 0 ? 1 : 0;
}

int
main(int argc, char **argv)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", argc > 1 ? atoi(argv[1]) : 0);
    if (cm_loop_new(&loop) < 0) {
        return 1;
    }
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "bench";
    o.address = addr;
    o.drain_timeout_ms = 1000;
    const char *loops = getenv("BENCH_LOOPS"); /* the server's loops; unset: the default */
    o.loops = loops ? (unsigned)atoi(loops) : 0;
    const char *worker = getenv("BENCH_WORKER");
    const cm_handler h = {
        .endpoint = "Bench.Echo",
        .request = &bench__echo_msg__descriptor,
        .response = &bench__echo_msg__descriptor,
        .fn = echo,
        .flags = worker && worker[0] == '1' ? 0u : CM_HANDLER_INLINE,
    };
    const char *service = getenv("BENCH_SERVICE");
    if (service != NULL && service[0] == '1') {
        cm_loop_free(loop);
        return run_service(addr, &h);
    }
    int rc = cm_server_new(loop, &o, &server);
    if (rc == 0) {
        rc = cm_server_handle(server, &h, NULL);
    }
    if (rc == 0) {
        rc = cm_server_start(server);
    }
    if (rc < 0) {
        fprintf(stderr, "echo-cmicro: %s\n", cm_strerror(rc));
        return 1;
    }
    uv_signal_init(cm_loop_uv(loop), &sigs[0]);
    uv_signal_start_oneshot(&sigs[0], on_signal, SIGINT);
    uv_signal_init(cm_loop_uv(loop), &sigs[1]);
    uv_signal_start_oneshot(&sigs[1], on_signal, SIGTERM);
    printf("listening %s\n", cm_server_address(server));
    fflush(stdout);
    cm_loop_run(loop);
    cm_server_free(server);
    cm_loop_free(loop);
    return 0;
}
