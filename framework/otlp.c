/* Span export as OTLP/HTTP JSON (opentelemetry-proto's ExportTraceServiceRequest, ids in hex as
 * the OTLP JSON encoding asks) to a collector URL. Served calls are recorded by a handler wrapper
 * into a bounded ring (full: the span is dropped and counted); a thread of the exporter's own
 * sends them in batches (every second, or at BATCH spans) with libcurl, so that no call ever
 * waits for the collector. A failed POST drops its batch and is counted and logged once per
 * change of state. */
#include "framework_int.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING 4096
#define BATCH 512
#define FLUSH_NS 1000000000ull
#define POST_TIMEOUT_MS 5000L

typedef struct span_rec {
    char traceparent[CM_TRACEPARENT_LEN + 1]; /* the span itself */
    char parent[CM_SPAN_ID_SIZE * 2 + 1];     /* its parent's span id, "" for a root */
    char name[96];
    uint64_t start_unix_ns, end_unix_ns;
    int32_t code; /* 0 success, else the go-micro error code */
    char message[128];
} span_rec;

struct cm__otlp {
    char *url;
    char *service;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    span_rec *ring;
    size_t head, n;
    int stop;
    uint64_t dropped, exported, failed;
    int failing; /* the last POST failed (logged once) */
};

static uint64_t
unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- recording ---- */

static int
span_before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    (void)arg;
    (void)err;
    uint64_t *start = cm_ctx_alloc(w->ctx, sizeof(*start));
    if (start != NULL) {
        *start = unix_ns();
    }
    *state = start;
    return 0;
}

static void
span_after(const cm_wrap_info *w, void *arg, void *state)
{
    cm__otlp *o = arg;
    const char *ts = NULL;
    const char *tp = state ? cm__ctx_trace(w->ctx, &ts) : NULL;
    if (tp == NULL) {
        return;
    }
    span_rec r;
    memset(&r, 0, sizeof r);
    snprintf(r.traceparent, sizeof r.traceparent, "%s", tp);
    const char *in = cm_ctx_get(w->ctx, "traceparent");
    cm_trace_ctx parent;
    if (in != NULL && cm_trace_parse(in, strlen(in), &parent) == 0) {
        cm_span_id_hex(&parent, r.parent);
    }
    snprintf(r.name, sizeof r.name, "%s", w->endpoint);
    r.start_unix_ns = *(const uint64_t *)state;
    r.end_unix_ns = unix_ns();
    if (w->status != 0) {
        r.code = w->error && w->error->code ? w->error->code : 500;
        snprintf(r.message, sizeof r.message, "%s",
                 w->error && w->error->detail ? w->error->detail : cm_strerror(w->status));
    }
    uv_mutex_lock(&o->mu);
    if (o->n == RING) {
        o->dropped++;
    } else {
        o->ring[(o->head + o->n) % RING] = r;
        if (++o->n >= BATCH) {
            uv_cond_signal(&o->cv);
        }
    }
    uv_mutex_unlock(&o->mu);
}

/* ---- the request body ---- */

static void
attr_str(cJSON *attrs, const char *key, const char *val)
{
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "key", key);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(a, "value"), "stringValue", val);
    cJSON_AddItemToArray(attrs, a);
}

static cJSON *
span_json(const span_rec *r)
{
    char num[24];
    cJSON *s = cJSON_CreateObject();
    char trace_id[33], span_id[17]; /* from "00-<trace id>-<span id>-<flags>" */
    snprintf(trace_id, sizeof trace_id, "%.32s", r->traceparent + 3);
    snprintf(span_id, sizeof span_id, "%.16s", r->traceparent + 36);
    cJSON_AddStringToObject(s, "traceId", trace_id);
    cJSON_AddStringToObject(s, "spanId", span_id);
    if (r->parent[0] != '\0') {
        cJSON_AddStringToObject(s, "parentSpanId", r->parent);
    }
    cJSON_AddStringToObject(s, "name", r->name);
    cJSON_AddNumberToObject(s, "kind", 2); /* SPAN_KIND_SERVER */
    snprintf(num, sizeof num, "%" PRIu64, r->start_unix_ns);
    cJSON_AddStringToObject(s, "startTimeUnixNano", num);
    snprintf(num, sizeof num, "%" PRIu64, r->end_unix_ns);
    cJSON_AddStringToObject(s, "endTimeUnixNano", num);
    cJSON *attrs = cJSON_AddArrayToObject(s, "attributes");
    attr_str(attrs, "rpc.system", "go-micro");
    attr_str(attrs, "rpc.method", r->name);
    cJSON *st = cJSON_AddObjectToObject(s, "status");
    if (r->code != 0) {
        cJSON_AddNumberToObject(st, "code", 2); /* STATUS_CODE_ERROR */
        cJSON_AddStringToObject(st, "message", r->message);
        snprintf(num, sizeof num, "%" PRId32, r->code);
        attr_str(attrs, "rpc.micro.error_code", num);
    }
    return s;
}

/* An ExportTraceServiceRequest of n spans, as JSON text (owned), or NULL. */
static char *
request_json(const cm__otlp *o, const span_rec *spans, size_t n)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *rs = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "resourceSpans"), rs);
    cJSON *attrs = cJSON_AddArrayToObject(cJSON_AddObjectToObject(rs, "resource"), "attributes");
    attr_str(attrs, "service.name", o->service);
    cJSON *ss = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(rs, "scopeSpans"), ss);
    cJSON *scope = cJSON_AddObjectToObject(ss, "scope");
    cJSON_AddStringToObject(scope, "name", "cmicro");
    cJSON_AddStringToObject(scope, "version", CMICRO_VERSION);
    cJSON *arr = cJSON_AddArrayToObject(ss, "spans");
    for (size_t i = 0; i < n; i++) {
        cJSON_AddItemToArray(arr, span_json(&spans[i]));
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* ---- sending ---- */

static size_t
discard(char *p, size_t size, size_t n, void *user)
{
    (void)p;
    (void)user;
    return size * n;
}

static int
post(const cm__otlp *o, const char *body, long *status)
{
    CURL *e = curl_easy_init();
    if (e == NULL) {
        return CM_ENOMEM;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, POST_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(e);
    *status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return rc == CURLE_OK && *status >= 200 && *status < 300 ? 0 : CM_EPROTO;
}

static void
send_batch(cm__otlp *o, const span_rec *spans, size_t n)
{
    char *body = request_json(o, spans, n);
    long status = 0;
    int rc = body ? post(o, body, &status) : CM_ENOMEM;
    free(body);
    uv_mutex_lock(&o->mu);
    if (rc == 0) {
        o->exported += n;
    } else {
        o->failed += n;
    }
    int was = o->failing;
    o->failing = rc != 0;
    uv_mutex_unlock(&o->mu);
    if (rc != 0 && !was) {
        cm_log(CM_LOG_WARN, "trace", "span export to %s failed (HTTP %ld): %zu spans dropped",
               o->url, status, n);
    } else if (rc == 0 && was) {
        cm_log(CM_LOG_INFO, "trace", "span export to %s works again", o->url);
    }
}

static void
exporter(void *arg)
{
    cm__otlp *o = arg;
    span_rec *batch = malloc(BATCH * sizeof(*batch));
    uv_mutex_lock(&o->mu);
    for (;;) {
        if (o->n < BATCH && !o->stop) {
            uv_cond_timedwait(&o->cv, &o->mu, FLUSH_NS);
        }
        size_t n = o->n < BATCH ? o->n : BATCH;
        for (size_t i = 0; batch != NULL && i < n; i++) {
            batch[i] = o->ring[(o->head + i) % RING];
        }
        o->head = (o->head + n) % RING;
        o->n -= n;
        int stop = o->stop && o->n == 0;
        uv_mutex_unlock(&o->mu);
        if (n > 0 && batch != NULL) {
            send_batch(o, batch, n);
        }
        uv_mutex_lock(&o->mu);
        if (stop) {
            break;
        }
    }
    uv_mutex_unlock(&o->mu);
    free(batch);
}

/* ---- lifecycle ---- */

int
cm__otlp_new(cm_server *s, const char *url, const char *service, cm__otlp **out)
{
    cm__otlp *o = calloc(1, sizeof(*o));
    if (o == NULL || (o->url = strdup(url)) == NULL || (o->service = strdup(service)) == NULL ||
        (o->ring = malloc(RING * sizeof(span_rec))) == NULL) {
        cm__otlp_free(o);
        return CM_ENOMEM;
    }
    uv_mutex_init(&o->mu);
    uv_cond_init(&o->cv);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cm_wrapper w = {"span-export", span_before, span_after, o};
    int rc = cm_server_wrap(s, &w);
    if (rc == 0) {
        rc = uv_thread_create(&o->thread, exporter, o);
    }
    if (rc < 0) {
        uv_cond_destroy(&o->cv);
        uv_mutex_destroy(&o->mu);
        free(o->ring);
        free(o->service);
        free(o->url);
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

void
cm__otlp_stats(cm__otlp *o, uint64_t *exported, uint64_t *dropped, uint64_t *failed)
{
    uv_mutex_lock(&o->mu);
    *exported = o->exported;
    *dropped = o->dropped;
    *failed = o->failed;
    uv_mutex_unlock(&o->mu);
}

void
cm__otlp_free(cm__otlp *o)
{
    if (o == NULL) {
        return;
    }
    if (o->ring != NULL && o->url != NULL && o->service != NULL) {
        uv_mutex_lock(&o->mu);
        o->stop = 1;
        uv_cond_signal(&o->cv);
        uv_mutex_unlock(&o->mu);
        uv_thread_join(&o->thread); /* sends what is left */
        uv_cond_destroy(&o->cv);
        uv_mutex_destroy(&o->mu);
        curl_global_cleanup();
    }
    free(o->ring);
    free(o->service);
    free(o->url);
    free(o);
}
