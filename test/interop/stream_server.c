/* The C side of the stream interop tests: service Streamer of test/proto/stream.proto, served
 * as go/gmicro/stream.go serves it. A plain cm_service configured by MICRO_* variables. */
#include "echo_common.h"
#include "stream.cmicro.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef Interop__Stream__Msg Msg;

static const char *name = "cmicro.interop.stream";

static int
count(cm_ctx *ctx, const Msg *req, cm_stream *st, void *user)
{
    (void)user;
    for (int32_t i = 0; i < req->count; i++) {
        Msg m = INTEROP__STREAM__MSG__INIT;
        m.seq = i;
        m.text = req->text;
        m.pad = req->pad;
        int rc = interop_stream_streamer_count_server_send(st, &m);
        if (rc < 0) {
            /* For the fault tests: the caller went away or its deadline passed. */
            fprintf(stderr, "STREAM Count ended after %d messages: %s\n", i, cm_strerror(rc));
            return rc;
        }
        if (req->sleep_ms > 0) {
            uv_sleep((unsigned)req->sleep_ms);
        }
    }
    if (req->fail_code != 0) {
        return cm_ctx_error(ctx, req->fail_code, "failed after %d messages", req->count);
    }
    return 0;
}

static int
sum(cm_ctx *ctx, cm_stream *st, void *user)
{
    (void)ctx;
    (void)user;
    int64_t total = 0;
    int32_t n = 0;
    for (;;) {
        Msg *m;
        int rc = interop_stream_streamer_sum_server_recv(st, &m);
        if (rc == CM_EOF) {
            break;
        }
        if (rc < 0) {
            return rc;
        }
        total += m->seq;
        n++;
        int last = m->last;
        interop_stream_streamer_sum_free_request(m);
        if (last) {
            break;
        }
    }
    Msg out = INTEROP__STREAM__MSG__INIT;
    out.seq = total;
    out.count = n;
    return interop_stream_streamer_sum_server_send(st, &out);
}

static int
chat(cm_ctx *ctx, cm_stream *st, void *user)
{
    (void)user;
    const char *tenant = cm_ctx_get(ctx, "X-Tenant");
    for (;;) {
        Msg *m;
        int rc = interop_stream_streamer_chat_server_recv(st, &m);
        if (rc == CM_EOF) {
            return 0;
        }
        if (rc < 0) {
            return rc;
        }
        Msg out = INTEROP__STREAM__MSG__INIT;
        out.seq = m->seq * 2;
        char text[256];
        snprintf(text, sizeof text, "%s|%s", m->text, tenant ? tenant : "");
        out.text = text;
        rc = interop_stream_streamer_chat_server_send(st, &out);
        interop_stream_streamer_chat_free_request(m);
        if (rc < 0) {
            return rc;
        }
    }
}

int
main(void)
{
    const char *reg = getenv("MICRO_REGISTRY");
    interop_require_netns_for(reg && reg[0] ? reg : "mdns");
    const char *n = getenv("MICRO_SERVER_NAME");
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = n && n[0] ? n : name;
    cm_service *svc;
    int rc = cm_service_new(&o, &svc);
    if (rc < 0) {
        fprintf(stderr, "stream-server: %s\n", cm_strerror(rc));
        return 1;
    }
    static const interop_stream_streamer_handlers handlers = {
        .count = count, .sum = sum, .chat = chat};
    rc = interop_stream_streamer_register(cm_service_server(svc), &handlers);
    if (rc == 0) {
        rc = cm_service_run(svc);
    }
    if (rc < 0) {
        fprintf(stderr, "stream-server: %s\n", cm_strerror(rc));
    }
    cm_service_free(svc);
    return rc < 0 ? 1 : 0;
}
