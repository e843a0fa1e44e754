/* Calls Hello.Say on "registry-consul.service" by name and prints the reply. */
#include "hello.cmicro.h"

#include <stdio.h>

int
main(int argc, char **argv)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "hello-client";
    o.strategy = CM_STRATEGY_ROUND_ROBIN;
    o.strategy_set = 1;

    cm_service *svc;
    int rc = cm_service_new(&o, &svc);
    if (rc < 0) {
        fprintf(stderr, "hello-client: %s\n", cm_strerror(rc));
        return 1;
    }
    SayRequest req = SAY_REQUEST__INIT;
    req.name = argc > 1 ? argv[1] : "BOSSMA";
    SayResponse *rsp = NULL;
    cm_error *err = NULL;
    rc = hello_say(cm_service_client(svc), "registry-consul.service", &req, &rsp, NULL, &err);
    if (rc == 0) {
        printf("%s\n", rsp->message);
        hello_say_free(rsp);
    } else {
        fprintf(stderr, "hello-client: call failed: %s: %s\n", cm_strerror(rc),
                err ? err->detail : "");
        cm_error_free(err);
    }
    cm_service_free(svc);
    return rc == 0 ? 0 : 1;
}
