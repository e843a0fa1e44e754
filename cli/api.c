/* cmicro api: an HTTP gateway. POST /api/{service}/{Endpoint.Method} with a JSON body calls the
 * service by name with the JSON codec and answers its JSON; a go-micro error answers with its
 * code as the HTTP status (500 when the code is not one) and the error as the JSON body. Request
 * headers pass through as metadata, except hop-by-hop ones. GET /health answers for the gateway
 * itself, GET /metrics with its own metrics (every request answered, by HTTP status) in
 * Prometheus's text format. It runs until SIGINT or SIGTERM. */
#include "cli.h"

#include <cJSON.h>
#include <cmicro/metrics.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

typedef struct gateway {
    cm_service *svc;
    cm_transport *t;
    cm_listener *l;
    uv_signal_t sigint, sigterm;
    cm_metrics *reg;
    cm_metric_family *requests; /* micro_api_requests_total {code} */
} gateway;

/* One request waiting for its call. */
typedef struct pending {
    gateway *g;
    cm_tconn *conn;
    int close_after;
} pending;

/* Answers with status and a body of type ctype, and counts the request by its status. */
static void
reply_as(gateway *g, cm_tconn *conn, int status, const char *ctype, const char *body, size_t len,
         int close_after)
{
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    cm_hdr h[2] = {{":status", code}, {"Content-Type", ctype}};
    cm_msg m = {status == 200 ? h + 1 : h, status == 200 ? 1u : 2u, (const uint8_t *)body, len};
    cm_tconn_reply(conn, &m, close_after);
    const char *lv[1] = {code};
    cm_counter_inc(cm_metrics_series(g->requests, lv));
}

static void
reply(gateway *g, cm_tconn *conn, int status, const char *body, size_t len, int close_after)
{
    reply_as(g, conn, status, "application/json", body, len, close_after);
}

/* A go-micro error of the gateway's own, as JSON. */
static void
reply_error(gateway *g, cm_tconn *conn, int32_t code, const char *detail, int close_after)
{
    cm_error *e = cm_error_new("cmicro.api", code, "%s", detail);
    char *json = e ? cm_error_to_json(e) : NULL;
    const char *body = json ? json : "{\"detail\":\"out of memory\"}";
    reply(g, conn, code, body, strlen(body), close_after);
    free(json);
    cm_error_free(e);
}

static void
on_called(int status, void *rsp, const cm_error *err, void *user)
{
    pending *p = user;
    if (status == 0) {
        const ProtobufCBinaryData *b = rsp;
        reply(p->g, p->conn, 200, (const char *)b->data, b->len, p->close_after);
        cm_message_free(NULL, rsp);
    } else {
        char *json = err ? cm_error_to_json(err) : NULL;
        int code = err && err->code >= 400 && err->code <= 599 ? err->code : 500;
        if (json != NULL) {
            reply(p->g, p->conn, code, json, strlen(json), p->close_after);
        } else {
            reply_error(p->g, p->conn, 500, cm_strerror(status), p->close_after);
        }
        free(json);
    }
    free(p);
}

/* Request headers that belong to the connection, not to the call. */
static int
hop_by_hop(const char *k)
{
    static const char *const names[] = {
        "Connection", "Keep-Alive",     "Proxy-Authenticate", "Proxy-Authorization",
        "TE",         "Trailer",        "Transfer-Encoding",  "Upgrade",
        "Host",       "Content-Length", "Content-Type",       "Accept",
        "Expect"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(k, names[i]) == 0) {
            return 1;
        }
    }
    return k[0] == ':';
}

/* Splits "/api/{service}/{Endpoint.Method}" into service and endpoint. 0 or -1. */
static int
split_path(const char *path, char *svc, size_t svclen, char *ep, size_t eplen)
{
    if (strncmp(path, "/api/", 5) != 0) {
        return -1;
    }
    const char *s = path + 5, *slash = strchr(s, '/');
    if (slash == NULL || slash == s || (size_t)(slash - s) >= svclen) {
        return -1;
    }
    const char *e = slash + 1;
    size_t n = strcspn(e, "?/");
    if (n == 0 || n >= eplen || e[n] == '/' || memchr(e, '.', n) == NULL) {
        return -1;
    }
    snprintf(svc, svclen, "%.*s", (int)(slash - s), s);
    snprintf(ep, eplen, "%.*s", (int)n, e);
    return 0;
}

static void
serve_api(gateway *g, cm_tconn *conn, const cm_msg *req, const char *path, int close_after)
{
    char svc[256], ep[256];
    if (split_path(path, svc, sizeof svc, ep, sizeof ep) < 0) {
        reply_error(g, conn, 404, "not found: use POST /api/{service}/{Endpoint.Method}",
                    close_after);
        return;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)req->body, req->body_len);
    if (j == NULL && req->body_len > 0) {
        reply_error(g, conn, 400, "the request body is not JSON", close_after);
        return;
    }
    cJSON_Delete(j);
    cm_md *md = cm_md_new();
    pending *p = calloc(1, sizeof(*p));
    if (md == NULL || p == NULL) {
        cm_md_free(md);
        free(p);
        reply_error(g, conn, 500, "out of memory", close_after);
        return;
    }
    for (size_t i = 0; i < req->nhdrs; i++) {
        if (!hop_by_hop(req->hdrs[i].key)) {
            cm_md_set(md, req->hdrs[i].key, req->hdrs[i].val); /* a refused value is left out */
        }
    }
    *p = (pending){g, conn, close_after};
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.content_type = CM_CT_JSON;
    o.md = md;
    ProtobufCBinaryData body = {
        req->body_len > 0 ? req->body_len : 2,
        (uint8_t *)(uintptr_t)(req->body_len > 0 ? (const char *)req->body : "{}")};
    int rc = cm_client_call_async(cm_service_client(g->svc), svc, ep, NULL, &body, NULL, &o,
                                  on_called, p);
    cm_md_free(md);
    if (rc < 0) {
        free(p);
        reply_error(g, conn, 500, cm_strerror(rc), close_after);
    }
}

static int
is_metrics(const char *path)
{
    return strncmp(path, "/metrics", 8) == 0 && (path[8] == '\0' || path[8] == '?');
}

static void
serve_metrics(gateway *g, cm_tconn *conn, int close_after)
{
    cm_buf b = {0};
    if (cm_metrics_render(g->reg, &b) < 0) {
        reply_error(g, conn, 500, "out of memory", close_after);
    } else {
        reply_as(g, conn, 200, CM_METRICS_CONTENT_TYPE, (const char *)b.data, b.len, close_after);
    }
    cm_buf_free(&b);
}

static void
on_request(cm_tconn *conn, int status, const cm_msg *req, void *user)
{
    gateway *g = user;
    if (status < 0) {
        reply_error(g, conn, status == CM_ETOOBIG ? 413 : 431, cm_strerror(status), 1);
        return;
    }
    const char *method = cm_msg_header(req, ":method");
    const char *path = cm_msg_header(req, ":path");
    const char *conn_hdr = cm_msg_header(req, "Connection");
    int close_after = conn_hdr != NULL && strcasecmp(conn_hdr, "close") == 0;
    method = method ? method : "POST";
    path = path ? path : "/";
    if (strcmp(method, "GET") == 0 && strcmp(path, "/health") == 0) {
        const char *up = "{\"status\":\"up\"}\n";
        reply(g, conn, 200, up, strlen(up), close_after);
    } else if (strcmp(method, "GET") == 0 && is_metrics(path)) {
        serve_metrics(g, conn, close_after);
    } else if (strcmp(method, "POST") == 0) {
        serve_api(g, conn, req, path, close_after);
    } else {
        reply_error(g, conn, 405, "method not allowed: use POST /api/{service}/{Endpoint.Method}",
                    close_after);
    }
}

static void
on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    gateway *g = h->data;
    uv_close((uv_handle_t *)&g->sigint, NULL);
    uv_close((uv_handle_t *)&g->sigterm, NULL);
    cm_listener_close(g->l, NULL, NULL);
    cm_transport_close(g->t, NULL, NULL);
    cm_loop_stop(cm_service_loop(g->svc));
}

/* The gateway's registry and its family of requests answered. 0 or CM_ENOMEM. */
static int
new_metrics(gateway *g)
{
    static const char *const labels[] = {"code"};
    cm_metric_opts o;
    cm_metric_opts_init(&o);
    o.name = "micro_api_requests_total";
    o.help = "HTTP requests the gateway answered, by HTTP status code.";
    o.labels = labels;
    o.nlabels = 1;
    int rc = cm_metrics_new(&g->reg);
    return rc < 0 ? rc : cm_metrics_family(g->reg, CM_METRIC_COUNTER, &o, &g->requests);
}

int
cmd_api(cm_service *svc, int argc, char **argv)
{
    const char *addr = ":8080";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
            addr = argv[++i];
        } else {
            fprintf(stderr, "usage: cmicro api [--address HOST:PORT]\n");
            return 2;
        }
    }
    gateway g = {.svc = svc};
    if (new_metrics(&g) < 0) {
        fprintf(stderr, "cmicro api: out of memory\n");
        cm_metrics_free(g.reg);
        return 1;
    }
    cm_loop *loop = cm_service_loop(svc);
    cm_transport_opts to;
    cm_transport_opts_init(&to);
    int rc = cm_transport_new(loop, CM_TRANSPORT_DEFAULT, &to, &g.t);
    if (rc == 0) {
        rc = cm_transport_listen(g.t, addr, on_request, &g, &g.l);
    }
    if (rc < 0) {
        fprintf(stderr, "cmicro api: cannot listen on %s: %s\n", addr, cm_strerror(rc));
        if (g.t != NULL) {
            cm_transport_close(g.t, NULL, NULL);
        }
        cm_metrics_free(g.reg);
        return 1;
    }
    char bound[128];
    cm_listener_addr(g.l, bound, sizeof bound);
    printf("listening on %s\n", bound);
    fflush(stdout);
    uv_loop_t *uv = cm_loop_uv(loop);
    uv_signal_init(uv, &g.sigint);
    uv_signal_init(uv, &g.sigterm);
    g.sigint.data = g.sigterm.data = &g;
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    cm_loop_run(loop);
    cm_metrics_free(g.reg);
    return 0;
}
