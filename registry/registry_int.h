/* cmicro: the registry object the generic functions and the built-in backends share, and the
 * go-micro encodings backends share. Not installed; external backends use the accessors of
 * <cmicro/registry.h>. */
#ifndef CMICRO_REGISTRY_INT_H
#define CMICRO_REGISTRY_INT_H

#include "core_int.h"

#include <cJSON.h>
#include <cmicro/registry.h>
#include <uv.h>

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
    char *addresses;     /* NULL: the backend's env/default */
    uint64_t timeout_ms; /* 0: the backend's default */
    cm_md *options;      /* the backend's settings by key; never NULL */
    cm_watcher *watchers;
    void (*close_done)(void *arg);
    void *close_arg;
    /* Why the last lookup of why_name found nothing (cm__registry_why); "" when unknown. */
    char why_name[128];
    char why[320];
    /* the backend's private state (ops->priv_size bytes) follows */
    max_align_t priv[];
};

/* cm_registry_notify, restricted to the watchers that want accepts. */
void cm__registry_notify_if(cm_registry *r, cm_watch_action action, const cm_reg_service *svc,
                            int (*want)(const cm_watcher *w, void *arg), void *arg);

/* Room for element n + 1 of an array of n elements of elem bytes from malloc: arr itself when
 * the allocation has room, else a geometric realloc (so that appending n items costs O(n)).
 * NULL on out of memory (arr is left as it was). */
void *cm__grow_array(void *arr, size_t n, size_t elem);

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

/* The built-in backends, registered by the table in backends.c. */
extern const cm_registry_ops cm__registry_memory;
extern const cm_registry_ops cm__registry_mdns;
extern const cm_registry_ops cm__registry_consul;
extern const cm_registry_ops cm__registry_etcd;

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
