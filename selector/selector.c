/* The selector: a cache entry per service name, kept fresh by a lazily started registry watch
 * and a TTL, single-flight refreshes, stale-if-error, passive health (ejection with back-off and a
 * panic threshold) and the pick strategies.
 *
 * Option values of 0 mean the default: cache_ttl_ms 60000, eject_failures 1, eject_backoff_ms
 * 1000. A resolve always asks the registry (joining a lookup already in flight); the client
 * calls it only when a pick finds nothing cached. A pick of an entry past its TTL serves it and
 * refreshes it in the background.
 */
#include "selector_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MAX_MS 30000u
#define RATE_WINDOW_MS 10000u /* the error-rate window */
#define RATE_MIN_CALLS 10u    /* calls in a window before its rate counts */
/* While the registry fails, a stale entry asks it again at most this often (or once per TTL
 * when that is shorter). */
#define RETRY_MAX_MS 5000u

/* The cache entry of one service name. It lives until a reset or the selector's end; when the
 * registry says the service is gone only its cache is dropped (the watch stays). */
typedef struct entry {
    struct entry *next;
    char *name;
    int cached; /* c holds the service */
    cm__scache c;
    uint64_t refreshed; /* last successful resolve or watch event (cm_now_ms) */
    uint64_t attempted; /* last lookup started */
    int failing;        /* the last lookup failed: the entry is served past its TTL */
    int logged;         /* the current failure was logged */
    uint64_t rr;        /* round-robin cursor, kept across picks, random start */
    uint64_t stale;     /* picks served past the TTL */
    cm_watcher *watcher;
} entry;

typedef struct waiter {
    struct waiter *next;
    cm_registry_cb cb;
    void *user;
} waiter;

/* A lookup in flight. It outlives the selector when the selector is freed first (sel is then
 * NULL): the registry still calls back into it. */
typedef struct flight {
    struct flight *next;
    cm_selector *sel;
    waiter *waiters;
    waiter **tail;
    int early; /* the registry refused the lookup at once: its error, delivered later */
    char name[];
} flight;

struct cm_selector {
    cm_loop *loop;
    cm_registry *reg;
    cm_selector_opts o;
    uint64_t rng;
    entry *entries;
    flight *flights;
};

/* ---- random numbers: xorshift64*, seeded per selector ---- */

static uint64_t
splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t
rng_next(cm_selector *s)
{
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n) for n < 2^32 (Lemire's multiply-shift on the high 32 bits). */
static uint32_t
rng_below(cm_selector *s, uint32_t n)
{
    return (uint32_t)(((rng_next(s) >> 32) * (uint64_t)n) >> 32);
}

void
cm__selector_seed(cm_selector *s, uint64_t seed)
{
    s->rng = splitmix64(seed);
    if (s->rng == 0) {
        s->rng = 1;
    }
}

/* ---- life cycle ---- */

void
cm_selector_opts_init(cm_selector_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->strategy = CM_STRATEGY_RANDOM;
    o->cache_ttl_ms = 60000;
    o->eject_failures = 1;
    o->eject_backoff_ms = 1000;
}

int
cm_selector_new(cm_loop *loop, cm_registry *reg, const cm_selector_opts *o, cm_selector **out)
{
    if (loop == NULL || reg == NULL || out == NULL) {
        return CM_EINVAL;
    }
    cm_selector_opts opts;
    cm_selector_opts_init(&opts);
    if (o != NULL) {
        opts = *o;
    }
    if (opts.strategy != CM_STRATEGY_RANDOM && opts.strategy != CM_STRATEGY_ROUND_ROBIN) {
        return CM_EINVAL;
    }
    if (opts.cache_ttl_ms == 0) {
        opts.cache_ttl_ms = 60000;
    }
    if (opts.eject_failures == 0) {
        opts.eject_failures = 1;
    }
    if (opts.eject_backoff_ms == 0) {
        opts.eject_backoff_ms = 1000;
    }
    cm_selector *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return CM_ENOMEM;
    }
    static atomic_uint_fast64_t instances;
    s->loop = loop;
    s->reg = reg;
    s->o = opts;
    cm__selector_seed(s, uv_hrtime() ^ (uint64_t)(uintptr_t)s ^
                             (atomic_fetch_add(&instances, 1) << 48));
    *out = s;
    return 0;
}

static void
entry_free(entry *e)
{
    if (e->watcher != NULL) {
        cm_watcher_stop(e->watcher);
    }
    cm__scache_free(&e->c);
    free(e->name);
    free(e);
}

/* Runs the callbacks of a freed selector's resolves with CM_ECANCELED, on a later loop turn. */
static void
cancel_waiters(void *arg)
{
    waiter *w = arg;
    while (w != NULL) {
        waiter *next = w->next;
        w->cb(CM_ECANCELED, w->user);
        free(w);
        w = next;
    }
}

void
cm_selector_free(cm_selector *s)
{
    if (s == NULL) {
        return;
    }
    waiter *cancel = NULL, **tail = &cancel;
    for (flight *f = s->flights; f != NULL; f = f->next) {
        f->sel = NULL;
        if (f->waiters != NULL) {
            *tail = f->waiters;
            tail = f->tail;
            f->waiters = NULL;
            f->tail = &f->waiters;
        }
    }
    /* Out of memory for the post is the only case where they run inside this call. */
    if (cancel != NULL && cm_loop_post(s->loop, cancel_waiters, cancel) < 0) {
        cancel_waiters(cancel);
    }
    while (s->entries != NULL) {
        entry *e = s->entries;
        s->entries = e->next;
        entry_free(e);
    }
    free(s);
}

void
cm_selector_reset(cm_selector *s, const char *service)
{
    if (s == NULL) {
        return;
    }
    entry **pp = &s->entries;
    while (*pp != NULL) {
        entry *e = *pp;
        if (service == NULL || strcmp(e->name, service) == 0) {
            *pp = e->next;
            entry_free(e);
        } else {
            pp = &e->next;
        }
    }
}

/* ---- cache entries ---- */

static entry *
entry_find(cm_selector *s, const char *name)
{
    for (entry *e = s->entries; e != NULL; e = e->next) {
        if (strcmp(e->name, name) == 0) {
            return e;
        }
    }
    return NULL;
}

static entry *
entry_get(cm_selector *s, const char *name)
{
    entry *e = entry_find(s, name);
    if (e != NULL) {
        return e;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->name = strdup(name)) == NULL) {
        free(e);
        return NULL;
    }
    e->rr = rng_next(s);
    e->next = s->entries;
    s->entries = e;
    return e;
}

static void
drop_cache(entry *e)
{
    cm__scache_free(&e->c);
    e->cached = 0;
    e->failing = 0;
    e->logged = 0;
}

static void
on_watch(cm_watch_action action, const cm_reg_service *svc, void *user)
{
    entry *e = user;
    if (!e->cached || svc == NULL || svc->name == NULL || strcmp(svc->name, e->name) != 0) {
        return;
    }
    int rc = cm__scache_apply(&e->c, action, svc);
    if (rc == 1) {
        drop_cache(e);
    } else if (rc == 0) {
        e->refreshed = cm_now_ms();
    }
    /* Out of memory: the event is lost; the TTL brings the entry back in line. */
}

/* Applies a lookup's answer to the cache; returns what the resolve callbacks get. */
static int
apply_answer(cm_selector *s, const char *name, int status, const cm_reg_service_list *list)
{
    entry *e = entry_find(s, name);
    if (status < 0) {
        if (e == NULL || !e->cached) {
            return status;
        }
        e->failing = 1;
        if (!e->logged) {
            e->logged = 1;
            cm_log(CM_LOG_WARN, "selector", "registry error for %s: %s; serving %zu cached nodes",
                   name, cm_strerror(status), e->c.nnodes);
        }
        return 0;
    }
    if (list == NULL || list->n == 0) {
        if (e != NULL) {
            drop_cache(e);
        }
        return CM_ENOTFOUND;
    }
    if ((e = entry_get(s, name)) == NULL || cm__scache_set(&e->c, list) < 0) {
        return CM_ENOMEM;
    }
    e->cached = 1;
    e->refreshed = cm_now_ms();
    e->failing = 0;
    e->logged = 0;
    if (e->watcher == NULL && !s->o.no_watch) {
        /* No watch (unsupported, out of memory): the TTL alone keeps the entry fresh. The
         * next resolve tries again. */
        if (cm_registry_watch(s->reg, name, on_watch, e, &e->watcher) < 0) {
            e->watcher = NULL;
        }
    }
    return 0;
}

/* ---- resolving: one lookup per name in flight ---- */

static void
on_lookup(int status, const cm_reg_service_list *list, void *arg)
{
    flight *f = arg;
    cm_selector *s = f->sel;
    int result = CM_ECANCELED;
    if (s != NULL) {
        flight **pp = &s->flights;
        while (*pp != f) {
            pp = &(*pp)->next;
        }
        *pp = f->next;
        result = apply_answer(s, f->name, status, list);
    }
    /* The callbacks may free the selector: nothing below touches it. */
    waiter *w = f->waiters;
    free(f);
    while (w != NULL) {
        waiter *next = w->next;
        w->cb(result, w->user);
        free(w);
        w = next;
    }
}

static flight *
flight_find(cm_selector *s, const char *name)
{
    for (flight *f = s->flights; f != NULL; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

static void
on_refused(void *arg)
{
    flight *f = arg;
    on_lookup(f->early, NULL, f);
}

/* Starts a lookup of name unless one is in flight. Returns it, or NULL with *rc set. When the
 * registry refuses the lookup at once but the service is cached, the refusal is answered like
 * a failed lookup (stale-if-error), on a later loop turn. */
static flight *
flight_start(cm_selector *s, const char *name, int *rc)
{
    flight *f = flight_find(s, name);
    if (f != NULL) {
        return f;
    }
    size_t len = strlen(name);
    f = calloc(1, sizeof(*f) + len + 1);
    if (f == NULL) {
        *rc = CM_ENOMEM;
        return NULL;
    }
    memcpy(f->name, name, len + 1);
    f->sel = s;
    f->tail = &f->waiters;
    entry *e = entry_find(s, name);
    *rc = cm_registry_get_service(s->reg, name, on_lookup, f);
    if (*rc < 0) {
        f->early = *rc;
        if (e == NULL || !e->cached || cm_loop_post(s->loop, on_refused, f) < 0) {
            free(f);
            return NULL;
        }
    }
    f->next = s->flights;
    s->flights = f;
    if (e != NULL) {
        e->attempted = cm_now_ms();
    }
    return f;
}

const char *
cm_selector_why(const cm_selector *s, const char *service)
{
    return s == NULL ? NULL : cm_registry_why(s->reg, service);
}

int
cm_selector_resolve(cm_selector *s, const char *service, cm_registry_cb cb, void *user)
{
    if (s == NULL || service == NULL || service[0] == '\0') {
        return CM_EINVAL;
    }
    waiter *w = NULL;
    if (cb != NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL) {
            return CM_ENOMEM;
        }
        w->cb = cb;
        w->user = user;
    }
    int rc = 0;
    flight *f = flight_start(s, service, &rc);
    if (f == NULL) {
        free(w);
        return rc;
    }
    if (w != NULL) {
        *f->tail = w;
        f->tail = &w->next;
    }
    return 0;
}

/* ---- passive health ---- */

static void
readmit(cm__scache *c, cm__snode *n)
{
    if (n->until != 0) {
        n->until = 0;
        n->probe_at = 0;
        c->nejected--;
    }
}

/* Opens n's breaker for the back-off of its level. */
static void
eject(const cm_selector *s, cm__scache *c, cm__snode *n, uint64_t now)
{
    uint64_t base = s->o.eject_backoff_ms;
    uint64_t max = base > BACKOFF_MAX_MS ? base : BACKOFF_MAX_MS;
    uint64_t backoff = n->level >= 32 ? max : base << n->level;
    if (backoff > max) {
        backoff = max;
    }
    if (n->until == 0) {
        c->nejected++;
    }
    n->until = now + backoff;
    n->probe_at = 0;
    n->fails = 0;
    n->win_calls = n->win_errs = 0;
    if (n->level < 32) {
        n->level++;
    }
}

/* Counts an outcome in n's error-rate window; non-zero when the rate now ejects. */
static int
rate_trips(const cm_selector *s, cm__snode *n, int failed, uint64_t now)
{
    if (s->o.eject_error_pct == 0) {
        return 0;
    }
    if (now - n->win_start >= RATE_WINDOW_MS) {
        n->win_start = now;
        n->win_calls = n->win_errs = 0;
    }
    n->win_calls++;
    n->win_errs += failed != 0;
    return n->win_calls >= RATE_MIN_CALLS &&
           (uint64_t)n->win_errs * 100u >= (uint64_t)s->o.eject_error_pct * n->win_calls;
}

static void
mark_node(const cm_selector *s, cm__scache *c, cm__snode *n, int status, uint64_t now)
{
    if (status >= 0) {
        readmit(c, n);
        n->fails = 0;
        n->level = 0;
        (void)rate_trips(s, n, 0, now);
        return;
    }
    if (n->until != 0) {
        if (now >= n->until) {
            eject(s, c, n, now); /* the half-open probe failed: open again, for longer */
        }
        return; /* else calls that were already under way when it was ejected */
    }
    int tripped = rate_trips(s, n, 1, now);
    if (++n->fails >= s->o.eject_failures || tripped) {
        eject(s, c, n, now);
    }
}

void
cm_selector_mark(cm_selector *s, const char *service, const char *address, int status)
{
    if (s == NULL || service == NULL || address == NULL) {
        return;
    }
    entry *e = entry_find(s, service);
    if (e == NULL || !e->cached) {
        return;
    }
    uint64_t now = cm_now_ms();
    for (size_t i = 0; i < e->c.nnodes; i++) {
        if (strcmp(e->c.nodes[i].node->address, address) == 0) {
            mark_node(s, &e->c, &e->c.nodes[i], status, now);
        }
    }
}

void
cm_selector_each(cm_selector *s, void (*fn)(void *arg, const cm_selector_stat *st), void *arg)
{
    uint64_t now = cm_now_ms();
    for (entry *e = s->entries; e != NULL; e = e->next) {
        if (!e->cached) {
            continue;
        }
        size_t open = 0;
        for (size_t i = 0; i < e->c.nnodes; i++) {
            open += e->c.nodes[i].until != 0;
        }
        cm_selector_stat st = {e->name,  e->c.nnodes, open, now - e->refreshed,
                               e->stale, e->failing};
        fn(arg, &st);
    }
}

/* ---- the hot path ---- */

static int
has_endpoint(const cm_reg_service *svc, const char *name)
{
    for (size_t i = 0; i < svc->nendpoints; i++) {
        if (svc->endpoints[i].name != NULL && strcmp(svc->endpoints[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static int
service_passes(const cm_reg_service *svc, const cm_select_filter *f)
{
    if (f->version != NULL && strcmp(svc->version ? svc->version : "", f->version) != 0) {
        return 0;
    }
    return f->endpoint == NULL || has_endpoint(svc, f->endpoint);
}

static int
node_passes(const cm_node *n, const cm_md *labels)
{
    const char *k, *v;
    for (size_t i = 0; cm_md_at(labels, i, &k, &v) == 0; i++) {
        const char *have = cm_md_get(n->metadata, k);
        if (have == NULL || strcmp(have, v) != 0) {
            return 0;
        }
    }
    return 1;
}

/* A half-open node may take a probe: none is out, or the last one's outcome never came. */
static int
probe_due(const cm__snode *n, uint64_t now, uint64_t probe_ms)
{
    return n->until != 0 && now >= n->until && (n->probe_at == 0 || now - n->probe_at >= probe_ms);
}

/* Writes the indexes of the nodes passing f into c->scratch, leaving out ejected nodes unless
 * every passing node is ejected (the panic threshold). A half-open node due a probe comes alone:
 * the pick is its probe. Returns how many. */
static size_t
candidates(cm__scache *c, const cm_select_filter *f, uint64_t now, uint64_t probe_ms)
{
    size_t k = 0, passing = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < c->nsvcs; i++) {
            if (f != NULL && !service_passes(c->svcs[i], f)) {
                continue;
            }
            const cm__srange *r = &c->ranges[i];
            for (size_t j = r->first; j < r->first + r->n; j++) {
                cm__snode *n = &c->nodes[j];
                if (f != NULL && f->labels != NULL && !node_passes(n->node, f->labels)) {
                    continue;
                }
                passing++;
                if (pass == 0 && probe_due(n, now, probe_ms)) {
                    n->probe_at = now;
                    c->scratch[0] = (uint32_t)j;
                    return 1;
                }
                if (pass == 1 || n->until == 0) {
                    c->scratch[k++] = (uint32_t)j;
                }
            }
        }
        if (k > 0 || passing == 0) {
            break;
        }
    }
    return k;
}

int
cm_selector_pick(cm_selector *s, const char *service, const cm_select_filter *f,
                 const char **address, const char **node_id)
{
    if (s == NULL || service == NULL || address == NULL) {
        return CM_EINVAL;
    }
    entry *e = entry_find(s, service);
    if (e == NULL || !e->cached) {
        return CM_ENOTFOUND;
    }
    uint64_t now = cm_now_ms();
    if (now - e->refreshed >= s->o.cache_ttl_ms) {
        e->stale++;
        /* Expired: serve what we have and ask the registry in the background, so that a slow
         * registry never holds a call up (stale-while-revalidate; a lookup in flight is joined).
         * After a failed lookup (stale-if-error), at most once per retry interval. */
        uint64_t retry = s->o.cache_ttl_ms < RETRY_MAX_MS ? s->o.cache_ttl_ms : RETRY_MAX_MS;
        if (!e->failing || now - e->attempted >= retry) {
            int rc;
            e->attempted = now;
            (void)flight_start(s, service, &rc);
        }
    }
    cm__scache *c = &e->c;
    if (f != NULL && f->version == NULL && f->endpoint == NULL && f->labels == NULL) {
        f = NULL;
    }
    const cm__snode *n;
    if (f == NULL && c->nejected == 0) {
        if (c->nnodes == 0) {
            return CM_ENONODE;
        }
        size_t i = s->o.strategy == CM_STRATEGY_ROUND_ROBIN ? (size_t)(e->rr++ % c->nnodes)
                                                            : rng_below(s, (uint32_t)c->nnodes);
        n = &c->nodes[i];
    } else {
        uint64_t probe_ms = s->o.eject_backoff_ms > 1000 ? s->o.eject_backoff_ms : 1000;
        size_t k = candidates(c, f, now, probe_ms);
        if (k == 0) {
            return CM_ENONODE;
        }
        size_t i = s->o.strategy == CM_STRATEGY_ROUND_ROBIN ? (size_t)(e->rr++ % k)
                                                            : rng_below(s, (uint32_t)k);
        n = &c->nodes[c->scratch[i]];
    }
    *address = n->node->address;
    if (node_id != NULL) {
        *node_id = n->node->id;
    }
    return 0;
}
