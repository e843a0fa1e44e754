/* etcd watchers: one streaming /v3/watch per watcher on the prefix of its service
 * (/micro/registry/<name>/) or of all (/micro/registry/), with prev_kv, as go-micro's plugin
 * watches. The watcher keeps the keys it has seen (key, mod revision, service) and the last
 * revision it applied:
 *   - it starts with a range of the prefix (a create per node it finds), then streams from the
 *     range's revision + 1;
 *   - a stream that ends (member killed, connection reset, endpoint unreachable) is opened again
 *     from the last applied revision + 1, after a jittered back-off, on the next endpoint that
 *     answers: no event is missed, none is applied twice (events at or below the applied
 *     revision are dropped);
 *   - a stream canceled because that revision was compacted resyncs: a new range, diffed against
 *     the kept keys into create/update/delete events, then a stream from there.
 * Events follow go-micro's watcher: per key, "create" (a new key), "update" (a changed one),
 * "delete" (with the service the key held); each carries one node. */
#include "etcd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t cm__etcd_watch_base_ms = 100;
uint64_t cm__etcd_watch_cap_ms = 5000;

#define HEALTHY_MS 5000 /* a stream that lived this long resets the back-off */

typedef struct kent {
    struct kent *next;
    char *key;
    int64_t mod;
    cm_reg_service *svc; /* NULL: the value is not a service */
} kent;

typedef struct kmap {
    kent **b;
    size_t nb, n;
} kmap;

struct cm__etcd_watch {
    cm__etcd_watch *next;
    cm__etcd *c;
    cm_watcher *w; /* NULL once stopped */
    char *prefix, *end;
    uv_timer_t timer;
    cm__etcd_req *req;
    int64_t rev; /* the last revision applied */
    int resync;  /* the next start is a range */
    int first;   /* no range has completed yet */
    unsigned failures;
    int erroring; /* a failure was logged; the next success says so */
    uint64_t started_ms;
    uint32_t rng;
    kmap keys;
};

/* ---- the key map ---- */

static kent **
slot(const kmap *m, const char *key)
{
    size_t i = (size_t)(cm__fnv1a(key, strlen(key)) % m->nb);
    kent **pp = &m->b[i];
    while (*pp != NULL && strcmp((*pp)->key, key) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

static kent *
kmap_get(const kmap *m, const char *key)
{
    return m->nb > 0 ? *slot(m, key) : NULL;
}

static void
kent_free(kent *e)
{
    free(e->key);
    cm_reg_service_free(e->svc);
    free(e);
}

static int
kmap_grow(kmap *m)
{
    size_t nb = m->nb == 0 ? 64 : m->nb * 2;
    kent **b = calloc(nb, sizeof(*b));
    if (b == NULL) {
        return CM_ENOMEM;
    }
    kmap nm = {.b = b, .nb = nb, .n = m->n};
    for (size_t i = 0; i < m->nb; i++) {
        while (m->b[i] != NULL) {
            kent *e = m->b[i];
            m->b[i] = e->next;
            kent **pp = slot(&nm, e->key);
            e->next = NULL;
            *pp = e;
        }
    }
    free(m->b);
    *m = nm;
    return 0;
}

/* Sets key (taken) to mod and svc (taken). 0 or CM_ENOMEM (both freed). */
static int
kmap_put(kmap *m, char *key, int64_t mod, cm_reg_service *svc)
{
    if (m->n >= m->nb && kmap_grow(m) < 0) {
        free(key);
        cm_reg_service_free(svc);
        return CM_ENOMEM;
    }
    kent **pp = slot(m, key);
    if (*pp != NULL) {
        free(key);
        cm_reg_service_free((*pp)->svc);
        (*pp)->svc = svc;
        (*pp)->mod = mod;
        return 0;
    }
    kent *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        free(key);
        cm_reg_service_free(svc);
        return CM_ENOMEM;
    }
    e->key = key;
    e->mod = mod;
    e->svc = svc;
    *pp = e;
    m->n++;
    return 0;
}

/* Takes key out of the map; returns its entry (owned) or NULL. */
static kent *
kmap_take(kmap *m, const char *key)
{
    if (m->nb == 0) {
        return NULL;
    }
    kent **pp = slot(m, key);
    kent *e = *pp;
    if (e != NULL) {
        *pp = e->next;
        m->n--;
    }
    return e;
}

static void
kmap_free(kmap *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        while (m->b[i] != NULL) {
            kent *e = m->b[i];
            m->b[i] = e->next;
            kent_free(e);
        }
    }
    free(m->b);
    memset(m, 0, sizeof(*m));
}

/* ---- events ---- */

static int
want_one(const cm_watcher *w, void *arg)
{
    return w == arg;
}

/* Delivers one event to ws's watcher. Returns 1 when the watch was stopped or the registry is
 * closing (the caller stops touching the stream). */
static int
emit(cm__etcd_watch *ws, cm_watch_action a, const cm_reg_service *svc)
{
    if (ws->w == NULL || ws->c->http.closing) {
        return 1;
    }
    if (svc != NULL) {
        cm__registry_notify_if(ws->c->reg, a, svc, want_one, ws->w);
    }
    return ws->w == NULL || ws->c->http.closing;
}

/* ---- starting and restarting ---- */

static void range_done(void *ctx, const cm__etcd_result *res);
static void stream_done(void *ctx, const cm__etcd_result *res);
static int on_line(void *ctx, const char *line, size_t len);

static char *
watch_body(const cm__etcd_watch *ws)
{
    cm_buf k = {0}, e = {0};
    int rc = cm__etcd_b64_encode(&k, ws->prefix, strlen(ws->prefix));
    rc |= cm_buf_append(&k, "", 1);
    rc |= cm__etcd_b64_encode(&e, ws->end, strlen(ws->end));
    rc |= cm_buf_append(&e, "", 1);
    char *body = NULL;
    if (rc == 0) {
        size_t n = k.len + e.len + 160;
        body = malloc(n);
        if (body != NULL) {
            snprintf(body, n,
                     "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\",\"prev_kv\":true,"
                     "\"start_revision\":\"%lld\"}}",
                     (char *)k.data, (char *)e.data, (long long)(ws->rev + 1));
        }
    }
    cm_buf_free(&k);
    cm_buf_free(&e);
    return body;
}

static int
start(cm__etcd_watch *ws)
{
    char *body = ws->resync ? cm__etcd_range_body(ws->prefix, ws->end, 1) : watch_body(ws);
    if (body == NULL) {
        return CM_ENOMEM;
    }
    cm__etcd_call call = {.path = ws->resync ? "/v3/kv/range" : "/v3/watch",
                          .body = body,
                          .quiet = 1,
                          .on_line = ws->resync ? NULL : on_line,
                          .done = ws->resync ? range_done : stream_done,
                          .ctx = ws};
    ws->started_ms = cm_now_ms();
    int rc = cm__etcd_send(ws->c, &call, &ws->req);
    free(body);
    return rc;
}

static void
on_timer(uv_timer_t *t)
{
    cm__etcd_watch *ws = t->data;
    if (ws->w == NULL || ws->c->http.closing) {
        return;
    }
    int rc = start(ws);
    if (rc < 0) {
        /* Out of memory: try again later rather than never. */
        ws->req = NULL;
        uv_timer_start(&ws->timer, on_timer, cm__etcd_watch_cap_ms, 0);
    }
}

/* After a failure or an end: the next start after a jittered, growing delay. */
static void
again(cm__etcd_watch *ws, int err, const char *detail)
{
    ws->req = NULL;
    if (ws->w == NULL || ws->c->http.closing) {
        return;
    }
    if (cm_now_ms() - ws->started_ms >= HEALTHY_MS) {
        ws->failures = 0;
    }
    uint64_t d = cm__etcd_watch_base_ms;
    for (unsigned i = 0; i < ws->failures && d < cm__etcd_watch_cap_ms; i++) {
        d *= 2;
    }
    d = d < cm__etcd_watch_cap_ms ? d : cm__etcd_watch_cap_ms;
    ws->rng = ws->rng * 1103515245u + 12345u;
    d = d / 2 + (d / 2 > 0 ? (ws->rng >> 8) % (d / 2 + 1) : 0);
    if (ws->failures == 1 && !ws->erroring && err != CM_ECLOSED) {
        ws->erroring = 1;
        cm_log(CM_LOG_WARN, "registry.etcd", "watch of %s: %s%s%s; retrying", ws->prefix,
               cm_strerror(err), detail[0] ? ": " : "", detail);
    }
    ws->failures++;
    uv_timer_start(&ws->timer, on_timer, d, 0);
}

/* ---- the range (start and resync) ---- */

/* Replaces ws's keys by those of a range reply, with the events of the difference. */
static int
apply_range(cm__etcd_watch *ws, const cJSON *kvs)
{
    kmap next = {0};
    const cJSON *kv;
    int rc = 0;
    cJSON_ArrayForEach(kv, kvs)
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(kv, "key");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(kv, "value");
        size_t n = 0;
        char *key = cJSON_IsString(k) ? cm__etcd_b64_decode(k->valuestring, &n) : NULL;
        if (key == NULL) {
            continue;
        }
        cm_reg_service *svc = cm__etcd_decode_value(cJSON_IsString(v) ? v->valuestring : NULL);
        if ((rc = kmap_put(&next, key, cm__etcd_int(kv, "mod_revision"), svc)) < 0) {
            break;
        }
    }
    if (rc < 0) {
        kmap_free(&next);
        return rc;
    }
    /* Deletes first (keys that went), then creates and updates. */
    int stopped = 0;
    for (size_t i = 0; i < ws->keys.nb && !stopped; i++) {
        for (kent *e = ws->keys.b[i]; e != NULL && !stopped; e = e->next) {
            if (kmap_get(&next, e->key) == NULL) {
                stopped = emit(ws, CM_WATCH_DELETE, e->svc);
            }
        }
    }
    for (size_t i = 0; i < next.nb && !stopped; i++) {
        for (kent *e = next.b[i]; e != NULL && !stopped; e = e->next) {
            const kent *old = kmap_get(&ws->keys, e->key);
            if (old == NULL) {
                stopped = emit(ws, CM_WATCH_CREATE, e->svc);
            } else if (old->mod != e->mod) {
                stopped = emit(ws, CM_WATCH_UPDATE, e->svc);
            }
        }
    }
    kmap_free(&ws->keys);
    ws->keys = next;
    return stopped;
}

static void
range_done(void *ctx, const cm__etcd_result *res)
{
    cm__etcd_watch *ws = ctx;
    ws->req = NULL;
    if (res->err < 0) {
        again(ws, res->err, res->detail);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(res->body, res->len);
    int64_t rev = cm__etcd_int(cJSON_GetObjectItemCaseSensitive(j, "header"), "revision");
    if (j == NULL || rev <= 0) {
        cJSON_Delete(j);
        again(ws, CM_EPROTO, "range reply");
        return;
    }
    int rc = apply_range(ws, cJSON_GetObjectItemCaseSensitive(j, "kvs"));
    cJSON_Delete(j);
    if (rc != 0) {
        if (rc < 0) {
            again(ws, rc, "");
        }
        return;
    }
    if (!ws->first) {
        cm_log(CM_LOG_INFO, "registry.etcd", "watch of %s resynced at revision %lld", ws->prefix,
               (long long)rev);
    }
    ws->first = 0;
    ws->rev = rev;
    ws->resync = 0;
    if (start(ws) < 0) {
        again(ws, CM_ENOMEM, "");
    }
}

/* ---- the stream ---- */

/* Applies one event; 1 when the watch stopped meanwhile. */
static int
apply_event(cm__etcd_watch *ws, const cJSON *ev)
{
    const cJSON *kv = cJSON_GetObjectItemCaseSensitive(ev, "kv");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(kv, "key");
    size_t n = 0;
    char *key = cJSON_IsString(k) ? cm__etcd_b64_decode(k->valuestring, &n) : NULL;
    if (key == NULL) {
        return 0;
    }
    if (cJSON_IsString(type) && strcmp(type->valuestring, "DELETE") == 0) {
        kent *e = kmap_take(&ws->keys, key);
        free(key);
        cm_reg_service *prev = NULL;
        if (e == NULL || e->svc == NULL) {
            const cJSON *pv = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(ev, "prev_kv"), "value");
            prev = cm__etcd_decode_value(cJSON_IsString(pv) ? pv->valuestring : NULL);
        }
        int stopped = emit(ws, CM_WATCH_DELETE, prev != NULL ? prev : (e ? e->svc : NULL));
        cm_reg_service_free(prev);
        if (e != NULL) {
            kent_free(e);
        }
        return stopped;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(kv, "value");
    cm_reg_service *svc = cm__etcd_decode_value(cJSON_IsString(v) ? v->valuestring : NULL);
    int existed = kmap_get(&ws->keys, key) != NULL;
    cm_reg_service *copy = svc != NULL ? cm_reg_service_dup(svc) : NULL;
    int rc = kmap_put(&ws->keys, key, cm__etcd_int(kv, "mod_revision"), copy);
    int stopped = 0;
    if (rc == 0) {
        stopped = emit(ws, existed ? CM_WATCH_UPDATE : CM_WATCH_CREATE, svc);
    }
    cm_reg_service_free(svc);
    return stopped;
}

/* Applies a watch response; returns non-zero to end the stream. */
static int
apply_response(cm__etcd_watch *ws, const cJSON *r)
{
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "canceled"))) {
        int64_t compact = cm__etcd_int(r, "compact_revision");
        if (compact > 0) {
            cm_log(CM_LOG_INFO, "registry.etcd",
                   "watch of %s: revision %lld compacted (now %lld); resyncing", ws->prefix,
                   (long long)(ws->rev + 1), (long long)compact);
            ws->resync = 1;
        }
        return 1;
    }
    const cJSON *evs = cJSON_GetObjectItemCaseSensitive(r, "events");
    int64_t base = ws->rev, top = ws->rev;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, evs)
    {
        int64_t mod = cm__etcd_int(cJSON_GetObjectItemCaseSensitive(ev, "kv"), "mod_revision");
        if (mod <= base) {
            continue; /* applied before a reconnect */
        }
        top = mod > top ? mod : top;
        if (apply_event(ws, ev)) {
            return 1;
        }
    }
    if (cJSON_GetArraySize(evs) == 0 &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "created"))) {
        /* A progress notification: everything up to the header's revision was sent. */
        int64_t h = cm__etcd_int(cJSON_GetObjectItemCaseSensitive(r, "header"), "revision");
        top = h > top ? h : top;
    }
    ws->rev = top;
    return 0;
}

static int
on_line(void *ctx, const char *line, size_t len)
{
    cm__etcd_watch *ws = ctx;
    if (ws->w == NULL) {
        return 1;
    }
    cJSON *j = cJSON_ParseWithLength(line, len);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result");
    int stop = 0;
    if (!cJSON_IsObject(r)) {
        /* {"error": {...}}: the stream failed (an expired token, a lost leader). */
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        cm_log(CM_LOG_DEBUG, "registry.etcd", "watch of %s: %s", ws->prefix,
               cJSON_IsString(m) ? m->valuestring : "malformed message");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "grpc_code");
        if (cJSON_IsNumber(code) && code->valueint == 16 && ws->c->token != NULL) {
            free(ws->c->token); /* the next start authenticates again */
            ws->c->token = NULL;
        }
        stop = 1;
    } else {
        if (ws->erroring) {
            ws->erroring = 0;
            cm_log(CM_LOG_INFO, "registry.etcd", "watch of %s: streaming again", ws->prefix);
        }
        stop = apply_response(ws, r);
    }
    cJSON_Delete(j);
    return stop;
}

static void
stream_done(void *ctx, const cm__etcd_result *res)
{
    cm__etcd_watch *ws = ctx;
    if (res->err == CM_ECANCELED && ws->resync) {
        /* Ended to resync: at once. */
        ws->req = NULL;
        if (ws->w != NULL && !ws->c->http.closing && start(ws) < 0) {
            again(ws, CM_ENOMEM, "");
        }
        return;
    }
    again(ws, res->err == CM_ECANCELED ? CM_ECLOSED : res->err, res->detail);
}

/* ---- the ops ---- */

static void
ws_closed(uv_handle_t *h)
{
    cm__etcd_watch *ws = h->data;
    cm__etcd *c = ws->c;
    kmap_free(&ws->keys);
    free(ws->prefix);
    free(ws->end);
    free(ws);
    cm__curl_handle_gone(&c->http);
}

int
cm__etcd_watch_start(cm_registry *r, cm_watcher *w)
{
    cm__etcd *c = cm__etcd_of(r);
    cm__etcd_watch *ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        return CM_ENOMEM;
    }
    ws->c = c;
    ws->w = w;
    ws->resync = 1;
    ws->first = 1;
    ws->rng = (uint32_t)cm_now_ms() ^ (uint32_t)(uintptr_t)ws;
    const char *name = cm_watcher_name(w);
    if (name != NULL) {
        char *p = cm__etcd_service_path(name);
        size_t n = p != NULL ? strlen(p) : 0;
        ws->prefix = p != NULL ? malloc(n + 2) : NULL;
        if (ws->prefix != NULL) {
            memcpy(ws->prefix, p, n);
            memcpy(ws->prefix + n, "/", 2);
        }
        free(p);
    } else {
        ws->prefix = strdup(CM__ETCD_PREFIX);
    }
    ws->end = ws->prefix != NULL ? cm__etcd_prefix_end(ws->prefix) : NULL;
    int rc = ws->end != NULL ? start(ws) : CM_ENOMEM;
    if (rc < 0) {
        free(ws->prefix);
        free(ws->end);
        free(ws);
        return rc;
    }
    uv_timer_init(c->http.uv, &ws->timer);
    ws->timer.data = ws;
    cm__curl_handle_opened(&c->http);
    ws->next = c->watches;
    c->watches = ws;
    *(cm__etcd_watch **)cm_watcher_priv(w) = ws;
    return 0;
}

static void
stop_one(cm__etcd *c, cm__etcd_watch *ws)
{
    ws->w = NULL;
    if (ws->req != NULL) {
        cm__etcd_cancel(c, ws->req);
        ws->req = NULL;
    }
    uv_timer_stop(&ws->timer);
    uv_close((uv_handle_t *)&ws->timer, ws_closed);
}

void
cm__etcd_watch_stop(cm_registry *r, cm_watcher *w)
{
    cm__etcd *c = cm__etcd_of(r);
    cm__etcd_watch *ws = *(cm__etcd_watch **)cm_watcher_priv(w);
    for (cm__etcd_watch **pp = &c->watches; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == ws) {
            *pp = ws->next;
            stop_one(c, ws);
            return;
        }
    }
}

void
cm__etcd_watch_stop_all(cm__etcd *c)
{
    while (c->watches != NULL) {
        cm__etcd_watch *ws = c->watches;
        c->watches = ws->next;
        stop_one(c, ws);
    }
}
