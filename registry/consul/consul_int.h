/* cmicro: the Consul registry backend's internals, shared by consul.c (the ops), consul_http.c
 * (libcurl multi on the registry's libuv loop, agent addresses, failover) and consul_watch.c
 * (blocking-query watchers). Not installed. */
#ifndef CMICRO_CONSUL_INT_H
#define CMICRO_CONSUL_INT_H

#include "registry_int.h"

#include "../curl_loop.h"

/* One agent of the address list. */
typedef struct cm__consul_agent {
    char *base;      /* "http://127.0.0.1:8500" plus any path prefix, no trailing '/' */
    char *unix_path; /* set for unix:///path.sock addresses, else NULL */
} cm__consul_agent;

/* What a request came back with. */
typedef struct cm__consul_result {
    int err;          /* 0: HTTP 200; else CM_EREGISTRY (other status), CM_ETIMEDOUT,
                         CM_ECANCELED, CM_ETOOBIG, -errno / libuv code (connection) */
    long status;      /* HTTP status, 0 when no response arrived */
    const char *body; /* NUL-terminated, "" when none; borrowed during the callback */
    size_t len;
    int has_index; /* an X-Consul-Index header came */
    uint64_t index;
    size_t agent;       /* the agent that answered (or the last one tried) */
    const char *detail; /* libcurl's words when no response arrived, else "" */
} cm__consul_result;

typedef void (*cm__consul_done_fn)(void *ctx, const cm__consul_result *res);

typedef struct cm__consul_req cm__consul_req;
typedef struct cm__consul_node cm__consul_node;
typedef struct cm__consul_watch cm__consul_watch;

/* The registry's private state (in cm_registry.priv). */
typedef struct cm__consul {
    cm_registry *reg;
    cm__curl http; /* libcurl on the loop */

    cm__consul_agent *agents;
    size_t nagents;
    size_t cur; /* the agent reads and new registrations go to */

    struct curl_slist *hdr_get; /* X-Consul-Token (when set) */
    struct curl_slist *hdr_put; /* the same plus Content-Type and an empty Expect */
    char *noproxy;
    char *cacert, *capath, *cert, *key, *userpwd;
    int insecure;
    uint64_t timeout_ms;
    uint64_t tcp_check_ms; /* option tcp_check_interval_ms: a TCP check instead of the TTL one */
    char *read_query; /* "?stale&dc=x", "?dc=x", "" ... */

    cm__consul_req *reqs;     /* in flight */
    cm__consul_req *canceled; /* taken out by close, their callbacks run at teardown */
    cm__consul_node *nodes;   /* registrations this registry made */
    cm__consul_watch *watches;
} cm__consul;

static inline cm__consul *
cm__consul_of(cm_registry *r)
{
    return (cm__consul *)(void *)r->priv;
}

/* ---- configuration (consul_config.c) ---- */

/* Fills c's agents, headers, TLS settings, timeout and read query from o and the environment.
 * 0, CM_EINVAL (with a stderr line) or CM_ENOMEM; call cm__consul_config_free either way. */
int cm__consul_config_parse(cm__consul *c, const cm_registry *r);
void cm__consul_config_free(cm__consul *c);

/* ---- HTTP (consul_http.c) ---- */

/* One request to start with cm__consul_send. */
typedef struct cm__consul_call {
    const char *method; /* "GET" or "PUT" */
    const char *path;   /* "/v1/..." with any query; copied */
    const char *body;   /* NULL: no body (a PUT then sends Content-Length: 0); copied */
    size_t body_len;
    long agent;          /* < 0: the current agent, failing over to the others on a
                            connection error; else that agent only */
    uint64_t timeout_ms; /* 0: the registry's timeout */
    int quiet;           /* no stderr line when it fails */
    cm__consul_done_fn done;
    void *ctx;
} cm__consul_call;

/* Parses the options and environment, sets up libcurl. 0, CM_EINVAL (with a stderr line) or
 * CM_ENOMEM. On failure everything is released. */
int cm__consul_http_init(cm__consul *c, cm_registry *r);
/* Cancels what is in flight, closes every handle, runs the canceled callbacks (CM_ECANCELED)
 * on a later loop turn, releases everything and calls cm_registry_closed. */
void cm__consul_http_close(cm__consul *c);
/* Starts a request; done runs exactly once on a later loop turn. < 0 (CM_ENOMEM, CM_ESTATE
 * when closing): done never runs. *out (may be NULL) names it for cm__consul_cancel. */
int cm__consul_send(cm__consul *c, const cm__consul_call *call, cm__consul_req **out);
/* One uv handle of the registry (a watch's timer) finished closing; the last one of a closing
 * registry completes the close. */
/* Stops a request in flight; its done never runs. */
void cm__consul_cancel(cm__consul *c, cm__consul_req *q);
/* The stderr line for a failed request: "cmicro: consul: PUT /v1/...: 403 Permission denied". */
void cm__consul_log_failure(const cm__consul *c, cm_log_level level, const char *method,
                            const char *path, const cm__consul_result *res);
/* Appends s percent-encoded for a path segment or a query value. 0 or CM_ENOMEM. */
int cm__consul_escape(cm_buf *b, const char *s);
/* Appends the string s (without its NUL) to b. 0 or CM_ENOMEM. */
int cm__consul_buf_str(cm_buf *b, const char *s);

/* Called by consul_http.c when the current agent changed (failover): registrations held by
 * other agents are made again on the new one. Defined in consul.c. */
void cm__consul_agent_changed(cm__consul *c);

/* ---- go-micro's encodings over Consul (consul_codec.c) ---- */

/* Go's time.Duration.String() of ms milliseconds: "1m30s", "30s", "1.5s", "500ms", "0s".
 * buf holds at least 32 bytes. */
void cm__consul_go_duration(uint64_t ms, char *buf, size_t len);
/* DeregisterCriticalServiceAfter for a TTL or interval: t + 5s, at least 1m5s. */
uint64_t cm__consul_dereg_ms(uint64_t t_ms);
/* Splits "host:port", "[v6]:port", "host" (no port: port 0) into host (no brackets) and port.
 * 0 or CM_EADDR. host holds len bytes. */
int cm__consul_split_hostport(const char *addr, char *host, size_t len, int *port);
/* Non-zero when Consul accepts key/val as a Meta pair. */
int cm__consul_meta_ok(const char *key, const char *val);
/* The JSON body of PUT /v1/agent/service/register for svc's first node (spec 2.2). tcp_ms > 0
 * gives a TCP check, else ttl_ms > 0 a TTL check, else none. Returns owned (free()) in *out.
 * 0, CM_EINVAL (no node, no node id), CM_EADDR (bad port) or CM_ENOMEM. */
int cm__consul_register_body(const cm_reg_service *svc, uint64_t ttl_ms, uint64_t tcp_ms, char **out);

/* Appends s to l. 0 or CM_ENOMEM. */
int cm__consul_list_push(cm_reg_service_list *l, cm_reg_service *s);
/* go-micro's tag decoders (spec 2.3) over a JSON array of tags (non-strings are skipped). */
char *cm__consul_decode_version(const cJSON *tags); /* returns owned; "" when none */
int cm__consul_decode_metadata(const cJSON *tags, cm_md **out);
/* Adds the endpoints of tags to s. 0 or CM_ENOMEM. */
int cm__consul_decode_endpoints(const cJSON *tags, cm_reg_service *s);
/* Turns a /v1/health/service/<name> reply into go-micro services (one per version, nodes with
 * a critical check left out, spec 2.5). Returns owned in *out. 0, CM_EPROTO or CM_ENOMEM. */
int cm__consul_parse_health(const char *name, const char *json, size_t len, cm_reg_service_list **out);
/* Turns a /v1/catalog/services reply (an object whose keys are the service names) into one
 * service per name, without version or nodes (spec 2.6). Returns owned in *out. 0, CM_EPROTO
 * or CM_ENOMEM. */
int cm__consul_parse_catalog(const char *json, size_t len, cm_reg_service_list **out);

/* ---- watchers (consul_watch.c) ---- */

/* The blocking-query loop's arithmetic, kept apart so that it can be tested alone. */
typedef struct cm__consul_wstate {
    uint64_t index;    /* the index the next query sends; 0: none (no blocking) */
    unsigned failures; /* consecutive errors */
    unsigned idle;     /* consecutive early returns that did not move the index */
    uint64_t wait_ms;  /* the wait sent to the agent */
    uint64_t gap_ms;   /* least time between two query starts */
    uint64_t base_ms;  /* first back-off after an error */
    uint64_t cap_ms;   /* largest back-off */
} cm__consul_wstate;

void cm__consul_wstate_init(cm__consul_wstate *s);
/* After a reply with X-Consul-Index got (has 0 when absent) to a query sent with s->index that
 * took took_ms: updates the index (reset to 0 when it went backwards, floor 1). Returns 1 when
 * the data may have changed (index moved or reset), 0 when it cannot have. */
int cm__consul_wstate_reply(cm__consul_wstate *s, int has, uint64_t got, uint64_t took_ms);
/* After a failed query: counts the failure; the next query is a plain read (index 0). */
void cm__consul_wstate_error(cm__consul_wstate *s);
/* The delay before the next query, given when the last one started and now; rnd is a random
 * 32-bit value for the jitter. */
uint64_t cm__consul_wstate_delay(const cm__consul_wstate *s, uint64_t started_ms, uint64_t now_ms,
                                 uint32_t rnd);
/* The curl timeout for a blocking query: wait + wait/16 + 5 s. */
uint64_t cm__consul_wstate_timeout(const cm__consul_wstate *s);

/* Events from the previous snapshot old (may be NULL) to cur (spec 2.8): emit runs for each
 * and returns non-zero to stop early. Returns 0, 1 when stopped, or CM_ENOMEM. */
int cm__consul_diff(const cm_reg_service_list *old, const cm_reg_service_list *cur,
                    int (*emit)(void *arg, cm_watch_action a, const cm_reg_service *svc), void *arg);

int cm__consul_watch_start(cm_registry *r, cm_watcher *w);
void cm__consul_watch_stop(cm_registry *r, cm_watcher *w);
/* Stops every watch (registry close). */
void cm__consul_watch_stop_all(cm__consul *c);

/* The wait new watchers send with their blocking queries, in ms (60 s). */
extern uint64_t cm__consul_watch_wait_ms;


#endif
