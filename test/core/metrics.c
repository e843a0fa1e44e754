/* The metrics registry: values and the exact text of the exposition format, escaping, name
 * checks, label values made safe, the cap on series with its drop count, collectors, quantiles,
 * and threads updating and rendering at once with exact totals. */
#include "test.h"

#include <cmicro/metrics.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>

static cm_metric_family *
family(cm_metrics *reg, cm_metric_type type, const char *name, const char *help,
       const char *const *labels, size_t nlabels)
{
    cm_metric_opts o;
    cm_metric_opts_init(&o);
    o.name = name;
    o.help = help;
    o.labels = labels;
    o.nlabels = nlabels;
    cm_metric_family *f = NULL;
    CHECK_EQ_INT(cm_metrics_family(reg, type, &o, &f), 0);
    CHECK(f != NULL);
    return f;
}

/* The rendered text, NUL-terminated (static storage until the next call). */
static const char *
render(cm_metrics *reg)
{
    static cm_buf b;
    b.len = 0;
    CHECK_EQ_INT(cm_metrics_render(reg, &b), 0);
    CHECK_EQ_INT(cm_buf_append(&b, "", 1), 0);
    return (const char *)b.data;
}

static void
test_values_and_text(void)
{
    cm_metrics *reg;
    CHECK_EQ_INT(cm_metrics_new(&reg), 0);
    const char *const l2[] = {"endpoint", "status"};
    cm_metric_family *reqs =
        family(reg, CM_METRIC_COUNTER, "micro_requests_total", "Requests by endpoint.", l2, 2);
    cm_metric_family *up = family(reg, CM_METRIC_GAUGE, "up", "Up.", NULL, 0);
    cm_metric_opts o;
    cm_metric_opts_init(&o);
    o.name = "latency_seconds";
    o.help = "Latency.";
    o.labels = (const char *const[]){"endpoint"};
    o.nlabels = 1;
    o.buckets = (const double[]){0.1, 1, INFINITY};
    o.nbuckets = 3;
    cm_metric_family *lat;
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_HISTOGRAM, &o, &lat), 0);

    cm_metric *ok = cm_metrics_series(reqs, (const char *const[]){"Greeter.Hello", "200"});
    cm_metric *bad = cm_metrics_series(reqs, (const char *const[]){"Greeter.Hello", "500"});
    CHECK(ok != NULL && bad != NULL && ok != bad);
    CHECK(cm_metrics_series(reqs, (const char *const[]){"Greeter.Hello", "200"}) == ok);
    cm_counter_inc(ok);
    cm_counter_add(ok, 41);
    cm_counter_inc(bad);
    CHECK_EQ_INT(cm_counter_get(ok), 42);
    cm_metric *u = cm_metrics_series(up, NULL);
    cm_gauge_set(u, 3);
    cm_gauge_add(u, -1.5);
    CHECK(cm_gauge_get(u) == 1.5);
    cm_gauge_set(ok, 7); /* another type: ignored */
    CHECK_EQ_INT(cm_counter_get(ok), 42);
    cm_metric *h = cm_metrics_series(lat, (const char *const[]){"Greeter.Hello"});
    cm_histogram_observe(h, 0.05);
    cm_histogram_observe(h, 0.1); /* le is inclusive */
    cm_histogram_observe(h, 0.5);
    cm_histogram_observe(h, 3);
    cm_histogram_observe(h, NAN); /* ignored */
    CHECK_EQ_INT(cm_histogram_count(h), 4);
    CHECK(fabs(cm_histogram_sum(h) - 3.65) < 1e-12);
    CHECK_EQ_INT(cm_metrics_series_count(reqs), 2);

    CHECK_EQ_STR(render(reg), "# HELP micro_requests_total Requests by endpoint.\n"
                              "# TYPE micro_requests_total counter\n"
                              "micro_requests_total{endpoint=\"Greeter.Hello\",status=\"200\"} 42\n"
                              "micro_requests_total{endpoint=\"Greeter.Hello\",status=\"500\"} 1\n"
                              "# HELP up Up.\n"
                              "# TYPE up gauge\n"
                              "up 1.5\n"
                              "# HELP latency_seconds Latency.\n"
                              "# TYPE latency_seconds histogram\n"
                              "latency_seconds_bucket{endpoint=\"Greeter.Hello\",le=\"0.1\"} 2\n"
                              "latency_seconds_bucket{endpoint=\"Greeter.Hello\",le=\"1\"} 3\n"
                              "latency_seconds_bucket{endpoint=\"Greeter.Hello\",le=\"+Inf\"} 4\n"
                              "latency_seconds_sum{endpoint=\"Greeter.Hello\"} 3.65\n"
                              "latency_seconds_count{endpoint=\"Greeter.Hello\"} 4\n");

    /* Quantiles as histogram_quantile(): 4 observations in (0,0.1]x2, (0.1,1]x1, +Inf x1. */
    CHECK(fabs(cm_histogram_quantile(h, 0.25) - 0.05) < 1e-12);
    CHECK(fabs(cm_histogram_quantile(h, 0.5) - 0.1) < 1e-12);
    CHECK(fabs(cm_histogram_quantile(h, 0.75) - 1) < 1e-12);
    CHECK(cm_histogram_quantile(h, 0.99) == 1); /* the +Inf bucket: the highest finite bound */
    CHECK(isnan(cm_histogram_quantile(h, 1.5)));
    CHECK(isnan(cm_histogram_quantile(cm_metrics_series(lat, (const char *const[]){"x"}), 0.5)));

    /* Buckets read at once and merged over two series: h's 2, 1, 1 plus g's 0, 2, 0. */
    uint64_t counts[CM_METRICS_MAX_BUCKETS + 1], more[CM_METRICS_MAX_BUCKETS + 1];
    const double *bounds = NULL;
    CHECK_EQ_INT(cm_histogram_buckets(h, &bounds, counts), 2);
    CHECK(bounds != NULL && bounds[0] == 0.1 && bounds[1] == 1);
    CHECK(counts[0] == 2 && counts[1] == 1 && counts[2] == 1);
    cm_metric *g = cm_metrics_series(lat, (const char *const[]){"Greeter.Bye"});
    cm_histogram_observe(g, 0.2);
    cm_histogram_observe(g, 0.9);
    CHECK_EQ_INT(cm_histogram_buckets(g, NULL, more), 2);
    for (size_t i = 0; i < 3; i++) {
        counts[i] += more[i];
    }
    /* 2, 3, 1: the median's rank 3 is the first of (0.1,1]'s three: 0.1 + 0.9 / 3. */
    CHECK(fabs(cm_histogram_quantile_of(bounds, counts, 2, 0.5) - 0.4) < 1e-12);
    CHECK(fabs(cm_histogram_quantile_of(bounds, counts, 2, 1.0 / 6) - 0.05) < 1e-12);
    CHECK(fabs(cm_histogram_quantile_of(bounds, counts, 2, 5.0 / 6) - 1) < 1e-12);
    CHECK(isnan(cm_histogram_quantile_of(bounds, counts, 0, 0.5)));
    CHECK_EQ_INT(cm_histogram_buckets(ok, &bounds, counts), 0); /* a counter */
    cm_metrics_free(reg);
}

static void
test_floats_and_escaping(void)
{
    cm_metrics *reg;
    CHECK_EQ_INT(cm_metrics_new(&reg), 0);
    cm_metric_family *g = family(reg, CM_METRIC_GAUGE, "g", "a \\ back\nslash \"quoted\"",
                                 (const char *const[]){"v"}, 1);
    cm_gauge_set(cm_metrics_series(g, (const char *const[]){"nan"}), NAN);
    cm_gauge_set(cm_metrics_series(g, (const char *const[]){"inf"}), INFINITY);
    cm_gauge_set(cm_metrics_series(g, (const char *const[]){"-inf"}), -INFINITY);
    cm_gauge_set(cm_metrics_series(g, (const char *const[]){"tenth"}), 0.1);
    cm_gauge_set(cm_metrics_series(g, (const char *const[]){"third"}), 1.0 / 3);
    cm_gauge_set(cm_metrics_series(g, (const char *const[]){"big"}), 1e300);
    cm_gauge_set(cm_metrics_series(g, (const char *const[]){"a\\b\"c\nd"}), -2);
    cm_gauge_set(cm_metrics_series(g, (const char *const[]){NULL}), 0);
    CHECK_EQ_STR(render(reg), "# HELP g a \\\\ back\\nslash \"quoted\"\n"
                              "# TYPE g gauge\n"
                              "g{v=\"nan\"} NaN\n"
                              "g{v=\"inf\"} +Inf\n"
                              "g{v=\"-inf\"} -Inf\n"
                              "g{v=\"tenth\"} 0.1\n"
                              "g{v=\"third\"} 0.33333333333333331\n"
                              "g{v=\"big\"} 1e+300\n"
                              "g{v=\"a\\\\b\\\"c\\nd\"} -2\n"
                              "g{v=\"\"} 0\n");
    cm_metrics_free(reg);
}

static void
test_names(void)
{
    cm_metrics *reg;
    CHECK_EQ_INT(cm_metrics_new(&reg), 0);
    cm_metric_opts o;
    cm_metric_family *f = NULL;
    const char *bad_names[] = {"", "1abc", "a-b", "a b", "é", "a.b", NULL};
    for (int i = 0; i < 7; i++) {
        cm_metric_opts_init(&o);
        o.name = bad_names[i];
        CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_COUNTER, &o, &f), CM_EINVAL);
    }
    cm_metric_opts_init(&o);
    o.name = "ns:sub_system:x_1";
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_COUNTER, &o, &f), 0);
    cm_metric_family *again = NULL;
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_COUNTER, &o, &again), 0);
    CHECK(again == f); /* the same family again */
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_GAUGE, &o, &again), CM_EEXIST);

    const char *const *bad_labels[] = {
        (const char *const[]){"__reserved"}, (const char *const[]){"a:b"},
        (const char *const[]){"1a"},         (const char *const[]){""},
        (const char *const[]){NULL},
    };
    for (int i = 0; i < 5; i++) {
        cm_metric_opts_init(&o);
        o.name = "lab";
        o.labels = bad_labels[i];
        o.nlabels = 1;
        CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_COUNTER, &o, &f), CM_EINVAL);
    }
    o.labels = (const char *const[]){"a", "a"};
    o.nlabels = 2;
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_COUNTER, &o, &f), CM_EINVAL);
    o.labels = (const char *const[]){"a", "b", "c", "d", "e"};
    o.nlabels = 5;
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_COUNTER, &o, &f), CM_EINVAL);
    o.labels = (const char *const[]){"le"};
    o.nlabels = 1;
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_COUNTER, &o, &f), 0); /* only histograms */
    o.name = "hist";
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_HISTOGRAM, &o, &f), CM_EINVAL);

    /* Buckets: increasing and finite; +Inf only last (and implicit). */
    cm_metric_opts_init(&o);
    o.name = "hist";
    o.buckets = (const double[]){1, 1};
    o.nbuckets = 2;
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_HISTOGRAM, &o, &f), CM_EINVAL);
    o.buckets = (const double[]){2, 1};
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_HISTOGRAM, &o, &f), CM_EINVAL);
    o.buckets = (const double[]){1, NAN};
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_HISTOGRAM, &o, &f), CM_EINVAL);
    o.buckets = (const double[]){INFINITY};
    o.nbuckets = 1;
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_HISTOGRAM, &o, &f), CM_EINVAL);
    o.nbuckets = 0;
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_HISTOGRAM, &o, &f), CM_EINVAL);
    o.buckets = NULL; /* the default latency buckets */
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_HISTOGRAM, &o, &f), 0);
    cm_histogram_observe(cm_metrics_series(f, NULL), 0.0003);
    const char *text = render(reg);
    CHECK(strstr(text, "hist_bucket{le=\"0.0005\"} 1\n") != NULL);
    CHECK(strstr(text, "hist_bucket{le=\"10\"} 1\n") != NULL);
    CHECK_EQ_INT(cm_metrics_latency_nbuckets, 14);
    cm_metrics_free(reg);
}

static void
test_label_values_made_safe(void)
{
    cm_metrics *reg;
    CHECK_EQ_INT(cm_metrics_new(&reg), 0);
    cm_metric_family *f =
        family(reg, CM_METRIC_COUNTER, "c_total", "", (const char *const[]){"e"}, 1);
    /* Invalid UTF-8 (a stray continuation byte, an overlong '/', a surrogate, a cut sequence)
     * becomes U+FFFD; valid multi-byte characters stay. */
    cm_counter_inc(
        cm_metrics_series(f, (const char *const[]){"a\x80z\xc0\xaf\xed\xa0\x80\xe2\x82"}));
    cm_counter_inc(cm_metrics_series(f, (const char *const[]){"caf\xc3\xa9 \xf0\x9f\x98\x80"}));
    const char *text = render(reg);
    CHECK(strstr(text, "c_total{e=\"a\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 1\n") != NULL);
    CHECK(strstr(text, "c_total{e=\"caf\xc3\xa9 \xf0\x9f\x98\x80\"} 1\n") != NULL);

    /* Values are cut at CM_METRICS_MAX_VALUE_LEN bytes: two long names sharing that prefix are
     * one series, so a megabyte endpoint name costs no more than 256 bytes. */
    char big[1 << 20];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cm_metric *a = cm_metrics_series(f, (const char *const[]){big});
    big[sizeof big - 2] = 'y';
    CHECK(cm_metrics_series(f, (const char *const[]){big}) == a);
    big[CM_METRICS_MAX_VALUE_LEN] = '\0';
    CHECK(cm_metrics_series(f, (const char *const[]){big}) == a);
    big[CM_METRICS_MAX_VALUE_LEN - 1] = '\0';
    CHECK(cm_metrics_series(f, (const char *const[]){big}) != a);
    /* A multi-byte character is never split. */
    memset(big, 'x', CM_METRICS_MAX_VALUE_LEN - 1);
    strcpy(big + CM_METRICS_MAX_VALUE_LEN - 1, "\xc3\xa9");
    cm_counter_add(cm_metrics_series(f, (const char *const[]){big}), 5);
    big[CM_METRICS_MAX_VALUE_LEN - 1] = '\0';
    CHECK_EQ_INT(cm_counter_get(cm_metrics_series(f, (const char *const[]){big})), 5);
    /* Tuples differing only in where the values split are different series. */
    cm_metric_family *two =
        family(reg, CM_METRIC_COUNTER, "two_total", "", (const char *const[]){"a", "b"}, 2);
    CHECK(cm_metrics_series(two, (const char *const[]){"a", "bc"}) !=
          cm_metrics_series(two, (const char *const[]){"ab", "c"}));
    cm_metrics_free(reg);
}

static void
test_cap(void)
{
    cm_metrics *reg;
    CHECK_EQ_INT(cm_metrics_new(&reg), 0);
    cm_metric_opts o;
    cm_metric_opts_init(&o);
    o.name = "by_endpoint_total";
    o.labels = (const char *const[]){"endpoint"};
    o.nlabels = 1;
    o.max_series = 3;
    cm_metric_family *f;
    CHECK_EQ_INT(cm_metrics_family(reg, CM_METRIC_COUNTER, &o, &f), 0);
    cm_metric *kept[3];
    char name[32];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "E.%d", i);
        kept[i] = cm_metrics_series(f, (const char *const[]){name});
        cm_counter_inc(kept[i]);
    }
    /* A hostile client calling 1000 made-up endpoints: no new series, every update dropped. */
    cm_metric *over = NULL;
    for (int i = 3; i < 1003; i++) {
        snprintf(name, sizeof name, "E.%d", i);
        cm_metric *s = cm_metrics_series(f, (const char *const[]){name});
        CHECK(s != NULL);
        CHECK(s != kept[0] && s != kept[1] && s != kept[2]);
        CHECK(over == NULL || s == over);
        over = s;
        cm_counter_add(s, 10);
    }
    CHECK_EQ_INT(cm_metrics_series_count(f), 3);
    CHECK_EQ_INT(cm_metrics_dropped(f), 1000);
    CHECK_EQ_INT(cm_counter_get(over), 0);
    /* The known ones keep working. */
    CHECK(cm_metrics_series(f, (const char *const[]){"E.1"}) == kept[1]);
    cm_counter_inc(kept[1]);
    const char *text = render(reg);
    CHECK(strstr(text, "by_endpoint_total{endpoint=\"E.1\"} 2\n") != NULL);
    CHECK(strstr(text, "E.3") == NULL);
    CHECK(strstr(text,
                 "# TYPE cmicro_metrics_dropped_updates_total counter\n"
                 "cmicro_metrics_dropped_updates_total{family=\"by_endpoint_total\"} 1000\n") !=
          NULL);
    cm_metrics_free(reg);
}

/* ---- collectors ---- */

typedef struct conns {
    int open;
    int calls;
} conns;

static void
collect_conns(cm_metrics_writer *w, void *arg)
{
    conns *c = arg;
    c->calls++;
    const char *const ln[] = {"transport"};
    CHECK_EQ_INT(cm_metrics_write_family(w, CM_METRIC_GAUGE, "open_connections", "Open.", ln, 1),
                 0);
    CHECK_EQ_INT(cm_metrics_write_value(w, (const char *const[]){"http"}, c->open), 0);
    CHECK_EQ_INT(cm_metrics_write_value(w, (const char *const[]){"q\"\n"}, 0.5), 0);
    /* A name already used by the registry or by this render is refused, and so are its values. */
    CHECK_EQ_INT(cm_metrics_write_family(w, CM_METRIC_COUNTER, "reg_total", "", NULL, 0),
                 CM_EEXIST);
    CHECK_EQ_INT(cm_metrics_write_value(w, NULL, 1), CM_ESTATE);
    CHECK_EQ_INT(cm_metrics_write_family(w, CM_METRIC_GAUGE, "open_connections", "", NULL, 0),
                 CM_EEXIST);
    CHECK_EQ_INT(cm_metrics_write_family(w, CM_METRIC_HISTOGRAM, "h", "", NULL, 0), CM_EINVAL);
    CHECK_EQ_INT(cm_metrics_write_family(w, CM_METRIC_GAUGE, "bad name", "", NULL, 0), CM_EINVAL);
    CHECK_EQ_INT(cm_metrics_write_family(w, CM_METRIC_COUNTER, "calls_total", "Calls.", NULL, 0),
                 0);
    CHECK_EQ_INT(cm_metrics_write_value(w, NULL, 12), 0);
}

static void
test_collectors(void)
{
    cm_metrics *reg;
    CHECK_EQ_INT(cm_metrics_new(&reg), 0);
    family(reg, CM_METRIC_COUNTER, "reg_total", "", NULL, 0);
    conns c = {3, 0};
    CHECK_EQ_INT(cm_metrics_add_collector(reg, NULL, &c), CM_EINVAL);
    CHECK_EQ_INT(cm_metrics_add_collector(reg, collect_conns, &c), 0);
    CHECK_EQ_STR(render(reg), "# HELP reg_total \n"
                              "# TYPE reg_total counter\n"
                              "# HELP open_connections Open.\n"
                              "# TYPE open_connections gauge\n"
                              "open_connections{transport=\"http\"} 3\n"
                              "open_connections{transport=\"q\\\"\\n\"} 0.5\n"
                              "# HELP calls_total Calls.\n"
                              "# TYPE calls_total counter\n"
                              "calls_total 12\n");
    CHECK_EQ_INT(c.calls, 1);
    c.open = 4;
    CHECK(strstr(render(reg), "open_connections{transport=\"http\"} 4\n") != NULL);
    CHECK_EQ_INT(cm_metrics_remove_collector(reg, collect_conns, &c), 0);
    CHECK_EQ_INT(cm_metrics_remove_collector(reg, collect_conns, &c), CM_ENOTFOUND);
    CHECK(strstr(render(reg), "open_connections") == NULL);
    CHECK_EQ_INT(c.calls, 2);
    cm_metrics_free(reg);
}

/* A collector still running when another thread removes it: the removal waits for it. */
typedef struct slow {
    int started, finished;
} slow;

static void
collect_slow(cm_metrics_writer *w, void *arg)
{
    slow *sl = arg;
    (void)w;
    __atomic_store_n(&sl->started, 1, __ATOMIC_RELEASE);
    usleep(100 * 1000);
    __atomic_store_n(&sl->finished, 1, __ATOMIC_RELEASE);
}

static void *
render_once(void *arg)
{
    cm_buf b = {0};
    if (cm_metrics_render(arg, &b) != 0) { /* not CHECK: its counter is not atomic */
        abort();
    }
    cm_buf_free(&b);
    return NULL;
}

static void
test_remove_waits_for_collector(void)
{
    cm_metrics *reg;
    CHECK_EQ_INT(cm_metrics_new(&reg), 0);
    slow sl = {0, 0};
    CHECK_EQ_INT(cm_metrics_add_collector(reg, collect_slow, &sl), 0);
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, render_once, reg), 0);
    while (!__atomic_load_n(&sl.started, __ATOMIC_ACQUIRE)) {
        usleep(1000);
    }
    CHECK_EQ_INT(cm_metrics_remove_collector(reg, collect_slow, &sl), 0);
    CHECK_EQ_INT(__atomic_load_n(&sl.finished, __ATOMIC_ACQUIRE), 1);
    CHECK_EQ_INT(pthread_join(t, NULL), 0);
    cm_metrics_free(reg);
}

/* ---- threads ---- */

#define THREADS 4
#define ROUNDS 51200 /* a multiple of 64 */
#define ENDPOINTS 64 /* the index grows while threads look up */

typedef struct shared {
    cm_metrics *reg;
    cm_metric_family *c, *g, *h;
    int done;
} shared;

static void *
updater(void *arg)
{
    shared *sh = arg;
    /* Each thread looks the series up itself: creation races with the other threads. */
    for (int i = 0; i < ROUNDS; i++) {
        char ep[16];
        snprintf(ep, sizeof ep, "E.%d", i % ENDPOINTS);
        cm_counter_inc(cm_metrics_series(sh->c, (const char *const[]){ep}));
        cm_gauge_add(cm_metrics_series(sh->g, NULL), 1);
        cm_histogram_observe(cm_metrics_series(sh->h, NULL), (i % 4) * 0.25);
    }
    return NULL;
}

static void *
renderer(void *arg)
{
    shared *sh = arg;
    cm_buf b = {0};
    int n = 0;
    while (!__atomic_load_n(&sh->done, __ATOMIC_ACQUIRE) || n == 0) {
        b.len = 0;
        if (cm_metrics_render(sh->reg, &b) != 0) { /* not CHECK: its counter is not atomic */
            abort();
        }
        n++;
    }
    cm_buf_free(&b);
    return NULL;
}

static void
test_threads(void)
{
    shared sh = {0};
    CHECK_EQ_INT(cm_metrics_new(&sh.reg), 0);
    sh.c = family(sh.reg, CM_METRIC_COUNTER, "c_total", "", (const char *const[]){"ep"}, 1);
    sh.g = family(sh.reg, CM_METRIC_GAUGE, "g", "", NULL, 0);
    cm_metric_opts o;
    cm_metric_opts_init(&o);
    o.name = "h";
    o.buckets = (const double[]){0.25, 0.5};
    o.nbuckets = 2;
    CHECK_EQ_INT(cm_metrics_family(sh.reg, CM_METRIC_HISTOGRAM, &o, &sh.h), 0);
    pthread_t t[THREADS], r;
    CHECK_EQ_INT(pthread_create(&r, NULL, renderer, &sh), 0);
    for (int i = 0; i < THREADS; i++) {
        CHECK_EQ_INT(pthread_create(&t[i], NULL, updater, &sh), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK_EQ_INT(pthread_join(t[i], NULL), 0);
    }
    __atomic_store_n(&sh.done, 1, __ATOMIC_RELEASE);
    CHECK_EQ_INT(pthread_join(r, NULL), 0);

    CHECK_EQ_INT(cm_metrics_series_count(sh.c), ENDPOINTS);
    uint64_t total = 0;
    for (int i = 0; i < ENDPOINTS; i++) {
        char ep[16];
        snprintf(ep, sizeof ep, "E.%d", i);
        uint64_t n = cm_counter_get(cm_metrics_series(sh.c, (const char *const[]){ep}));
        CHECK_EQ_INT(n, THREADS * ROUNDS / ENDPOINTS);
        total += n;
    }
    CHECK_EQ_INT(total, THREADS * ROUNDS);
    CHECK(cm_gauge_get(cm_metrics_series(sh.g, NULL)) == THREADS * ROUNDS);
    cm_metric *h = cm_metrics_series(sh.h, NULL);
    CHECK_EQ_INT(cm_histogram_count(h), THREADS * ROUNDS);
    /* 0, 0.25, 0.5, 0.75 in turn: sums of quarters are exact in binary. */
    CHECK(cm_histogram_sum(h) == THREADS * (ROUNDS / 4) * 1.5);
    const char *text = render(sh.reg);
    char line[128];
    snprintf(line, sizeof line, "h_bucket{le=\"0.25\"} %d\n", THREADS * ROUNDS / 2);
    CHECK(strstr(text, line) != NULL);
    snprintf(line, sizeof line, "h_bucket{le=\"0.5\"} %d\n", THREADS * ROUNDS / 4 * 3);
    CHECK(strstr(text, line) != NULL);
    snprintf(line, sizeof line, "h_bucket{le=\"+Inf\"} %d\nh_sum %d\nh_count %d\n",
             THREADS * ROUNDS, THREADS * (ROUNDS / 4) * 3 / 2, THREADS * ROUNDS);
    CHECK(strstr(text, line) != NULL);
    cm_metrics_free(sh.reg);
}

int
main(void)
{
    RUN(test_values_and_text);
    RUN(test_floats_and_escaping);
    RUN(test_names);
    RUN(test_label_values_made_safe);
    RUN(test_cap);
    RUN(test_collectors);
    RUN(test_remove_waits_for_collector);
    RUN(test_threads);
    TEST_DONE();
}
