/* The streaming benchmark's cmicro peer (bench/stream.sh runs it):
 *
 *   stream-cmicro server                          serves Bench.Down and Bench.Chat on 127.0.0.1,
 *                                                 prints "listening ADDR"
 *   stream-cmicro client ADDR down|bidi PAYLOAD N  one stream of N messages of PAYLOAD bytes,
 *                                                 prints "kind=... payload=... msgs=N ms=...
 * rate=..."
 *
 * Bench.Down (server-stream): the request's payload is "N PAYLOAD"; the server sends N messages.
 * Bench.Chat (bidi): the server answers every message with it; the client sends from one thread
 * while it receives on another, so that the stream is full both ways. Messages are
 * bench.EchoMsg (bytes payload = 1). */
#define _POSIX_C_SOURCE 200809L

#include "echo.pb-c.h"

#include <cmicro/cmicro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static int
down(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    Bench__EchoMsg *in;
    int rc = cm_stream_recv(st, (void **)&in);
    if (rc < 0) {
        return rc;
    }
    char spec[64];
    snprintf(spec, sizeof spec, "%.*s", (int)in->payload.len, (const char *)in->payload.data);
    cm_message_free(&bench__echo_msg__descriptor, in);
    long long n = 0, size = 0;
    sscanf(spec, "%lld %lld", &n, &size);
    uint8_t *buf = calloc(1, (size_t)size + 1);
    Bench__EchoMsg out = BENCH__ECHO_MSG__INIT;
    out.payload.data = buf;
    out.payload.len = (size_t)size;
    for (long long i = 0; i < n && rc == 0; i++) {
        rc = cm_stream_send(st, &out);
    }
    free(buf);
    return rc;
}

static int
chat(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    for (;;) {
        Bench__EchoMsg *in;
        int rc = cm_stream_recv(st, (void **)&in);
        if (rc == CM_EOF) {
            return 0;
        }
        if (rc < 0) {
            return rc;
        }
        rc = cm_stream_send(st, in);
        cm_message_free(&bench__echo_msg__descriptor, in);
        if (rc < 0) {
            return rc;
        }
    }
}

static int
serve(void)
{
    cm_loop *loop;
    cm_server *s;
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "bench";
    o.address = "127.0.0.1:0";
    cm_handler h = {"Bench.Down",
                    &bench__echo_msg__descriptor,
                    &bench__echo_msg__descriptor,
                    down,
                    CM_HANDLER_STREAM,
                    NULL,
                    NULL,
                    NULL};
    if (cm_loop_new(&loop) < 0 || cm_server_new(loop, &o, &s) < 0 ||
        cm_server_handle(s, &h, NULL) < 0) {
        return 1;
    }
    h.endpoint = "Bench.Chat";
    h.fn = chat;
    if (cm_server_handle(s, &h, NULL) < 0 || cm_server_start(s) < 0) {
        return 1;
    }
    printf("listening %s\n", cm_server_address(s));
    fflush(stdout);
    return cm_loop_run(loop) < 0;
}

typedef struct sender {
    cm_stream *st;
    long long n;
    size_t size;
} sender;

static void
send_all(void *arg)
{
    sender *w = arg;
    uint8_t *buf = calloc(1, w->size + 1);
    Bench__EchoMsg m = BENCH__ECHO_MSG__INIT;
    m.payload.data = buf;
    m.payload.len = w->size;
    for (long long i = 0; i < w->n; i++) {
        if (cm_stream_send(w->st, &m) < 0) {
            break;
        }
    }
    cm_stream_close_send(w->st);
    free(buf);
}

static int
client(const char *addr, const char *kind, size_t size, long long n)
{
    cm_client *c;
    if (cm_client_new(NULL, NULL, &c) < 0) {
        return 1;
    }
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = addr;
    int bidi = strcmp(kind, "bidi") == 0;
    cm_stream *st;
    if (cm_client_stream(c, "bench", bidi ? "Bench.Chat" : "Bench.Down",
                         &bench__echo_msg__descriptor, &bench__echo_msg__descriptor, &co, NULL, &st,
                         NULL) < 0) {
        return 1;
    }
    uint64_t t0 = uv_hrtime();
    uv_thread_t t;
    sender w = {st, n, size};
    if (bidi) {
        uv_thread_create(&t, send_all, &w);
    } else {
        char spec[64];
        snprintf(spec, sizeof spec, "%lld %zu", n, size);
        Bench__EchoMsg req = BENCH__ECHO_MSG__INIT;
        req.payload.data = (uint8_t *)spec;
        req.payload.len = strlen(spec);
        cm_stream_send(st, &req);
    }
    long long got = 0;
    Bench__EchoMsg *m;
    while (got < n && cm_stream_recv(st, (void **)&m) == 0) {
        got += m->payload.len == size;
        cm_message_free(&bench__echo_msg__descriptor, m);
    }
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    if (bidi) {
        uv_thread_join(&t);
    }
    printf("kind=%s payload=%zu msgs=%lld ms=%.0f rate=%.0f\n", kind, size, got, ms,
           (double)got * 1000.0 / ms);
    cm_stream_free(st);
    cm_client_free(c);
    return got == n ? 0 : 1;
}

int
main(int argc, char **argv)
{
    cm_log_set_level(CM_LOG_ERROR);
    if (argc >= 2 && strcmp(argv[1], "server") == 0) {
        return serve();
    }
    if (argc >= 6 && strcmp(argv[1], "client") == 0) {
        return client(argv[2], argv[3], (size_t)atol(argv[4]), atoll(argv[5]));
    }
    fprintf(stderr, "usage: stream-cmicro server | client ADDR down|bidi PAYLOAD N\n");
    return 2;
}
