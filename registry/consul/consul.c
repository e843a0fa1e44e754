/* The Consul registry backend ("consul"), wire-compatible with go-micro's Consul plugin
 * (spec gomicro-wire.md section 2): register with hex(zlib) t-/e-/v- tags and a TTL check,
 * refresh with a TTL pass, register again when the agent lost us, discover through
 * /v1/health/service. The encodings are in consul_codec.c, the address list and environment in
 * consul_config.c, HTTP and failover in consul_http.c, watchers in consul_watch.c. */
#include "consul_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A registration this registry made, by node id. */
struct cm__consul_node {
    cm__consul_node *next;
    char *id;
    char *body; /* the register body, to register again on another agent */
    size_t body_len;
    uint64_t hash;
    int ttl_pass; /* a TTL check: passed after registering and on every refresh */
    size_t agent; /* the agent that holds the registration */
    int registered;
    unsigned busy; /* full registrations in flight */
};

/* ---- registrations ---- */

static cm__consul_node *
node_find(cm__consul *c, const char *id)
{
    for (cm__consul_node *n = c->nodes; n != NULL; n = n->next) {
        if (strcmp(n->id, id) == 0) {
            return n;
        }
    }
    return NULL;
}

static void
node_free(cm__consul_node *n)
{
    free(n->id);
    free(n->body);
    free(n);
}

static void
node_remove(cm__consul *c, const char *id)
{
    for (cm__consul_node **pp = &c->nodes; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            cm__consul_node *n = *pp;
            *pp = n->next;
            node_free(n);
            return;
        }
    }
}

/* One register call: a refresh (TTL pass or a look-up), a full register, then a TTL pass. */
typedef struct reg_op {
    cm__consul *c;
    cm_registry_cb cb; /* NULL for registrations made again after a failover */
    void *user;
    char *id;
    char *body;
    size_t body_len;
    uint64_t hash;
    int ttl_pass;
    int counted; /* holds a busy count on its record */
    char *path;  /* of the request in flight */
} reg_op;

static void
op_finish(reg_op *op, int status)
{
    if (op->counted) {
        cm__consul_node *n = node_find(op->c, op->id);
        if (n != NULL && n->busy > 0) {
            n->busy--;
        }
        op->counted = 0;
    }
    if (op->cb != NULL) {
        op->cb(status, op->user);
    }
    free(op->id);
    free(op->body);
    free(op->path);
    free(op);
}

/* Puts "<prefix><escaped id><suffix>" in op->path. */
static int
set_path(reg_op *op, const char *prefix, const char *suffix)
{
    cm_buf b = {0};
    int rc = cm__consul_buf_str(&b, prefix);
    rc |= cm__consul_escape(&b, op->id);
    rc |= cm__consul_buf_str(&b, suffix);
    rc |= cm_buf_append(&b, "", 1);
    if (rc != 0) {
        cm_buf_free(&b);
        return CM_ENOMEM;
    }
    free(op->path);
    op->path = (char *)b.data;
    return 0;
}

static void pass_done(void *ctx, const cm__consul_result *res);
static void full_done(void *ctx, const cm__consul_result *res);
static void refresh_done(void *ctx, const cm__consul_result *res);

static int
send_op(reg_op *op, const char *method, long agent, int quiet, const char *body, size_t blen,
        cm__consul_done_fn done)
{
    cm__consul_call call = {.method = method,
                            .path = op->path,
                            .body = body,
                            .body_len = blen,
                            .agent = agent,
                            .quiet = quiet,
                            .done = done,
                            .ctx = op};
    return cm__consul_send(op->c, &call, NULL);
}

static int
start_pass(reg_op *op, size_t agent, int quiet, cm__consul_done_fn done)
{
    int rc = set_path(op, "/v1/agent/check/pass/service:", "?note=");
    return rc < 0 ? rc : send_op(op, "PUT", (long)agent, quiet, NULL, 0, done);
}

static int
start_full(reg_op *op)
{
    cm__consul *c = op->c;
    cm__consul_node *n = node_find(c, op->id);
    if (n == NULL) {
        n = calloc(1, sizeof(*n));
        if (n == NULL || (n->id = strdup(op->id)) == NULL) {
            free(n);
            return CM_ENOMEM;
        }
        n->next = c->nodes;
        c->nodes = n;
    }
    char *path = strdup("/v1/agent/service/register");
    if (path == NULL) {
        return CM_ENOMEM;
    }
    free(op->path);
    op->path = path;
    int rc = send_op(op, "PUT", -1, 0, op->body, op->body_len, full_done);
    if (rc == 0 && !op->counted) {
        n->busy++;
        op->counted = 1;
    }
    return rc;
}

static void
full_done(void *ctx, const cm__consul_result *res)
{
    reg_op *op = ctx;
    cm__consul_node *n = node_find(op->c, op->id);
    if (res->err < 0) {
        if (n != NULL) {
            n->registered = 0;
        }
        op_finish(op, res->err);
        return;
    }
    if (n != NULL) {
        char *body = malloc(op->body_len + 1);
        if (body != NULL) {
            memcpy(body, op->body, op->body_len + 1);
            free(n->body);
            n->body = body;
            n->body_len = op->body_len;
            n->hash = op->hash;
        } else {
            n->hash = 0;
        }
        n->ttl_pass = op->ttl_pass;
        n->agent = res->agent;
        n->registered = 1;
    }
    if (!op->ttl_pass) {
        op_finish(op, 0);
        return;
    }
    /* Consul creates the check critical: pass it at once, on the agent that has it. */
    int rc = start_pass(op, res->agent, 0, pass_done);
    if (rc < 0) {
        op_finish(op, rc == CM_ESTATE ? CM_ECANCELED : rc);
    }
}

static void
pass_done(void *ctx, const cm__consul_result *res)
{
    op_finish(ctx, res->err);
}

/* Whether a failed refresh means the agent no longer has our registration. */
static int
lost_us(const cm__consul_result *res)
{
    if (res->status == 404 || res->status == 500) {
        return 1;
    }
    /* Never reached the agent: register again, failing over to another one. */
    return res->status == 0 && res->err != CM_ETIMEDOUT && res->err != CM_ECANCELED &&
           res->err != CM_ENOMEM;
}

static void
refresh_done(void *ctx, const cm__consul_result *res)
{
    reg_op *op = ctx;
    if (res->err == 0 || res->err == CM_ECANCELED) {
        op_finish(op, res->err);
        return;
    }
    const char *method = op->ttl_pass ? "PUT" : "GET";
    cm__consul_log_failure(op->c, CM_LOG_WARN, method, op->path, res);
    if (!lost_us(res)) {
        op_finish(op, res->err);
        return;
    }
    cm_log(CM_LOG_WARN, "registry.consul", "registering %s again", op->id);
    int rc = start_full(op);
    if (rc < 0) {
        op_finish(op, rc == CM_ESTATE ? CM_ECANCELED : rc);
    }
}

static int
start_refresh(reg_op *op, const cm__consul_node *n)
{
    if (op->ttl_pass) {
        return start_pass(op, n->agent, 1, refresh_done);
    }
    /* No TTL to pass: ask the agent holding it whether it still has the service. */
    int rc = set_path(op, "/v1/agent/service/", "");
    return rc < 0 ? rc : send_op(op, "GET", (long)n->agent, 1, NULL, 0, refresh_done);
}

static reg_op *
op_new(cm__consul *c, const char *id, char *body, cm_registry_cb cb, void *user)
{
    reg_op *op = calloc(1, sizeof(*op));
    if (op == NULL || (op->id = strdup(id)) == NULL) {
        free(op);
        return NULL;
    }
    op->c = c;
    op->cb = cb;
    op->user = user;
    op->body = body;
    op->body_len = strlen(body);
    op->hash = cm__fnv1a(body, op->body_len);
    op->hash += op->hash == 0; /* 0 stands for "none" */
    return op;
}

static int
consul_register(cm_registry *r, const cm_reg_service *svc, uint64_t ttl_ms, cm_registry_cb cb,
                void *user)
{
    cm__consul *c = cm__consul_of(r);
    uint64_t tcp_ms = c->tcp_check_ms;
    char *body = NULL;
    int rc = cm__consul_register_body(svc, ttl_ms, tcp_ms, &body);
    if (rc < 0) {
        return rc;
    }
    reg_op *op = op_new(c, svc->nodes[0].id, body, cb, user);
    if (op == NULL) {
        free(body);
        return CM_ENOMEM;
    }
    /* go-micro's TCP check gets no TTL pass (its plugin's pass fails there, spec 2.4). */
    op->ttl_pass = tcp_ms == 0 && ttl_ms > 0;
    const cm__consul_node *n = node_find(c, op->id);
    if (n != NULL && n->registered && n->hash == op->hash) {
        rc = start_refresh(op, n);
    } else {
        rc = start_full(op);
    }
    if (rc < 0) {
        op->cb = NULL;
        op_finish(op, rc);
    }
    return rc;
}

void
cm__consul_agent_changed(cm__consul *c)
{
    for (cm__consul_node *n = c->nodes; n != NULL; n = n->next) {
        if (!n->registered || n->agent == c->cur || n->busy > 0 || n->body == NULL) {
            continue;
        }
        char *body = strdup(n->body);
        reg_op *op = body != NULL ? op_new(c, n->id, body, NULL, NULL) : NULL;
        if (op == NULL) {
            free(body);
            return;
        }
        op->ttl_pass = n->ttl_pass;
        cm_log(CM_LOG_INFO, "registry.consul", "registering %s on %s", n->id,
               c->agents[c->cur].base);
        if (start_full(op) < 0) {
            op_finish(op, 0);
            return;
        }
    }
}

/* ---- deregister ---- */

typedef struct simple_op {
    cm__consul *c;
    cm_registry_cb cb;
    cm_registry_list_cb list_cb;
    void *user;
    char *name;
    char *path;
} simple_op;

static void
dereg_done(void *ctx, const cm__consul_result *res)
{
    simple_op *op = ctx;
    int status = res->err;
    if (res->status == 404) {
        status = 0; /* already gone (agents before 1.10 answered 200) */
    } else if (status < 0 && status != CM_ECANCELED) {
        cm__consul_log_failure(op->c, CM_LOG_DEBUG, "PUT", op->path, res);
    }
    if (op->cb != NULL) {
        op->cb(status, op->user);
    }
    free(op->path);
    free(op);
}

static int
consul_deregister(cm_registry *r, const cm_reg_service *svc, cm_registry_cb cb, void *user)
{
    cm__consul *c = cm__consul_of(r);
    if (svc->nnodes == 0 || svc->nodes[0].id == NULL || svc->nodes[0].id[0] == '\0') {
        return CM_EINVAL;
    }
    const char *id = svc->nodes[0].id;
    simple_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return CM_ENOMEM;
    }
    op->c = c;
    op->cb = cb;
    op->user = user;
    cm_buf b = {0};
    int rc = cm__consul_buf_str(&b, "/v1/agent/service/deregister/");
    rc |= cm__consul_escape(&b, id);
    rc |= cm_buf_append(&b, "", 1);
    if (rc != 0) {
        cm_buf_free(&b);
        free(op);
        return CM_ENOMEM;
    }
    op->path = (char *)b.data;
    /* It goes to the agent that holds the registration. */
    const cm__consul_node *n = node_find(c, id);
    long agent = n != NULL && n->registered ? (long)n->agent : -1;
    cm__consul_call call = {.method = "PUT",
                            .path = op->path,
                            .agent = agent,
                            .quiet = 1,
                            .done = dereg_done,
                            .ctx = op};
    rc = cm__consul_send(c, &call, NULL);
    if (rc < 0) {
        free(op->path);
        free(op);
        return rc;
    }
    node_remove(c, id);
    return 0;
}

/* ---- get_service, list_services ---- */

static void
list_reply(simple_op *op, int status, cm_reg_service_list *l)
{
    op->list_cb(status, status == 0 ? l : NULL, op->user);
    cm_reg_service_list_free(l);
    free(op->name);
    free(op);
}

static void
get_done(void *ctx, const cm__consul_result *res)
{
    simple_op *op = ctx;
    cm_reg_service_list *l = NULL;
    int status = res->err;
    if (status == 0) {
        status = cm__consul_parse_health(op->name, res->body, res->len, &l);
        if (status == CM_EPROTO) {
            cm_log(CM_LOG_DEBUG, "registry.consul", "GET /v1/health/service/%s: malformed reply",
                   op->name);
        }
    }
    list_reply(op, status, l);
}

static void
list_done(void *ctx, const cm__consul_result *res)
{
    simple_op *op = ctx;
    cm_reg_service_list *l = NULL;
    int status = res->err;
    if (status == 0) {
        status = cm__consul_parse_catalog(res->body, res->len, &l);
        if (status == CM_EPROTO) {
            cm_log(CM_LOG_DEBUG, "registry.consul", "GET /v1/catalog/services: malformed reply");
        }
    }
    list_reply(op, status, l);
}

static int
start_read(cm__consul *c, const char *prefix, const char *name, cm_registry_list_cb cb, void *user,
           cm__consul_done_fn done)
{
    simple_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return CM_ENOMEM;
    }
    op->c = c;
    op->list_cb = cb;
    op->user = user;
    cm_buf b = {0};
    int rc = cm__consul_buf_str(&b, prefix);
    if (name != NULL) {
        rc |= cm__consul_escape(&b, name);
        op->name = strdup(name);
        rc |= op->name == NULL;
    }
    rc |= cm__consul_buf_str(&b, c->read_query);
    rc |= cm_buf_append(&b, "", 1);
    if (rc == 0) {
        cm__consul_call call = {
            .method = "GET", .path = (const char *)b.data, .agent = -1, .done = done, .ctx = op};
        rc = cm__consul_send(c, &call, NULL);
    } else {
        rc = CM_ENOMEM;
    }
    cm_buf_free(&b);
    if (rc < 0) {
        free(op->name);
        free(op);
    }
    return rc;
}

static int
consul_get_service(cm_registry *r, const char *name, cm_registry_list_cb cb, void *user)
{
    if (name[0] == '\0') {
        return CM_EINVAL;
    }
    return start_read(cm__consul_of(r), "/v1/health/service/", name, cb, user, get_done);
}

static int
consul_list_services(cm_registry *r, cm_registry_list_cb cb, void *user)
{
    return start_read(cm__consul_of(r), "/v1/catalog/services", NULL, cb, user, list_done);
}

/* ---- life cycle ---- */

static int
consul_init(cm_registry *r)
{
    return cm__consul_http_init(cm__consul_of(r), r);
}

static void
consul_close(cm_registry *r)
{
    cm__consul *c = cm__consul_of(r);
    while (c->nodes != NULL) {
        cm__consul_node *n = c->nodes;
        c->nodes = n->next;
        node_free(n);
    }
    cm__consul_http_close(c);
}

const cm_registry_ops cm__registry_consul = {
    .abi_version = CM_ABI_VERSION,
    .name = "consul",
    .option_keys =
        (const char *const[]){"token", "datacenter", "consistent", "tcp_check_interval_ms", NULL},
    .priv_size = sizeof(cm__consul),
    .watcher_priv_size = sizeof(cm__consul_watch *),
    .init = consul_init,
    .close = consul_close,
    .reg = consul_register,
    .dereg = consul_deregister,
    .get_service = consul_get_service,
    .list_services = consul_list_services,
    .watch = cm__consul_watch_start,
    .watch_stop = cm__consul_watch_stop,
};
