/* Streaming RPC, each kind: the server's handlers receive and send through the generated typed
 * helpers on a cm_stream (each on a thread of its own, so they may block); the client opens each
 * stream with its generated stub. Both run in one process on the memory registry:
 *
 *   build/examples/stream/stream-example [N]
 *
 * The same handlers answer go-micro v4 clients, and the same stubs call go-micro v4 servers. */
#define _POSIX_C_SOURCE 200809L /* <uv.h>, for the server's thread */

#include "stream.cmicro.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* ---- the server's side ---- */

/* A server-stream: the request arrives first (the generated code receives it), then the handler
 * sends; returning 0 ends the stream with go-micro's EOS. */
static int
countdown(cm_ctx *ctx, const Tick *req, cm_stream *st, void *user)
{
    (void)user;
    if (req->n < 0) {
        return cm_ctx_error(ctx, 400, "n must not be negative");
    }
    for (int64_t i = req->n; i > 0; i--) {
        Tick t = TICK__INIT;
        t.n = i;
        int rc = ticker_countdown_server_send(st, &t); /* waits while the window is full */
        if (rc < 0) {
            return rc; /* the caller went away, or the deadline passed */
        }
    }
    return 0;
}

/* A client-stream: receive until the caller ends its side (CM_EOF), answer once. */
static int
total(cm_ctx *ctx, cm_stream *st, void *user)
{
    (void)ctx;
    (void)user;
    Tick sum = TICK__INIT;
    Tick *in;
    int rc;
    while ((rc = ticker_total_server_recv(st, &in)) == 0) {
        sum.n += in->n;
        ticker_total_free_request(in);
    }
    return rc == CM_EOF ? ticker_total_server_send(st, &sum) : rc;
}

/* Bidi: answer each message as it comes. */
static int
shout(cm_ctx *ctx, cm_stream *st, void *user)
{
    (void)ctx;
    (void)user;
    Tick *in;
    int rc;
    while ((rc = ticker_shout_server_recv(st, &in)) == 0) {
        for (char *p = in->text; *p != '\0'; p++) {
            *p = (char)toupper((unsigned char)*p);
        }
        Tick out = TICK__INIT;
        out.text = in->text;
        rc = ticker_shout_server_send(st, &out);
        ticker_shout_free_request(in);
        if (rc < 0) {
            return rc;
        }
    }
    return rc == CM_EOF ? 0 : rc;
}

static void
serve(void *arg)
{
    cm_service_run(arg);
}

/* ---- the client's side ---- */

static int
run_client(cm_client *c, int64_t n)
{
    cm_stream *st;
    cm_error *err = NULL;
    Tick req = TICK__INIT;
    Tick *t;
    int rc;

    /* Countdown: the stub sends the request; read until CM_EOF. */
    req.n = n;
    for (int i = 0; i < 100; i++) { /* until the service is registered */
        rc = ticker_countdown(c, "example.ticker", &req, NULL, &st, &err);
        if (rc != CM_ENOTFOUND) {
            break;
        }
        cm_error_free(err);
        err = NULL;
        uv_sleep(20);
    }
    if (rc < 0) {
        fprintf(stderr, "stream: %s\n", err ? err->detail : cm_strerror(rc));
        cm_error_free(err);
        return rc;
    }
    printf("countdown:");
    while ((rc = ticker_countdown_recv(st, &t)) == 0) {
        printf(" %lld", (long long)t->n);
        ticker_countdown_free(t);
    }
    printf("\n");
    cm_stream_free(st);
    if (rc != CM_EOF) {
        return rc;
    }

    /* Total: send, close our side, read the one answer. */
    if ((rc = ticker_total(c, "example.ticker", NULL, &st, NULL)) < 0) {
        return rc;
    }
    for (int64_t i = 1; i <= n && rc == 0; i++) {
        req.n = i;
        rc = ticker_total_send(st, &req);
    }
    if (rc == 0 && (rc = ticker_total_close_send(st)) == 0 &&
        (rc = ticker_total_recv(st, &t)) == 0) {
        printf("total of 1..%lld: %lld\n", (long long)n, (long long)t->n);
        ticker_total_free(t);
    }
    cm_stream_free(st);
    if (rc < 0) {
        return rc;
    }

    /* Shout: one answer per message. */
    if ((rc = ticker_shout(c, "example.ticker", NULL, &st, NULL)) < 0) {
        return rc;
    }
    const char *words[] = {"hello", "streams"};
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        req.text = (char *)words[i];
        if ((rc = ticker_shout_send(st, &req)) == 0 && (rc = ticker_shout_recv(st, &t)) == 0) {
            printf("shout: %s -> %s\n", words[i], t->text);
            ticker_shout_free(t);
        }
    }
    ticker_shout_close_send(st);
    cm_stream_free(st);
    return rc;
}

int
main(int argc, char **argv)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "example.ticker";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.log_config = 0;
    o.deregister_wait_ms = 10;
    cm_service *svc;
    if (cm_service_new(&o, &svc) < 0) {
        fprintf(stderr, "stream: %s\n", cm_service_why());
        return 1;
    }
    static const ticker_handlers handlers = {
        .countdown = countdown, .total = total, .shout = shout};
    uv_thread_t t;
    if (ticker_register(cm_service_server(svc), &handlers) < 0 ||
        uv_thread_create(&t, serve, svc) != 0) {
        cm_service_free(svc);
        return 1;
    }
    int rc = run_client(cm_service_client(svc), argc > 1 ? atoll(argv[1]) : 5);
    cm_service_stop(svc);
    uv_thread_join(&t);
    cm_service_free(svc);
    return rc < 0 ? 1 : 0;
}
