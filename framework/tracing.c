/* W3C trace context across calls, as go-micro v6's OpenTelemetry wrapper carries it in metadata
 * (Traceparent, Tracestate). A handler wrapper marks each call as traced; the span it is served
 * in is made when the handler first calls out with it as parent (client.c, cm__ctx_trace), so a
 * call that makes no call costs nothing more. Those calls send the span as their traceparent
 * with the cleaned tracestate. A client wrapper starts a new trace for a call made outside any
 * call and without a traceparent of its own. */
#include "framework_int.h"

#include <string.h>

/* Marks the call as traced; its span is made only if the handler calls out (cm__ctx_trace). */
static int
server_before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    (void)arg;
    (void)state;
    (void)err;
    atomic_store_explicit(&w->ctx->trace_state, 1, memory_order_relaxed);
    return 0;
}

/* Makes c's span: a child of the incoming traceparent, or a new trace when there is none or it
 * is invalid (the incoming tracestate is then dropped too, as the spec asks). */
static void
make_span(cm_ctx *c)
{
    const char *tp = cm_ctx_get(c, "traceparent");
    cm_trace_ctx in, mine;
    int have = tp != NULL && cm_trace_parse(tp, strlen(tp), &in) == 0;
    if ((have ? cm_trace_child(&in, &mine) : cm_trace_new(&mine, CM_TRACE_RANDOM)) < 0) {
        c->traceparent[0] = '\0'; /* no random source: calls go out untraced */
        return;
    }
    cm_trace_format(&mine, c->traceparent);
    const char *ts = have ? cm_ctx_get(c, "tracestate") : NULL;
    if (ts != NULL) {
        char *clean = cm_ctx_alloc(c, CM_TRACESTATE_MAX_LEN + 1);
        if (clean != NULL && cm_tracestate_clean(ts, strlen(ts), clean) > 0) {
            c->tracestate = clean;
        }
    }
}

const char *
cm__ctx_trace(cm_ctx *c, const char **tracestate)
{
    int st = 1;
    if (atomic_compare_exchange_strong(&c->trace_state, &st, 2)) {
        make_span(c);
        atomic_store(&c->trace_state, 3);
    } else if (st == 0) {
        return NULL;
    }
    while (atomic_load(&c->trace_state) == 2) {
        /* another thread makes it: a few hundred instructions */
    }
    *tracestate = c->tracestate;
    return c->traceparent[0] != '\0' ? c->traceparent : NULL;
}

static int
client_before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    (void)arg;
    (void)state;
    (void)err;
    if (cm_msg_header(w->md, "traceparent") != NULL) {
        return 0; /* the caller's, or its parent call's */
    }
    cm_trace_ctx root;
    char tp[CM_TRACEPARENT_LEN + 1];
    if (cm_trace_new(&root, CM_TRACE_RANDOM) == 0) {
        cm_trace_format(&root, tp);
        cm_wrap_set_header(w, "Traceparent", tp);
    }
    return 0;
}

int
cm__tracing_install(cm_server *s, cm_client *c)
{
    cm_wrapper sw = {"trace", server_before, NULL, NULL};
    cm_wrapper cw = {"trace", client_before, NULL, NULL};
    int rc = cm_server_wrap(s, &sw);
    if (rc == 0) {
        rc = cm_server_wrap_subscriber(s, &sw); /* a message's handler calls out in its trace */
    }
    return rc < 0 ? rc : cm_client_wrap(c, &cw);
}
