/* Renders a registry for metrics_parse.py, which reads it with prometheus-client's parser.
 *   metrics-expose TEXT_FILE OPS_FILE
 * Makes families of each type, with awkward label values and help texts, applies a fixed
 * pseudo-random sequence of updates (with series past a family's cap), adds a collector, writes
 * the rendered text to TEXT_FILE and every family, update and collected value as JSON to
 * OPS_FILE. The script computes the expected values from OPS_FILE on its own. */
#include "test.h"

#include <cJSON.h>
#include <cmicro/metrics.h>
#include <math.h>

typedef struct fam {
    const char *name;
    cm_metric_type type;
    const char *help;
    size_t nlabels;
    const char *labels[2];
    size_t max_series;
    cm_metric_family *f;
} fam;

static fam fams[] = {
    {"micro_server_requests_total",
     CM_METRIC_COUNTER,
     "Requests \"handled\" by \\ endpoint\nand status.",
     2,
     {"endpoint", "status"},
     0,
     NULL},
    {"micro_in_flight", CM_METRIC_GAUGE, "Calls in flight.", 1, {"endpoint"}, 0, NULL},
    {"micro_server_request_duration_seconds",
     CM_METRIC_HISTOGRAM,
     "Latency.",
     1,
     {"endpoint"},
     0,
     NULL},
    {"capped_total", CM_METRIC_COUNTER, "At most three series.", 1, {"name"}, 3, NULL},
    {"plain", CM_METRIC_GAUGE, "", 0, {NULL, NULL}, 0, NULL},
    {"custom_buckets", CM_METRIC_HISTOGRAM, "Custom bounds.", 0, {NULL, NULL}, 0, NULL},
};
#define NFAMS (sizeof fams / sizeof fams[0])

static const double custom_bounds[] = {-1, 0, 1e-9, 0.1, 1e6};

static const char *const values[] = {
    "Greeter.Hello",
    "a\\b",
    "quote\"d",
    "new\nline",
    "caf\xc3\xa9 \xe2\x98\x83",
    "",
    "{a=\"b\",c}",
    "le",
    "  spaced  ",
    "\\n",
    "200",
    "500",
};
#define NVALUES (sizeof values / sizeof values[0])

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t
next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static cJSON *
num(double d)
{
    char s[40];
    if (isnan(d)) {
        snprintf(s, sizeof s, "nan");
    } else if (isinf(d)) {
        snprintf(s, sizeof s, d > 0 ? "inf" : "-inf");
    } else {
        snprintf(s, sizeof s, "%.17g", d);
    }
    return cJSON_CreateString(s);
}

static cJSON *
strings(const char *const *s, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        cJSON_AddItemToArray(a, cJSON_CreateString(s[i]));
    }
    return a;
}

static void
make_families(cm_metrics *reg, cJSON *out)
{
    for (size_t i = 0; i < NFAMS; i++) {
        cm_metric_opts o;
        cm_metric_opts_init(&o);
        o.name = fams[i].name;
        o.help = fams[i].help;
        o.labels = fams[i].labels;
        o.nlabels = fams[i].nlabels;
        o.max_series = fams[i].max_series;
        if (strcmp(fams[i].name, "custom_buckets") == 0) {
            o.buckets = custom_bounds;
            o.nbuckets = sizeof custom_bounds / sizeof custom_bounds[0];
        }
        CHECK_EQ_INT(cm_metrics_family(reg, fams[i].type, &o, &fams[i].f), 0);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", fams[i].name);
        cJSON_AddStringToObject(j, "type",
                                fams[i].type == CM_METRIC_COUNTER ? "counter"
                                : fams[i].type == CM_METRIC_GAUGE ? "gauge"
                                                                  : "histogram");
        cJSON_AddStringToObject(j, "help", fams[i].help);
        cJSON_AddItemToObject(j, "labels", strings(fams[i].labels, fams[i].nlabels));
        cJSON_AddNumberToObject(j, "max_series", (double)fams[i].max_series);
        const double *bk = o.buckets != NULL ? o.buckets : cm_metrics_latency_buckets;
        size_t nb = o.buckets != NULL ? o.nbuckets : cm_metrics_latency_nbuckets;
        cJSON *b = cJSON_CreateArray();
        for (size_t k = 0; fams[i].type == CM_METRIC_HISTOGRAM && k < nb; k++) {
            cJSON_AddItemToArray(b, num(bk[k]));
        }
        cJSON_AddItemToObject(j, "buckets", b);
        cJSON_AddItemToArray(out, j);
    }
}

/* One update of a random family and series, applied and logged. */
static void
update(cJSON *ops)
{
    fam *f = &fams[next() % NFAMS];
    const char *lv[2] = {values[next() % NVALUES], values[next() % NVALUES]};
    if (strcmp(f->name, "capped_total") == 0) {
        static const char *const many[] = {"n0", "n1", "n2", "n3", "n4", "n5"};
        lv[0] = many[next() % 6];
    }
    cm_metric *s = cm_metrics_series(f->f, lv);
    cJSON *op = cJSON_CreateArray();
    double v;
    switch (f->type) {
    case CM_METRIC_COUNTER: {
        uint64_t n = next() % 1000;
        cm_counter_add(s, n);
        cJSON_AddItemToArray(op, cJSON_CreateString("add"));
        v = (double)n;
        break;
    }
    case CM_METRIC_GAUGE: {
        int set = next() % 2;
        v = (double)(int64_t)(next() % 2001 - 1000) / 8; /* eighths: exact sums */
        if (next() % 50 == 0) {
            v = next() % 2 ? NAN : -INFINITY;
            set = 1;
        }
        if (set) {
            cm_gauge_set(s, v);
        } else {
            cm_gauge_add(s, v);
        }
        cJSON_AddItemToArray(op, cJSON_CreateString(set ? "set" : "add"));
        break;
    }
    default:
        v = (double)(next() % 100000) / 1e4 - (next() % 8 == 0 ? 2 : 0);
        if (next() % 40 == 0) {
            v = 1e-9; /* exactly on a bound */
        }
        cm_histogram_observe(s, v);
        cJSON_AddItemToArray(op, cJSON_CreateString("observe"));
        break;
    }
    cJSON_AddItemToArray(op, cJSON_CreateString(f->name));
    cJSON_AddItemToArray(op, strings(lv, f->nlabels));
    cJSON_AddItemToArray(op, num(v));
    cJSON_AddItemToArray(ops, op);
}

static void
collect(cm_metrics_writer *w, void *arg)
{
    cJSON *out = arg;
    const char *const ln[] = {"service", "state"};
    CHECK_EQ_INT(
        cm_metrics_write_family(w, CM_METRIC_GAUGE, "selector_nodes", "Nodes \\ known.", ln, 2), 0);
    CHECK_EQ_INT(cm_metrics_write_family(w, CM_METRIC_GAUGE, "selector_nodes", "", ln, 2),
                 CM_EEXIST);
    cJSON *fam = cJSON_CreateObject(); /* a family with no values */
    cJSON_AddStringToObject(fam, "name", "selector_nodes");
    cJSON_AddStringToObject(fam, "type", "gauge");
    cJSON_AddStringToObject(fam, "help", "Nodes \\ known.");
    cJSON_AddItemToObject(fam, "labels", strings(ln, 2));
    cJSON_AddArrayToObject(fam, "values");
    cJSON_AddItemToArray(out, fam);
    CHECK_EQ_INT(
        cm_metrics_write_family(w, CM_METRIC_GAUGE, "selector_nodes_2", "Nodes \\ known.", ln, 2),
        0);
    fam = cJSON_CreateObject();
    cJSON_AddStringToObject(fam, "name", "selector_nodes_2");
    cJSON_AddStringToObject(fam, "type", "gauge");
    cJSON_AddStringToObject(fam, "help", "Nodes \\ known.");
    cJSON_AddItemToObject(fam, "labels", strings(ln, 2));
    cJSON *vals = cJSON_AddArrayToObject(fam, "values");
    for (size_t i = 0; i < 5; i++) {
        const char *lv[] = {values[i], i % 2 ? "up" : "ejected"};
        double v = i == 4 ? INFINITY : (double)i * 1.5;
        CHECK_EQ_INT(cm_metrics_write_value(w, lv, v), 0);
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, strings(lv, 2));
        cJSON_AddItemToArray(pair, num(v));
        cJSON_AddItemToArray(vals, pair);
    }
    cJSON_AddItemToArray(out, fam);

    CHECK_EQ_INT(
        cm_metrics_write_family(w, CM_METRIC_COUNTER, "conn_accepted_total", "Accepted.", NULL, 0),
        0);
    CHECK_EQ_INT(cm_metrics_write_value(w, NULL, 12345), 0);
    fam = cJSON_CreateObject();
    cJSON_AddStringToObject(fam, "name", "conn_accepted_total");
    cJSON_AddStringToObject(fam, "type", "counter");
    cJSON_AddStringToObject(fam, "help", "Accepted.");
    cJSON_AddItemToObject(fam, "labels", cJSON_CreateArray());
    vals = cJSON_AddArrayToObject(fam, "values");
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateArray());
    cJSON_AddItemToArray(pair, num(12345));
    cJSON_AddItemToArray(vals, pair);
    cJSON_AddItemToArray(out, fam);
}

static void
write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

int
main(int argc, char **argv)
{
    CHECK(argc == 3);
    cm_metrics *reg;
    CHECK_EQ_INT(cm_metrics_new(&reg), 0);
    cJSON *root = cJSON_CreateObject();
    make_families(reg, cJSON_AddArrayToObject(root, "families"));
    cJSON *ops = cJSON_AddArrayToObject(root, "ops");
    for (int i = 0; i < 3000; i++) {
        update(ops);
    }
    cJSON *collected = cJSON_AddArrayToObject(root, "collected");
    /* The collector fills collected during the render; it runs once. */
    CHECK_EQ_INT(cm_metrics_add_collector(reg, collect, collected), 0);
    cm_buf text = {0};
    CHECK_EQ_INT(cm_metrics_render(reg, &text), 0);
    CHECK_EQ_INT(cm_metrics_remove_collector(reg, collect, collected), 0);
    write_file(argv[1], text.data, text.len);
    char *json = cJSON_Print(root);
    CHECK(json != NULL);
    write_file(argv[2], json, strlen(json));
    free(json);
    cJSON_Delete(root);
    cm_buf_free(&text);
    CHECK(cm_metrics_dropped(fams[3].f) > 0); /* the cap was reached */
    cm_metrics_free(reg);
    TEST_DONE();
}
