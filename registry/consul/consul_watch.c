/* Consul watchers: one blocking-query loop per watched service name on
 * /v1/health/service/<name>?index=X&wait=W (consul-api.md 1.6), each reply turned into go-micro
 * services and diffed against the previous one into create/update/delete events (spec 2.8).
 *
 * The loop's rules (LESSONS row 8): the index is reset to 0 when it goes backwards or after an
 * error, and never sent below 1; two queries start at least a minimum gap apart; errors, and early
 * replies that did not move the index, back off exponentially with jitter up to a cap; libcurl's
 * timeout is wait + wait/16 (the agent's jitter) + 5 s. Queries carry ?stale (or ?consistent)
 * and ?dc as the registry's reads do, and wait=1m0s (cm__consul_watch_wait_ms).
 *
 * Events follow go-micro's watcher: the first reply gives a create per version; then, per
 * version, create (new version), delete (a copy holding the nodes that went) followed by update
 * (the full new service), delete (version gone). Nodes with a critical check are left out, so a
 * version may be reported with no node. Unlike go-micro, a version whose services did not
 * change gives no update. Events go to the watcher that asked (cm__registry_notify_if). */
#include "consul_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_GAP_MS 250
#define WATCH_BASE_MS 500
#define WATCH_CAP_MS 30000

uint64_t cm__consul_watch_wait_ms = 60000;

struct cm__consul_watch {
    cm__consul_watch *next;
    cm__consul *c;
    cm_watcher *w; /* NULL once stopped */
    char *name;
    uv_timer_t timer;
    cm__consul_req *req;
    cm__consul_wstate st;
    uint64_t started_ms;
    uint32_t rng;
    int erroring;
    cm_reg_service_list *snap; /* the last reply, as services */
};

/* ---- the loop's arithmetic ---- */

void
cm__consul_wstate_init(cm__consul_wstate *s)
{
    memset(s, 0, sizeof(*s));
    s->wait_ms = cm__consul_watch_wait_ms;
    s->gap_ms = WATCH_GAP_MS;
    s->base_ms = WATCH_BASE_MS;
    s->cap_ms = WATCH_CAP_MS;
}

int
cm__consul_wstate_reply(cm__consul_wstate *s, int has, uint64_t got, uint64_t took_ms)
{
    uint64_t prev = s->index;
    int changed;
    s->failures = 0;
    if (!has || got == 0) {
        got = 1; /* never 0: that would turn the next query into a busy loop */
    }
    if (got < prev) {
        /* Backwards (snapshot restore, agent restart): start over with a plain read. */
        s->index = 0;
        changed = 1;
    } else {
        changed = got != prev || prev == 0;
        s->index = got;
    }
    if (!changed && took_ms < s->wait_ms / 2) {
        s->idle++;
    } else {
        s->idle = 0;
    }
    return changed;
}

void
cm__consul_wstate_error(cm__consul_wstate *s)
{
    s->failures++;
    /* The agent may have restarted with a lower index: a query with the old one would block a
     * whole wait for nothing, so the next one is a plain read. */
    s->index = 0;
}

uint64_t
cm__consul_wstate_delay(const cm__consul_wstate *s, uint64_t started_ms, uint64_t now_ms,
                        uint32_t rnd)
{
    uint64_t d = 0;
    unsigned streak = s->failures > 0 ? s->failures : s->idle;
    if (streak > 0) {
        unsigned shift = streak - 1 > 16 ? 16 : streak - 1;
        uint64_t b = s->base_ms << shift;
        if (b > s->cap_ms) {
            b = s->cap_ms;
        }
        /* Jitter in [b/2, b]. */
        d = b / 2 + (uint64_t)rnd % (b / 2 + 1);
    }
    uint64_t earliest = started_ms + s->gap_ms;
    if (now_ms + d < earliest) {
        d = earliest - now_ms;
    }
    return d;
}

uint64_t
cm__consul_wstate_timeout(const cm__consul_wstate *s)
{
    return s->wait_ms + s->wait_ms / 16 + 5000;
}

/* ---- snapshots → events ---- */

static const cm_reg_service *
find_version(const cm_reg_service_list *l, const char *version)
{
    for (size_t i = 0; l != NULL && i < l->n; i++) {
        if (strcmp(l->items[i]->version, version) == 0) {
            return l->items[i];
        }
    }
    return NULL;
}

static int
has_node(const cm_reg_service *s, const char *id)
{
    for (size_t i = 0; i < s->nnodes; i++) {
        if (strcmp(s->nodes[i].id, id) == 0) {
            return 1;
        }
    }
    return 0;
}

/* 1 equal, 0 different, CM_ENOMEM. */
static int
same_service(const cm_reg_service *a, const cm_reg_service *b)
{
    cJSON *ja = cm__service_to_json(a), *jb = cm__service_to_json(b);
    int rc = ja != NULL && jb != NULL ? cJSON_Compare(ja, jb, 1) != 0 : CM_ENOMEM;
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return rc;
}

/* A copy of old holding only the nodes cur no longer has; NULL in *out when there are none. */
static int
vanished(const cm_reg_service *old, const cm_reg_service *cur, cm_reg_service **out)
{
    *out = NULL;
    for (size_t i = 0; i < old->nnodes; i++) {
        const cm_node *n = &old->nodes[i];
        if (has_node(cur, n->id)) {
            continue;
        }
        if (*out == NULL) {
            *out = cm_reg_service_new(old->name, old->version);
            for (size_t k = 0; *out != NULL && k < old->nendpoints; k++) {
                const cm_endpoint *e = &old->endpoints[k];
                if (!cm_reg_service_add_endpoint(*out, e->name, e->request, e->response, e->metadata)) {
                    cm_reg_service_free(*out);
                    *out = NULL;
                }
            }
            if (*out == NULL) {
                return CM_ENOMEM;
            }
        }
        if (cm_reg_service_add_node(*out, n->id, n->address, n->metadata) == NULL) {
            cm_reg_service_free(*out);
            *out = NULL;
            return CM_ENOMEM;
        }
    }
    return 0;
}

int
cm__consul_diff(const cm_reg_service_list *old, const cm_reg_service_list *cur,
                int (*emit)(void *arg, cm_watch_action a, const cm_reg_service *svc), void *arg)
{
    for (size_t i = 0; cur != NULL && i < cur->n; i++) {
        const cm_reg_service *n = cur->items[i];
        const cm_reg_service *o = find_version(old, n->version);
        if (o == NULL) {
            if (emit(arg, CM_WATCH_CREATE, n)) {
                return 1;
            }
            continue;
        }
        int same = same_service(o, n);
        if (same < 0) {
            return same;
        }
        if (same) {
            continue;
        }
        cm_reg_service *gone = NULL;
        if (vanished(o, n, &gone) < 0) {
            return CM_ENOMEM;
        }
        int stop = gone != NULL && emit(arg, CM_WATCH_DELETE, gone);
        cm_reg_service_free(gone);
        if (stop || emit(arg, CM_WATCH_UPDATE, n)) {
            return 1;
        }
    }
    for (size_t i = 0; old != NULL && i < old->n; i++) {
        if (find_version(cur, old->items[i]->version) == NULL &&
            emit(arg, CM_WATCH_DELETE, old->items[i])) {
            return 1;
        }
    }
    return 0;
}

/* ---- the loop on the registry's uv loop ---- */

static cm__consul_watch **
slot_of(cm_watcher *w)
{
    return (cm__consul_watch **)(void *)w->priv;
}

static uint32_t
next_rand(cm__consul_watch *ws)
{
    uint32_t x = ws->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    ws->rng = x;
    return x;
}

static int
want_this(const cm_watcher *w, void *arg)
{
    return w == arg;
}

static int
emit_event(void *arg, cm_watch_action a, const cm_reg_service *svc)
{
    cm__consul_watch *ws = arg;
    cm__registry_notify_if(ws->c->reg, a, svc, want_this, ws->w);
    return ws->w == NULL; /* stopped by the callback */
}

static void query_done(void *ctx, const cm__consul_result *res);

static int
start_query(cm__consul_watch *ws)
{
    cm__consul *c = ws->c;
    cm_buf b = {0};
    int rc = cm__consul_buf_str(&b, "/v1/health/service/");
    rc |= cm__consul_escape(&b, ws->name);
    rc |= cm__consul_buf_str(&b, c->read_query);
    if (ws->st.index > 0) {
        char q[96], d[32];
        cm__consul_go_duration(ws->st.wait_ms, d, sizeof(d));
        snprintf(q, sizeof(q), "&index=%llu&wait=%s", (unsigned long long)ws->st.index, d);
        rc |= cm__consul_buf_str(&b, q);
    }
    rc |= cm_buf_append(&b, "", 1);
    if (rc != 0) {
        cm_buf_free(&b);
        return CM_ENOMEM;
    }
    cm__consul_call call = {.method = "GET",
                            .path = (const char *)b.data,
                            .agent = -1,
                            .timeout_ms = ws->st.index > 0 ? cm__consul_wstate_timeout(&ws->st) : 0,
                            .quiet = 1,
                            .done = query_done,
                            .ctx = ws};
    ws->started_ms = cm_now_ms();
    rc = cm__consul_send(c, &call, &ws->req);
    cm_buf_free(&b);
    return rc;
}

static void
on_timer(uv_timer_t *t)
{
    cm__consul_watch *ws = t->data;
    int rc = start_query(ws);
    if (rc == CM_ENOMEM) {
        cm__consul_wstate_error(&ws->st);
        uint64_t now = cm_now_ms();
        uv_timer_start(&ws->timer, on_timer,
                       cm__consul_wstate_delay(&ws->st, now, now, next_rand(ws)), 0);
    }
}

static void
query_failed(cm__consul_watch *ws, const cm__consul_result *res)
{
    cm__consul_wstate_error(&ws->st);
    if (!ws->erroring) {
        ws->erroring = 1;
        char path[300];
        snprintf(path, sizeof(path), "/v1/health/service/%s", ws->name);
        if (res->err == CM_EPROTO) {
            cm_log(CM_LOG_WARN, "registry.consul", "watch %s: malformed reply; backing off",
                   ws->name);
        } else {
            cm__consul_log_failure(ws->c, CM_LOG_WARN, "GET", path, res);
            cm_log(CM_LOG_WARN, "registry.consul", "watch %s: backing off", ws->name);
        }
    }
}

static void
query_done(void *ctx, const cm__consul_result *res)
{
    cm__consul_watch *ws = ctx;
    ws->req = NULL;
    if (res->err == CM_ECANCELED) {
        return;
    }
    uint64_t now = cm_now_ms();
    cm_reg_service_list *cur = NULL;
    int rc = res->err;
    if (rc == 0 && !res->has_index) {
        rc = CM_EPROTO; /* not a Consul agent */
    }
    if (rc == 0) {
        rc = cm__consul_parse_health(ws->name, res->body, res->len, &cur);
    }
    if (rc < 0) {
        cm__consul_result r = *res;
        r.err = rc;
        query_failed(ws, &r);
    } else {
        if (ws->erroring) {
            ws->erroring = 0;
            cm_log(CM_LOG_INFO, "registry.consul", "watch %s: recovered", ws->name);
        }
        int changed = cm__consul_wstate_reply(&ws->st, 1, res->index, now - ws->started_ms);
        if (changed || ws->snap == NULL) {
            int stopped = cm__consul_diff(ws->snap, cur, emit_event, ws);
            if (stopped < 0) {
                cm_reg_service_list_free(cur); /* out of memory: diff again next time */
            } else {
                cm_reg_service_list_free(ws->snap);
                ws->snap = cur;
            }
            cur = NULL;
            if (stopped == 1 || ws->w == NULL) {
                return;
            }
        }
        cm_reg_service_list_free(cur);
    }
    uv_timer_start(&ws->timer, on_timer,
                   cm__consul_wstate_delay(&ws->st, ws->started_ms, now, next_rand(ws)), 0);
}

static void
ws_closed(uv_handle_t *h)
{
    cm__consul_watch *ws = h->data;
    cm__consul *c = ws->c;
    cm_reg_service_list_free(ws->snap);
    free(ws->name);
    free(ws);
    cm__curl_handle_gone(&c->http);
}

static void
ws_stop(cm__consul_watch *ws)
{
    cm__consul *c = ws->c;
    ws->w = NULL;
    if (ws->req != NULL) {
        cm__consul_cancel(c, ws->req);
        ws->req = NULL;
    }
    for (cm__consul_watch **pp = &c->watches; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == ws) {
            *pp = ws->next;
            break;
        }
    }
    uv_timer_stop(&ws->timer);
    uv_close((uv_handle_t *)&ws->timer, ws_closed);
}

int
cm__consul_watch_start(cm_registry *r, cm_watcher *w)
{
    cm__consul *c = cm__consul_of(r);
    if (w->name == NULL) {
        return CM_ENOTSUP; /* as go-micro's plugin: "Must specify a single service to watch" */
    }
    cm__consul_watch *ws = calloc(1, sizeof(*ws));
    if (ws == NULL || (ws->name = strdup(w->name)) == NULL) {
        free(ws);
        return CM_ENOMEM;
    }
    ws->c = c;
    ws->w = w;
    cm__consul_wstate_init(&ws->st);
    ws->rng = (uint32_t)(uv_hrtime() ^ (uintptr_t)ws) | 1u;
    uv_timer_init(c->http.uv, &ws->timer);
    ws->timer.data = ws;
    cm__curl_handle_opened(&c->http);
    ws->next = c->watches;
    c->watches = ws;
    *slot_of(w) = ws;
    int rc = start_query(ws);
    if (rc < 0) {
        *slot_of(w) = NULL;
        ws_stop(ws);
    }
    return rc;
}

void
cm__consul_watch_stop(cm_registry *r, cm_watcher *w)
{
    (void)r;
    cm__consul_watch *ws = *slot_of(w);
    if (ws != NULL) {
        *slot_of(w) = NULL;
        ws_stop(ws);
    }
}

void
cm__consul_watch_stop_all(cm__consul *c)
{
    while (c->watches != NULL) {
        cm__consul_watch *ws = c->watches;
        if (ws->w != NULL) {
            *slot_of(ws->w) = NULL;
        }
        ws_stop(ws);
    }
}
