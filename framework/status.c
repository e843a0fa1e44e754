/* GET /status on the service's own listener: what brpc's /status and /connections show, in one
 * page. The service (name, version, node, address, uptime, transport), its registry (backend,
 * registered or not, the last register error), the endpoints it serves (calls, errors by code,
 * latency quantiles from micro_request_duration_seconds, calls in flight), its server (calls in
 * flight, connections open and accepted, refusals by reason), the calls it makes and, per called
 * service, the selector's view (nodes, ejected nodes, cache age, stale picks, registry ok).
 *
 * A person gets one self-contained HTML page (no script, no external asset; every string
 * escaped); "?format=json" or "Accept: application/json" gets the same as JSON. Everything is
 * read on the loop thread when the page is asked for; a table holds at most MAX_ROWS rows (the
 * rest is counted as omitted) and a string at most MAX_TEXT bytes, so the page stays small
 * whatever the service was called with. */
#include "framework_int.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROWS 256
#define MAX_CODES 8
#define MAX_TEXT 256
#define MAX_HANDLERS 1024

typedef struct code_count {
    int code;
    uint64_t n;
} code_count;

/* One endpoint served or called: its counts summed over status and code, its latency buckets
 * summed over status. */
typedef struct call_row {
    const char *service, *endpoint;
    uint64_t calls, errors;
    code_count codes[MAX_CODES]; /* the error codes, most recent kinds past MAX_CODES dropped */
    size_t ncodes;
    uint64_t lat[CM_METRICS_MAX_BUCKETS + 1];
    const double *bounds;
    size_t nbounds;
    double sum;
    uint64_t inflight; /* calls being served (the endpoints served only) */
} call_row;

typedef struct call_table {
    cm_ctx *c;
    call_row *rows;
    size_t n;
    uint64_t omitted; /* series whose row did not fit */
    int has_inflight; /* the rows' inflight is read (the endpoints served) */
} call_table;

typedef struct sel_row {
    const char *service;
    cm_selector_stat st;
} sel_row;

typedef struct snapshot {
    cm_service *svc;
    cm_ctx *c;
    uint64_t now_unix, started_unix;
    const char *lookup_error;
    const char *reg_error;
    unsigned reg_failures;
    uint64_t reg_error_unix;
    int metrics;
    cm_server_stats st;
    cm_listener_stats ls;
    uint64_t refused_conc, refused_rate, refused_streams;
    call_table served, made;
    sel_row *called;
    size_t ncalled;
    uint64_t called_omitted;
} snapshot;

/* ---- reading ---- */

/* A copy of s in the request's memory, cut to MAX_TEXT bytes at a character boundary. */
static const char *
copy_text(cm_ctx *c, const char *s)
{
    size_t n = strlen(s);
    if (n > MAX_TEXT) {
        n = MAX_TEXT;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    char *p = cm_ctx_alloc(c, n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* The row of (service, endpoint), added when missing; NULL when the table is full. */
static call_row *
find_row(call_table *t, const char *service, const char *endpoint)
{
    service = service ? service : "";
    endpoint = endpoint ? endpoint : "";
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->rows[i].endpoint, endpoint) == 0 &&
            strcmp(t->rows[i].service, service) == 0) {
            return &t->rows[i];
        }
    }
    if (t->rows == NULL || t->n == MAX_ROWS) {
        return NULL;
    }
    call_row *r = &t->rows[t->n];
    memset(r, 0, sizeof *r);
    r->service = copy_text(t->c, service);
    r->endpoint = copy_text(t->c, endpoint);
    if (r->service == NULL || r->endpoint == NULL) {
        return NULL;
    }
    t->n++;
    return r;
}

static void
add_code(call_row *r, int code, uint64_t n)
{
    for (size_t i = 0; i < r->ncodes; i++) {
        if (r->codes[i].code == code) {
            r->codes[i].n += n;
            return;
        }
    }
    if (r->ncodes < MAX_CODES) {
        r->codes[r->ncodes++] = (code_count){code, n};
    }
}

/* A series of micro_*request_total: service, endpoint, status, code. */
static void
on_count(void *arg, const char *const *lv, const cm_metric *s)
{
    call_table *t = arg;
    call_row *r = find_row(t, lv[0], lv[1]);
    if (r == NULL) {
        t->omitted++;
        return;
    }
    uint64_t n = cm_counter_get(s);
    r->calls += n;
    if (strcmp(lv[2], "success") != 0) {
        r->errors += n;
        add_code(r, atoi(lv[3]), n);
    }
}

/* A series of micro_*request_duration_seconds: service, endpoint, status. */
static void
on_latency(void *arg, const char *const *lv, const cm_metric *s)
{
    call_table *t = arg;
    call_row *r = find_row(t, lv[0], lv[1]);
    if (r == NULL) {
        return; /* counted as omitted by its counter */
    }
    uint64_t counts[CM_METRICS_MAX_BUCKETS + 1];
    const double *bounds = NULL;
    size_t nb = cm_histogram_buckets(s, &bounds, counts);
    if (nb == 0 || (r->nbounds != 0 && r->nbounds != nb)) {
        return;
    }
    r->bounds = bounds;
    r->nbounds = nb;
    for (size_t i = 0; i <= nb; i++) {
        r->lat[i] += counts[i];
    }
    r->sum += cm_histogram_sum(s);
}

/* A series of micro_server_endpoint_inflight: service, endpoint. */
static void
on_inflight(void *arg, const char *const *lv, const cm_metric *s)
{
    call_row *r = find_row(arg, lv[0], lv[1]);
    double v = cm_gauge_get(s);
    if (r != NULL && v > 0) {
        r->inflight = (uint64_t)v;
    }
}

/* The endpoints served, in the server's order, so that those not called yet show too. */
static void
seed_handlers(call_table *t, cm_server *srv)
{
    const cm_handler *hs[MAX_HANDLERS];
    size_t n = cm__server_handlers(srv, hs, MAX_HANDLERS);
    for (size_t i = 0; i < n && i < MAX_HANDLERS; i++) {
        if ((hs[i]->flags & CM_HANDLER_INTERNAL) == 0) {
            find_row(t, cm__server_name(srv), hs[i]->endpoint);
        }
    }
}

/* The rows of srv's handlers (srv may be NULL), then those of every series of req, lat and
 * inflight (NULL when metrics are off; inflight NULL for the calls made). */
static void
read_calls(call_table *t, cm_ctx *c, cm_server *srv, cm_metric_family *req, cm_metric_family *lat,
           cm_metric_family *inflight)
{
    t->c = c;
    t->rows = cm_ctx_alloc_array(c, MAX_ROWS, sizeof *t->rows);
    if (srv != NULL) {
        seed_handlers(t, srv);
    }
    if (req != NULL && lat != NULL) {
        cm_metrics_each_series(req, on_count, t);
        cm_metrics_each_series(lat, on_latency, t);
    }
    if (inflight != NULL) {
        t->has_inflight = 1;
        cm_metrics_each_series(inflight, on_inflight, t);
    }
}

static void
on_called(void *arg, const cm_selector_stat *st)
{
    snapshot *s = arg;
    if (s->called == NULL || s->ncalled == MAX_ROWS) {
        s->called_omitted++;
        return;
    }
    sel_row *r = &s->called[s->ncalled];
    r->st = *st;
    r->service = copy_text(s->c, st->service);
    if (r->service == NULL) {
        s->called_omitted++;
        return;
    }
    s->ncalled++;
}

static void
read_snapshot(snapshot *s, cm_ctx *c, cm_service *svc, const char *lookup_error)
{
    memset(s, 0, sizeof *s);
    s->svc = svc;
    s->c = c;
    s->lookup_error = lookup_error;
    cm_server *srv = cm_service_server(svc);
    s->now_unix = (uint64_t)time(NULL);
    s->started_unix = cm__server_started_unix(srv);
    s->reg_error = cm__service_register_error(svc, &s->reg_failures, &s->reg_error_unix);
    cm_server_get_stats(srv, &s->st);
    cm__server_listener_stats(srv, &s->ls);
    cm__server_limits_refused(srv, &s->refused_conc, &s->refused_rate, &s->refused_streams);
    cm_metric_family *sreq, *slat, *creq, *clat;
    cm__observe_families(cm__service_observe(svc), &sreq, &slat, &creq, &clat);
    s->metrics = sreq != NULL;
    read_calls(&s->served, c, srv, sreq, slat, cm__observe_inflight(cm__service_observe(svc)));
    read_calls(&s->made, c, NULL, creq, clat, NULL);
    s->called = cm_ctx_alloc_array(c, MAX_ROWS, sizeof *s->called);
    cm_selector_each(cm__service_selector(svc), on_called, s);
}

/* ---- JSON ---- */

static const double quantiles[] = {0.5, 0.9, 0.99};
static const char *const quantile_names[] = {"p50", "p90", "p99"};

static double
quantile(const call_row *r, size_t i)
{
    return cm_histogram_quantile_of(r->bounds, r->lat, r->nbounds, quantiles[i]);
}

static double
mean(const call_row *r)
{
    uint64_t total = 0;
    for (size_t k = 0; r->nbounds > 0 && k <= r->nbounds; k++) {
        total += r->lat[k];
    }
    return total ? r->sum / (double)total : NAN;
}

/* A number, or null when it is not one (an empty histogram's quantile). */
static void
add_number(cJSON *o, const char *key, double v)
{
    if (isfinite(v)) {
        cJSON_AddNumberToObject(o, key, v);
    } else {
        cJSON_AddNullToObject(o, key);
    }
}

static cJSON *
json_calls(const call_table *t, int metrics)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr != NULL && i < t->n; i++) {
        const call_row *r = &t->rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "service", r->service);
        cJSON_AddStringToObject(o, "endpoint", r->endpoint);
        if (!metrics) {
            continue;
        }
        cJSON_AddNumberToObject(o, "calls", (double)r->calls);
        cJSON_AddNumberToObject(o, "errors", (double)r->errors);
        if (t->has_inflight) {
            cJSON_AddNumberToObject(o, "inflight", (double)r->inflight);
        }
        cJSON *codes = cJSON_AddObjectToObject(o, "error_codes");
        for (size_t k = 0; k < r->ncodes; k++) {
            char key[16];
            snprintf(key, sizeof key, "%d", r->codes[k].code);
            cJSON_AddNumberToObject(codes, key, (double)r->codes[k].n);
        }
        cJSON *lat = cJSON_AddObjectToObject(o, "latency_seconds");
        for (size_t q = 0; q < 3; q++) {
            add_number(lat, quantile_names[q], quantile(r, q));
        }
        add_number(lat, "mean", mean(r));
    }
    return arr;
}

static void
json_service(cJSON *root, const snapshot *s)
{
    cm_service *svc = s->svc;
    cJSON *o = cJSON_AddObjectToObject(root, "service");
    cJSON_AddStringToObject(o, "name", cm_service_name(svc));
    cJSON_AddStringToObject(o, "version", cm_service_version(svc));
    cJSON_AddStringToObject(o, "id", cm_service_node_id(svc));
    const char *addr = cm_service_advertised(svc);
    cJSON_AddStringToObject(o, "address", addr ? addr : "");
    cJSON_AddStringToObject(o, "transport", cm__server_transport_name(cm_service_server(svc)));
    cJSON_AddStringToObject(o, "cmicro_version", CMICRO_VERSION);
    cJSON_AddNumberToObject(o, "pid", (double)getpid());
    cJSON_AddNumberToObject(o, "started_unix", (double)s->started_unix);
    cJSON_AddNumberToObject(o, "uptime_seconds",
                            s->started_unix && s->now_unix > s->started_unix
                                ? (double)(s->now_unix - s->started_unix)
                                : 0);
    cJSON_AddBoolToObject(o, "metrics", s->metrics);

    cm_registry *reg = cm_service_registry(svc);
    cJSON *r = cJSON_AddObjectToObject(root, "registry");
    cJSON_AddStringToObject(r, "backend", cm_registry_name(reg));
    cJSON_AddBoolToObject(r, "registered", cm__service_registered(svc));
    cJSON_AddNumberToObject(r, "register_failures", (double)s->reg_failures);
    if (s->reg_error[0] != '\0') {
        cJSON_AddStringToObject(r, "last_error", s->reg_error);
        cJSON_AddNumberToObject(r, "last_error_unix", (double)s->reg_error_unix);
    } else {
        cJSON_AddNullToObject(r, "last_error");
    }
    if (s->lookup_error != NULL) {
        cJSON_AddStringToObject(r, "lookup_error", s->lookup_error);
    }
    const char *why = cm_registry_why(reg, cm_service_name(svc));
    if (why != NULL) {
        cJSON_AddStringToObject(r, "why", why);
    }
}

static void
json_server(cJSON *root, const snapshot *s)
{
    cJSON *o = cJSON_AddObjectToObject(root, "server");
    cJSON_AddNumberToObject(o, "inflight", (double)s->st.inflight);
    cJSON_AddNumberToObject(o, "calls", (double)s->st.calls);
    cJSON_AddNumberToObject(o, "errors", (double)s->st.errors);
    cJSON *conns = cJSON_AddObjectToObject(o, "connections");
    cJSON_AddNumberToObject(conns, "open", (double)s->ls.active);
    cJSON_AddNumberToObject(conns, "accepted", (double)s->ls.accepted);
    cJSON *ref = cJSON_AddObjectToObject(o, "refused");
    cJSON_AddNumberToObject(ref, "timeout", (double)s->ls.timeouts);
    cJSON_AddNumberToObject(ref, "evicted", (double)s->ls.evicted);
    cJSON_AddNumberToObject(ref, "max_conns", (double)s->ls.refused);
    cJSON_AddNumberToObject(ref, "malformed", (double)s->ls.rejected);
    cJSON_AddNumberToObject(ref, "concurrency", (double)s->refused_conc);
    cJSON_AddNumberToObject(ref, "rate", (double)s->refused_rate);
    cJSON_AddNumberToObject(ref, "max_streams", (double)s->refused_streams);
}

static cJSON *
json_called(const snapshot *s)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr != NULL && i < s->ncalled; i++) {
        const sel_row *r = &s->called[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "service", r->service);
        cJSON_AddNumberToObject(o, "nodes", (double)r->st.nodes);
        cJSON_AddNumberToObject(o, "ejected", (double)r->st.ejected);
        cJSON_AddNumberToObject(o, "cache_age_seconds", (double)r->st.age_ms / 1e3);
        cJSON_AddNumberToObject(o, "stale_served", (double)r->st.stale_served);
        cJSON_AddBoolToObject(o, "registry_ok", !r->st.failing);
    }
    return arr;
}

static void
reply_json(cm_ctx *c, const snapshot *s)
{
    cJSON *root = cJSON_CreateObject();
    json_service(root, s);
    json_server(root, s);
    cJSON_AddItemToObject(root, "endpoints", json_calls(&s->served, s->metrics));
    cJSON_AddNumberToObject(root, "endpoints_omitted", (double)s->served.omitted);
    cJSON_AddItemToObject(root, "calls_made", json_calls(&s->made, s->metrics));
    cJSON_AddNumberToObject(root, "calls_made_omitted", (double)s->made.omitted);
    cJSON_AddItemToObject(root, "called_services", json_called(s));
    cJSON_AddNumberToObject(root, "called_services_omitted", (double)s->called_omitted);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (text == NULL) {
        cm__ctx_reply_http(c, 500, "text/plain; charset=utf-8", "out of memory\n", 14);
        return;
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* over the NUL: the length is n + 1 */
    cm__ctx_reply_http(c, 200, "application/json", text, n + 1);
    free(text);
}

/* ---- HTML ---- */

typedef struct html {
    cm_buf b;
    int oom;
} html;

static void
put(html *h, const char *s)
{
    if (!h->oom && cm_buf_append(&h->b, s, strlen(s)) < 0) {
        h->oom = 1;
    }
}

static void CM_PRINTF(2, 3) putf(html *h, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof tmp) {
        put(h, tmp);
    } else {
        h->oom = 1; /* only numbers and constants come here: a longer text is a bug */
    }
}

/* Writes s with &, <, >, " and ' escaped. */
static void
put_esc(html *h, const char *s)
{
    static const char special[] = "&<>\"'";
    static const char *const entity[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
    while (*s != '\0') {
        size_t n = strcspn(s, special);
        if (!h->oom && cm_buf_append(&h->b, s, n) < 0) {
            h->oom = 1;
        }
        s += n;
        if (*s != '\0') {
            put(h, entity[strchr(special, *s) - special]);
            s++;
        }
    }
}

/* A cell: <td>text</td>, escaped; cls (may be NULL) its class. */
static void
cell(html *h, const char *cls, const char *text)
{
    put(h, cls ? "<td class=\"" : "<td>");
    if (cls != NULL) {
        put(h, cls);
        put(h, "\">");
    }
    put_esc(h, text);
    put(h, "</td>");
}

static void
cell_u64(html *h, uint64_t v)
{
    putf(h, "<td class=\"n\">%llu</td>", (unsigned long long)v);
}

/* Seconds as a person reads them: 850 µs, 1.25 ms, 2.50 s; "-" when not a number. */
static void
cell_seconds(html *h, double v)
{
    if (!isfinite(v)) {
        put(h, "<td class=\"n\">-</td>");
    } else if (v < 1e-3) {
        putf(h, "<td class=\"n\">%.0f &micro;s</td>", v * 1e6);
    } else if (v < 1) {
        putf(h, "<td class=\"n\">%.2f ms</td>", v * 1e3);
    } else {
        putf(h, "<td class=\"n\">%.2f s</td>", v);
    }
}

static void
kv_row(html *h, const char *key, const char *value)
{
    put(h, "<tr><th>");
    put_esc(h, key);
    put(h, "</th>");
    cell(h, NULL, value ? value : "");
    put(h, "</tr>\n");
}

static void
kv_u64(html *h, const char *key, uint64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    kv_row(h, key, tmp);
}

static const char style[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}"
    "h1{font-size:1.4em;margin:0 0 .5em}h2{font-size:1.1em;margin:1.5em 0 .4em}"
    "table{border-collapse:collapse}th,td{padding:.2em .7em;border-bottom:1px solid #ddd;"
    "text-align:left;vertical-align:top}thead th{background:#f3f3f3}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "td.bad{color:#b00}.note{color:#666}";

static void
html_head(html *h, const snapshot *s)
{
    put(h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width\">"
           "<link rel=\"icon\" href=\"data:,\"><title>");
    put_esc(h, cm_service_name(s->svc));
    put(h, " status</title><style>");
    put(h, style);
    put(h, "</style></head>\n<body>\n<h1>");
    put_esc(h, cm_service_name(s->svc));
    put(h, " <small>");
    put_esc(h, cm_service_version(s->svc));
    put(h, "</small></h1>\n");
}

static void
html_service(html *h, const snapshot *s)
{
    cm_service *svc = s->svc;
    char tmp[96];
    put(h, "<table id=\"service\">\n");
    kv_row(h, "node", cm_service_node_id(svc));
    kv_row(h, "address", cm_service_advertised(svc));
    kv_row(h, "transport", cm__server_transport_name(cm_service_server(svc)));
    uint64_t up =
        s->started_unix && s->now_unix > s->started_unix ? s->now_unix - s->started_unix : 0;
    snprintf(tmp, sizeof tmp, "%llud %02lluh %02llum %02llus", (unsigned long long)(up / 86400),
             (unsigned long long)(up / 3600 % 24), (unsigned long long)(up / 60 % 60),
             (unsigned long long)(up % 60));
    kv_row(h, "uptime", tmp);
    kv_u64(h, "pid", (uint64_t)getpid());
    kv_row(h, "cmicro", CMICRO_VERSION);
    cm_registry *reg = cm_service_registry(svc);
    kv_row(h, "registry", cm_registry_name(reg));
    snprintf(tmp, sizeof tmp, "%s%s", cm__service_registered(svc) ? "yes" : "no",
             s->reg_failures ? " (failing)" : "");
    kv_row(h, "registered", tmp);
    kv_row(h, "last registry error", s->reg_error[0] ? s->reg_error : "none");
    if (s->lookup_error != NULL) {
        kv_row(h, "last lookup", s->lookup_error);
    }
    const char *why = cm_registry_why(reg, cm_service_name(svc));
    if (why != NULL) {
        kv_row(h, "registry says", why);
    }
    put(h, "</table>\n");
}

static void
html_calls(html *h, const char *id, const char *title, const call_table *t, int metrics)
{
    put(h, "<h2>");
    put(h, title);
    put(h, "</h2>\n");
    if (!metrics) {
        put(h, "<p class=\"note\">Metrics are off (MICRO_METRICS=off): no counts.</p>\n");
    }
    putf(h, "<table id=\"%s\"><thead><tr><th>service</th><th>endpoint</th><th>calls</th>", id);
    put(h, "<th>errors</th><th>error codes</th><th>p50</th><th>p90</th><th>p99</th>"
           "<th>mean</th>");
    put(h, t->has_inflight ? "<th>in flight</th></tr></thead>\n<tbody>\n"
                           : "</tr></thead>\n<tbody>\n");
    for (size_t i = 0; i < t->n; i++) {
        const call_row *r = &t->rows[i];
        put(h, "<tr>");
        cell(h, NULL, r->service);
        cell(h, NULL, r->endpoint);
        cell_u64(h, r->calls);
        cell_u64(h, r->errors);
        put(h, r->errors ? "<td class=\"bad\">" : "<td>");
        for (size_t k = 0; k < r->ncodes; k++) {
            putf(h, "%s%d&times;%llu", k ? ", " : "", r->codes[k].code,
                 (unsigned long long)r->codes[k].n);
        }
        put(h, "</td>");
        for (size_t q = 0; q < 3; q++) {
            cell_seconds(h, quantile(r, q));
        }
        cell_seconds(h, mean(r));
        if (t->has_inflight) {
            cell_u64(h, r->inflight);
        }
        put(h, "</tr>\n");
    }
    if (t->n == 0) {
        putf(h, "<tr><td colspan=\"%d\" class=\"note\">none yet</td></tr>\n",
             t->has_inflight ? 10 : 9);
    }
    put(h, "</tbody></table>\n");
    if (t->omitted) {
        putf(h, "<p class=\"note\">%llu more series not shown.</p>\n",
             (unsigned long long)t->omitted);
    }
}

static void
html_server(html *h, const snapshot *s)
{
    put(h, "<h2>Server</h2>\n<table id=\"server\">\n");
    kv_u64(h, "calls in flight", s->st.inflight);
    kv_u64(h, "calls", s->st.calls);
    kv_u64(h, "errors", s->st.errors);
    kv_u64(h, "connections open", s->ls.active);
    kv_u64(h, "connections accepted", s->ls.accepted);
    kv_u64(h, "closed by timeout", s->ls.timeouts);
    kv_u64(h, "idle evicted", s->ls.evicted);
    kv_u64(h, "refused (max connections)", s->ls.refused);
    kv_u64(h, "refused (malformed or too large)", s->ls.rejected);
    kv_u64(h, "refused (concurrency limit)", s->refused_conc);
    kv_u64(h, "refused (rate limit)", s->refused_rate);
    kv_u64(h, "refused (max_streams)", s->refused_streams);
    put(h, "</table>\n");
}

static void
html_called(html *h, const snapshot *s)
{
    put(h, "<h2>Called services</h2>\n<table id=\"called\"><thead><tr><th>service</th>"
           "<th>nodes</th><th>ejected</th><th>last refresh</th><th>stale picks</th>"
           "<th>registry</th></tr></thead>\n<tbody>\n");
    for (size_t i = 0; i < s->ncalled; i++) {
        const sel_row *r = &s->called[i];
        put(h, "<tr>");
        cell(h, NULL, r->service);
        cell_u64(h, r->st.nodes);
        cell_u64(h, r->st.ejected);
        putf(h, "<td class=\"n\">%.1f s ago</td>", (double)r->st.age_ms / 1e3);
        cell_u64(h, r->st.stale_served);
        cell(h, r->st.failing ? "bad" : NULL, r->st.failing ? "lookup failing" : "ok");
        put(h, "</tr>\n");
    }
    if (s->ncalled == 0) {
        put(h, "<tr><td colspan=\"6\" class=\"note\">none yet</td></tr>\n");
    }
    put(h, "</tbody></table>\n");
    if (s->called_omitted) {
        putf(h, "<p class=\"note\">%llu more services not shown.</p>\n",
             (unsigned long long)s->called_omitted);
    }
}

static void
reply_html(cm_ctx *c, const snapshot *s)
{
    html h = {{0}, 0};
    html_head(&h, s);
    html_service(&h, s);
    html_calls(&h, "endpoints", "Endpoints served", &s->served, s->metrics);
    html_server(&h, s);
    html_calls(&h, "calls", "Calls made", &s->made, s->metrics);
    html_called(&h, s);
    put(&h, "<p class=\"note\"><a href=\"/status?format=json\">JSON</a> &middot; "
            "<a href=\"/metrics\">metrics</a> &middot; <a href=\"/health\">health</a></p>\n"
            "</body></html>\n");
    if (h.oom) {
        cm__ctx_reply_http(c, 500, "text/plain; charset=utf-8", "out of memory\n", 14);
    } else {
        cm__ctx_reply_http(c, 200, "text/html; charset=utf-8", (const char *)h.b.data, h.b.len);
    }
    cm_buf_free(&h.b);
}

/* ---- the request ---- */

/* Does the query (after '?') hold name=value among its &-separated parameters? */
static int
has_param(const char *path, const char *param)
{
    const char *q = strchr(path, '?');
    size_t n = strlen(param);
    for (const char *p = q; p != NULL; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, param, n) == 0 && (p[1 + n] == '\0' || p[1 + n] == '&')) {
            return 1;
        }
    }
    return 0;
}

static int
wants_json(cm_ctx *c, const char *path)
{
    if (has_param(path, "format=json")) {
        return 1;
    }
    if (has_param(path, "format=html")) {
        return 0;
    }
    const char *accept = cm_ctx_get(c, "Accept");
    return accept != NULL && strstr(accept, "application/json") != NULL &&
           strstr(accept, "text/html") == NULL;
}

void
cm__status_get(cm_ctx *c, cm_service *svc, const char *path, const char *lookup_error)
{
    snapshot *s = cm_ctx_alloc(c, sizeof *s);
    if (s == NULL) {
        cm__ctx_reply_http(c, 500, "text/plain; charset=utf-8", "out of memory\n", 14);
        return;
    }
    read_snapshot(s, c, svc, lookup_error);
    if (wants_json(c, path)) {
        reply_json(c, s);
    } else {
        reply_html(c, s);
    }
}
