/* W3C trace context across calls, as go-micro v6's OpenTelemetry wrapper carries it in metadata
 * (Traceparent, Tracestate). A handler wrapper makes the span a call is served in: a child of
 * the incoming traceparent, or a new trace when there is none or it is invalid (then the
 * incoming tracestate is dropped too, as the spec asks). Calls made with that call as parent
 * send the span as their traceparent (client.c) with the cleaned tracestate. A client wrapper
 * starts a new trace for a call made outside any call and without a traceparent of its own. */
#include "framework_int.h"

#include <string.h>

static int
server_before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    (void)arg;
    (void)state;
    (void)err;
    cm_ctx *c = w->ctx;
    const char *tp = cm_msg_header(w->md, "traceparent");
    cm_trace_ctx in, mine;
    int have = tp != NULL && cm_trace_parse(tp, strlen(tp), &in) == 0;
    if ((have ? cm_trace_child(&in, &mine) : cm_trace_new(&mine, CM_TRACE_RANDOM)) < 0) {
        return 0; /* no random source: the call goes on untraced */
    }
    cm_trace_format(&mine, c->traceparent);
    const char *ts = have ? cm_msg_header(w->md, "tracestate") : NULL;
    if (ts != NULL) {
        char *clean = cm_ctx_alloc(c, CM_TRACESTATE_MAX_LEN + 1);
        if (clean != NULL && cm_tracestate_clean(ts, strlen(ts), clean) > 0) {
            c->tracestate = clean;
        }
    }
    return 0;
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
    return rc < 0 ? rc : cm_client_wrap(c, &cw);
}
