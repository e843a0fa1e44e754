/* cmicro selector internals: the cache of one service name. Not installed. */
#ifndef CMICRO_SELECTOR_INT_H
#define CMICRO_SELECTOR_INT_H

#include "core_int.h"

#include <cmicro/selector.h>
#include <uv.h>

/* One node of the flattened list, with its passive health state. */
typedef struct cm__snode {
    const cm_node *node; /* borrowed from the cache's services */
    size_t svc;          /* index of its service in the cache */
    unsigned fails;      /* consecutive failures since the last success or ejection */
    unsigned level;      /* consecutive ejections: the back-off doubles per level */
    uint64_t until;      /* ejected until this time (cm_now_ms); 0 when in rotation. Past
                            it the node is half-open: one probe call at a time */
    uint64_t probe_at;   /* half-open: when the probe was handed out; 0 none */
    uint64_t win_start;  /* the error-rate window: its start, calls and failures */
    uint32_t win_calls, win_errs;
} cm__snode;

/* The nodes of service i are nodes[first .. first + n). */
typedef struct cm__srange {
    size_t first;
    size_t n;
} cm__srange;

/* What a resolve or a watch event installs, all or nothing. */
typedef struct cm__scache {
    cm_reg_service **svcs; /* owned, one per version */
    size_t nsvcs;
    cm__srange *ranges; /* nsvcs */
    cm__snode *nodes;
    size_t nnodes;
    uint32_t *scratch; /* nnodes: the candidates of one pick, so a pick never allocates */
    size_t nejected;   /* nodes with until != 0 (some may have served their back-off) */
} cm__scache;

/* Replaces *c with the services of l (deep copies); per-node state is kept for the addresses
 * that persist. 0, or CM_ENOMEM with *c unchanged. */
int cm__scache_set(cm__scache *c, const cm_reg_service_list *l);

/* Applies a watch event to *c: create/update merge svc's nodes by id into the service of the
 * same version (or add the version); delete removes the listed nodes and drops a version left
 * without nodes. 0 when applied, 1 when the service is gone (a delete with no nodes, or the last
 * node removed: the caller drops the cache), CM_ENOMEM with *c unchanged. */
int cm__scache_apply(cm__scache *c, cm_watch_action action, const cm_reg_service *svc);

/* Frees the services and arrays of c and zeroes it. */
void cm__scache_free(cm__scache *c);

/* Makes the selector's random choices repeatable (tests). */
void cm__selector_seed(cm_selector *s, uint64_t seed);

#endif
