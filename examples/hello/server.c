/* The hello service: registers as "registry-consul.service" and answers Hello.Say with
 * "Hello <name>". The registry comes from MICRO_REGISTRY (mdns by default, consul, memory). */
#include "hello.cmicro.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int
say(cm_ctx *ctx, const SayRequest *req, SayResponse *rsp, void *user)
{
    (void)user;
    if (req->name[0] == '\0') {
        return cm_ctx_error(ctx, 400, "name required"); /* the seed's errors.BadRequest */
    }
    size_t n = strlen(req->name) + sizeof("Hello ");
    rsp->message = cm_ctx_alloc(ctx, n);
    if (rsp->message == NULL) {
        return CM_ENOMEM;
    }
    snprintf(rsp->message, n, "Hello %s", req->name);
    return 0;
}

/* The seed's RegisterCheck: runs before every registration refresh. */
static int
register_check(void *user)
{
    (void)user;
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", localtime(&now));
    printf("%s do register check\n", stamp);
    fflush(stdout);
    return 0;
}

int
main(void)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "registry-consul.service";
    o.register_check = register_check;
    o.register_ttl_ms = 20000;
    o.register_interval_ms = 10000;

    cm_service *svc;
    int rc = cm_service_new(&o, &svc);
    if (rc < 0) {
        fprintf(stderr, "hello-server: %s\n", cm_strerror(rc));
        return 1;
    }
    static const hello_handlers handlers = {.say = say};
    rc = hello_register(cm_service_server(svc), &handlers);
    if (rc == 0) {
        rc = cm_service_run(svc);
    }
    if (rc < 0) {
        fprintf(stderr, "hello-server: %s\n", cm_strerror(rc));
    }
    cm_service_free(svc);
    return rc < 0 ? 1 : 0;
}
