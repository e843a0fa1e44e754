/* cmicro: the etcd registry backend's internals, shared by etcd.c (the ops, registrations,
 * reads), etcd_http.c (libcurl multi on the registry's libuv loop: etcd v3's JSON gateway,
 * endpoint failover, authentication tokens), etcd_config.c (endpoints, credentials, TLS),
 * etcd_codec.c (keys, values, base64) and etcd_watch.c (streaming watchers). Not installed. */
#ifndef CMICRO_ETCD_INT_H
#define CMICRO_ETCD_INT_H

#include "registry_int.h"

#include "../curl_loop.h"

/* go-micro's etcd plugin keeps every node under this prefix: /micro/registry/<svc>/<node>. */
#define CM__ETCD_PREFIX "/micro/registry/"

/* What a request came back with. */
typedef struct cm__etcd_result {
    int err;          /* 0: HTTP 200 and no "error" member; else CM_EREGISTRY (an etcd error),
                         CM_ETIMEDOUT, CM_ECANCELED, CM_ETOOBIG, -errno / libuv code */
    long status;      /* HTTP status, 0 when no response arrived */
    int grpc_code;    /* the gateway's "code" on an error reply, else 0 */
    const char *body; /* NUL-terminated, "" when none (streams: ""); borrowed */
    size_t len;
    size_t endpoint;    /* the endpoint that answered (or the last one tried) */
    const char *detail; /* etcd's or libcurl's words, "" when none */
} cm__etcd_result;

typedef void (*cm__etcd_done_fn)(void *ctx, const cm__etcd_result *res);
/* One message of a streaming reply (one JSON line, NUL-terminated, borrowed). Returns 0 to go
 * on, non-zero to end the stream (its done then runs with CM_ECANCELED). */
typedef int (*cm__etcd_line_fn)(void *ctx, const char *line, size_t len);

typedef struct cm__etcd_req cm__etcd_req;
typedef struct cm__etcd_node cm__etcd_node;
typedef struct cm__etcd_watch cm__etcd_watch;

/* The registry's private state (in cm_registry.priv). */
typedef struct cm__etcd {
    cm_registry *reg;
    cm__curl http; /* libcurl on the loop */

    char **endpoints; /* "http://127.0.0.1:2379", no trailing '/' */
    size_t nendpoints;
    size_t cur; /* the endpoint requests go to first */

    char *username, *password; /* NULL: no authentication */
    char *token;               /* the current auth token, NULL before the first one */
    int auth_busy;             /* an authenticate request is in flight */
    int auth_failed;           /* the last authenticate was refused (logged once) */
    cm__etcd_req *auth_wait;   /* requests waiting for a token */
    struct curl_slist *hdrs;   /* Content-Type, and Authorization when there is a token */

    char *cacert, *cert, *key;
    int insecure;
    uint64_t timeout_ms;

    cm__etcd_req *flushing; /* the stream whose lines are being delivered */
    cm__etcd_req *reqs;     /* in flight */
    cm__etcd_req *canceled;
    cm__etcd_node *nodes; /* registrations this registry made */
    cm__etcd_watch *watches;
} cm__etcd;

static inline cm__etcd *
cm__etcd_of(cm_registry *r)
{
    return (cm__etcd *)(void *)r->priv;
}

/* ---- configuration (etcd_config.c) ---- */

/* Fills c's endpoints, credentials, TLS settings and timeout from r's options and the
 * environment. 0, CM_EINVAL (with a log line) or CM_ENOMEM; call cm__etcd_config_free either
 * way. */
int cm__etcd_config_parse(cm__etcd *c, const cm_registry *r);
void cm__etcd_config_free(cm__etcd *c);

/* ---- HTTP (etcd_http.c) ---- */

/* One request to start with cm__etcd_send: a POST of a JSON body to the gateway. */
typedef struct cm__etcd_call {
    const char *path;         /* "/v3/kv/range"; copied */
    const char *body;         /* JSON; copied */
    uint64_t timeout_ms;      /* 0: the registry's timeout; streams: the connect timeout */
    int quiet;                /* no debug line when it fails */
    cm__etcd_line_fn on_line; /* set: a streaming reply (watch), no total timeout */
    cm__etcd_done_fn done;
    void *ctx;
} cm__etcd_call;

int cm__etcd_http_init(cm__etcd *c, cm_registry *r);
/* Cancels what is in flight (callbacks with CM_ECANCELED on a later turn), closes every handle,
 * releases everything and calls cm_registry_closed. */
void cm__etcd_http_close(cm__etcd *c);
/* Starts a request on the current endpoint, failing over along the list when one cannot be
 * reached, authenticating first when credentials are set. done runs exactly once on a later
 * loop turn. < 0 (CM_ENOMEM, CM_ESTATE when closing): done never runs. *out (may be NULL)
 * names it for cm__etcd_cancel. */
int cm__etcd_send(cm__etcd *c, const cm__etcd_call *call, cm__etcd_req **out);
/* Stops a request; its done never runs. */
void cm__etcd_cancel(cm__etcd *c, cm__etcd_req *q);
/* One uv handle of the registry (a watch's timer) finished closing. */
/* The log line of a failed request: "POST /v3/kv/put: http://...: etcdserver: ...". */
void cm__etcd_log_failure(const cm__etcd *c, cm_log_level level, const char *path,
                          const cm__etcd_result *res);

/* ---- keys, values, JSON (etcd_codec.c) ---- */

/* Standard base64 of n bytes, appended to b (no NUL). 0 or CM_ENOMEM. */
int cm__etcd_b64_encode(cm_buf *b, const void *data, size_t n);
/* Decodes standard base64 (padded) into a new NUL-terminated string; returns owned, *n the
 * length. NULL on bad input or out of memory. */
char *cm__etcd_b64_decode(const char *s, size_t *n);
/* go-micro's servicePath and nodePath: "/micro/registry/<svc>" and ".../<svc>/<node>", with '/'
 * in the names turned into '-' and the result cleaned as Go's path.Join does. Returns owned. */
char *cm__etcd_service_path(const char *svc);
char *cm__etcd_node_path(const char *svc, const char *node);
/* The etcd range end of a prefix: the prefix with its last byte incremented. Returns owned. */
char *cm__etcd_prefix_end(const char *prefix);
/* The value go-micro's plugin stores for a node: json.Marshal of the service with that one
 * node, '<', '>', '&', U+2028 and U+2029 escaped as Go escapes them. Returns owned. */
char *cm__etcd_encode_node(const cm_reg_service *svc, size_t node);
/* The service of one stored value (base64 as the gateway gives it), or NULL when the value is
 * not a service (as go-micro's decode skips it). */
cm_reg_service *cm__etcd_decode_value(const char *b64);
/* The JSON body of a range of keys [key, end) (end NULL: the one key). */
char *cm__etcd_range_body(const char *key, const char *end, int serializable);
/* Parses a 64-bit integer the gateway writes as a JSON string (or number); 0 when absent. */
int64_t cm__etcd_int(const cJSON *o, const char *name);
/* Turns a range reply into go-micro services grouped by name and version (one per version of
 * each name, nodes appended in key order). 0, CM_EPROTO or CM_ENOMEM; *out owned. */
int cm__etcd_group(const cJSON *kvs, cm_reg_service_list **out);

/* ---- watchers (etcd_watch.c) ---- */

int cm__etcd_watch_start(cm_registry *r, cm_watcher *w);
void cm__etcd_watch_stop(cm_registry *r, cm_watcher *w);
void cm__etcd_watch_stop_all(cm__etcd *c);
/* Backoff bounds of a watch that lost its stream, in ms. */
extern uint64_t cm__etcd_watch_base_ms, cm__etcd_watch_cap_ms;

#endif
