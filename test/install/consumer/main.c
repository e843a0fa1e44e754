/* A program outside the cmicro tree: serves Greeter.Hello on the memory registry, calls it by
 * name through its own client and prints the reply. Built three ways by test/install/consumer.sh
 * (plain cc with pkg-config, meson, CMake) against an installed prefix. cmicro's headers need no
 * POSIX define under -std=c11; <uv.h>, which this program uses for its thread, does. */
#define _POSIX_C_SOURCE 200809L

#include "greet.cmicro.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

static int
hello(cm_ctx *ctx, const HelloRequest *req, HelloReply *rsp, void *user)
{
    (void)user;
    size_t n = strlen(req->name) + sizeof("hi ");
    rsp->text = cm_ctx_alloc(ctx, n);
    if (rsp->text == NULL) {
        return CM_ENOMEM;
    }
    snprintf(rsp->text, n, "hi %s", req->name);
    return 0;
}

static void
run(void *arg)
{
    cm_service_run(arg);
}

int
main(void)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "consumer.greeter";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.log_config = 0;
    o.deregister_wait_ms = 10;
    cm_service *svc;
    if (cm_service_new(&o, &svc) < 0) {
        fprintf(stderr, "consumer: %s\n", cm_service_why());
        return 1;
    }
    static const greeter_handlers handlers = {.hello = hello};
    if (greeter_register(cm_service_server(svc), &handlers) < 0) {
        return 1;
    }
    uv_thread_t t;
    uv_thread_create(&t, run, svc);
    HelloRequest req = HELLO_REQUEST__INIT;
    req.name = "consumer";
    HelloReply *rsp = NULL;
    cm_error *err = NULL;
    int rc = CM_ENOTFOUND;
    for (int i = 0; i < 100 && rc != 0; i++) { /* until the service has registered */
        cm_error_free(err);
        err = NULL;
        rc = greeter_hello(cm_service_client(svc), "consumer.greeter", &req, &rsp, NULL, &err);
        if (rc != 0) {
            uv_sleep(20);
        }
    }
    if (rc == 0) {
        printf("%s\n", rsp->text);
        greeter_hello_free(rsp);
    } else {
        fprintf(stderr, "consumer: %s: %s\n", cm_strerror(rc), err ? err->detail : "");
        cm_error_free(err);
    }
    cm_service_stop(svc);
    uv_thread_join(&t);
    cm_service_free(svc);
    return rc == 0 ? 0 : 1;
}
