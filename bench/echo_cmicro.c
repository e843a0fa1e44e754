/* The benchmark's cmicro echo service: one inline handler (runs on the loop thread, no
 * hand-off), the protobuf codec, EchoMsg answered with the request's payload (borrowed from the
 * request: no copy). A bare cm_server on a cm_loop, with no registry, so that nothing but the
 * benchmark's traffic on 127.0.0.1 is sent. It stops on SIGINT or SIGTERM.
 *
 *   echo-cmicro [PORT]   prints "listening 127.0.0.1:PORT" once it accepts
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
    static const cm_handler h = {
        .endpoint = "Bench.Echo",
        .request = &bench__echo_msg__descriptor,
        .response = &bench__echo_msg__descriptor,
        .fn = echo,
        .flags = CM_HANDLER_INLINE,
    };
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
