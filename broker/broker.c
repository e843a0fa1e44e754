/* The broker object: the backend table, options, the generic entry points that dispatch through
 * a backend's ops, and subscription bookkeeping. Adding a backend: one folder plus one line in
 * the table below. */
#include "broker_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* ---- the backend table ---- */

static cm__backends backends = {
    .names = {"http", "nats"},
    .ops = {&cm__broker_http, &cm__broker_nats},
    .n = 2,
};

int
cm_broker_register(const cm_broker_ops *ops)
{
    if (ops == NULL || ops->abi_version != CM_ABI_VERSION || ops->name == NULL ||
        ops->name[0] == '\0' || ops->connect == NULL || ops->disconnect == NULL ||
        ops->publish == NULL || ops->subscribe == NULL || ops->unsubscribe == NULL) {
        return CM_EINVAL;
    }
    return cm__backends_add(&backends, ops->name, ops);
}

const cm_broker_ops *
cm_broker_find(const char *name)
{
    return cm__backends_find(&backends, name);
}

/* ---- options ---- */

void
cm_broker_opts_init(cm_broker_opts *o)
{
    memset(o, 0, sizeof(*o));
}

int
cm_broker_opts_set(cm_broker_opts *o, const char *key, const char *val)
{
    if (o == NULL || key == NULL || key[0] == '\0' || val == NULL) {
        return CM_EINVAL;
    }
    size_t i = 0;
    while (i < o->noptions && strcmp(o->options[i].key, key) != 0) {
        i++;
    }
    if (i == CM_BROKER_OPTS_MAX) {
        return CM_ENOMEM;
    }
    o->options[i].key = key;
    o->options[i].val = val;
    o->noptions += i == o->noptions;
    return 0;
}

void
cm_broker_sub_opts_init(cm_broker_sub_opts *o)
{
    memset(o, 0, sizeof(*o));
}

static int
known_key(const cm_broker_ops *ops, const char *key)
{
    for (size_t i = 0; ops->option_keys != NULL && ops->option_keys[i] != NULL; i++) {
        if (strcmp(ops->option_keys[i], key) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Copies the options into b. 0, CM_EINVAL (a key the backend does not know) or CM_ENOMEM. */
static int
opts_copy(cm_broker *b, const cm_broker_opts *o)
{
    b->timeout_ms = o->timeout_ms != 0 ? o->timeout_ms : 5000;
    b->queue_max = o->queue_max != 0 ? o->queue_max : 65536;
    b->registry = o->registry;
    const char *addrs = o->addresses;
    if (addrs == NULL || addrs[0] == '\0') {
        addrs = getenv("MICRO_BROKER_ADDRESS");
    }
    if (addrs != NULL && addrs[0] != '\0' && (b->addresses = strdup(addrs)) == NULL) {
        return CM_ENOMEM;
    }
    if ((b->options = cm_md_new()) == NULL) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < o->noptions && i < CM_BROKER_OPTS_MAX; i++) {
        const cm_broker_opt *kv = &o->options[i];
        if (!known_key(b->ops, kv->key)) {
            cm_broker_set_why(b, "%s broker: unknown option \"%s\"", b->ops->name, kv->key);
            cm_log(CM_LOG_DEBUG, "broker", "%s", b->why);
            return CM_EINVAL;
        }
        int rc = cm_md_set(b->options, kv->key, kv->val);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static void
broker_free(cm_broker *b)
{
    free(b->addresses);
    cm_md_free(b->options);
    free(b);
}

int
cm_broker_new(cm_loop *loop, const char *name, const cm_broker_opts *o, cm_broker **out)
{
    if (loop == NULL || out == NULL) {
        return CM_EINVAL;
    }
    if (name == NULL || name[0] == '\0') {
        name = getenv("MICRO_BROKER");
        if (name == NULL || name[0] == '\0') {
            name = CM_BROKER_DEFAULT;
        }
    }
    const cm_broker_ops *ops = cm_broker_find(name);
    if (ops == NULL) {
        return CM_ENOTFOUND;
    }
    if (ops->priv_size > SIZE_MAX / 2) {
        return CM_ENOMEM;
    }
    cm_broker *b = calloc(1, sizeof(*b) + ops->priv_size);
    if (b == NULL) {
        return CM_ENOMEM;
    }
    b->ops = ops;
    b->loop = loop;
    cm_broker_opts defaults;
    cm_broker_opts_init(&defaults);
    int rc = opts_copy(b, o != NULL ? o : &defaults);
    if (rc == 0 && ops->init != NULL) {
        rc = ops->init(b);
    }
    if (rc < 0) {
        broker_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* ---- accessors ---- */

const char *
cm_broker_name(const cm_broker *b)
{
    return b->ops->name;
}

const char *
cm_broker_address(cm_broker *b)
{
    if (b->state != BROKER_CONNECTED || b->ops->address == NULL) {
        return NULL;
    }
    return b->ops->address(b);
}

const char *
cm_broker_why(const cm_broker *b)
{
    return b->why;
}

void
cm_broker_set_why(cm_broker *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->why, sizeof(b->why), fmt, ap);
    va_end(ap);
}

cm_loop *
cm_broker_loop(const cm_broker *b)
{
    return b->loop;
}

void *
cm_broker_priv(cm_broker *b)
{
    return b->priv;
}

const char *
cm_broker_addresses(const cm_broker *b)
{
    return b->addresses;
}

uint64_t
cm_broker_timeout_ms(const cm_broker *b)
{
    return b->timeout_ms;
}

size_t
cm_broker_queue_max(const cm_broker *b)
{
    return b->queue_max;
}

cm_registry *
cm_broker_registry(const cm_broker *b)
{
    return b->registry;
}

const char *
cm_broker_option(const cm_broker *b, const char *key)
{
    return cm_md_get(b->options, key);
}

void
cm_broker_get_stats(const cm_broker *b, cm_broker_stats *st)
{
    *st = b->stats;
    st->published += atomic_load(&b->published_now);
}

void
cm_broker_count(cm_broker *b, const char *what, uint64_t n)
{
    if (strcmp(what, "dropped") == 0) {
        b->stats.dropped += n;
    } else if (strcmp(what, "malformed") == 0) {
        b->stats.malformed += n;
    } else if (strcmp(what, "publish_errors") == 0) {
        b->stats.publish_errors += n;
    }
}

/* ---- deferred closures ---- */

typedef struct deferred {
    cm_broker *b;
    void (*fn)(void *arg);
    void *arg;
} deferred;

static void finish_close(cm_broker *b);

static void
run_deferred(void *p)
{
    deferred *d = p;
    cm_broker *b = d->b;
    d->fn(d->arg);
    free(d);
    b->pending--;
    if (b->closing && b->pending == 0 && b->state == BROKER_IDLE) {
        finish_close(b);
    }
}

int
cm__broker_defer(cm_broker *b, void (*fn)(void *arg), void *arg)
{
    deferred *d = malloc(sizeof(*d));
    if (d == NULL) {
        return CM_ENOMEM;
    }
    d->b = b;
    d->fn = fn;
    d->arg = arg;
    int rc = cm_loop_post(b->loop, run_deferred, d);
    if (rc < 0) {
        free(d);
        return rc;
    }
    b->pending++;
    return 0;
}

/* ---- connect, disconnect, close ---- */

int
cm_broker_connect(cm_broker *b, cm_broker_cb cb, void *arg)
{
    if (b == NULL || b->closing) {
        return CM_EINVAL;
    }
    if (b->state != BROKER_IDLE) {
        return CM_ESTATE;
    }
    b->why[0] = '\0';
    b->conn_cb = cb;
    b->conn_arg = arg;
    b->state = BROKER_CONNECTING;
    int rc = b->ops->connect(b);
    if (rc < 0) {
        b->state = BROKER_IDLE;
        b->conn_cb = NULL;
    }
    return rc;
}

void
cm_broker_connected(cm_broker *b, int status)
{
    cm_broker_cb cb = b->conn_cb;
    void *arg = b->conn_arg;
    b->conn_cb = NULL;
    b->state = status == 0 ? BROKER_CONNECTED : BROKER_IDLE;
    b->paused = 0;
    if (b->closing) {
        if (status == 0) {
            b->state = BROKER_DISCONNECTING;
            b->ops->disconnect(b);
        } else if (b->pending == 0) {
            finish_close(b);
        }
        return;
    }
    if (cb != NULL) {
        cb(status, arg);
    }
}

static void
sub_free(cm_broker_sub *s)
{
    free(s->topic);
    free(s->queue);
    free(s);
}

static void
unsubscribe_all(cm_broker *b)
{
    while (b->subs != NULL) {
        cm_broker_unsubscribe(b->subs);
    }
}

int
cm_broker_disconnect(cm_broker *b, cm_broker_cb cb, void *arg)
{
    if (b == NULL || b->closing) {
        return CM_EINVAL;
    }
    if (b->state != BROKER_CONNECTED) {
        return CM_ESTATE;
    }
    unsubscribe_all(b);
    b->conn_cb = cb;
    b->conn_arg = arg;
    b->state = BROKER_DISCONNECTING;
    b->ops->disconnect(b);
    return 0;
}

void
cm_broker_disconnected(cm_broker *b)
{
    cm_broker_cb cb = b->conn_cb;
    void *arg = b->conn_arg;
    b->conn_cb = NULL;
    b->state = BROKER_IDLE;
    if (b->closing) {
        if (b->pending == 0) {
            finish_close(b);
        }
        return;
    }
    if (cb != NULL) {
        cb(0, arg);
    }
}

static void
finish_close(cm_broker *b)
{
    if (b->ops->fini != NULL) {
        b->ops->fini(b);
    }
    void (*done)(void *) = b->close_done;
    void *arg = b->close_arg;
    broker_free(b);
    if (done != NULL) {
        done(arg);
    }
}

static void
close_idle(void *arg)
{
    (void)arg; /* finishing happens in run_deferred once this closure has run */
}

void
cm_broker_close(cm_broker *b, void (*done)(void *arg), void *arg)
{
    if (b == NULL || b->closing) {
        return;
    }
    b->closing = 1;
    b->close_done = done;
    b->close_arg = arg;
    b->conn_cb = NULL;
    unsubscribe_all(b);
    if (b->state == BROKER_CONNECTED) {
        b->state = BROKER_DISCONNECTING;
        b->ops->disconnect(b);
    } else if (b->state == BROKER_IDLE) {
        /* done runs later on the loop, never inside this call. */
        if (cm__broker_defer(b, close_idle, NULL) < 0 && b->pending == 0) {
            finish_close(b);
        }
    }
    /* CONNECTING: cm_broker_connected disconnects; DISCONNECTING: cm_broker_disconnected ends. */
}

/* ---- publish and subscribe ---- */

int
cm_broker_publish(cm_broker *b, const char *topic, const cm_md *header, const uint8_t *body,
                  size_t body_len, cm_broker_publish_cb cb, void *arg)
{
    if (b == NULL || topic == NULL || topic[0] == '\0' || (body == NULL && body_len > 0) ||
        b->closing) {
        return CM_EINVAL;
    }
    if (b->state != BROKER_CONNECTED) {
        return CM_ESTATE;
    }
    static const uint8_t empty[1];
    int rc = b->ops->publish(b, topic, header, body != NULL ? body : empty, body_len, cb, arg);
    if (rc == 0) {
        b->stats.published++;
    }
    return rc;
}

int
cm_broker_publish_now(cm_broker *b, const char *topic, const cm_md *header, const uint8_t *body,
                      size_t body_len)
{
    if (b != NULL && b->ops->publish_now == NULL) {
        return CM_ENOTSUP; /* first: a call with a NULL topic asks whether the backend can */
    }
    if (b == NULL || topic == NULL || topic[0] == '\0' || (body == NULL && body_len > 0)) {
        return CM_EINVAL;
    }
    static const uint8_t empty[1];
    int rc = b->ops->publish_now(b, topic, header, body != NULL ? body : empty, body_len);
    if (rc == 0) {
        atomic_fetch_add_explicit(&b->published_now, 1, memory_order_relaxed);
    }
    return rc;
}

int
cm_broker_subscribe(cm_broker *b, const char *topic, const cm_broker_sub_opts *o,
                    cm_broker_handler handler, void *arg, cm_broker_sub **out)
{
    if (b == NULL || topic == NULL || topic[0] == '\0' || handler == NULL || out == NULL ||
        b->closing) {
        return CM_EINVAL;
    }
    if (b->state != BROKER_CONNECTED) {
        return CM_ESTATE;
    }
    if (b->ops->sub_priv_size > SIZE_MAX / 2) {
        return CM_ENOMEM;
    }
    cm_broker_sub *s = calloc(1, sizeof(*s) + b->ops->sub_priv_size);
    if (s == NULL) {
        return CM_ENOMEM;
    }
    s->broker = b;
    s->handler = handler;
    s->arg = arg;
    if (o != NULL) {
        s->ready = o->ready;
        s->ready_arg = o->ready_arg;
    }
    const char *queue = o != NULL && o->queue != NULL && o->queue[0] != '\0' ? o->queue : NULL;
    if ((s->topic = strdup(topic)) == NULL ||
        (queue != NULL && (s->queue = strdup(queue)) == NULL)) {
        sub_free(s);
        return CM_ENOMEM;
    }
    s->next = b->subs;
    b->subs = s;
    int rc = b->ops->subscribe(b, s);
    if (rc < 0) {
        b->subs = s->next;
        sub_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void
cm_broker_unsubscribe(cm_broker_sub *s)
{
    if (s == NULL) {
        return;
    }
    cm_broker *b = s->broker;
    b->ops->unsubscribe(b, s);
    for (cm_broker_sub **pp = &b->subs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    if (s->holds > 0) {
        s->gone = 1; /* a delivery is under way: freed after it (sub_release) */
    } else {
        sub_free(s);
    }
}

static void
sub_release(cm_broker_sub *s)
{
    if (--s->holds == 0 && s->gone) {
        sub_free(s);
    }
}

const char *
cm_broker_sub_topic(const cm_broker_sub *s)
{
    return s->topic;
}

const char *
cm_broker_sub_queue(const cm_broker_sub *s)
{
    return s->queue;
}

void *
cm_broker_sub_priv(cm_broker_sub *s)
{
    return s->priv;
}

cm_broker *
cm_broker_sub_broker(const cm_broker_sub *s)
{
    return s->broker;
}

cm_broker_sub *
cm_broker_subs(cm_broker *b)
{
    return b->subs;
}

cm_broker_sub *
cm_broker_sub_next(const cm_broker_sub *s)
{
    return s->next;
}

void
cm_broker_sub_ready(cm_broker_sub *s, int status)
{
    cm_broker_cb cb = s->ready;
    s->ready = NULL;
    if (cb != NULL) {
        cb(status, s->ready_arg);
    }
}

int
cm_broker_can_pause(const cm_broker *b)
{
    return b != NULL && b->resume != NULL;
}

void
cm_broker_set_resume(cm_broker *b, void (*fn)(cm_broker *b))
{
    b->resume = fn;
}

void
cm_broker_resume(cm_broker *b)
{
    if (b != NULL && b->paused) {
        b->paused = 0;
        if (b->state == BROKER_CONNECTED) {
            b->resume(b);
        }
    }
}

int
cm_broker_deliver(cm_broker_sub *s, const cm_md *header, const uint8_t *body, size_t body_len)
{
    cm_broker *b = s->broker;
    cm_broker_msg m = {.topic = s->topic,
                       .header = header,
                       .body = body != NULL ? body : (const uint8_t *)"",
                       .body_len = body_len};
    b->stats.delivered++;
    s->holds++;
    int rc = s->handler(&m, s->arg); /* which may unsubscribe s */
    int again = rc == CM_EAGAIN && b->resume != NULL;
    if (again) {
        b->stats.delivered--;
        b->paused = 1;
    } else if (rc < 0) {
        b->stats.handler_errors++;
        cm_log(CM_LOG_WARN, "broker", "%s: handler of topic \"%s\" failed: %s", b->ops->name,
               s->topic, cm_strerror(rc));
    }
    sub_release(s);
    return again ? CM_EAGAIN : 0;
}

size_t
cm_broker_deliver_topic(cm_broker *b, const char *topic, const cm_md *header, const uint8_t *body,
                        size_t body_len)
{
    size_t n = 0, k = 0;
    for (cm_broker_sub *s = b->subs; s != NULL; s = s->next) {
        n += strcmp(s->topic, topic) == 0;
    }
    cm_broker_sub *few[16], **snap = n <= 16 ? few : malloc(n * sizeof(*snap));
    if (snap == NULL) {
        b->stats.dropped++;
        cm_log(CM_LOG_WARN, "broker", "%s: message of topic \"%s\" dropped: out of memory",
               b->ops->name, topic);
        return 0;
    }
    for (cm_broker_sub *s = b->subs; s != NULL; s = s->next) {
        if (strcmp(s->topic, topic) == 0) {
            s->holds++; /* a handler may unsubscribe it, or subscribe others */
            snap[k++] = s;
        }
    }
    for (size_t i = 0; i < k; i++) {
        if (!snap[i]->gone) {
            cm_broker_deliver(snap[i], header, body, body_len);
        }
        sub_release(snap[i]);
    }
    if (snap != few) {
        free(snap);
    }
    return k;
}
