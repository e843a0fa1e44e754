/* The service's plain HTTP answers on its own listener: GET /health, /health/live and
 * /health/ready in go-micro's health package shape (status "up" or "down", the checks with their
 * durations in nanoseconds, and info), answered 200 or 503; GET /metrics (observe.c) and GET
 * /status (status.c). Every other GET answers 404.
 *
 * Ready means: the server serves (started, not stopping), the registry holds this node (a lookup
 * of the service by name, at most one in flight and reused for 1 s, so that probes cannot flood
 * the registry), and every user check passes. User checks run on the server's worker pool. */
#include "framework_int.h"

#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHECKS 32
#define LOOKUP_FRESH_MS 1000
#define WHY_LEN 160

typedef struct hcheck {
    char *name;
    cm_health_check_fn fn;
    void *user;
} hcheck;

typedef struct hresult {
    int ok;
    char why[WHY_LEN];
    uint64_t ns;
} hresult;

struct cm__health {
    cm_service *svc;
    hcheck checks[MAX_CHECKS];
    size_t nchecks;
    int closing;
    /* Is this node in the registry? The last lookup's answer, and the probes waiting for one. */
    int looked;
    uint64_t looked_ms;
    int found;
    char why[WHY_LEN];
    int lookup_inflight;
    cm_ctx *waiting;
    cm_metrics *metrics; /* GET /metrics; NULL: 404 */
};

/* One probe being answered: in the request's memory. */
typedef struct probe {
    cm__health *h;
    hresult *results;
    size_t n;
} probe;

int
cm__health_new(cm_service *svc, cm__health **out)
{
    cm__health *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return CM_ENOMEM;
    }
    h->svc = svc;
    *out = h;
    return 0;
}

void
cm__health_set_metrics(cm__health *h, cm_metrics *reg)
{
    h->metrics = reg;
}

/* GET /metrics: the registry in Prometheus's text format. */
static void
reply_metrics(cm_ctx *c, cm_metrics *reg)
{
    cm_buf b = {0};
    if (cm_metrics_render(reg, &b) < 0) {
        cm__ctx_reply_http(c, 500, "text/plain; charset=utf-8", "out of memory\n", 14);
    } else {
        cm__ctx_reply_http(c, 200, CM_METRICS_CONTENT_TYPE, (const char *)b.data, b.len);
    }
    cm_buf_free(&b);
}

void
cm__health_close(cm__health *h)
{
    if (h != NULL) {
        h->closing = 1;
        h->waiting = NULL;
    }
}

void
cm__health_free(cm__health *h)
{
    if (h == NULL) {
        return;
    }
    for (size_t i = 0; i < h->nchecks; i++) {
        free(h->checks[i].name);
    }
    free(h);
}

int
cm__health_add(cm__health *h, const char *name, cm_health_check_fn fn, void *user)
{
    if (name == NULL || name[0] == '\0' || fn == NULL) {
        return CM_EINVAL;
    }
    if (h->nchecks == MAX_CHECKS) {
        return CM_ENOMEM;
    }
    hcheck *c = &h->checks[h->nchecks];
    c->name = strdup(name);
    if (c->name == NULL) {
        return CM_ENOMEM;
    }
    c->fn = fn;
    c->user = user;
    h->nchecks++;
    return 0;
}

/* ---- the answer ---- */

static void
add_check(cJSON *arr, const char *name, int ok, const char *why, uint64_t ns)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "status", ok ? "up" : "down");
    if (!ok && why != NULL && why[0] != '\0') {
        cJSON_AddStringToObject(o, "error", why);
    }
    cJSON_AddNumberToObject(o, "duration", (double)ns);
    cJSON_AddItemToArray(arr, o);
}

static void
add_info(cJSON *root, cm_service *svc)
{
    cJSON *info = cJSON_AddObjectToObject(root, "info");
    cJSON_AddStringToObject(info, "name", cm_service_name(svc));
    cJSON_AddStringToObject(info, "version", cm_service_version(svc));
    cJSON_AddStringToObject(info, "id", cm_service_node_id(svc));
    cJSON_AddStringToObject(info, "address", cm_service_advertised(svc));
    cJSON_AddStringToObject(info, "registry", cm_registry_name(cm_service_registry(svc)));
    cJSON_AddStringToObject(info, "transport", cm__server_transport_name(cm_service_server(svc)));
    cJSON_AddStringToObject(info, "cmicro_version", CMICRO_VERSION);
}

static void
reply_json(cm_ctx *c, int status, cJSON *root)
{
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    if (text == NULL) {
        cm__ctx_reply_http(c, 500, "text/plain; charset=utf-8", "out of memory\n", 14);
    } else {
        size_t n = strlen(text);
        text[n] = '\n'; /* as Go's json.Encoder ends it */
        cm__ctx_reply_http(c, status, "application/json", text, n + 1);
    }
    free(text);
    cJSON_Delete(root);
}

static void
reply_probe(cm_ctx *c)
{
    probe *p = c->get_state;
    cm__health *h = p->h;
    cm_service *svc = h->svc;
    cm_server *srv = cm_service_server(svc);
    int serving = cm_server_address(srv) != NULL && !cm__server_stopping(srv);
    int registered = cm__service_registered(svc) && h->found;
    int up = serving && registered;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "checks");
    add_check(arr, "server", serving, serving ? NULL : "not serving (stopping)", 0);
    add_check(arr, "registry", registered,
              h->found ? "not registered yet (see the service's log)" : h->why, 0);
    for (size_t i = 0; i < p->n; i++) {
        add_check(arr, h->checks[i].name, p->results[i].ok, p->results[i].why, p->results[i].ns);
        up = up && p->results[i].ok;
    }
    cJSON_AddStringToObject(root, "status", up ? "up" : "down");
    add_info(root, svc);
    reply_json(c, up ? 200 : 503, root);
}

/* ---- the registry lookup ---- */

static void
flush_waiting(cm__health *h)
{
    cm_ctx *c = h->waiting;
    h->waiting = NULL;
    while (c != NULL) {
        cm_ctx *next = c->wait_next;
        c->wait_next = NULL;
        reply_probe(c);
        c = next;
    }
}

static void
on_lookup(int status, const cm_reg_service_list *list, void *user)
{
    cm__health *h = user;
    h->lookup_inflight = 0;
    if (h->closing) {
        return;
    }
    const char *id = cm_service_node_id(h->svc);
    h->found = 0;
    for (size_t i = 0; status == 0 && i < list->n && !h->found; i++) {
        for (size_t j = 0; j < list->items[i]->nnodes; j++) {
            if (strcmp(list->items[i]->nodes[j].id, id) == 0) {
                h->found = 1;
                break;
            }
        }
    }
    if (status < 0) {
        snprintf(h->why, sizeof h->why, "registry %s lookup failed: %s",
                 cm_registry_name(cm_service_registry(h->svc)), cm_strerror(status));
    } else if (!h->found) {
        snprintf(h->why, sizeof h->why, "node %s is not in registry %s", id,
                 cm_registry_name(cm_service_registry(h->svc)));
    }
    h->looked = 1;
    h->looked_ms = cm_now_ms();
    flush_waiting(h);
}

/* Answers c once the registry's view is at most LOOKUP_FRESH_MS old. */
static void
after_checks(cm_ctx *c)
{
    probe *p = c->get_state;
    cm__health *h = p->h;
    if (h->looked && cm_now_ms() - h->looked_ms < LOOKUP_FRESH_MS) {
        reply_probe(c);
        return;
    }
    c->wait_next = h->waiting;
    h->waiting = c;
    if (h->lookup_inflight) {
        return;
    }
    h->lookup_inflight = 1;
    int rc =
        cm_registry_get_service(cm_service_registry(h->svc), cm_service_name(h->svc), on_lookup, h);
    if (rc < 0) {
        on_lookup(rc, NULL, h);
    }
}

static void
checks_work(cm__job *j)
{
    cm_ctx *c = (cm_ctx *)j;
    probe *p = c->get_state;
    for (size_t i = 0; i < p->n; i++) {
        hcheck *k = &p->h->checks[i];
        hresult *r = &p->results[i];
        uint64_t t0 = uv_hrtime();
        r->why[0] = '\0';
        r->ok = k->fn(k->user, r->why, sizeof r->why) == 0;
        r->ns = uv_hrtime() - t0;
    }
}

static void
checks_done(cm__job *j)
{
    after_checks((cm_ctx *)j);
}

static void
start_probe(cm_ctx *c, cm__health *h)
{
    probe *p = cm_ctx_alloc(c, sizeof(*p));
    hresult *r = cm_ctx_alloc_array(c, h->nchecks ? h->nchecks : 1, sizeof(*r));
    if (p == NULL || r == NULL) {
        cm__ctx_reply_http(c, 500, "text/plain; charset=utf-8", "out of memory\n", 14);
        return;
    }
    p->h = h;
    p->results = r;
    p->n = h->nchecks;
    c->get_state = p;
    if (p->n == 0) {
        after_checks(c);
        return;
    }
    c->job.work = checks_work;
    c->job.done = checks_done;
    cm__server_submit(c->srv, &c->job);
}

/* Does path (with any query) name route? */
static int
is_path(const char *path, const char *route)
{
    size_t n = strlen(route);
    return strncmp(path, route, n) == 0 && (path[n] == '\0' || path[n] == '?');
}

void
cm__health_on_get(cm_ctx *c, const char *path, void *arg)
{
    cm__health *h = arg;
    if (is_path(path, "/health/live")) {
        cm__ctx_reply_http(c, 200, "application/json", "{\"status\":\"up\"}\n", 16);
    } else if (is_path(path, "/health") || is_path(path, "/health/ready")) {
        start_probe(c, h);
    } else if (h->metrics != NULL && is_path(path, "/metrics")) {
        reply_metrics(c, h->metrics);
    } else if (is_path(path, "/status")) {
        cm__status_get(c, h->svc, path, h->looked && !h->found ? h->why : NULL);
    } else {
        cm__ctx_reply_http(c, 404, "text/plain; charset=utf-8", "404 page not found\n", 19);
    }
}
