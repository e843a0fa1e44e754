/* cmicro: what a registry backend implements, and the go-micro encodings backends share.
 * Not installed. */
#ifndef CMICRO_REGISTRY_INT_H
#define CMICRO_REGISTRY_INT_H

#include <cJSON.h>
#include <cmicro/codec.h>
#include <cmicro/registry.h>

struct cm_watcher {
    cm_registry *reg;
    cm_watch_cb cb;
    void *user;
    char *name; /* NULL: all services */
    struct cm_watcher *next;
    /* the backend's private watcher state (ops->watcher_priv_size bytes) follows */
    max_align_t priv[];
};

struct cm_registry {
    const struct cm_registry_ops *ops;
    cm_loop *loop;
    cm_registry_opts opts; /* strings owned by the registry */
    cm_watcher *watchers;
    void (*close_done)(void *arg);
    void *close_arg;
    /* Why the last lookup of why_name found nothing (cm__registry_why); "" when unknown. */
    char why_name[128];
    char why[320];
    /* the backend's private state (ops->priv_size bytes) follows */
    max_align_t priv[];
};

typedef struct cm_registry_ops {
    int abi_version; /* CM_ABI_VERSION */
    const char *name;
    size_t priv_size;
    size_t watcher_priv_size;
    int (*init)(cm_registry *r);
    /* Cancels everything (callbacks with CM_ECANCELED), closes handles, then calls
     * cm__registry_closed(r). */
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

/* Called by a backend's close when everything is closed: frees r, runs done. */
void cm__registry_closed(cm_registry *r);
/* Delivers an event to every watcher of r whose name matches svc->name (or watches all). */
void cm__registry_notify(cm_registry *r, cm_watch_action action, const cm_reg_service *svc);
/* The same, restricted to the watchers that want accepts. */
void cm__registry_notify_if(cm_registry *r, cm_watch_action action, const cm_reg_service *svc,
                            int (*want)(const cm_watcher *w, void *arg), void *arg);

/* Records why a lookup of name found nothing, before its callback runs with the empty list;
 * cm_registry_why() answers it. */
void cm__registry_why(cm_registry *r, const char *name, const char *fmt, ...) CM_PRINTF(3, 4);

/* FNV-1a, 64 bits. */
static inline uint64_t
cm__fnv1a(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 1099511628211u;
    }
    return h;
}

/* Backends, listed in registry.c's table. */
extern const cm_registry_ops cm__registry_memory;
extern const cm_registry_ops cm__registry_mdns;
extern const cm_registry_ops cm__registry_consul;
/* NULL-terminated, in backends.c. */
extern const cm_registry_ops *const cm__registry_backends[];

/* ---- go-micro's JSON forms (spec 1.1), shared by the backends ---- */

/* Value / Endpoint / Service as go-micro's encoding/json writes them (leaf values: null). */
cJSON *cm__value_to_json(const cm_value *v);
cJSON *cm__endpoint_to_json(const cm_endpoint *e);
cJSON *cm__md_to_json(const cm_md *md); /* NULL md: JSON null */
cJSON *cm__service_to_json(const cm_reg_service *s);
/* The reverse; key order does not matter, unknown keys are ignored, wrong types are errors.
 * 0, CM_EPROTO (with nothing allocated) or CM_ENOMEM. */
int cm__value_from_json(const cJSON *j, cm_value *out);
int cm__endpoint_from_json(const cJSON *j, cm_endpoint *out);
int cm__md_from_json(const cJSON *j, cm_md **out); /* null: an empty md */
int cm__service_from_json(const cJSON *j, cm_reg_service **out);
void cm__endpoint_fini(cm_endpoint *e);

/* go-micro's registry payload encoding: lower-case hex of a zlib stream. Appends to out.
 * 0 or CM_ENOMEM. */
int cm__hexzlib_encode(const void *data, size_t len, cm_buf *out);
/* Decodes hex(zlib(...)) of hexlen characters; the inflated bytes are appended to out, at most
 * max bytes (0: 4 MiB). 0, CM_EPROTO (bad hex, bad zlib, over max) or CM_ENOMEM. */
int cm__hexzlib_decode(const char *hex, size_t hexlen, size_t max, cm_buf *out);

#endif
