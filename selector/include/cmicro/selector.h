/* cmicro: node selection. The selector resolves a service name to a node address through a
 * cache kept fresh by a registry watch (started lazily, only for services this process calls),
 * with a TTL as a backstop, and picks a node by strategy.
 *
 * Compared with go-micro's selector: round robin rotates across calls; failures marked with
 * cm_selector_mark() open a circuit breaker per node: eject_failures consecutive failures, or an
 * error rate of eject_error_pct percent over a 10 s window (10 calls at least), take the node
 * out of rotation for a back-off (never every node); then it is half-open: one probe call at a
 * time goes to it, a success closes the breaker and a failure opens it for twice as long;
 * when the registry errors, the last known nodes keep serving (stale-if-error) and the error is
 * logged, not returned; only an authoritative empty answer empties the cache; refreshes are
 * single-flight, and an expired entry keeps serving while it is refreshed in the background.
 *
 * Threads: the loop thread of the selector's loop, like the registry.
 */
#ifndef CMICRO_SELECTOR_H
#define CMICRO_SELECTOR_H

#include <cmicro/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CM_STRATEGY_RANDOM = 0, CM_STRATEGY_ROUND_ROBIN = 1 } cm_strategy;

typedef struct cm_selector_opts {
    cm_strategy strategy;       /* default random */
    uint64_t cache_ttl_ms;      /* default 60000 */
    unsigned eject_failures;    /* consecutive failures that take a node out; default 1 */
    uint64_t eject_backoff_ms;  /* first back-off; doubles per ejection, max 30 s; default 1000 */
    unsigned eject_error_pct;   /* error rate (percent) that ejects; 0 (default): off */
    int no_watch;               /* do not watch; rely on the TTL only */
} cm_selector_opts;

CM_EXTERN void cm_selector_opts_init(cm_selector_opts *o);

/* Narrows the nodes a pick may return; NULL fields match everything. */
typedef struct cm_select_filter {
    const char *version;  /* service version */
    const char *endpoint; /* services that publish this endpoint */
    const cm_md *labels;  /* node metadata: every pair must match */
} cm_select_filter;

typedef struct cm_selector cm_selector;

/* reg is borrowed and must outlive the selector. o NULL: defaults. */
CM_EXTERN int cm_selector_new(cm_loop *loop, cm_registry *reg, const cm_selector_opts *o,
                              cm_selector **out);
CM_EXTERN void cm_selector_free(cm_selector *s);

/* The hot path: picks a node of a cached service, never waiting for I/O (no allocation either,
 * except when it starts a background lookup, below). On 0 *address (and *node_id, may be NULL)
 * point into the cache: valid until control returns to the loop. CM_ENOTFOUND when the service
 * is not cached: call cm_selector_resolve() and pick again in its callback. An entry past its
 * TTL is still picked, and the pick starts a lookup in the background (stale-while-revalidate: a
 * slow registry never holds a call up). CM_ENONODE when the cache has the service but no node
 * passes the filter. */
CM_EXTERN int cm_selector_pick(cm_selector *s, const char *service, const cm_select_filter *f,
                               const char **address, const char **node_id);

/* Fills the cache for service from the registry (single-flight: concurrent resolves share one
 * lookup) and starts its watch. cb: 0 when the service is now cached (maybe stale after a
 * registry error), CM_ENOTFOUND when the registry has no such service, or the registry's error
 * when nothing is cached. */
CM_EXTERN int cm_selector_resolve(cm_selector *s, const char *service, cm_registry_cb cb,
                                  void *user);

/* After a resolve ended with CM_ENOTFOUND: why, in the registry's words (cm_registry_why), or
 * NULL. */
CM_EXTERN const char *cm_selector_why(const cm_selector *s, const char *service);

/* Reports an attempt's outcome for a node address: 0 success, < 0 a transport failure.
 * eject_failures consecutive failures (or the error rate) take the node out of rotation for a
 * back-off; a success brings it back and resets the count. A half-open node's probe is the next
 * pick after its back-off; its outcome closes or reopens the breaker. */
CM_EXTERN void cm_selector_mark(cm_selector *s, const char *service, const char *address,
                                int status);

/* What the selector holds for one service it has resolved. */
typedef struct cm_selector_stat {
    const char *service;
    size_t nodes;          /* cached nodes */
    size_t ejected;        /* of which out of rotation (breaker open or half-open) */
    uint64_t age_ms;       /* since the last registry answer or watch event */
    uint64_t stale_served; /* picks served past the cache TTL */
    int failing;           /* the last registry lookup failed (stale-if-error) */
} cm_selector_stat;

/* Calls fn for each service in the cache (st borrowed during the call). On the loop thread. */
CM_EXTERN void cm_selector_each(cm_selector *s, void (*fn)(void *arg, const cm_selector_stat *st),
                                void *arg);

/* Drops the cache entry of service (NULL: all). */
CM_EXTERN void cm_selector_reset(cm_selector *s, const char *service);

#ifdef __cplusplus
}
#endif
#endif
