/* cmicro: service discovery. The data model is go-micro's (registry.Service, Node, Endpoint,
 * Value); backends (memory, mdns, consul) sit behind one ops table and are chosen by name.
 *
 * Threads: a registry belongs to the loop it was created on. Every function here runs on that
 * loop's thread (or before the loop runs); every callback runs there, exactly once, never from
 * inside the call that started it; a function that returns < 0 never calls its callback.
 * No backend blocks the loop.
 *
 * Ownership: values passed in are borrowed during the call (backends copy what they keep);
 * values passed to callbacks are borrowed during the callback (cm_reg_service_dup to keep one).
 */
#ifndef CMICRO_REGISTRY_H
#define CMICRO_REGISTRY_H

#include <cmicro/loop.h>
#include <cmicro/md.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A message shape (go-micro registry.Value). */
typedef struct cm_value {
    char *name;
    char *type;
    struct cm_value *values; /* children; NULL when none (JSON null) */
    size_t nvalues;
} cm_value;

typedef struct cm_endpoint {
    char *name;         /* "Hello.Say" */
    cm_value *request;  /* NULL: JSON null */
    cm_value *response; /* NULL: JSON null */
    cm_md *metadata;    /* never NULL ({} on the wire) */
} cm_endpoint;

typedef struct cm_node {
    char *id;        /* "<service>-<uuid>" */
    char *address;   /* "ip:port" */
    cm_md *metadata; /* never NULL */
} cm_node;

typedef struct cm_reg_service {
    char *name;
    char *version;
    cm_md *metadata; /* may be NULL (go-micro never sets it) */
    cm_endpoint *endpoints;
    size_t nendpoints;
    cm_node *nodes;
    size_t nnodes;
} cm_reg_service;

/* Returns owned (cm_reg_service_free): name and version copied, no nodes or endpoints. NULL on
 * out of memory. */
CM_EXTERN cm_reg_service *cm_reg_service_new(const char *name, const char *version);
/* Deep copy; returns owned, NULL on out of memory. */
CM_EXTERN cm_reg_service *cm_reg_service_dup(const cm_reg_service *s);
CM_EXTERN void cm_reg_service_free(cm_reg_service *s);
/* Appends a node (id and address copied, metadata md copied; md may be NULL). Returns the new
 * node (borrowed from s) or NULL on out of memory. */
CM_EXTERN cm_node *cm_reg_service_add_node(cm_reg_service *s, const char *id, const char *address,
                                       const cm_md *md);
/* Appends an endpoint (deep copies of request/response/md; each may be NULL). Returns the new
 * endpoint (borrowed from s) or NULL on out of memory. */
CM_EXTERN cm_endpoint *cm_reg_service_add_endpoint(cm_reg_service *s, const char *name,
                                               const cm_value *request, const cm_value *response,
                                               const cm_md *md);
/* Deep copy of a value tree into dst (which is overwritten). 0 or CM_ENOMEM. */
CM_EXTERN int cm_value_copy(cm_value *dst, const cm_value *src);
CM_EXTERN void cm_value_fini(cm_value *v);

/* A list of services, as get_service and list_services return them. */
typedef struct cm_reg_service_list {
    cm_reg_service **items;
    size_t n;
} cm_reg_service_list;

typedef enum { CM_WATCH_CREATE = 1, CM_WATCH_UPDATE = 2, CM_WATCH_DELETE = 3 } cm_watch_action;
CM_EXTERN const char *cm_watch_action_name(cm_watch_action a); /* "create", "update", "delete" */

typedef struct cm_registry cm_registry;
typedef struct cm_watcher cm_watcher;

typedef struct cm_registry_opts {
    const char *addresses; /* backend addresses, comma separated ("127.0.0.1:8500,10.0.0.2");
                              NULL: the backend's env/default */
    uint64_t timeout_ms;   /* one request to the backend / an mDNS query window; 0: default */
    const char *interface; /* mDNS: interface name (MICRO_MDNS_INTERFACE); NULL: all */
    const char *token;     /* Consul ACL token (else CONSUL_HTTP_TOKEN[_FILE]) */
    const char *datacenter;
    int consistent;        /* Consul: consistent reads instead of ?stale */
    uint64_t tcp_check_interval_ms; /* Consul: a TCP check instead of the TTL check */
    const char *namespace_; /* memory: registries with the same namespace share state in the
                               process; NULL: "default" */
} cm_registry_opts;

CM_EXTERN void cm_registry_opts_init(cm_registry_opts *o);

/* Creates a registry by backend name: "memory", "mdns", "consul"; NULL or "" means the env
 * MICRO_REGISTRY, else "mdns". o may be NULL; strings are copied. Returns 0, CM_ENOTFOUND (no
 * such backend), CM_EINVAL, CM_ENOMEM or a backend error. */
CM_EXTERN int cm_registry_new(cm_loop *loop, const char *name, const cm_registry_opts *o,
                              cm_registry **out);
/* The backend's name ("mdns"), as node metadata "registry" carries it. */
CM_EXTERN const char *cm_registry_name(const cm_registry *r);
/* Stops watchers, cancels requests in flight (their callbacks run with CM_ECANCELED), and frees
 * the registry; done (may be NULL) runs on the loop when all is closed. It deregisters nothing:
 * deregister first. */
CM_EXTERN void cm_registry_close(cm_registry *r, void (*done)(void *arg), void *arg);

typedef void (*cm_registry_cb)(int status, void *user);
/* status 0 with the services (borrowed), or < 0 with list NULL. */
typedef void (*cm_registry_list_cb)(int status, const cm_reg_service_list *list, void *user);
typedef void (*cm_watch_cb)(cm_watch_action action, const cm_reg_service *svc, void *user);

/* Registers svc (its nodes; a backend may register only nodes[0] as go-micro does) with a TTL
 * (0: none). Registering again refreshes (Consul: a TTL pass). cb may be NULL. */
CM_EXTERN int cm_registry_register(cm_registry *r, const cm_reg_service *svc, uint64_t ttl_ms,
                                   cm_registry_cb cb, void *user);
CM_EXTERN int cm_registry_deregister(cm_registry *r, const cm_reg_service *svc, cm_registry_cb cb,
                                     void *user);
/* The services of that name, one per version; an empty list (status 0) when none. */
CM_EXTERN int cm_registry_get_service(cm_registry *r, const char *name, cm_registry_list_cb cb,
                                      void *user);
/* Why the last lookup of name came back empty, in the backend's words (mDNS: how many answers in
 * how many ms on which interfaces), or NULL when the backend said nothing. Loop thread only; valid
 * until the next lookup on r. */
CM_EXTERN const char *cm_registry_why(const cm_registry *r, const char *name);
/* Every service name (items carry names; versions and nodes when the backend has them). */
CM_EXTERN int cm_registry_list_services(cm_registry *r, cm_registry_list_cb cb, void *user);
/* Watches changes of one service (name) or of all (NULL, where the backend can). cb runs for
 * every event until cm_watcher_stop. */
CM_EXTERN int cm_registry_watch(cm_registry *r, const char *name, cm_watch_cb cb, void *user,
                                cm_watcher **out);
/* Stops a watcher: no callback runs after this returns. */
CM_EXTERN void cm_watcher_stop(cm_watcher *w);

/* Lists passed to callbacks are borrowed; cm_reg_service_list_dup makes an owned copy (NULL on out
 * of memory), freed with cm_reg_service_list_free. */
CM_EXTERN cm_reg_service_list *cm_reg_service_list_dup(const cm_reg_service_list *l);
CM_EXTERN void cm_reg_service_list_free(cm_reg_service_list *l);

#ifdef __cplusplus
}
#endif
#endif
