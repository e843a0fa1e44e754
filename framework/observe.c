/* The service's built-in metrics: a handler wrapper (outermost, so that it sees the built-in
 * limits' refusals too) and a client wrapper count calls and time them, in go-micro v5's
 * Prometheus wrapper's names (micro_request_total, micro_request_duration_seconds, labelled by
 * service, endpoint and status "success" or "fail", plus the error code) and keep a gauge of each
 * endpoint's calls in flight (micro_server_endpoint_inflight); a collector samples the
 * server's connections and calls in flight, its limits, and the selector's view of every called
 * service when /metrics is rendered (on the loop thread). */
#include "framework_int.h"
#include "stream_int.h"

#include <stdio.h>
#include <stdlib.h>

struct cm__observe {
    cm_metrics *reg;
    cm_service *svc;
    cm_metric_family *srv_req, *srv_lat, *cli_req, *cli_lat, *srv_inflight;
};

static int
family(cm_metrics *reg, cm_metric_type t, const char *name, const char *help, size_t nlabels,
       cm_metric_family **out)
{
    static const char *const labels[] = {"service", "endpoint", "status", "code"};
    cm_metric_opts o;
    cm_metric_opts_init(&o);
    o.name = name;
    o.help = help;
    o.labels = labels;
    o.nlabels = nlabels;
    return cm_metrics_family(reg, t, &o, out);
}

/* The series of one finished call in req and lat. */
static void
series(cm_metric_family *req, cm_metric_family *lat, const cm_wrap_info *w, cm_metric **r,
       cm_metric **l)
{
    int code = w->status == 0 ? 200 : w->error != NULL && w->error->code > 0 ? w->error->code : 500;
    char codes[16];
    snprintf(codes, sizeof codes, "%d", code);
    const char *st = w->status == 0 ? "success" : "fail";
    const char *labels[4] = {w->service, w->endpoint, st, codes};
    *r = cm_metrics_series(req, labels);
    *l = cm_metrics_series(lat, labels);
}

static void
count(cm_metric *r, cm_metric *l, const cm_wrap_info *w)
{
    cm_counter_inc(r);
    cm_histogram_observe(l, (double)(uv_hrtime() - w->start_ns) / 1e9);
}

/* One more call of the endpoint in flight: its gauge, found at its first call, goes up. */
static int
server_before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    (void)err;
    cm__observe *o = arg;
    _Atomic(void *) *slot = cm__ctx_route_series(w->ctx);
    cm_metric *g = atomic_load_explicit(&slot[2], memory_order_acquire);
    if (g == NULL) {
        const char *labels[2] = {w->service, w->endpoint};
        g = cm_metrics_series(o->srv_inflight, labels);
        atomic_store_explicit(&slot[2], g, memory_order_release);
    }
    cm_gauge_add(g, 1.0);
    *state = g;
    return 0;
}

/* A finished call counted in req and lat. slot (a success's, or NULL) keeps the series found at
 * the first success; a failure's are looked up by its code. */
static void
count_call(cm_metric_family *req, cm_metric_family *lat, const cm_wrap_info *w,
           _Atomic(void *) *slot)
{
    cm_metric *r = NULL, *l = NULL;
    if (slot != NULL) {
        r = atomic_load_explicit(&slot[0], memory_order_acquire);
        l = atomic_load_explicit(&slot[1], memory_order_acquire);
    }
    if (r == NULL || l == NULL) {
        series(req, lat, w, &r, &l);
        if (slot != NULL) {
            atomic_store_explicit(&slot[1], l, memory_order_release);
            atomic_store_explicit(&slot[0], r, memory_order_release);
        }
    }
    count(r, l, w);
}

static void
server_after(const cm_wrap_info *w, void *arg, void *state)
{
    cm__observe *o = arg;
    cm_gauge_add(state, -1.0);
    count_call(o->srv_req, o->srv_lat, w, w->status == 0 ? cm__ctx_route_series(w->ctx) : NULL);
}

/* A message handled: as go-micro's Prometheus subscriber wrapper, the topic is the endpoint. */
static void
subscriber_after(const cm_wrap_info *w, void *arg, void *state)
{
    (void)state;
    cm__observe *o = arg;
    count_call(o->srv_req, o->srv_lat, w, w->status == 0 ? cm__ctx_event_series(w->ctx) : NULL);
}

static void
client_after(const cm_wrap_info *w, void *arg, void *state)
{
    (void)state;
    cm__observe *o = arg;
    count_call(o->cli_req, o->cli_lat, w, NULL);
}

/* ---- sampled at render ---- */

static void
value(cm_metrics_writer *w, cm_metric_type t, const char *name, const char *help, double v)
{
    if (cm_metrics_write_family(w, t, name, help, NULL, 0) == 0) {
        cm_metrics_write_value(w, NULL, v);
    }
}

typedef struct sel_pass {
    cm_metrics_writer *w;
    size_t field;
} sel_pass;

static void
one_service(void *arg, const cm_selector_stat *st)
{
    sel_pass *p = arg;
    double v[] = {(double)st->nodes, (double)st->ejected, (double)st->age_ms / 1e3,
                  (double)st->stale_served, st->failing ? 0.0 : 1.0};
    const char *labels[] = {st->service};
    cm_metrics_write_value(p->w, labels, v[p->field]);
}

static void
collect_selector(cm_metrics_writer *w, cm_selector *sel)
{
    static const struct {
        cm_metric_type t;
        const char *name, *help;
    } fams[] = {
        {CM_METRIC_GAUGE, "micro_selector_nodes", "Nodes cached for a called service."},
        {CM_METRIC_GAUGE, "micro_selector_ejected_nodes",
         "Nodes of a called service out of rotation (circuit breaker open or half-open)."},
        {CM_METRIC_GAUGE, "micro_selector_cache_age_seconds",
         "Time since the registry last told about a called service."},
        {CM_METRIC_COUNTER, "micro_selector_stale_served_total",
         "Picks served from a cache entry past its TTL."},
        {CM_METRIC_GAUGE, "micro_selector_registry_ok",
         "1 when the last registry lookup of a called service succeeded."},
    };
    static const char *const labels[] = {"service"};
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        if (cm_metrics_write_family(w, fams[i].t, fams[i].name, fams[i].help, labels, 1) == 0) {
            sel_pass p = {w, i};
            cm_selector_each(sel, one_service, &p);
        }
    }
}

static void
collect_events(cm_metrics_writer *w, cm_service *svc)
{
    static const char *const outcome[] = {"outcome"};
    if (cm_metrics_write_family(w, CM_METRIC_COUNTER, "micro_events_total",
                                "Events published (or not) and received, by outcome.", outcome,
                                1) < 0) {
        return;
    }
    cm_event_stats st;
    cm_service_event_stats(svc, &st);
    const char *names[][1] = {{"published"},     {"publish_error"}, {"received"}, {"handled"},
                              {"handler_error"}, {"decode_error"},  {"dropped"}};
    uint64_t v[] = {st.published,      st.publish_errors, st.received, st.handled,
                    st.handler_errors, st.decode_errors,  st.dropped};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        cm_metrics_write_value(w, names[i], (double)v[i]);
    }
}

/* The streams being served: how many, and what they have sent and received so far. */
static void
collect_streams(cm_metrics_writer *w, cm_server *srv)
{
    size_t n = 0;
    uint64_t sent = 0, received = 0, queued = 0;
    for (unsigned i = 0; i < cm__server_nloops(srv); i++) {
        cm__sloop *sl = cm__server_sloop(srv, i);
        for (cm_stream *s = *cm__sloop_streams_lock(sl); s != NULL; s = s->snext) {
            cm_stream_stats st;
            cm_stream_get_stats(s, &st);
            n++;
            sent += st.sent;
            received += st.received;
            queued += st.queued;
        }
        cm__sloop_streams_unlock(sl);
    }
    value(w, CM_METRIC_GAUGE, "micro_server_streams", "Streams being served.", (double)n);
    value(w, CM_METRIC_GAUGE, "micro_server_stream_queued_bytes",
          "Bytes the streams being served have waiting to be written (each bounded by its "
          "window).",
          (double)queued);
    static const char *const dir[] = {"direction"};
    if (cm_metrics_write_family(w, CM_METRIC_GAUGE, "micro_server_stream_messages",
                                "Messages of the streams being served, sent and received so far.",
                                dir, 1) == 0) {
        const char *l[][1] = {{"sent"}, {"received"}};
        cm_metrics_write_value(w, l[0], (double)sent);
        cm_metrics_write_value(w, l[1], (double)received);
    }
}

/* The broker's own counts (below the events: what its transport received and dropped). */
static void
collect_broker(cm_metrics_writer *w, cm_service *svc)
{
    static const char *const labels[] = {"broker", "outcome"};
    if (cm_metrics_write_family(w, CM_METRIC_COUNTER, "micro_broker_messages_total",
                                "Broker messages by outcome: published, delivered to a "
                                "subscription, dropped (the loop's queue was full), malformed, "
                                "handler_error, publish_error (a node not reached).",
                                labels, 2) < 0) {
        return;
    }
    cm_broker *b = cm_service_broker(svc);
    cm_broker_stats st;
    cm_broker_get_stats(b, &st);
    const char *name = cm_broker_name(b);
    const char *outcome[] = {"published", "delivered", "dropped",
                             "malformed", "handler_error", "publish_error"};
    uint64_t v[] = {st.published, st.delivered,      st.dropped,
                    st.malformed, st.handler_errors, st.publish_errors};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        const char *l[] = {name, outcome[i]};
        cm_metrics_write_value(w, l, (double)v[i]);
    }
}

static void
collect(cm_metrics_writer *w, void *arg)
{
    cm__observe *o = arg;
    cm_server *srv = cm_service_server(o->svc);
    cm_server_stats st;
    cm_server_get_stats(srv, &st);
    cm_listener_stats ls;
    cm__server_listener_stats(srv, &ls);
    value(w, CM_METRIC_GAUGE, "micro_server_inflight", "Calls being served.", (double)st.inflight);
    value(w, CM_METRIC_GAUGE, "micro_server_connections", "Open connections.", (double)ls.active);
    value(w, CM_METRIC_COUNTER, "micro_server_connections_accepted_total", "Connections accepted.",
          (double)ls.accepted);
    static const char *const reason[] = {"reason"};
    if (cm_metrics_write_family(w, CM_METRIC_COUNTER, "micro_server_refused_total",
                                "Connections or requests refused by the server's limits.", reason,
                                1) == 0) {
        uint64_t conc, rate, streams;
        cm__server_limits_refused(srv, &conc, &rate, &streams);
        const char *r[][1] = {{"timeout"},     {"evicted"}, {"max_conns"},  {"malformed"},
                              {"concurrency"}, {"rate"},    {"max_streams"}};
        uint64_t v[] = {ls.timeouts, ls.evicted, ls.refused, ls.rejected, conc, rate, streams};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            cm_metrics_write_value(w, r[i], (double)v[i]);
        }
    }
    collect_selector(w, cm__service_selector(o->svc));
    collect_events(w, o->svc);
    collect_streams(w, srv);
    collect_broker(w, o->svc);
    cm__otlp *x = cm__service_otlp(o->svc);
    static const char *const outcome[] = {"outcome"};
    if (x != NULL && cm_metrics_write_family(w, CM_METRIC_COUNTER, "micro_trace_spans_total",
                                             "Spans of served calls: exported, dropped (the "
                                             "queue was full) or failed (the collector refused "
                                             "or was unreachable).",
                                             outcome, 1) == 0) {
        uint64_t v[3];
        cm__otlp_stats(x, &v[0], &v[1], &v[2]);
        const char *names[][1] = {{"exported"}, {"dropped"}, {"failed"}};
        for (size_t i = 0; i < 3; i++) {
            cm_metrics_write_value(w, names[i], (double)v[i]);
        }
    }
}

/* ---- lifecycle ---- */

int
cm__observe_new(cm_service *svc, cm__observe **out)
{
    cm__observe *o = calloc(1, sizeof(*o));
    if (o == NULL || cm_metrics_new(&o->reg) < 0) {
        free(o);
        return CM_ENOMEM;
    }
    o->svc = svc;
    int rc = family(o->reg, CM_METRIC_COUNTER, "micro_request_total",
                    "Calls served, by service, endpoint, status and error code.", 4, &o->srv_req);
    if (rc == 0) {
        rc = family(o->reg, CM_METRIC_HISTOGRAM, "micro_request_duration_seconds",
                    "Time to serve a call, from its arrival to its handler's end.", 3, &o->srv_lat);
    }
    if (rc == 0) {
        rc = family(o->reg, CM_METRIC_COUNTER, "micro_client_request_total",
                    "Calls made, by callee service, endpoint, status and error code.", 4,
                    &o->cli_req);
    }
    if (rc == 0) {
        rc = family(o->reg, CM_METRIC_HISTOGRAM, "micro_client_request_duration_seconds",
                    "Time of a call made, every attempt and back-off included.", 3, &o->cli_lat);
    }
    if (rc == 0) {
        rc = family(o->reg, CM_METRIC_GAUGE, "micro_server_endpoint_inflight",
                    "Calls of an endpoint being served, from their arrival to their handler's end.",
                    2, &o->srv_inflight);
    }
    cm_wrapper sw = {"metrics", server_before, server_after, o};
    cm_wrapper cw = {"metrics", NULL, client_after, o};
    if (rc == 0) {
        rc = cm__server_wrap_first(cm_service_server(svc), &sw);
    }
    if (rc == 0) {
        rc = cm_client_wrap(cm_service_client(svc), &cw);
    }
    cm_wrapper bw = {"metrics", NULL, subscriber_after, o};
    if (rc == 0) {
        rc = cm_server_wrap_subscriber(cm_service_server(svc), &bw);
    }
    if (rc == 0) {
        rc = cm_metrics_add_collector(o->reg, collect, o);
    }
    if (rc < 0) {
        cm__observe_free(o);
        return rc;
    }
    *out = o;
    return 0;
}

cm_metrics *
cm__observe_metrics(cm__observe *o)
{
    return o ? o->reg : NULL;
}

void
cm__observe_families(const cm__observe *o, cm_metric_family **srv_req, cm_metric_family **srv_lat,
                     cm_metric_family **cli_req, cm_metric_family **cli_lat)
{
    *srv_req = o ? o->srv_req : NULL;
    *srv_lat = o ? o->srv_lat : NULL;
    *cli_req = o ? o->cli_req : NULL;
    *cli_lat = o ? o->cli_lat : NULL;
}

cm_metric_family *
cm__observe_inflight(const cm__observe *o)
{
    return o ? o->srv_inflight : NULL;
}

void
cm__observe_free(cm__observe *o)
{
    if (o != NULL) {
        cm_metrics_free(o->reg);
        free(o);
    }
}
