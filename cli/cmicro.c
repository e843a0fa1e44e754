/* cmicro: the command-line tool. It is configured like a service (MICRO_REGISTRY,
 * MICRO_REGISTRY_ADDRESS, MICRO_CLIENT_REQUEST_TIMEOUT, ...) and talks to services by name:
 *
 *   cmicro services [-o json]                the names the registry knows, one per line
 *   cmicro describe NAME                     versions, nodes and endpoints, as JSON
 *   cmicro call NAME Endpoint.Method [JSON] [-m key=value]... [--timeout MS] [--address H:P]
 *                                            calls with the JSON codec and prints the reply; a
 *                                            go-micro error prints as JSON on stderr, exit 1
 *   cmicro health NAME [-o json]            asks every node for go-micro's Debug.Health and
 *                                            its /health/ready; a table (or JSON); exit 1
 *                                            unless every node is healthy
 *   cmicro api [--address HOST:PORT]         an HTTP gateway: POST /api/{service}/{Endpoint.Method}
 *                                            with a JSON body calls it by name (see api.c)
 *   cmicro new NAME                          scaffolds a service project in ./NAME (see new.c)
 *   cmicro publish TOPIC [JSON] [-m key=value]...
 *                                            publishes JSON on TOPIC with the JSON codec through
 *                                            the broker (MICRO_BROKER); exit 1 when it failed
 *   cmicro watch NAME [--count N] [--seconds S]
 *                                            registry events of NAME as JSON lines, until N
 *                                            events or S seconds (default: until interrupted)
 *
 * Every command takes --help. Exit status: 0 success, 1 the call or lookup failed, 2 usage. */
#include "cli.h"

#include <cJSON.h>
#include <cmicro/cmicro.h>
#include <curl/curl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* A registry request run on the service's loop, waited for on this thread. */
typedef struct lookup {
    cm_registry *reg;
    const char *name; /* NULL: list every service */
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
    int status;
    cm_reg_service_list *list;
    char why[320]; /* why a lookup by name found nothing, as the registry says */
} lookup;

static void
on_list(int status, const cm_reg_service_list *l, void *user)
{
    lookup *q = user;
    uv_mutex_lock(&q->mu);
    q->status = status;
    q->list = status == 0 ? cm_reg_service_list_dup(l) : NULL;
    const char *why = status == 0 && l->n == 0 && q->name ? cm_registry_why(q->reg, q->name) : NULL;
    snprintf(q->why, sizeof q->why, "%s", why ? why : "");
    if (status == 0 && q->list == NULL) {
        q->status = CM_ENOMEM;
    }
    q->done = 1;
    uv_cond_signal(&q->cv);
    uv_mutex_unlock(&q->mu);
}

static void
start_lookup(void *arg)
{
    lookup *q = arg;
    int rc = q->name ? cm_registry_get_service(q->reg, q->name, on_list, q)
                     : cm_registry_list_services(q->reg, on_list, q);
    if (rc < 0) {
        on_list(rc, NULL, q);
    }
}

/* The services named name (or all of them); NULL with *status on failure. why (may be NULL)
 * receives the registry's reason for an empty answer. */
static cm_reg_service_list *
run_lookup(cm_service *svc, const char *name, int *status, char *why, size_t whylen)
{
    lookup q;
    memset(&q, 0, sizeof q);
    q.reg = cm_service_registry(svc);
    q.name = name;
    uv_mutex_init(&q.mu);
    uv_cond_init(&q.cv);
    cm_loop *loop = cm_service_loop(svc);
    cm_loop_start(loop); /* CM_ESTATE when it already runs: fine */
    *status = cm_loop_post(loop, start_lookup, &q);
    if (*status == 0) {
        uv_mutex_lock(&q.mu);
        while (!q.done) {
            uv_cond_wait(&q.cv, &q.mu);
        }
        uv_mutex_unlock(&q.mu);
        *status = q.status;
    }
    uv_cond_destroy(&q.cv);
    uv_mutex_destroy(&q.mu);
    if (why != NULL) {
        snprintf(why, whylen, "%s", q.why);
    }
    return q.list;
}

/* One line on stderr for a lookup of what that found nothing: the registry's error with the
 * registry's name and addresses (l NULL), or "not found" and the registry's reason. */
static void
lookup_failed(cm_service *svc, const char *what, const cm_reg_service_list *l, int rc,
              const char *why)
{
    if (l != NULL) {
        fprintf(stderr, "cmicro: %s: not found%s%s%s\n", what, why[0] ? " (" : "", why,
                why[0] ? ")" : "");
        return;
    }
    const cm_registry *reg = cm_service_registry(svc);
    const char *addrs = cm_registry_addresses(reg);
    int has = addrs != NULL && addrs[0] != '\0';
    fprintf(stderr, "cmicro: %s: registry %s%s%s: %s\n", what, cm_registry_name(reg),
            has ? " at " : "", has ? addrs : "", cm_strerror(rc));
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int
cmd_services(cm_service *svc, int as_json)
{
    int rc;
    cm_reg_service_list *l = run_lookup(svc, NULL, &rc, NULL, 0);
    if (l == NULL) {
        lookup_failed(svc, "listing services", NULL, rc, "");
        return 1;
    }
    const char **names = calloc(l->n + 1, sizeof(*names));
    size_t n = 0;
    for (size_t i = 0; names != NULL && i < l->n; i++) {
        int seen = 0;
        for (size_t k = 0; k < n; k++) {
            seen |= strcmp(names[k], l->items[i]->name) == 0;
        }
        if (!seen) {
            names[n++] = l->items[i]->name;
        }
    }
    qsort(names, n, sizeof(*names), cmp_str);
    cJSON *arr = as_json ? cJSON_CreateArray() : NULL;
    for (size_t i = 0; i < n; i++) {
        if (arr != NULL) {
            cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]));
        } else {
            printf("%s\n", names[i]);
        }
    }
    if (arr != NULL) {
        char *text = cJSON_PrintUnformatted(arr);
        printf("%s\n", text ? text : "[]");
        free(text);
        cJSON_Delete(arr);
    }
    free(names);
    cm_reg_service_list_free(l);
    return 0;
}

static cJSON *
md_json(const cm_md *md)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < cm_md_count(md); i++) {
        const char *k, *v;
        cm_md_at(md, i, &k, &v);
        cJSON_AddStringToObject(o, k, v);
    }
    return o;
}

static cJSON *
value_json(const cm_value *v)
{
    if (v == NULL) {
        return cJSON_CreateNull();
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", v->name ? v->name : "");
    cJSON_AddStringToObject(o, "type", v->type ? v->type : "");
    cJSON *kids = cJSON_AddArrayToObject(o, "values");
    for (size_t i = 0; i < v->nvalues; i++) {
        cJSON_AddItemToArray(kids, value_json(&v->values[i]));
    }
    return o;
}

static cJSON *
service_json(const cm_reg_service *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddStringToObject(o, "version", s->version ? s->version : "");
    cJSON *eps = cJSON_AddArrayToObject(o, "endpoints");
    for (size_t i = 0; i < s->nendpoints; i++) {
        const cm_endpoint *e = &s->endpoints[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", e->name);
        cJSON_AddItemToObject(j, "request", value_json(e->request));
        cJSON_AddItemToObject(j, "response", value_json(e->response));
        cJSON_AddItemToObject(j, "metadata", md_json(e->metadata));
        cJSON_AddItemToArray(eps, j);
    }
    cJSON *nodes = cJSON_AddArrayToObject(o, "nodes");
    for (size_t i = 0; i < s->nnodes; i++) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "id", s->nodes[i].id);
        cJSON_AddStringToObject(j, "address", s->nodes[i].address);
        cJSON_AddItemToObject(j, "metadata", md_json(s->nodes[i].metadata));
        cJSON_AddItemToArray(nodes, j);
    }
    return o;
}

static int
cmd_describe(cm_service *svc, const char *name)
{
    int rc;
    char why[320];
    cm_reg_service_list *l = run_lookup(svc, name, &rc, why, sizeof why);
    if (l == NULL || l->n == 0) {
        char what[300];
        snprintf(what, sizeof what, "service %s", name);
        lookup_failed(svc, what, l, rc, why);
        cm_reg_service_list_free(l);
        return 1;
    }
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < l->n; i++) {
        cJSON_AddItemToArray(arr, service_json(l->items[i]));
    }
    char *text = cJSON_Print(arr);
    printf("%s\n", text ? text : "[]");
    free(text);
    cJSON_Delete(arr);
    cm_reg_service_list_free(l);
    return text ? 0 : 1;
}

/* Call options from the arguments after the JSON: -m key=value, --timeout MS, --address H:P. */
static int
call_opts(int argc, char **argv, cm_call_opts *o, cm_md *md)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "cmicro: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        if (strcmp(a, "-m") == 0 || strcmp(a, "--metadata") == 0) {
            char key[256];
            const char *eq = strchr(v, '=');
            if (eq == NULL || eq == v || (size_t)(eq - v) >= sizeof key) {
                fprintf(stderr, "cmicro: -m wants key=value, got %s\n", v);
                return -1;
            }
            snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
            if (cm_md_set(md, key, eq + 1) < 0) {
                fprintf(stderr, "cmicro: bad metadata %s\n", v);
                return -1;
            }
        } else if (strcmp(a, "--timeout") == 0) {
            o->timeout_ms = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--address") == 0) {
            o->address = v;
        } else {
            fprintf(stderr, "cmicro: unknown option %s\n", a);
            return -1;
        }
    }
    return 0;
}

/* 0 when json parses; otherwise one line on stderr saying where it stops. */
static int
check_json(const char *what, const char *json)
{
    cJSON *parsed = cJSON_Parse(json);
    if (parsed != NULL) {
        cJSON_Delete(parsed);
        return 0;
    }
    const char *at = cJSON_GetErrorPtr();
    fprintf(stderr, "cmicro: the %s is not JSON (at byte %td): %.60s%s\n", what,
            at != NULL && at >= json ? at - json : (ptrdiff_t)0, json,
            strlen(json) > 60 ? "..." : "");
    return -1;
}

static int
cmd_call(cm_service *svc, int argc, char **argv)
{
    const char *name = argv[0], *endpoint = argv[1];
    const char *json = argc > 2 && argv[2][0] != '-' ? argv[2] : "{}";
    int first_opt = argc > 2 && argv[2][0] != '-' ? 3 : 2;
    cm_md *md = cm_md_new();
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.content_type = CM_CT_JSON;
    o.md = md;
    if (md == NULL || call_opts(argc - first_opt, argv + first_opt, &o, md) < 0) {
        cm_md_free(md);
        return 2;
    }
    if (check_json("request", json) < 0) {
        cm_md_free(md);
        return 2;
    }
    /* The JSON travels as it is (a raw frame), and the reply comes back the same way. */
    ProtobufCBinaryData req = {strlen(json), (uint8_t *)(uintptr_t)json};
    ProtobufCBinaryData *rsp = NULL;
    cm_error *err = NULL;
    int rc = cm_client_call(cm_service_client(svc), name, endpoint, NULL, &req, NULL, (void **)&rsp,
                            &o, &err);
    cm_md_free(md);
    if (rc < 0) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", err && err->id ? err->id : "");
        cJSON_AddNumberToObject(e, "code", err ? err->code : 0);
        cJSON_AddStringToObject(e, "detail", err && err->detail ? err->detail : cm_strerror(rc));
        cJSON_AddStringToObject(e, "status", err && err->status ? err->status : "");
        char *text = cJSON_PrintUnformatted(e);
        fprintf(stderr, "%s\n", text ? text : cm_strerror(rc));
        free(text);
        cJSON_Delete(e);
        cm_error_free(err);
        return 1;
    }
    /* One line: go-micro's JSON codec ends its reply with a newline of its own. */
    size_t n = rsp->len;
    while (n > 0 && (rsp->data[n - 1] == '\n' || rsp->data[n - 1] == '\r')) {
        n--;
    }
    printf("%.*s\n", (int)n, (const char *)rsp->data);
    cm_message_free(NULL, rsp);
    return 0;
}

/* cmicro publish TOPIC [JSON] [-m key=value]...: the JSON as the body, as go-micro's client
 * publishes with its JSON codec. */
static int
cmd_publish(cm_service *svc, int argc, char **argv)
{
    const char *topic = argv[0];
    const char *json = argc > 1 && argv[1][0] != '-' ? argv[1] : "{}";
    int first_opt = argc > 1 && argv[1][0] != '-' ? 2 : 1;
    cm_md *md = cm_md_new();
    cm_call_opts unused;
    cm_call_opts_init(&unused);
    if (md == NULL || call_opts(argc - first_opt, argv + first_opt, &unused, md) < 0 ||
        unused.timeout_ms != 0 || unused.address != NULL) {
        if (unused.timeout_ms != 0 || unused.address != NULL) {
            fprintf(stderr, "cmicro: publish takes -m key=value only\n");
        }
        cm_md_free(md);
        return 2;
    }
    if (check_json("message", json) < 0) {
        cm_md_free(md);
        return 2;
    }
    ProtobufCBinaryData body = {strlen(json), (uint8_t *)(uintptr_t)json};
    cm_publish_opts o = {.content_type = CM_CT_JSON, .md = md};
    cm_error *err = NULL;
    int rc = cm_publish(cm_service_client(svc), topic, NULL, &body, &o, &err);
    cm_md_free(md);
    if (rc < 0) {
        if (err != NULL && err->detail != NULL) {
            fprintf(stderr, "cmicro: %s\n", err->detail); /* "publish T on broker B: ..." */
        } else {
            fprintf(stderr, "cmicro: publish %s: %s\n", topic, cm_strerror(rc));
        }
        cm_error_free(err);
        return 1;
    }
    return 0;
}

static int usage(void);

/* ---- health ---- */

/* go-micro's Debug.Health of the node at address: "ok" (or what it says) in out; 0 or -1. */
static int
debug_health(cm_service *svc, const char *name, const char *address, char *out, size_t len)
{
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.content_type = CM_CT_JSON;
    o.address = address;
    o.max_attempts = 1;
    o.timeout_ms = 3000;
    ProtobufCBinaryData req = {2, (uint8_t *)(uintptr_t) "{}"}, *rsp = NULL;
    cm_error *err = NULL;
    int rc = cm_client_call(cm_service_client(svc), name, "Debug.Health", NULL, &req, NULL,
                            (void **)&rsp, &o, &err);
    if (rc < 0) {
        snprintf(out, len, "%s", err && err->detail ? err->detail : cm_strerror(rc));
        cm_error_free(err);
        return -1;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)rsp->data, rsp->len);
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(j, "status"));
    snprintf(out, len, "%s", st ? st : "?");
    cJSON_Delete(j);
    cm_message_free(NULL, rsp);
    return strcmp(out, "ok") == 0 ? 0 : -1;
}

typedef struct body {
    char p[4096];
    size_t n;
} body;

static size_t
on_body(char *p, size_t size, size_t n, void *user)
{
    body *b = user;
    size_t k = size * n, room = sizeof(b->p) - 1 - b->n;
    memcpy(b->p + b->n, p, k < room ? k : room);
    b->n += k < room ? k : room;
    b->p[b->n] = '\0';
    return k;
}

/* GET /health/ready of the node: its status ("up", "down") in out, or why none; 0 or -1. */
static int
ready(const char *address, char *out, size_t len)
{
    char url[300];
    snprintf(url, sizeof url, "http://%s/health/ready", address);
    body b = {.n = 0};
    CURL *e = curl_easy_init();
    if (e == NULL) {
        snprintf(out, len, "out of memory");
        return -1;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 3000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    CURLcode cc = curl_easy_perform(e);
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(e);
    cJSON *j = cc == CURLE_OK ? cJSON_Parse(b.p) : NULL;
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(j, "status"));
    if (st != NULL) {
        snprintf(out, len, "%s", st);
    } else if (cc != CURLE_OK) {
        snprintf(out, len, "%s", curl_easy_strerror(cc));
    } else {
        snprintf(out, len, "no health endpoint (HTTP %ld)", code);
    }
    int up = st != NULL && strcmp(st, "up") == 0 && code == 200;
    cJSON_Delete(j);
    return up ? 0 : -1;
}

/* The rows of health as a table, each column as wide as its widest cell. */
static void
print_health_table(const cJSON *rows)
{
    static const char *const keys[] = {"node", "address", "version", "debug_health", "ready"};
    static const char *const heads[] = {"NODE", "ADDRESS", "VERSION", "DEBUG", "READY"};
    int w[4];
    for (size_t c = 0; c < 4; c++) {
        w[c] = (int)strlen(heads[c]);
        const cJSON *r;
        cJSON_ArrayForEach(r, rows)
        {
            const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(r, keys[c]));
            w[c] = v != NULL && (int)strlen(v) > w[c] ? (int)strlen(v) : w[c];
        }
    }
    printf("%-*s  %-*s  %-*s  %-*s  %s\n", w[0], heads[0], w[1], heads[1], w[2], heads[2], w[3],
           heads[3], heads[4]);
    const cJSON *r;
    cJSON_ArrayForEach(r, rows)
    {
        const char *v[5];
        for (size_t c = 0; c < 5; c++) {
            v[c] = cJSON_GetStringValue(cJSON_GetObjectItem(r, keys[c]));
            v[c] = v[c] ? v[c] : "";
        }
        printf("%-*s  %-*s  %-*s  %-*s  %s\n", w[0], v[0], w[1], v[1], w[2], v[2], w[3], v[3],
               v[4]);
    }
}

static int
cmd_health(cm_service *svc, int argc, char **argv)
{
    const char *name = argv[0];
    int as_json = argc >= 3 && strcmp(argv[1], "-o") == 0 && strcmp(argv[2], "json") == 0;
    int rc;
    char why[320];
    cm_reg_service_list *l = run_lookup(svc, name, &rc, why, sizeof why);
    if (l == NULL || l->n == 0) {
        char what[300];
        snprintf(what, sizeof what, "service %s", name);
        lookup_failed(svc, what, l, rc, why);
        cm_reg_service_list_free(l);
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cJSON *arr = cJSON_CreateArray();
    int bad = 0;
    for (size_t i = 0; i < l->n; i++) {
        const cm_reg_service *s = l->items[i];
        for (size_t k = 0; k < s->nnodes; k++) {
            char dh[200], rd[200];
            int ok_d = debug_health(svc, name, s->nodes[k].address, dh, sizeof dh) == 0;
            int ok_r = ready(s->nodes[k].address, rd, sizeof rd) == 0;
            bad |= !ok_d || !ok_r;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "node", s->nodes[k].id);
            cJSON_AddStringToObject(o, "address", s->nodes[k].address);
            cJSON_AddStringToObject(o, "version", s->version);
            cJSON_AddStringToObject(o, "debug_health", dh);
            cJSON_AddStringToObject(o, "ready", rd);
            cJSON_AddItemToArray(arr, o);
        }
    }
    if (as_json) {
        char *text = cJSON_PrintUnformatted(arr);
        printf("%s\n", text ? text : "[]");
        free(text);
    } else {
        print_health_table(arr);
    }
    cJSON_Delete(arr);
    cm_reg_service_list_free(l);
    curl_global_cleanup();
    return bad ? 1 : 0;
}

/* ---- watch ---- */

typedef struct watch {
    cm_registry *reg;
    const char *name;
    cm_watcher *w;
    long left; /* events still to print; < 0: no limit */
    int rc;
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
} watch;

static void
watch_finish(watch *w, int rc)
{
    uv_mutex_lock(&w->mu);
    w->rc = rc;
    w->done = 1;
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu);
}

static void
on_event(cm_watch_action action, const cm_reg_service *svc, void *user)
{
    watch *w = user;
    if (w->left == 0) {
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "action", cm_watch_action_name(action));
    cJSON_AddItemToObject(o, "service", service_json(svc));
    char *text = cJSON_PrintUnformatted(o);
    printf("%s\n", text ? text : "{}");
    fflush(stdout);
    free(text);
    cJSON_Delete(o);
    if (w->left > 0 && --w->left == 0) {
        watch_finish(w, 0);
    }
}

static void
start_watch(void *arg)
{
    watch *w = arg;
    int rc = cm_registry_watch(w->reg, w->name, on_event, w, &w->w);
    if (rc < 0) {
        fprintf(stderr, "cmicro: watch %s: %s\n", w->name, cm_strerror(rc));
        watch_finish(w, 1);
    }
}

static void
stop_watch(void *arg)
{
    watch *w = arg;
    if (w->w != NULL) {
        cm_watcher_stop(w->w);
    }
    watch_finish(w, w->rc);
}

static int
cmd_watch(cm_service *svc, int argc, char **argv)
{
    watch w;
    memset(&w, 0, sizeof w);
    w.reg = cm_service_registry(svc);
    w.name = argv[0];
    w.left = -1;
    uint64_t seconds = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--count") == 0) {
            w.left = atol(argv[i + 1]);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = strtoull(argv[i + 1], NULL, 10);
        } else {
            return usage();
        }
    }
    uv_mutex_init(&w.mu);
    uv_cond_init(&w.cv);
    cm_loop *loop = cm_service_loop(svc);
    cm_loop_start(loop);
    cm_loop_post(loop, start_watch, &w);
    /* Meanwhile, a registry that cannot answer is one line and exit 1, not a silent watch. */
    int status;
    char why[320];
    cm_reg_service_list *now = run_lookup(svc, argv[0], &status, why, sizeof why);
    uv_mutex_lock(&w.mu);
    if (now == NULL) {
        char what[300];
        snprintf(what, sizeof what, "service %s", argv[0]);
        lookup_failed(svc, what, NULL, status, why);
        w.done = 1;
        w.rc = 1;
    }
    cm_reg_service_list_free(now);
    uint64_t deadline = uv_hrtime() + seconds * 1000000000u;
    while (!w.done) {
        uint64_t now = uv_hrtime();
        if (seconds == 0) {
            uv_cond_wait(&w.cv, &w.mu);
        } else if (now >= deadline) {
            break;
        } else {
            uv_cond_timedwait(&w.cv, &w.mu, deadline - now);
        }
    }
    w.done = 0;
    uv_mutex_unlock(&w.mu);
    /* The watcher is stopped on the loop; wait until it is. */
    cm_loop_post(loop, stop_watch, &w);
    uv_mutex_lock(&w.mu);
    while (!w.done) {
        uv_cond_wait(&w.cv, &w.mu);
    }
    uv_mutex_unlock(&w.mu);
    uv_cond_destroy(&w.cv);
    uv_mutex_destroy(&w.mu);
    return w.rc;
}

/* The commands: name, arguments needed after the name, usage, and what it does. */
static const struct command {
    const char *name;
    int nargs;
    const char *usage;
    const char *help;
} commands[] = {
    {"services", 0, "cmicro services [-o json]", "The names of the services in the registry."},
    {"describe", 1, "cmicro describe NAME",
     "Versions, nodes (addresses, metadata) and endpoints (request and response shapes) of\n"
     "NAME, as JSON."},
    {"call", 2,
     "cmicro call NAME Endpoint.Method [JSON] [-m key=value]... [--timeout MS] "
     "[--address HOST:PORT]",
     "Calls Endpoint.Method of NAME with the JSON codec and prints the JSON reply. A go-micro\n"
     "error prints as JSON (id, code, detail, status) on stderr and the exit status is 1."},
    {"health", 1, "cmicro health NAME [-o json]",
     "Asks every node of NAME for go-micro's Debug.Health and its /health/ready, and prints a\n"
     "table (or JSON). Exit status 1 unless every node is healthy."},
    {"api", 0, "cmicro api [--address HOST:PORT]",
     "An HTTP gateway (default :8080): POST /api/{service}/{Endpoint.Method} with a JSON body\n"
     "calls the service by name; go-micro errors answer with their code as HTTP status.\n"
     "GET /health answers for the gateway, GET /metrics with its requests by HTTP status."},
    {"new", 1, "cmicro new NAME",
     "Scaffolds a service project in ./NAME: a .proto, a server, a client, a meson.build on the\n"
     "installed cmicro, and a README."},
    {"publish", 1, "cmicro publish TOPIC [JSON] [-m key=value]...",
     "Publishes JSON (default {}) on TOPIC with the JSON codec, through the broker of\n"
     "MICRO_BROKER (http: to the subscribers the registry knows; nats: MICRO_BROKER_ADDRESS).\n"
     "Exit status 1 when a subscriber or the broker could not take it."},
    {"watch", 1, "cmicro watch NAME [--count N] [--seconds S]",
     "Prints the registry's events for NAME as JSON lines, until N events or S seconds."},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static int
usage(void)
{
    fprintf(stderr, "usage:");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        fprintf(stderr, "%s%s\n", i ? "       " : " ", commands[i].usage);
    }
    fprintf(stderr, "       cmicro COMMAND --help\n"
                    "Configured by the environment as services are: MICRO_REGISTRY, "
                    "MICRO_REGISTRY_ADDRESS, MICRO_CLIENT_REQUEST_TIMEOUT, ...\n");
    return 2;
}

static int
wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return 1;
        }
    }
    return 0;
}

static int
run(cm_service *svc, const char *cmd, int argc, char **argv)
{
    if (strcmp(cmd, "services") == 0) {
        return cmd_services(svc, argc >= 2 && strcmp(argv[0], "-o") == 0 &&
                                     strcmp(argv[1], "json") == 0);
    } else if (strcmp(cmd, "describe") == 0) {
        return cmd_describe(svc, argv[0]);
    } else if (strcmp(cmd, "call") == 0) {
        return cmd_call(svc, argc, argv);
    } else if (strcmp(cmd, "api") == 0) {
        return cmd_api(svc, argc, argv);
    } else if (strcmp(cmd, "health") == 0) {
        return cmd_health(svc, argc, argv);
    } else if (strcmp(cmd, "publish") == 0) {
        return cmd_publish(svc, argc, argv);
    }
    return cmd_watch(svc, argc, argv);
}

int
main(int argc, char **argv)
{
    const struct command *c = NULL;
    for (size_t i = 0; argc >= 2 && i < NCOMMANDS; i++) {
        c = strcmp(argv[1], commands[i].name) == 0 ? &commands[i] : c;
    }
    if (c == NULL) {
        if (argc >= 2 && wants_help(argc, argv)) {
            usage();
            return 0;
        }
        return usage();
    }
    if (wants_help(argc, argv)) {
        printf("usage: %s\n\n%s\n", c->usage, c->help);
        return 0;
    }
    if (argc - 2 < c->nargs) {
        fprintf(stderr, "usage: %s\n", c->usage);
        return 2;
    }
    if (strcmp(c->name, "new") == 0) {
        return cmd_new(argc - 2, argv + 2); /* no registry needed */
    }
    /* The tool says what failed in its own one line: the library's warnings (a watch retrying,
     * say) only with MICRO_LOG_LEVEL. */
    if (getenv("MICRO_LOG_LEVEL") == NULL) {
        cm_log_set_level(CM_LOG_ERROR);
    }
    /* A person waits for one answer: give mDNS a longer window than a service's hot lookups. */
    const char *reg = getenv("MICRO_REGISTRY");
    if (reg == NULL || reg[0] == '\0' || strcmp(reg, "mdns") == 0) {
        setenv("MICRO_REGISTRY_TIMEOUT", "1s", 0);
    }
    cm_service_opts so;
    cm_service_opts_init(&so);
    so.name = "cmicro.cli";
    so.log_config = 0;
    so.metrics = -1; /* a tool: no /metrics of its own */
    cm_service *svc;
    if (cm_service_new(&so, &svc) < 0) {
        fprintf(stderr, "cmicro: %s\n", cm_service_why());
        return 1;
    }
    int rc = run(svc, c->name, argc - 2, argv + 2);
    cm_service_free(svc);
    return rc;
}
