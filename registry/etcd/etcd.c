/* The etcd registry backend ("etcd"), interoperable with go-micro's etcd plugin for v4: a node
 * is the key /micro/registry/<service>/<node id> holding json.Marshal of the service with that
 * node, attached to a lease of the registration TTL. Registering again with the same value
 * keeps the lease alive (/v3/lease/keepalive, as the plugin's KeepAliveOnce); a changed value or
 * a lease etcd no longer knows gets a new lease and a put. Reads are serializable ranges, as
 * the plugin's. Keys and values in etcd_codec.c, HTTP and failover in etcd_http.c, settings in
 * etcd_config.c, watchers in etcd_watch.c. */
#include "etcd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A registration this registry made, by key. */
struct cm__etcd_node {
    cm__etcd_node *next;
    char *key;
    int64_t lease; /* 0: none */
    uint64_t hash; /* of the value and TTL last put */
};

static cm__etcd_node *
node_find(cm__etcd *c, const char *key)
{
    for (cm__etcd_node *n = c->nodes; n != NULL; n = n->next) {
        if (strcmp(n->key, key) == 0) {
            return n;
        }
    }
    return NULL;
}

static void
node_remove(cm__etcd *c, const char *key)
{
    for (cm__etcd_node **pp = &c->nodes; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            cm__etcd_node *n = *pp;
            *pp = n->next;
            free(n->key);
            free(n);
            return;
        }
    }
}

/* ---- register: keepalive, or grant and put ---- */

typedef struct reg_op {
    cm__etcd *c;
    cm_registry_cb cb;
    void *user;
    char *key;
    char *value;
    uint64_t hash;
    int64_t ttl_s; /* 0: no lease */
    int64_t lease;
} reg_op;

static void
op_finish(reg_op *op, int status)
{
    if (op->cb != NULL) {
        op->cb(status, op->user);
    }
    free(op->key);
    free(op->value);
    free(op);
}

static int
send_json(cm__etcd *c, const char *path, cJSON *body, cm__etcd_done_fn done, void *ctx)
{
    char *txt = body != NULL ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (txt == NULL) {
        return CM_ENOMEM;
    }
    cm__etcd_call call = {.path = path, .body = txt, .done = done, .ctx = ctx};
    int rc = cm__etcd_send(c, &call, NULL);
    free(txt);
    return rc;
}

static cJSON *
id_body(int64_t id)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)id);
    cJSON *o = cJSON_CreateObject();
    if (o != NULL && cJSON_AddStringToObject(o, "ID", buf) == NULL) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static void put_done(void *ctx, const cm__etcd_result *res);
static void grant_done(void *ctx, const cm__etcd_result *res);

static int
start_put(reg_op *op)
{
    cm_buf k = {0}, v = {0};
    int rc = cm__etcd_b64_encode(&k, op->key, strlen(op->key));
    rc |= cm_buf_append(&k, "", 1);
    rc |= cm__etcd_b64_encode(&v, op->value, strlen(op->value));
    rc |= cm_buf_append(&v, "", 1);
    cJSON *o = rc == 0 ? cJSON_CreateObject() : NULL;
    if (o != NULL && (cJSON_AddStringToObject(o, "key", (char *)k.data) == NULL ||
                      cJSON_AddStringToObject(o, "value", (char *)v.data) == NULL)) {
        cJSON_Delete(o);
        o = NULL;
    }
    cm_buf_free(&k);
    cm_buf_free(&v);
    if (o != NULL && op->lease != 0) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%lld", (long long)op->lease);
        if (cJSON_AddStringToObject(o, "lease", buf) == NULL) {
            cJSON_Delete(o);
            o = NULL;
        }
    }
    return o != NULL ? send_json(op->c, "/v3/kv/put", o, put_done, op) : CM_ENOMEM;
}

static int
start_full(reg_op *op)
{
    if (op->ttl_s == 0) {
        op->lease = 0;
        return start_put(op);
    }
    cJSON *o = cJSON_CreateObject();
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)op->ttl_s);
    if (o != NULL && cJSON_AddStringToObject(o, "TTL", buf) == NULL) {
        cJSON_Delete(o);
        o = NULL;
    }
    return o != NULL ? send_json(op->c, "/v3/lease/grant", o, grant_done, op) : CM_ENOMEM;
}

static void
grant_done(void *ctx, const cm__etcd_result *res)
{
    reg_op *op = ctx;
    if (res->err < 0) {
        op_finish(op, res->err);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(res->body, res->len);
    op->lease = cm__etcd_int(j, "ID");
    cJSON_Delete(j);
    if (op->lease == 0) {
        cm_log(CM_LOG_DEBUG, "registry.etcd", "lease grant: no ID in the reply");
        op_finish(op, CM_EPROTO);
        return;
    }
    int rc = start_put(op);
    if (rc < 0) {
        op_finish(op, rc == CM_ESTATE ? CM_ECANCELED : rc);
    }
}

static void
put_done(void *ctx, const cm__etcd_result *res)
{
    reg_op *op = ctx;
    if (res->err == 0) {
        cm__etcd_node *n = node_find(op->c, op->key);
        if (n == NULL && (n = calloc(1, sizeof(*n))) != NULL) {
            if ((n->key = strdup(op->key)) == NULL) {
                free(n);
                n = NULL;
            } else {
                n->next = op->c->nodes;
                op->c->nodes = n;
            }
        }
        if (n != NULL) {
            n->lease = op->lease;
            n->hash = op->hash;
        }
    }
    op_finish(op, res->err);
}

static void
keepalive_done(void *ctx, const cm__etcd_result *res)
{
    reg_op *op = ctx;
    if (res->err < 0) {
        op_finish(op, res->err);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(res->body, res->len);
    int64_t ttl = cm__etcd_int(cJSON_GetObjectItemCaseSensitive(j, "result"), "TTL");
    cJSON_Delete(j);
    if (ttl > 0) {
        op_finish(op, 0);
        return;
    }
    /* The lease expired (we were away longer than the TTL) or was revoked: register again. */
    cm_log(CM_LOG_WARN, "registry.etcd", "lease of %s not found; registering again", op->key);
    int rc = start_full(op);
    if (rc < 0) {
        op_finish(op, rc == CM_ESTATE ? CM_ECANCELED : rc);
    }
}

static int
etcd_register(cm_registry *r, const cm_reg_service *svc, uint64_t ttl_ms, cm_registry_cb cb,
              void *user)
{
    cm__etcd *c = cm__etcd_of(r);
    if (svc->nnodes == 0 || svc->nodes[0].id == NULL || svc->nodes[0].id[0] == '\0') {
        return CM_EINVAL;
    }
    reg_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return CM_ENOMEM;
    }
    op->c = c;
    op->cb = cb;
    op->user = user;
    op->key = cm__etcd_node_path(svc->name, svc->nodes[0].id);
    op->value = cm__etcd_encode_node(svc, 0);
    /* go-micro: int64(TTL.Seconds()); a TTL under a second still gets the shortest lease. */
    op->ttl_s = ttl_ms == 0 ? 0 : (int64_t)(ttl_ms < 1000 ? 1 : ttl_ms / 1000);
    if (op->key == NULL || op->value == NULL) {
        op->cb = NULL;
        op_finish(op, 0);
        return CM_ENOMEM;
    }
    op->hash = cm__fnv1a(op->value, strlen(op->value)) ^ (uint64_t)op->ttl_s;
    const cm__etcd_node *n = node_find(c, op->key);
    int rc;
    if (n != NULL && n->lease != 0 && n->hash == op->hash) {
        op->lease = n->lease;
        rc = send_json(c, "/v3/lease/keepalive", id_body(n->lease), keepalive_done, op);
    } else {
        rc = start_full(op);
    }
    if (rc < 0) {
        op->cb = NULL;
        op_finish(op, 0);
    }
    return rc;
}

/* ---- deregister ---- */

typedef struct simple_op {
    cm_registry_cb cb;
    cm_registry_list_cb list_cb;
    void *user;
    char *name;
} simple_op;

static void
dereg_done(void *ctx, const cm__etcd_result *res)
{
    simple_op *op = ctx;
    if (op->cb != NULL) {
        op->cb(res->err, op->user);
    }
    free(op);
}

static int
etcd_deregister(cm_registry *r, const cm_reg_service *svc, cm_registry_cb cb, void *user)
{
    cm__etcd *c = cm__etcd_of(r);
    if (svc->nnodes == 0 || svc->nodes[0].id == NULL || svc->nodes[0].id[0] == '\0') {
        return CM_EINVAL;
    }
    char *key = cm__etcd_node_path(svc->name, svc->nodes[0].id);
    char *body = key != NULL ? cm__etcd_range_body(key, NULL, 0) : NULL;
    simple_op *op = body != NULL ? calloc(1, sizeof(*op)) : NULL;
    int rc = CM_ENOMEM;
    if (op != NULL) {
        op->cb = cb;
        op->user = user;
        cm__etcd_call call = {
            .path = "/v3/kv/deleterange", .body = body, .done = dereg_done, .ctx = op};
        rc = cm__etcd_send(c, &call, NULL);
        if (rc < 0) {
            free(op);
        } else {
            node_remove(c, key);
        }
    }
    free(key);
    free(body);
    return rc;
}

/* ---- get_service, list_services ---- */

static void
read_done(void *ctx, const cm__etcd_result *res)
{
    simple_op *op = ctx;
    cm_reg_service_list *l = NULL;
    int status = res->err;
    if (status == 0) {
        cJSON *j = cJSON_ParseWithLength(res->body, res->len);
        status =
            j != NULL ? cm__etcd_group(cJSON_GetObjectItemCaseSensitive(j, "kvs"), &l) : CM_EPROTO;
        cJSON_Delete(j);
        if (status == CM_EPROTO) {
            cm_log(CM_LOG_DEBUG, "registry.etcd", "range: malformed reply");
        }
    }
    op->list_cb(status, status == 0 ? l : NULL, op->user);
    cm_reg_service_list_free(l);
    free(op->name);
    free(op);
}

static int
start_read(cm__etcd *c, const char *prefix, cm_registry_list_cb cb, void *user)
{
    char *end = cm__etcd_prefix_end(prefix);
    char *body = end != NULL ? cm__etcd_range_body(prefix, end, 1) : NULL;
    simple_op *op = body != NULL ? calloc(1, sizeof(*op)) : NULL;
    int rc = CM_ENOMEM;
    if (op != NULL) {
        op->list_cb = cb;
        op->user = user;
        cm__etcd_call call = {.path = "/v3/kv/range", .body = body, .done = read_done, .ctx = op};
        rc = cm__etcd_send(c, &call, NULL);
        if (rc < 0) {
            free(op);
        }
    }
    free(end);
    free(body);
    return rc;
}

static int
etcd_get_service(cm_registry *r, const char *name, cm_registry_list_cb cb, void *user)
{
    if (name[0] == '\0') {
        return CM_EINVAL;
    }
    char *path = cm__etcd_service_path(name);
    size_t n = path != NULL ? strlen(path) : 0;
    char *prefix = path != NULL ? malloc(n + 2) : NULL;
    if (prefix == NULL) {
        free(path);
        return CM_ENOMEM;
    }
    memcpy(prefix, path, n);
    memcpy(prefix + n, "/", 2);
    free(path);
    int rc = start_read(cm__etcd_of(r), prefix, cb, user);
    free(prefix);
    return rc;
}

static int
etcd_list_services(cm_registry *r, cm_registry_list_cb cb, void *user)
{
    return start_read(cm__etcd_of(r), CM__ETCD_PREFIX, cb, user);
}

/* ---- life cycle ---- */

static int
etcd_init(cm_registry *r)
{
    return cm__etcd_http_init(cm__etcd_of(r), r);
}

static void
etcd_close(cm_registry *r)
{
    cm__etcd *c = cm__etcd_of(r);
    while (c->nodes != NULL) {
        node_remove(c, c->nodes->key);
    }
    cm__etcd_http_close(c);
}

const cm_registry_ops cm__registry_etcd = {
    .abi_version = CM_ABI_VERSION,
    .name = "etcd",
    .option_keys = (const char *const[]){"username", "password", "ca_file", "cert_file", "key_file",
                                         "insecure_skip_verify", NULL},
    .priv_size = sizeof(cm__etcd),
    .watcher_priv_size = sizeof(cm__etcd_watch *),
    .init = etcd_init,
    .close = etcd_close,
    .reg = etcd_register,
    .dereg = etcd_deregister,
    .get_service = etcd_get_service,
    .list_services = etcd_list_services,
    .watch = cm__etcd_watch_start,
    .watch_stop = cm__etcd_watch_stop,
};
