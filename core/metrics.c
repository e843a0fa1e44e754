/* The metrics registry: families, series and their lock-free updates. The text exposition
 * format is metrics_text.c. */
#include "metrics_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double cm_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t cm_metrics_latency_nbuckets =
    sizeof(cm_metrics_latency_buckets) / sizeof(cm_metrics_latency_buckets[0]);

static uint64_t
double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double
bits_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

double
cm__metrics_load_double(const _Atomic uint64_t *p)
{
    return bits_double(atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed));
}

int
cm__metrics_valid_name(const char *s, int label)
{
    if (s == NULL || *s == '\0') {
        return 0;
    }
    if (label && s[0] == '_' && s[1] == '_') {
        return 0; /* reserved for Prometheus's own labels */
    }
    for (size_t i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (!label && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* ---- the registry ---- */

int
cm_metrics_new(cm_metrics **out)
{
    cm_metrics *reg = calloc(1, sizeof *reg);
    if (reg == NULL) {
        return CM_ENOMEM;
    }
    pthread_mutex_init(&reg->mu, NULL);
    pthread_mutex_init(&reg->collect_mu, NULL);
    *out = reg;
    return 0;
}

static void
family_free(cm_metric_family *f)
{
    for (size_t i = 0; i < f->nseries; i++) {
        free(f->series[i]);
    }
    free(f->series);
    cm__metrics_index *ix = atomic_load_explicit(&f->index, memory_order_relaxed);
    while (ix != NULL) {
        cm__metrics_index *prev = ix->prev;
        free(ix);
        ix = prev;
    }
    free(f->overflow);
    free(f->name);
    free(f->help);
    for (size_t i = 0; i < f->nlabels; i++) {
        free(f->labels[i]);
    }
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void
cm_metrics_free(cm_metrics *reg)
{
    if (reg == NULL) {
        return;
    }
    cm_metric_family *f = reg->families;
    while (f != NULL) {
        cm_metric_family *next = f->next;
        family_free(f);
        f = next;
    }
    free(reg->collectors);
    pthread_mutex_destroy(&reg->mu);
    pthread_mutex_destroy(&reg->collect_mu);
    free(reg);
}

void
cm_metric_opts_init(cm_metric_opts *o)
{
    memset(o, 0, sizeof *o);
}

cm_metric_family *
cm__metrics_find(cm_metrics *reg, const char *name)
{
    for (cm_metric_family *f = reg->families; f != NULL; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

/* 0 or CM_EINVAL: the names, label names and buckets of o for a family of type. */
static int
check_opts(cm_metric_type type, const cm_metric_opts *o, const double **buckets, size_t *nbuckets)
{
    if (type > CM_METRIC_HISTOGRAM || !cm__metrics_valid_name(o->name, 0) ||
        o->nlabels > CM_METRICS_MAX_LABELS || (o->nlabels > 0 && o->labels == NULL)) {
        return CM_EINVAL;
    }
    for (size_t i = 0; i < o->nlabels; i++) {
        if (!cm__metrics_valid_name(o->labels[i], 1) ||
            (type == CM_METRIC_HISTOGRAM && strcmp(o->labels[i], "le") == 0)) {
            return CM_EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(o->labels[i], o->labels[j]) == 0) {
                return CM_EINVAL;
            }
        }
    }
    *buckets = NULL;
    *nbuckets = 0;
    if (type != CM_METRIC_HISTOGRAM) {
        return 0;
    }
    *buckets = o->buckets != NULL ? o->buckets : cm_metrics_latency_buckets;
    *nbuckets = o->buckets != NULL ? o->nbuckets : cm_metrics_latency_nbuckets;
    /* A trailing +Inf is the implicit bucket. */
    if (*nbuckets > 0 && isinf((*buckets)[*nbuckets - 1]) && (*buckets)[*nbuckets - 1] > 0) {
        (*nbuckets)--;
    }
    if (*nbuckets == 0 || *nbuckets > CM_METRICS_MAX_BUCKETS) {
        return CM_EINVAL;
    }
    for (size_t i = 0; i < *nbuckets; i++) {
        if (!isfinite((*buckets)[i]) || (i > 0 && (*buckets)[i] <= (*buckets)[i - 1])) {
            return CM_EINVAL;
        }
    }
    return 0;
}

/* Non-zero when f is what a family of type with o (checked) would be. */
static int
same_family(const cm_metric_family *f, cm_metric_type type, const cm_metric_opts *o,
            const double *buckets, size_t nbuckets)
{
    if (f->type != type || f->nlabels != o->nlabels || f->nbuckets != nbuckets) {
        return 0;
    }
    for (size_t i = 0; i < o->nlabels; i++) {
        if (strcmp(f->labels[i], o->labels[i]) != 0) {
            return 0;
        }
    }
    for (size_t i = 0; i < nbuckets; i++) {
        if (f->buckets[i] != buckets[i]) {
            return 0;
        }
    }
    return 1;
}

static cm_metric *
series_alloc(const cm_metric_family *f, const char *const *values, const size_t *lens)
{
    size_t ncounts = f->type == CM_METRIC_HISTOGRAM ? f->nbuckets + 1 : 0;
    size_t size = sizeof(cm_metric) + ncounts * sizeof(_Atomic uint64_t);
    for (size_t i = 0; i < f->nlabels; i++) {
        size += lens[i] + 1;
    }
    cm_metric *s = calloc(1, size);
    if (s == NULL) {
        return NULL;
    }
    s->fam = (cm_metric_family *)f;
    char *p = (char *)&s->counts[ncounts];
    for (size_t i = 0; i < f->nlabels; i++) {
        memcpy(p, values[i], lens[i]);
        p[lens[i]] = '\0';
        s->values[i] = p;
        p += lens[i] + 1;
    }
    return s;
}

static cm_metric_family *
family_alloc(cm_metrics *reg, cm_metric_type type, const cm_metric_opts *o, const double *buckets,
             size_t nbuckets)
{
    cm_metric_family *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return NULL;
    }
    pthread_mutex_init(&f->mu, NULL);
    f->reg = reg;
    f->type = type;
    f->name = strdup(o->name);
    f->help = strdup(o->help != NULL ? o->help : "");
    int ok = f->name != NULL && f->help != NULL;
    f->nlabels = o->nlabels;
    for (size_t i = 0; i < o->nlabels; i++) {
        f->labels[i] = strdup(o->labels[i]);
        ok = ok && f->labels[i] != NULL;
    }
    f->nbuckets = nbuckets;
    for (size_t i = 0; i < nbuckets; i++) {
        f->buckets[i] = buckets[i];
    }
    f->max_series = o->max_series > 0 ? o->max_series : CM_METRICS_DEFAULT_MAX_SERIES;
    size_t lens[CM_METRICS_MAX_LABELS] = {0};
    const char *empty[CM_METRICS_MAX_LABELS] = {"", "", "", ""};
    f->overflow = series_alloc(f, empty, lens);
    if (!ok || f->overflow == NULL) {
        family_free(f);
        return NULL;
    }
    f->overflow->overflow = 1;
    return f;
}

int
cm_metrics_family(cm_metrics *reg, cm_metric_type type, const cm_metric_opts *o,
                  cm_metric_family **out)
{
    const double *buckets;
    size_t nbuckets;

    if (reg == NULL || o == NULL || out == NULL || check_opts(type, o, &buckets, &nbuckets) < 0) {
        return CM_EINVAL;
    }
    pthread_mutex_lock(&reg->mu);
    cm_metric_family *f = cm__metrics_find(reg, o->name);
    if (f != NULL) {
        int same = same_family(f, type, o, buckets, nbuckets);
        pthread_mutex_unlock(&reg->mu);
        if (!same) {
            return CM_EEXIST;
        }
        *out = f;
        return 0;
    }
    f = family_alloc(reg, type, o, buckets, nbuckets);
    if (f == NULL) {
        pthread_mutex_unlock(&reg->mu);
        return CM_ENOMEM;
    }
    if (reg->last != NULL) {
        reg->last->next = f;
    } else {
        reg->families = f;
    }
    reg->last = f;
    pthread_mutex_unlock(&reg->mu);
    *out = f;
    return 0;
}

/* ---- series ---- */

size_t
cm__metrics_sanitize(const char *s, char *out)
{
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    while (*p != '\0') {
        size_t len = 0;
        if (p[0] < 0x80) {
            len = 1;
        } else if (p[0] >= 0xc2 && p[0] <= 0xdf) {
            len = 2;
        } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
            len = 3;
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
            len = 4;
        }
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                len = 0; /* also stops at the terminating NUL */
            }
        }
        /* Overlong forms, surrogates and code points past U+10FFFF. */
        if ((len == 3 && p[0] == 0xe0 && p[1] < 0xa0) ||
            (len == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
            (len == 4 && p[0] == 0xf0 && p[1] < 0x90) ||
            (len == 4 && p[0] == 0xf4 && p[1] >= 0x90)) {
            len = 0;
        }
        const unsigned char *src = len > 0 ? p : (const unsigned char *)"\xef\xbf\xbd";
        size_t outlen = len > 0 ? len : 3;
        if (n + outlen > CM_METRICS_MAX_VALUE_LEN) {
            break;
        }
        memcpy(out + n, src, outlen);
        n += outlen;
        p += len > 0 ? len : 1;
    }
    return n;
}

static uint64_t
tuple_hash(const char *const *values, const size_t *lens, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < lens[i]; j++) {
            h ^= (unsigned char)values[i][j];
            h *= 0x100000001b3ull;
        }
        h ^= 0xff; /* never inside UTF-8: separates "a","bc" from "ab","c" */
        h *= 0x100000001b3ull;
    }
    return h;
}

static int
tuple_equal(const cm_metric *s, const char *const *values, const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strncmp(s->values[i], values[i], lens[i]) != 0 || s->values[i][lens[i]] != '\0') {
            return 0;
        }
    }
    return 1;
}

/* Puts s in the first free slot of its hash in ix. */
static void
index_put(cm__metrics_index *ix, cm_metric *s)
{
    size_t j = s->hash & (ix->cap - 1);
    while (atomic_load_explicit(&ix->slots[j], memory_order_relaxed) != NULL) {
        j = (j + 1) & (ix->cap - 1);
    }
    atomic_store_explicit(&ix->slots[j], s, memory_order_release);
}

/* The series of the tuple in ix, or NULL. Any thread, with or without f->mu. */
static cm_metric *
index_find(const cm__metrics_index *ix, uint64_t h, const char *const *values, const size_t *lens,
           size_t n)
{
    if (ix == NULL) {
        return NULL;
    }
    for (size_t j = h & (ix->cap - 1);; j = (j + 1) & (ix->cap - 1)) {
        cm_metric *s =
            atomic_load_explicit(&((cm__metrics_index *)ix)->slots[j], memory_order_acquire);
        if (s == NULL) {
            return NULL;
        }
        if (s->hash == h && tuple_equal(s, values, lens, n)) {
            return s;
        }
    }
}

/* Makes sure f's index has room for one more series (at most half full), publishing a
 * doubled copy when it has not. 0 or CM_ENOMEM. f->mu held. */
static int
index_grow(cm_metric_family *f)
{
    cm__metrics_index *old = atomic_load_explicit(&f->index, memory_order_relaxed);
    if (old != NULL && (f->nseries + 1) * 2 <= old->cap) {
        return 0;
    }
    size_t cap = old != NULL ? old->cap * 2 : 16;
    cm__metrics_index *ix = calloc(1, sizeof *ix + cap * sizeof ix->slots[0]);
    if (ix == NULL) {
        return CM_ENOMEM;
    }
    ix->cap = cap;
    ix->prev = old;
    for (size_t i = 0; i < f->nseries; i++) {
        index_put(ix, f->series[i]);
    }
    atomic_store_explicit(&f->index, ix, memory_order_release);
    return 0;
}

/* Adds s to f's creation-order array and its index. 0 or CM_ENOMEM. f->mu held. */
static int
series_insert(cm_metric_family *f, cm_metric *s)
{
    if (f->nseries == f->series_cap) {
        size_t cap = f->series_cap > 0 ? f->series_cap * 2 : 8;
        cm_metric **series = realloc(f->series, cap * sizeof *series);
        if (series == NULL) {
            return CM_ENOMEM;
        }
        f->series = series;
        f->series_cap = cap;
    }
    if (index_grow(f) < 0) {
        return CM_ENOMEM;
    }
    f->series[f->nseries++] = s;
    index_put(atomic_load_explicit(&f->index, memory_order_relaxed), s);
    atomic_store_explicit(&f->count, f->nseries, memory_order_relaxed);
    return 0;
}

cm_metric *
cm_metrics_series(cm_metric_family *f, const char *const *label_values)
{
    char buf[CM_METRICS_MAX_LABELS][CM_METRICS_MAX_VALUE_LEN];
    const char *values[CM_METRICS_MAX_LABELS];
    size_t lens[CM_METRICS_MAX_LABELS];

    if (f == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < f->nlabels; i++) {
        lens[i] = cm__metrics_sanitize(label_values != NULL ? label_values[i] : NULL, buf[i]);
        values[i] = buf[i];
    }
    uint64_t h = tuple_hash(values, lens, f->nlabels);
    /* A series that exists is found without the lock. */
    cm_metric *s = index_find(atomic_load_explicit(&f->index, memory_order_acquire), h, values,
                              lens, f->nlabels);
    if (s != NULL) {
        return s;
    }
    pthread_mutex_lock(&f->mu);
    s = index_find(atomic_load_explicit(&f->index, memory_order_relaxed), h, values, lens,
                   f->nlabels);
    if (s == NULL && f->nseries < f->max_series) {
        s = series_alloc(f, values, lens);
        if (s != NULL) {
            s->hash = h;
            if (series_insert(f, s) < 0) {
                free(s);
                s = NULL;
            }
        }
    }
    pthread_mutex_unlock(&f->mu);
    return s != NULL ? s : f->overflow;
}

uint64_t
cm_metrics_dropped(const cm_metric_family *f)
{
    return f != NULL ? atomic_load_explicit(&f->overflow->v, memory_order_relaxed) : 0;
}

size_t
cm_metrics_series_count(const cm_metric_family *f)
{
    return f != NULL ? atomic_load_explicit(&f->count, memory_order_relaxed) : 0;
}

void
cm_metrics_each_series(cm_metric_family *f,
                       void (*fn)(void *arg, const char *const *label_values, const cm_metric *s),
                       void *arg)
{
    if (f == NULL || fn == NULL) {
        return;
    }
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nseries; i++) {
        fn(arg, f->series[i]->values, f->series[i]);
    }
    pthread_mutex_unlock(&f->mu);
}

/* ---- updates ---- */

/* Non-zero when s may take an update of type; an update to the overflow series is counted. */
static inline int
takes(cm_metric *s, cm_metric_type type)
{
    if (s == NULL || s->fam->type != type) {
        return 0;
    }
    if (s->overflow) {
        atomic_fetch_add_explicit(&s->v, 1, memory_order_relaxed);
        return 0;
    }
    return 1;
}

void
cm_counter_add(cm_metric *s, uint64_t n)
{
    if (takes(s, CM_METRIC_COUNTER)) {
        atomic_fetch_add_explicit(&s->v, n, memory_order_relaxed);
    }
}

void
cm_counter_inc(cm_metric *s)
{
    cm_counter_add(s, 1);
}

static void
atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, double_bits(bits_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void
cm_gauge_set(cm_metric *s, double v)
{
    if (takes(s, CM_METRIC_GAUGE)) {
        atomic_store_explicit(&s->v, double_bits(v), memory_order_relaxed);
    }
}

void
cm_gauge_add(cm_metric *s, double v)
{
    if (takes(s, CM_METRIC_GAUGE)) {
        atomic_add_double(&s->v, v);
    }
}

void
cm_histogram_observe(cm_metric *s, double value)
{
    if (isnan(value) || !takes(s, CM_METRIC_HISTOGRAM)) {
        return;
    }
    const cm_metric_family *f = s->fam;
    size_t lo = 0, hi = f->nbuckets; /* the first bound >= value; nbuckets is +Inf */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (f->buckets[mid] < value) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    atomic_fetch_add_explicit(&s->counts[lo], 1, memory_order_relaxed);
    atomic_add_double(&s->sum, value);
}

/* ---- reads ---- */

uint64_t
cm_counter_get(const cm_metric *s)
{
    if (s == NULL || s->overflow || s->fam->type != CM_METRIC_COUNTER) {
        return 0;
    }
    return atomic_load_explicit(&s->v, memory_order_relaxed);
}

double
cm_gauge_get(const cm_metric *s)
{
    if (s == NULL || s->overflow || s->fam->type != CM_METRIC_GAUGE) {
        return 0;
    }
    return cm__metrics_load_double(&s->v);
}

uint64_t
cm_histogram_count(const cm_metric *s)
{
    if (s == NULL || s->overflow || s->fam->type != CM_METRIC_HISTOGRAM) {
        return 0;
    }
    uint64_t n = 0;
    for (size_t i = 0; i <= s->fam->nbuckets; i++) {
        n += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
    }
    return n;
}

double
cm_histogram_sum(const cm_metric *s)
{
    if (s == NULL || s->overflow || s->fam->type != CM_METRIC_HISTOGRAM) {
        return 0;
    }
    return cm__metrics_load_double(&s->sum);
}

size_t
cm_histogram_buckets(const cm_metric *s, const double **bounds, uint64_t *counts)
{
    if (s == NULL || s->overflow || s->fam->type != CM_METRIC_HISTOGRAM) {
        return 0;
    }
    const cm_metric_family *f = s->fam;
    for (size_t i = 0; i <= f->nbuckets; i++) {
        counts[i] = atomic_load_explicit(&s->counts[i], memory_order_relaxed);
    }
    if (bounds != NULL) {
        *bounds = f->buckets;
    }
    return f->nbuckets;
}

double
cm_histogram_quantile_of(const double *bounds, const uint64_t *counts, size_t nbounds, double q)
{
    uint64_t total = 0;

    if (bounds == NULL || counts == NULL || nbounds == 0 || !(q >= 0 && q <= 1)) {
        return NAN;
    }
    for (size_t i = 0; i <= nbounds; i++) {
        total += counts[i];
    }
    if (total == 0) {
        return NAN;
    }
    double rank = q * (double)total;
    uint64_t below = 0;
    for (size_t i = 0; i < nbounds; i++) {
        if ((double)(below + counts[i]) >= rank && counts[i] > 0) {
            /* As histogram_quantile: the first bucket starts at 0 when its bound is positive. */
            double lo = i > 0 ? bounds[i - 1] : (bounds[0] > 0 ? 0 : bounds[0]);
            return lo + (bounds[i] - lo) * ((rank - (double)below) / (double)counts[i]);
        }
        below += counts[i];
    }
    return bounds[nbounds - 1];
}

double
cm_histogram_quantile(const cm_metric *s, double q)
{
    uint64_t counts[CM_METRICS_MAX_BUCKETS + 1];
    const double *bounds = NULL;
    size_t n = cm_histogram_buckets(s, &bounds, counts);
    return n == 0 ? NAN : cm_histogram_quantile_of(bounds, counts, n, q);
}

/* ---- collectors ---- */

int
cm_metrics_add_collector(cm_metrics *reg, cm_metrics_collector fn, void *arg)
{
    if (reg == NULL || fn == NULL) {
        return CM_EINVAL;
    }
    pthread_mutex_lock(&reg->collect_mu);
    if (reg->ncollectors == reg->collectors_cap) {
        size_t cap = reg->collectors_cap > 0 ? reg->collectors_cap * 2 : 4;
        cm__metrics_collector *c = realloc(reg->collectors, cap * sizeof *c);
        if (c == NULL) {
            pthread_mutex_unlock(&reg->collect_mu);
            return CM_ENOMEM;
        }
        reg->collectors = c;
        reg->collectors_cap = cap;
    }
    reg->collectors[reg->ncollectors].fn = fn;
    reg->collectors[reg->ncollectors].arg = arg;
    reg->ncollectors++;
    pthread_mutex_unlock(&reg->collect_mu);
    return 0;
}

int
cm_metrics_remove_collector(cm_metrics *reg, cm_metrics_collector fn, void *arg)
{
    int rc = CM_ENOTFOUND;

    if (reg == NULL) {
        return CM_EINVAL;
    }
    pthread_mutex_lock(&reg->collect_mu);
    for (size_t i = 0; i < reg->ncollectors; i++) {
        if (reg->collectors[i].fn == fn && reg->collectors[i].arg == arg) {
            memmove(&reg->collectors[i], &reg->collectors[i + 1],
                    (reg->ncollectors - i - 1) * sizeof reg->collectors[0]);
            reg->ncollectors--;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&reg->collect_mu);
    return rc;
}
