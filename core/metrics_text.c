/* The metrics registry in Prometheus's text exposition format 0.0.4: HELP and TYPE lines,
 * escaped label values, cumulative histogram buckets, and the collectors' families. */
#include "metrics_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The output with a sticky error: after a failed append nothing more is written. */
typedef struct text {
    cm_buf *b;
    int err;
} text;

static void
put_n(text *t, const char *s, size_t n)
{
    if (t->err == 0) {
        t->err = cm_buf_append(t->b, s, n);
    }
}

static void
put(text *t, const char *s)
{
    put_n(t, s, strlen(s));
}

/* s with backslash and newline escaped, and the double quote too when quote is set (a label
 * value; HELP text keeps its quotes). */
static void
put_escaped(text *t, const char *s, int quote)
{
    size_t start = 0, i;
    for (i = 0; s[i] != '\0'; i++) {
        const char *esc = s[i] == '\\'             ? "\\\\"
                          : s[i] == '\n'           ? "\\n"
                          : (quote && s[i] == '"') ? "\\\""
                                                   : NULL;
        if (esc != NULL) {
            put_n(t, s + start, i - start);
            put(t, esc);
            start = i + 1;
        }
    }
    put_n(t, s + start, i - start);
}

/* A float as Prometheus parses it (Go's strconv.ParseFloat): NaN, +Inf, -Inf, or the shortest
 * of %.15g and %.17g that reads back to the same double. */
static void
format_double(double d, char out[32])
{
    if (isnan(d)) {
        strcpy(out, "NaN");
    } else if (isinf(d)) {
        strcpy(out, d > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(out, 32, "%.15g", d);
        if (strtod(out, NULL) != d) {
            snprintf(out, 32, "%.17g", d);
        }
    }
}

static void
put_double(text *t, double d)
{
    char num[32];
    format_double(d, num);
    put(t, num);
}

static void
put_u64(text *t, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, v);
    put(t, num);
}

static const char *
type_name(cm_metric_type type)
{
    return type == CM_METRIC_COUNTER ? "counter" : type == CM_METRIC_GAUGE ? "gauge" : "histogram";
}

static void
put_header(text *t, const char *name, const char *help, cm_metric_type type)
{
    put(t, "# HELP ");
    put(t, name);
    put(t, " ");
    put_escaped(t, help, 0);
    put(t, "\n# TYPE ");
    put(t, name);
    put(t, " ");
    put(t, type_name(type));
    put(t, "\n");
}

/* name+suffix{l1="v1",...,le="le"} and a space; the value follows. */
static void
put_series(text *t, const char *name, const char *suffix, const char *const *lnames,
           const char *const *lvalues, size_t n, const char *le)
{
    put(t, name);
    put(t, suffix);
    if (n > 0 || le != NULL) {
        put(t, "{");
        for (size_t i = 0; i < n; i++) {
            put(t, i > 0 ? "," : "");
            put(t, lnames[i]);
            put(t, "=\"");
            put_escaped(t, lvalues != NULL && lvalues[i] != NULL ? lvalues[i] : "", 1);
            put(t, "\"");
        }
        if (le != NULL) {
            put(t, n > 0 ? ",le=\"" : "le=\"");
            put(t, le);
            put(t, "\"");
        }
        put(t, "}");
    }
    put(t, " ");
}

static void
put_histogram(text *t, const cm_metric_family *f, const cm_metric *s)
{
    const char *const *ln = (const char *const *)f->labels;
    uint64_t cumulative = 0;
    char le[32];
    for (size_t i = 0; i <= f->nbuckets; i++) {
        cumulative += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
        if (i < f->nbuckets) {
            format_double(f->buckets[i], le);
        } else {
            strcpy(le, "+Inf");
        }
        put_series(t, f->name, "_bucket", ln, s->values, f->nlabels, le);
        put_u64(t, cumulative);
        put(t, "\n");
    }
    put_series(t, f->name, "_sum", ln, s->values, f->nlabels, NULL);
    put_double(t, cm__metrics_load_double(&s->sum));
    put(t, "\n");
    /* The count is the +Inf bucket's, read once above, so that the two always agree. */
    put_series(t, f->name, "_count", ln, s->values, f->nlabels, NULL);
    put_u64(t, cumulative);
    put(t, "\n");
}

static void
put_family(text *t, cm_metric_family *f)
{
    put_header(t, f->name, f->help, f->type);
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nseries; i++) {
        const cm_metric *s = f->series[i];
        if (f->type == CM_METRIC_HISTOGRAM) {
            put_histogram(t, f, s);
            continue;
        }
        put_series(t, f->name, "", (const char *const *)f->labels, s->values, f->nlabels, NULL);
        if (f->type == CM_METRIC_COUNTER) {
            put_u64(t, atomic_load_explicit(&s->v, memory_order_relaxed));
        } else {
            put_double(t, cm__metrics_load_double(&s->v));
        }
        put(t, "\n");
    }
    pthread_mutex_unlock(&f->mu);
}

/* cmicro_metrics_dropped_updates_total{family="..."}, for the families that dropped any. */
static void
put_drops(text *t, cm_metrics *reg)
{
    static const char *const lnames[] = {"family"};
    static const char name[] = "cmicro_metrics_dropped_updates_total";
    int header = 0;

    pthread_mutex_lock(&reg->mu);
    for (cm_metric_family *f = reg->families; f != NULL; f = f->next) {
        uint64_t n = cm_metrics_dropped(f);
        if (n == 0) {
            continue;
        }
        if (!header) {
            put_header(t, name,
                       "Updates dropped because a family was at its cap of series or out of "
                       "memory.",
                       CM_METRIC_COUNTER);
            header = 1;
        }
        const char *v[] = {f->name};
        put_series(t, name, "", lnames, v, 1, NULL);
        put_u64(t, n);
        put(t, "\n");
    }
    pthread_mutex_unlock(&reg->mu);
}

/* ---- collectors ---- */

struct cm_metrics_writer {
    text t;
    cm_metrics *reg;
    cm_buf seen; /* names of the collectors' families so far, each NUL-terminated */
    int open;    /* a family is started and accepted */
    cm_metric_type type;
    const char *name;
    const char *const *labels;
    size_t nlabels;
};

static int
seen_before(const cm_metrics_writer *w, const char *name)
{
    for (size_t off = 0; off < w->seen.len; off += strlen((const char *)w->seen.data + off) + 1) {
        if (strcmp((const char *)w->seen.data + off, name) == 0) {
            return 1;
        }
    }
    return 0;
}

int
cm_metrics_write_family(cm_metrics_writer *w, cm_metric_type type, const char *name,
                        const char *help, const char *const *label_names, size_t nlabels)
{
    if (w == NULL) {
        return CM_EINVAL;
    }
    w->open = 0;
    if (type > CM_METRIC_GAUGE || !cm__metrics_valid_name(name, 0) ||
        nlabels > CM_METRICS_MAX_LABELS || (nlabels > 0 && label_names == NULL)) {
        return CM_EINVAL;
    }
    for (size_t i = 0; i < nlabels; i++) {
        if (!cm__metrics_valid_name(label_names[i], 1)) {
            return CM_EINVAL;
        }
    }
    pthread_mutex_lock(&w->reg->mu);
    int taken = cm__metrics_find(w->reg, name) != NULL;
    pthread_mutex_unlock(&w->reg->mu);
    if (taken || seen_before(w, name) ||
        strcmp(name, "cmicro_metrics_dropped_updates_total") == 0) {
        return CM_EEXIST;
    }
    if (cm_buf_append(&w->seen, name, strlen(name) + 1) < 0) {
        return CM_ENOMEM;
    }
    put_header(&w->t, name, help != NULL ? help : "", type);
    if (w->t.err < 0) {
        return w->t.err;
    }
    w->open = 1;
    w->type = type;
    w->name = name;
    w->labels = label_names;
    w->nlabels = nlabels;
    return 0;
}

int
cm_metrics_write_value(cm_metrics_writer *w, const char *const *label_values, double value)
{
    char buf[CM_METRICS_MAX_LABELS][CM_METRICS_MAX_VALUE_LEN + 1];
    const char *values[CM_METRICS_MAX_LABELS];

    if (w == NULL || !w->open) {
        return CM_ESTATE;
    }
    for (size_t i = 0; i < w->nlabels; i++) {
        size_t n = cm__metrics_sanitize(label_values != NULL ? label_values[i] : NULL, buf[i]);
        buf[i][n] = '\0';
        values[i] = buf[i];
    }
    put_series(&w->t, w->name, "", w->labels, values, w->nlabels, NULL);
    put_double(&w->t, value);
    put(&w->t, "\n");
    return w->t.err;
}

int
cm_metrics_render(cm_metrics *reg, cm_buf *out)
{
    if (reg == NULL || out == NULL) {
        return CM_EINVAL;
    }
    cm_metrics_writer w = {.t = {out, 0}, .reg = reg};
    pthread_mutex_lock(&reg->collect_mu);
    pthread_mutex_lock(&reg->mu);
    for (cm_metric_family *f = reg->families; f != NULL; f = f->next) {
        put_family(&w.t, f);
    }
    pthread_mutex_unlock(&reg->mu);
    for (size_t i = 0; i < reg->ncollectors && w.t.err == 0; i++) {
        w.open = 0;
        reg->collectors[i].fn(&w, reg->collectors[i].arg);
    }
    pthread_mutex_unlock(&reg->collect_mu);
    put_drops(&w.t, reg);
    cm_buf_free(&w.seen);
    return w.t.err;
}
