/* cmicro core: the metrics registry's structures, shared by metrics.c (families, series,
 * updates) and metrics_text.c (the text exposition format). Not installed. */
#ifndef CMICRO_METRICS_INT_H
#define CMICRO_METRICS_INT_H

#include <cmicro/metrics.h>
#include <pthread.h>
#include <stdatomic.h>

struct cm_metric {
    cm_metric_family *fam;
    uint64_t hash;
    int overflow;                              /* the family's overflow series */
    const char *values[CM_METRICS_MAX_LABELS]; /* in the same allocation, after counts */
    /* A counter's value, or a gauge's double (its bits). */
    _Atomic uint64_t v;
    /* A histogram's sum (double bits); counts holds nbuckets + 1 (the last is +Inf), each
     * bucket counted alone (the render makes them cumulative). */
    _Atomic uint64_t sum;
    _Atomic uint64_t counts[];
};

/* A family's hash index of its series: open addressing, at most half full, slots written once
 * (with release) under the family's lock. When it grows, the new index is published whole and
 * the old one kept (prev) until the registry is freed, so that a reader still probing it is
 * safe; it may then miss a new series and look again under the lock. */
typedef struct cm__metrics_index {
    struct cm__metrics_index *prev;
    size_t cap; /* a power of two */
    _Atomic(cm_metric *) slots[];
} cm__metrics_index;

struct cm_metric_family {
    cm_metrics *reg;
    cm_metric_type type;
    char *name;
    char *help;
    size_t nlabels;
    char *labels[CM_METRICS_MAX_LABELS];
    size_t nbuckets;
    double buckets[CM_METRICS_MAX_BUCKETS];
    size_t max_series;

    pthread_mutex_t mu; /* guards series, nseries and changes to index */
    cm_metric **series; /* creation order */
    size_t nseries, series_cap;
    /* Read without the lock: a lookup that finds its series takes no lock. */
    _Atomic(cm__metrics_index *) index;
    _Atomic size_t count; /* nseries, readable without the lock */
    cm_metric *overflow;  /* updates counted in overflow->v, whatever the type */
    cm_metric_family *next;
};

typedef struct cm__metrics_collector {
    cm_metrics_collector fn;
    void *arg;
} cm__metrics_collector;

struct cm_metrics {
    pthread_mutex_t mu; /* guards families (the list and adding to it) */
    cm_metric_family *families, *last;
    /* Held while collectors run, so that a removed collector is not running afterwards. Taken
     * before mu when both are held. */
    pthread_mutex_t collect_mu;
    cm__metrics_collector *collectors;
    size_t ncollectors, collectors_cap;
};

/* Non-zero for a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or, with label set, a valid label
 * name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"). */
int cm__metrics_valid_name(const char *s, int label);
/* A family of reg named name, or NULL. reg->mu held. */
cm_metric_family *cm__metrics_find(cm_metrics *reg, const char *name);
/* Copies s (NULL is "") to out, each byte that is not part of valid UTF-8 replaced by U+FFFD,
 * cut at a character boundary to at most CM_METRICS_MAX_VALUE_LEN bytes (out's size; not
 * terminated). Returns the length written. */
size_t cm__metrics_sanitize(const char *s, char *out);
/* The double stored in an atomic's bits. */
double cm__metrics_load_double(const _Atomic uint64_t *p);

#endif
