/* A service for the status page's test, run as a process of its own.
 *
 *   status-server NAME
 *
 * It serves Echo.Call (rpctest.Req -> rpctest.Rsp: n echoed; fail_code answers that go-micro
 * error; sleep_ms blocks its worker that long first) and Echo.Relay, which calls Echo.Call of the
 * service named in the request's name with the same request through the service's own client, so
 * that the page has calls made and called services to show. Configured by the environment like any
 * cmicro service. Once listening it prints "listening <address> <node id>" on stdout; SIGTERM stops
 * it.
 */
#include "rpctest.pb-c.h"

#include <cmicro/cmicro.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int
echo(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    (void)user;
    const Rpctest__Req *req = vreq;
    Rpctest__Rsp *rsp = vrsp;
    if (req->sleep_ms > 0) {
        struct timespec ts = {req->sleep_ms / 1000, (long)(req->sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (req->fail_code != 0) {
        return cm_ctx_error(ctx, req->fail_code, "failing as asked");
    }
    rsp->n = req->n;
    return 0;
}

/* On a worker thread: a blocking call through the service's client. */
static int
relay(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    cm_service *svc = user;
    const Rpctest__Req *req = vreq;
    Rpctest__Rsp *rsp = vrsp;
    Rpctest__Req fwd = *req;
    fwd.name = (char *)"";
    void *out = NULL;
    cm_error *err = NULL;
    int rc =
        cm_client_call(cm_service_client(svc), req->name, "Echo.Call", &rpctest__req__descriptor,
                       &fwd, &rpctest__rsp__descriptor, &out, NULL, &err);
    if (rc < 0) {
        int code = err != NULL && err->code > 0 ? err->code : 500;
        rc = cm_ctx_error(ctx, code, "relay: %s", err != NULL ? err->detail : cm_strerror(rc));
        cm_error_free(err);
        return rc;
    }
    rsp->n = ((Rpctest__Rsp *)out)->n;
    cm_message_free(&rpctest__rsp__descriptor, out);
    return 0;
}

static void
announce(void *arg)
{
    cm_service *svc = arg;
    printf("listening %s %s\n", cm_server_address(cm_service_server(svc)), cm_service_node_id(svc));
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = argc > 1 ? argv[1] : NULL;
    cm_service *svc;
    int rc = cm_service_new(&o, &svc);
    if (rc < 0) {
        fprintf(stderr, "status-server: %s\n", cm_strerror(rc));
        return 1;
    }
    cm_handler hs[] = {
        {"Echo.Call", &rpctest__req__descriptor, &rpctest__rsp__descriptor, echo, 0, NULL, NULL,
         NULL},
        {"Echo.Relay", &rpctest__req__descriptor, &rpctest__rsp__descriptor, relay, 0, NULL, NULL,
         NULL},
    };
    for (size_t i = 0; rc == 0 && i < 2; i++) {
        rc = cm_server_handle(cm_service_server(svc), &hs[i], svc);
    }
    if (rc == 0) {
        rc = cm_loop_post(cm_service_loop(svc), announce, svc);
    }
    if (rc == 0) {
        rc = cm_service_run(svc);
    }
    if (rc < 0) {
        fprintf(stderr, "status-server: %s\n", cm_strerror(rc));
    }
    cm_service_free(svc);
    return rc < 0 ? 1 : 0;
}
