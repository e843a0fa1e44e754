/* cmicro core: a metrics registry written in Prometheus's text exposition format (0.0.4).
 *
 * A registry (cm_metrics) holds families: counters, gauges and histograms, each with a name, a
 * help text and fixed label names (0 to CM_METRICS_MAX_LABELS). A series is one tuple of label
 * values of a family. It is obtained once with cm_metrics_series(), the only call that
 * allocates (under the family's mutex; the same tuple gives the same pointer, and finding an
 * existing series takes no lock), and then updated on the hot path by lock-free atomic
 * operations that never allocate and never fail.
 *
 *     cm_metric_family *reqs;
 *     cm_metric_opts o;
 *     cm_metric_opts_init(&o);
 *     o.name = "micro_server_requests_total";
 *     o.help = "Requests handled, by endpoint and status.";
 *     o.labels = (const char *const[]){"endpoint", "status"};
 *     o.nlabels = 2;
 *     cm_metrics_family(reg, CM_METRIC_COUNTER, &o, &reqs);
 *     cm_metric *ok = cm_metrics_series(reqs, (const char *const[]){"Greeter.Hello", "200"});
 *     cm_counter_inc(ok);   (on every request: one atomic add)
 *
 * Values that live elsewhere (in-flight calls, open connections, a selector's nodes) are sampled
 * when the registry is rendered, by collectors (cm_metrics_add_collector) that write their
 * series through a small writer API.
 *
 * Bounded memory: a family holds at most max_series series (default
 * CM_METRICS_DEFAULT_MAX_SERIES). Past that, and when memory runs out, cm_metrics_series()
 * returns the family's overflow series: updates to it are counted as dropped and go nowhere
 * else, and the render shows the count as cmicro_metrics_dropped_updates_total{family="..."}.
 * A label value is cut to CM_METRICS_MAX_VALUE_LEN bytes and bytes that are not UTF-8 become
 * U+FFFD, so a hostile endpoint name can neither grow memory nor break a scrape.
 *
 * Threads: every function may be called from any thread, at the same time, except
 * cm_metrics_free(). Families and series live as long as their registry.
 */
#ifndef CMICRO_METRICS_H
#define CMICRO_METRICS_H

#include <cmicro/buf.h>
#include <cmicro/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CM_METRICS_MAX_LABELS 4
#define CM_METRICS_MAX_BUCKETS 32
#define CM_METRICS_DEFAULT_MAX_SERIES 10000
/* The longest label value kept, in bytes; a longer one is cut at a character boundary. */
#define CM_METRICS_MAX_VALUE_LEN 256

typedef enum { CM_METRIC_COUNTER = 0, CM_METRIC_GAUGE = 1, CM_METRIC_HISTOGRAM = 2 } cm_metric_type;

typedef struct cm_metrics cm_metrics;
typedef struct cm_metric_family cm_metric_family;
/* One series: a family and a tuple of label values. */
typedef struct cm_metric cm_metric;

/* The default histogram bounds, in seconds, for call latencies: client_golang's DefBuckets
 * (5 ms to 10 s) with 0.5, 1 and 2.5 ms below them, since a local call takes well under 5 ms:
 * 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10. */
CM_EXTERN extern const double cm_metrics_latency_buckets[];
CM_EXTERN extern const size_t cm_metrics_latency_nbuckets;

/* Returns owned (cm_metrics_free) in *out. 0 or CM_ENOMEM. */
CM_EXTERN int cm_metrics_new(cm_metrics **out);
/* Frees the registry, its families and series. No other thread may use any of them then, and
 * pointers to them become invalid. NULL is a no-op. */
CM_EXTERN void cm_metrics_free(cm_metrics *reg);

typedef struct cm_metric_opts {
    const char *name;          /* [a-zA-Z_:][a-zA-Z0-9_:]*; counters should end in _total */
    const char *help;          /* any text; NULL is "" */
    const char *const *labels; /* nlabels names, [a-zA-Z_][a-zA-Z0-9_]*, not "__..." */
    size_t nlabels;            /* 0..CM_METRICS_MAX_LABELS */
    const double *buckets;     /* histogram upper bounds, increasing, finite; NULL: latency */
    size_t nbuckets;           /* 1..CM_METRICS_MAX_BUCKETS; +Inf is always added */
    size_t max_series;         /* 0: CM_METRICS_DEFAULT_MAX_SERIES */
} cm_metric_opts;

CM_EXTERN void cm_metric_opts_init(cm_metric_opts *o);

/* Adds a family to reg; every string and array of o is copied. The family is returned
 * (borrowed, valid until cm_metrics_free) in *out. Adding a family whose name, type, label
 * names and buckets equal an existing one's returns that one. 0; CM_EINVAL (a bad name, label
 * name, bucket list or count; "le" as a histogram label); CM_EEXIST (the name is taken by a
 * different family); CM_ENOMEM. */
CM_EXTERN int cm_metrics_family(cm_metrics *reg, cm_metric_type type, const cm_metric_opts *o,
                                cm_metric_family **out);

/* The series of f for label_values (as many as the family has label names; NULL entries and a
 * NULL array mean ""), created on first use. Borrowed, valid until cm_metrics_free. Never NULL
 * for a valid f: past the family's cap or out of memory it is the overflow series (see above).
 * NULL only when f is NULL. */
CM_EXTERN cm_metric *cm_metrics_series(cm_metric_family *f, const char *const *label_values);
/* Updates to f's overflow series so far. */
CM_EXTERN uint64_t cm_metrics_dropped(const cm_metric_family *f);
/* The number of series f holds (the overflow series not counted). */
CM_EXTERN size_t cm_metrics_series_count(const cm_metric_family *f);

/* Hot path: no allocation, no lock; one atomic operation (a histogram: two, its bucket and its
 * sum; a gauge's add and a histogram's sum are compare-and-swap loops on the double). A NULL
 * series, or a series of another type, is ignored. */
CM_EXTERN void cm_counter_add(cm_metric *s, uint64_t n);
CM_EXTERN void cm_counter_inc(cm_metric *s);
CM_EXTERN void cm_gauge_set(cm_metric *s, double v);
CM_EXTERN void cm_gauge_add(cm_metric *s, double v); /* a negative v decreases it */
/* Counts value into the first bucket whose bound is >= value and adds it to the sum. NaN is
 * ignored. */
CM_EXTERN void cm_histogram_observe(cm_metric *s, double value);

/* Reads (for a status page or a test). 0 for a NULL series or one of another type. */
CM_EXTERN uint64_t cm_counter_get(const cm_metric *s);
CM_EXTERN double cm_gauge_get(const cm_metric *s);
/* The histogram's observation count and sum. */
CM_EXTERN uint64_t cm_histogram_count(const cm_metric *s);
CM_EXTERN double cm_histogram_sum(const cm_metric *s);
/* The q-quantile (0 <= q <= 1) estimated from the buckets as Prometheus's histogram_quantile()
 * does: linear within the bucket, the highest finite bound for the +Inf bucket. NaN when the
 * histogram is empty or q is out of range. */
CM_EXTERN double cm_histogram_quantile(const cm_metric *s, double q);
/* Reads a histogram's buckets at once, to merge several series of a family (a status page's
 * latency over every status): counts (CM_METRICS_MAX_BUCKETS + 1 slots) gets the count of each
 * bucket, not cumulative, the last one +Inf's; *bounds (may be NULL) the family's finite upper
 * bounds (borrowed, valid as long as the registry). Returns the number of finite bounds, 0 for a
 * NULL series, the overflow series or one of another type. */
CM_EXTERN size_t cm_histogram_buckets(const cm_metric *s, const double **bounds, uint64_t *counts);
/* cm_histogram_quantile() over counts read by cm_histogram_buckets() (nbounds finite bounds,
 * nbounds + 1 counts), summed over series of one family if need be. NaN when they are all 0, q
 * is out of range or nbounds is 0. */
CM_EXTERN double cm_histogram_quantile_of(const double *bounds, const uint64_t *counts,
                                          size_t nbounds, double q);

/* Calls fn for each series of f in creation order (the overflow series not included), with the
 * series' label values (borrowed during the call). fn must not add series to f. f's mutex is
 * held: keep fn short. */
CM_EXTERN void cm_metrics_each_series(cm_metric_family *f,
                                      void (*fn)(void *arg, const char *const *label_values,
                                                 const cm_metric *s),
                                      void *arg);

/* ---- collectors: series sampled at render time ---- */

typedef struct cm_metrics_writer cm_metrics_writer;
/* Writes the collector's families through w. Runs on the thread that renders, with the
 * registry's collector lock held: it must not add or remove collectors, nor render. */
typedef void (*cm_metrics_collector)(cm_metrics_writer *w, void *arg);

/* Adds fn(w, arg) to the render. 0, CM_EINVAL (NULL fn) or CM_ENOMEM. */
CM_EXTERN int cm_metrics_add_collector(cm_metrics *reg, cm_metrics_collector fn, void *arg);
/* Removes the collector added with the same fn and arg. When it returns, fn is not running and
 * will not run again, so arg may be freed. Do not hold a lock that fn takes while calling it.
 * 0 or CM_ENOTFOUND. */
CM_EXTERN int cm_metrics_remove_collector(cm_metrics *reg, cm_metrics_collector fn, void *arg);

/* Starts a family in a collector: a counter or a gauge with label names (all strings borrowed
 * until the next cm_metrics_write_family or the collector's return). Writes its HELP and TYPE.
 * 0; CM_EINVAL (bad name or label name, a histogram); CM_EEXIST (a family of the registry or an
 * earlier collector family has the name: its values are then skipped); CM_ENOMEM. */
CM_EXTERN int cm_metrics_write_family(cm_metrics_writer *w, cm_metric_type type, const char *name,
                                      const char *help, const char *const *label_names,
                                      size_t nlabels);
/* Writes one value of the current family, with as many label values as it has names (NULL
 * entries mean ""). 0; CM_ESTATE (no family started, or it was refused); CM_ENOMEM. */
CM_EXTERN int cm_metrics_write_value(cm_metrics_writer *w, const char *const *label_values,
                                     double value);

/* ---- rendering ---- */

/* The content type of the rendered text, for an HTTP reply. */
#define CM_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Appends every family of reg (in the order they were added, series in creation order), then
 * each collector's, then the drop counts, to out, in the text exposition format 0.0.4. 0 or
 * CM_ENOMEM (out then holds part of the text). */
CM_EXTERN int cm_metrics_render(cm_metrics *reg, cm_buf *out);

#ifdef __cplusplus
}
#endif
#endif
