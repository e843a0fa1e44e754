/* The server's built-in resilience wrappers: a concurrency limit per endpoint and a token-bucket
 * rate limit, each answering go-micro's 429 error when it refuses a call. They are handler
 * wrappers like any other, installed first (outermost) when configured. */
#include "framework_int.h"

#include <stdatomic.h>
#include <stdlib.h>

struct cm__limits {
    unsigned max_concurrent; /* per endpoint; 0: none */
    double rate;             /* calls per second; 0: none */
    double burst;
    uv_mutex_t mu; /* the bucket */
    double tokens;
    uint64_t last_ns;
    atomic_uint_fast64_t refused_concurrency, refused_rate;
};

static int
concurrency_before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    cm__limits *l = arg;
    atomic_int *inflight = cm__ctx_route_inflight(w->ctx);
    int now = atomic_fetch_add(inflight, 1) + 1;
    if ((unsigned)now > l->max_concurrent) {
        atomic_fetch_sub(inflight, 1);
        atomic_fetch_add(&l->refused_concurrency, 1);
        *err = cm_error_new(w->service, 429,
                            "too many concurrent calls to %s (limit %u, "
                            "MICRO_SERVER_MAX_CONCURRENT)",
                            w->endpoint, l->max_concurrent);
        return CM_EREMOTE;
    }
    *state = inflight;
    return 0;
}

static void
concurrency_after(const cm_wrap_info *w, void *arg, void *state)
{
    (void)w;
    (void)arg;
    atomic_fetch_sub((atomic_int *)state, 1);
}

/* Takes one token from the bucket, refilled at l->rate per second up to l->burst. */
static int
take_token(cm__limits *l)
{
    uv_mutex_lock(&l->mu);
    uint64_t now = uv_hrtime();
    l->tokens += (double)(now - l->last_ns) / 1e9 * l->rate;
    if (l->tokens > l->burst) {
        l->tokens = l->burst;
    }
    l->last_ns = now;
    int ok = l->tokens >= 1.0;
    if (ok) {
        l->tokens -= 1.0;
    }
    uv_mutex_unlock(&l->mu);
    return ok;
}

static int
rate_before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    (void)state;
    cm__limits *l = arg;
    if (take_token(l)) {
        return 0;
    }
    atomic_fetch_add(&l->refused_rate, 1);
    *err = cm_error_new(w->service, 429,
                        "rate limit exceeded: %g calls/s, burst %g (MICRO_SERVER_RATE_LIMIT)",
                        l->rate, l->burst);
    return CM_EREMOTE;
}

int
cm__limits_new(cm_server *s, unsigned max_concurrent, unsigned rate, unsigned burst,
               cm__limits **out)
{
    *out = NULL;
    if (max_concurrent == 0 && rate == 0) {
        return 0;
    }
    cm__limits *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return CM_ENOMEM;
    }
    uv_mutex_init(&l->mu);
    l->max_concurrent = max_concurrent;
    l->rate = rate;
    l->burst = burst ? burst : (rate ? rate : 1);
    l->tokens = l->burst;
    l->last_ns = uv_hrtime();
    int rc = 0;
    if (rate > 0) {
        cm_wrapper w = {"rate-limit", rate_before, NULL, l};
        rc = cm_server_wrap(s, &w);
    }
    if (rc == 0 && max_concurrent > 0) {
        cm_wrapper w = {"concurrency-limit", concurrency_before, concurrency_after, l};
        rc = cm_server_wrap(s, &w);
    }
    if (rc < 0) {
        cm__limits_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void
cm__limits_refused(const cm__limits *l, uint64_t *concurrency, uint64_t *rate)
{
    *concurrency = l ? atomic_load(&((cm__limits *)l)->refused_concurrency) : 0;
    *rate = l ? atomic_load(&((cm__limits *)l)->refused_rate) : 0;
}

void
cm__limits_free(cm__limits *l)
{
    if (l != NULL) {
        uv_mutex_destroy(&l->mu);
        free(l);
    }
}
