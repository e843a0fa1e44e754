/* An echo service for the reliability tests and the soak script, run as a process of its own.
 *
 *   echo-server [NAME]
 *
 * It serves Echo.Call (rpctest.Req -> rpctest.Rsp) through cm_service, configured by the
 * environment like any cmicro service (MICRO_REGISTRY, MICRO_REGISTRY_ADDRESS or
 * CONSUL_HTTP_ADDR, MICRO_SERVER_ADDRESS, MICRO_REGISTER_TTL, MICRO_REGISTER_INTERVAL, ...).
 * The answer says who answered: msg is the node id, header the instance tag (ECHO_TAG, also
 * published as node metadata "tag"), n the request's n. A request with sleep_ms sleeps that long
 * in the handler (a worker thread); one with fail_code answers that go-micro error.
 *
 * ECHO_CHECK_FILE names a file whose existence fails the RegisterCheck: create it to have the
 * service deregister at its next interval, remove it to have it register again.
 * ECHO_DEREGISTER_WAIT_MS sets cm_service_opts.deregister_wait_ms (default 1 s).
 *
 * Once listening it prints "listening <address> <node id>" on stdout (one line, flushed), so
 * that a parent process knows where it is. SIGTERM/SIGINT stop it gracefully (exit 0).
 */
#include "rpctest.pb-c.h"

#include <cmicro/cmicro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tag = "";
static const char *check_file;

static int
echo(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    const Rpctest__Req *req = vreq;
    Rpctest__Rsp *rsp = vrsp;
    cm_service *svc = user;
    if (req->sleep_ms > 0) {
        usleep((useconds_t)req->sleep_ms * 1000u);
    }
    if (req->fail_code != 0) {
        return cm_ctx_error(ctx, req->fail_code, "failing as asked");
    }
    rsp->msg = (char *)cm_service_node_id(svc);
    rsp->header = (char *)tag;
    rsp->n = req->n;
    return 0;
}

static int
register_check(void *user)
{
    (void)user;
    return check_file != NULL && access(check_file, F_OK) == 0 ? -1 : 0;
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
    const char *t = getenv("ECHO_TAG");
    tag = t != NULL ? t : "";
    check_file = getenv("ECHO_CHECK_FILE");
    /* The tag is node metadata too, so that a client can tell the nodes apart in its cache. */
    cm_md *md = cm_md_new();
    if (md == NULL || cm_md_set(md, "tag", tag) < 0) {
        fprintf(stderr, "echo-server: out of memory\n");
        return 1;
    }
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = argc > 1 ? argv[1] : NULL;
    o.metadata = md;
    o.register_check = register_check;
    const char *wait = getenv("ECHO_DEREGISTER_WAIT_MS");
    o.deregister_wait_ms = wait != NULL ? strtoull(wait, NULL, 10) : 0;
    cm_service *svc;
    int rc = cm_service_new(&o, &svc);
    cm_md_free(md);
    if (rc < 0) {
        fprintf(stderr, "echo-server: %s\n", cm_strerror(rc));
        return 1;
    }
    cm_handler h = {
        "Echo.Call", &rpctest__req__descriptor, &rpctest__rsp__descriptor, echo, 0, NULL, NULL,
        NULL};
    rc = cm_server_handle(cm_service_server(svc), &h, svc);
    /* Runs on the loop once cm_service_run() is listening. */
    if (rc == 0) {
        rc = cm_loop_post(cm_service_loop(svc), announce, svc);
    }
    if (rc == 0) {
        rc = cm_service_run(svc);
    }
    if (rc < 0) {
        fprintf(stderr, "echo-server: %s\n", cm_strerror(rc));
    }
    cm_service_free(svc);
    return rc < 0 ? 1 : 0;
}
