/* cmicro: service discovery. The data model is go-micro's (registry.Service, Node, Endpoint,
 * Value); backends (memory, mdns, consul, etcd) sit behind one ops table and are chosen by name. An
 * application adds its own with cm_registry_register() (see "writing a backend" at the end).
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

/* One backend setting: both strings borrowed until cm_registry_new copies them. */
typedef struct cm_registry_opt {
    const char *key;
    const char *val;
} cm_registry_opt;

#define CM_REGISTRY_OPTS_MAX 16

/* Settings every backend reads, then the backend's own by key (cm_registry_opts_set). The keys of
 * the built-in backends:
 *   memory  "namespace"   registries with the same namespace share state in the process;
 *                         default "default"
 *   mdns    "interface"   interface names, comma separated (else MICRO_MDNS_INTERFACE); all
 *                         multicast-capable interfaces when unset
 *           "subnets"     CIDRs, comma separated (else MICRO_MDNS_SUBNETS): only sources in one
 *                         of them are used (besides being on-link)
 *   consul  "token"       ACL token (else CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN)
 *           "datacenter"  ?dc= on every read
 *           "consistent"  "true": consistent reads instead of ?stale
 *           "tcp_check_interval_ms"  a TCP check at this interval instead of the TTL check
 *   etcd    "username", "password"  etcd authentication (else ETCD_USERNAME, ETCD_PASSWORD)
 *           "ca_file", "cert_file", "key_file"  TLS (else ETCD_CACERT, ETCD_CERT, ETCD_KEY)
 *           "insecure_skip_verify"  "true": the server certificate is not verified
 * cm_registry_new refuses a key its backend does not know (CM_EINVAL). */
typedef struct cm_registry_opts {
    const char *addresses; /* backend addresses, comma separated ("127.0.0.1:8500,10.0.0.2");
                              NULL: the backend's env/default */
    uint64_t timeout_ms;   /* one request to the backend / an mDNS query window; 0: default */
    size_t noptions;
    cm_registry_opt options[CM_REGISTRY_OPTS_MAX];
} cm_registry_opts;

CM_EXTERN void cm_registry_opts_init(cm_registry_opts *o);
/* Sets a backend setting (replacing one of the same key); key and val are borrowed until
 * cm_registry_new. 0, CM_EINVAL (empty key, NULL val) or CM_ENOMEM (CM_REGISTRY_OPTS_MAX keys
 * already set). */
CM_EXTERN int cm_registry_opts_set(cm_registry_opts *o, const char *key, const char *val);

/* The backend a registry is made of when neither code nor MICRO_REGISTRY names one. */
#define CM_REGISTRY_DEFAULT "mdns"

/* Creates a registry by backend name: "memory", "mdns", "consul", "etcd" or one the application
 * registered; NULL or "" means the env MICRO_REGISTRY, else CM_REGISTRY_DEFAULT. o may be NULL;
 * strings are copied. Returns 0, CM_ENOTFOUND (no such backend), CM_EINVAL (an option the
 * backend does not know, or a bad value), CM_ENOMEM or a backend error. */
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
CM_EXTERN int cm_registry_register_service(cm_registry *r, const cm_reg_service *svc,
                                           uint64_t ttl_ms, cm_registry_cb cb, void *user);
CM_EXTERN int cm_registry_deregister_service(cm_registry *r, const cm_reg_service *svc,
                                             cm_registry_cb cb, void *user);
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

/* ---- writing a backend ----
 *
 * A backend is a static const cm_registry_ops registered once with cm_registry_register(); the
 * built-in backends go through the same path. The framework allocates priv_size bytes of private
 * state with each registry (cm_registry_priv) and watcher_priv_size bytes with each watcher
 * (cm_watcher_priv), zeroed and aligned for any type. A NULL slot answers CM_ENOTSUP. Every slot
 * runs on the registry's loop thread and follows the threading contract above. */

typedef struct cm_registry_ops {
    int abi_version; /* CM_ABI_VERSION */
    const char *name;
    size_t priv_size;
    size_t watcher_priv_size;
    /* The option keys the backend reads (cm_registry_opts_set), NULL-terminated; NULL: none. */
    const char *const *option_keys;
    int (*init)(cm_registry *r);
    /* Cancels everything (callbacks with CM_ECANCELED), closes handles, then calls
     * cm_registry_closed(r). */
    void (*close)(cm_registry *r);
    int (*reg)(cm_registry *r, const cm_reg_service *svc, uint64_t ttl_ms, cm_registry_cb cb,
               void *user);
    int (*dereg)(cm_registry *r, const cm_reg_service *svc, cm_registry_cb cb, void *user);
    int (*get_service)(cm_registry *r, const char *name, cm_registry_list_cb cb, void *user);
    int (*list_services)(cm_registry *r, cm_registry_list_cb cb, void *user);
    /* w is allocated and linked by the framework; the backend starts what it needs. */
    int (*watch)(cm_registry *r, cm_watcher *w);
    /* Stops w's backend state; the framework unlinks and frees w afterwards. */
    void (*watch_stop)(cm_registry *r, cm_watcher *w);
} cm_registry_ops;

/* Adds or replaces the backend of ops->name. ops is borrowed for the life of the process (a
 * static const table). Returns 0, CM_EINVAL (wrong abi_version, no name, or no close slot) or
 * CM_ENOMEM (the table is full: 16 backends). Any thread; call it before registries are
 * created. */
CM_EXTERN int cm_registry_register(const cm_registry_ops *ops);
/* The backend of that name, or NULL. */
CM_EXTERN const cm_registry_ops *cm_registry_find(const char *name);

/* For backends. All borrowed from r (or w), valid until the registry closes. */
CM_EXTERN cm_loop *cm_registry_loop(const cm_registry *r);
CM_EXTERN void *cm_registry_priv(cm_registry *r);
/* The addresses and timeout of the options, and the value of an option key (NULL: unset). */
CM_EXTERN const char *cm_registry_addresses(const cm_registry *r);
CM_EXTERN uint64_t cm_registry_timeout_ms(const cm_registry *r);
CM_EXTERN const char *cm_registry_option(const cm_registry *r, const char *key);
/* The call a backend's close makes once everything is closed: frees r, runs the done callback. */
CM_EXTERN void cm_registry_closed(cm_registry *r);
/* Delivers an event to every watcher of r whose name matches svc->name (or that watches all). */
CM_EXTERN void cm_registry_notify(cm_registry *r, cm_watch_action action,
                                  const cm_reg_service *svc);
/* Records why a lookup of name found nothing, before its callback runs with the empty list;
 * cm_registry_why() answers it. */
CM_EXTERN void cm_registry_set_why(cm_registry *r, const char *name, const char *fmt, ...)
    CM_PRINTF(3, 4);
/* The service name a watcher watches (NULL: all), and its private state. */
CM_EXTERN const char *cm_watcher_name(const cm_watcher *w);
CM_EXTERN void *cm_watcher_priv(cm_watcher *w);

#ifdef __cplusplus
}
#endif
#endif
