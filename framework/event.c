/* Events: go-micro's client.Publish and server subscribers, on the service's broker. A publish is
 * encoded on the caller's thread. Once the broker is connected, a backend that publishes from any
 * thread (nats) takes it there and then, and only its callback goes to the loop; otherwise it is
 * handed to the loop, which connects the broker at the first one. A message for a subscriber is
 * decoded on the loop into a call context of the server's pool and its handler runs on the worker
 * pool (or inline), inside the subscriber wrappers; the server's drain counts it as a call in
 * flight. */
#include "framework_int.h"

#include <cmicro/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PENDING_MAX 65536 /* messages waiting for a worker, per service */
#define PENDING_BYTES_MAX (64u << 20) /* and their bodies' bytes */
/* A broker that can pause is paused at max(PAUSE_MIN, 4 workers) messages waiting for a worker:
 * as many as the server's pool of contexts keeps, so that a flood allocates none. */
#define PAUSE_MIN CM__CTX_KEEP
#define WAITING_MAX 4096  /* publishes waiting for the broker to connect */
#define LOG_EVERY_MS 1000 /* a repeated failure is logged once per second */

typedef struct ev_sub {
    cm__events *ev;
    cm_subscriber sub; /* its strings owned */
    void *user;
    cm_broker_sub *bs;
    uint64_t failed_log_ms; /* when a failure of this subscriber was last logged */
    uint64_t failed_quiet;  /* failures not logged since */
    _Atomic(void *) ok_series[2]; /* the metrics of its successes (observe.c), found once */
} ev_sub;

typedef struct pub_req {
    struct pub_req *next; /* in the hand-over queue, then waiting for the connection */
    cm__events *ev;
    char *topic; /* the broker topic, in the request's allocation */
    cm_md *hdr;  /* owned: made for a publish handed to the loop */
    const cm_md *hview; /* borrowed from the caller's pub_hdr until hdr is made */
    cm_buf body;
    cm_publish_cb cb;
    void *user;
    int done;   /* published on the caller's thread: the loop reports status */
    int status; /* of a publish done */
} pub_req;

enum { IDLE, CONNECTING, CONNECTED };

struct cm__events {
    cm_loop *loop;
    cm_server *srv;
    cm_broker *broker;
    cm_broker *closing; /* the broker once cm__events_close has let go of it, until it closed */
    int state;
    int started; /* subscribed (the service runs) */
    ev_sub **subs;
    size_t nsubs, cap;
    pub_req *wait_head, *wait_tail; /* publishes waiting for the connection */
    size_t nwaiting;
    size_t pending;       /* messages waiting for a worker */
    size_t pending_bytes; /* their bodies' bytes */
    size_t pause_at; /* pending at which a broker that can is paused (resumed at half) */
    int paused;      /* a handler returned CM_EAGAIN to the broker, not resumed yet */
    uint64_t dropped_log_ms;
    cm_event_stats st;
    cm__events_cb start_cb;
    void *start_arg;
    /* Publishes handed to the loop by any thread: one post (and one wake-up) per batch. */
    uv_mutex_t qmu;
    pub_req *q_head, *q_tail;
    cm__post q_node; /* the drain's post */
    int q_posted; /* a drain is posted: when ev is closed meanwhile, the last of it and the
                     broker's close frees ev */
    int closed;
    int broker_closed; /* the broker's close is done: no publish callback can come (loop) */
    void (*close_done)(void *arg);
    void *close_arg;
    /* Publishing on the caller's thread (cm_broker_publish_now): 1 while the broker is connected
     * and can, 0 otherwise (-1: it cannot). Each such publish holds direct_lock for reading; the
     * loop writes under it before the broker goes. */
    uv_rwlock_t direct_lock;
    int direct;
    atomic_uint_fast64_t published_now;
};

/* ---- setup ---- */

static void
ev_free(cm__events *ev)
{
    uv_rwlock_destroy(&ev->direct_lock);
    uv_mutex_destroy(&ev->qmu);
    free(ev);
}

int
cm__events_new(cm_loop *loop, cm_server *srv, cm_registry *reg, const char *name,
               const char *address, const cm_broker_opts *bo, cm__events **out)
{
    cm__events *ev = calloc(1, sizeof(*ev));
    if (ev == NULL) {
        return CM_ENOMEM;
    }
    ev->loop = loop;
    ev->srv = srv;
    ev->pause_at = 4 * (size_t)cm__server_workers(srv);
    if (ev->pause_at < PAUSE_MIN) {
        ev->pause_at = PAUSE_MIN;
    }
    if (uv_mutex_init(&ev->qmu) != 0) {
        free(ev);
        return CM_ENOMEM;
    }
    if (uv_rwlock_init(&ev->direct_lock) != 0) {
        uv_mutex_destroy(&ev->qmu);
        free(ev);
        return CM_ENOMEM;
    }
    cm_broker_opts o;
    if (bo != NULL) {
        o = *bo;
    } else {
        cm_broker_opts_init(&o);
    }
    o.addresses = address;
    o.registry = reg;
    int rc = cm_broker_new(loop, name, &o, &ev->broker);
    if (rc < 0) {
        ev_free(ev);
        return rc;
    }
    /* a NULL topic only asks whether the backend publishes from any thread */
    ev->direct = cm_broker_publish_now(ev->broker, NULL, NULL, NULL, 0) == CM_ENOTSUP ? -1 : 0;
    *out = ev;
    return 0;
}

static void
sub_free(ev_sub *es)
{
    free((char *)es->sub.topic);
    free((char *)es->sub.queue);
    free((char *)es->sub.endpoint);
    free(es);
}

static char *
dup_or_null(const char *s, int *oom)
{
    char *d = s != NULL && s[0] != '\0' ? strdup(s) : NULL;
    if (s != NULL && s[0] != '\0' && d == NULL) {
        *oom = 1;
    }
    return d;
}

int
cm__events_add(cm__events *ev, const cm_subscriber *sub, void *user)
{
    if (sub == NULL || sub->topic == NULL || sub->topic[0] == '\0' || sub->fn == NULL ||
        strpbrk(sub->topic, "\r\n") != NULL) {
        return CM_EINVAL;
    }
    if (ev->started) {
        return CM_ESTATE;
    }
    if (ev->nsubs == ev->cap) {
        size_t cap = ev->cap ? ev->cap * 2 : 4;
        ev_sub **subs = realloc(ev->subs, cap * sizeof(*subs));
        if (subs == NULL) {
            return CM_ENOMEM;
        }
        ev->subs = subs;
        ev->cap = cap;
    }
    ev_sub *es = calloc(1, sizeof(*es));
    if (es == NULL) {
        return CM_ENOMEM;
    }
    int oom = 0;
    es->ev = ev;
    es->sub = *sub;
    es->sub.topic = dup_or_null(sub->topic, &oom);
    es->sub.queue = dup_or_null(sub->queue, &oom);
    es->sub.endpoint = dup_or_null(sub->endpoint ? sub->endpoint : "Func", &oom);
    es->user = user;
    if (oom) {
        sub_free(es);
        return CM_ENOMEM;
    }
    ev->subs[ev->nsubs++] = es;
    return 0;
}

cm_broker *
cm__events_broker(const cm__events *ev)
{
    return ev->broker;
}

size_t
cm__events_count(const cm__events *ev)
{
    return ev->nsubs;
}

const cm_subscriber *
cm__events_sub(const cm__events *ev, size_t i)
{
    return &ev->subs[i]->sub;
}

void
cm__events_stats(const cm__events *ev, cm_event_stats *st)
{
    *st = ev->st;
    st->published += atomic_load(&((cm__events *)ev)->published_now);
}

/* ---- delivery ---- */

/* Logs a failure of es, once per LOG_EVERY_MS with the count of those not logged. */
static void
sub_failed(ev_sub *es, const char *fmt, const char *a, const char *b)
{
    uint64_t now = cm_now_ms();
    if (es->failed_log_ms != 0 && now - es->failed_log_ms < LOG_EVERY_MS) {
        es->failed_quiet++;
        return;
    }
    char text[512];
    snprintf(text, sizeof text, fmt, a, b);
    if (es->failed_quiet > 0) {
        cm_log(CM_LOG_WARN, "event", "topic %s: %s (and %llu more in the last second)",
               es->sub.topic, text, (unsigned long long)es->failed_quiet);
    } else {
        cm_log(CM_LOG_WARN, "event", "topic %s: %s", es->sub.topic, text);
    }
    es->failed_log_ms = now;
    es->failed_quiet = 0;
}

static void
call_subscriber(cm_ctx *c, const ev_sub *es)
{
    c->status = es->sub.fn(c, c->req_msg, es->user);
    if (c->status == CM_EREMOTE && c->error == NULL) {
        c->status = CM_EINVAL;
    }
}

/* The handler inside the server's subscriber wrappers. */
static void
run_wrapped(cm_ctx *c, const ev_sub *es, const cm__wraps *ws)
{
    cm_wrap_info wi;
    memset(&wi, 0, sizeof wi);
    wi.kind = CM_WRAP_SUBSCRIBER;
    wi.service = cm__server_name(c->srv);
    wi.endpoint = es->sub.topic;
    wi.deadline_ms = -1;
    wi.md = c->req;
    wi.req_desc = es->sub.message;
    wi.req = c->req_msg;
    wi.start_ns = c->start_ns;
    wi.ctx = c;
    void *states[CM_WRAP_MAX];
    size_t ran;
    cm_error *err;
    if (cm__wraps_before(ws, &wi, states, &ran, &err) == 0) {
        call_subscriber(c, es);
    } else {
        cm_error_free(c->error);
        c->error = err;
        c->status = CM_EREMOTE;
    }
    wi.status = c->status;
    wi.error = c->error;
    cm__wraps_after(ws, &wi, states, ran);
}

static void
sub_run(cm_ctx *c)
{
    const ev_sub *es = c->event_sub;
    const cm__wraps *ws = cm__server_sub_wraps(c->srv);
    if (ws->n == 0) {
        call_subscriber(c, es);
    } else {
        run_wrapped(c, es, ws);
    }
}

static void
sub_release(cm_ctx *c)
{
    cm_server *srv = c->srv;
    cm__ctx_put(c);
    cm__server_release(srv);
}

static void
sub_done(cm_ctx *c)
{
    ev_sub *es = (ev_sub *)c->event_sub;
    cm__events *ev = es->ev;
    if (c->status == 0) {
        ev->st.handled++;
    } else {
        ev->st.handler_errors++;
        char *json = c->error ? cm_error_to_json(c->error) : NULL;
        sub_failed(es, "subscriber error: %s%s", json ? json : cm_strerror(c->status), "");
        free(json);
    }
    sub_release(c);
}

static void
job_work(cm__job *j)
{
    sub_run((cm_ctx *)j);
}

static void
job_done(cm__job *j)
{
    cm_ctx *c = (cm_ctx *)j;
    cm__events *ev = ((ev_sub *)c->event_sub)->ev;
    ev->pending--;
    ev->pending_bytes -= c->event_bytes;
    sub_done(c);
    if (ev->paused && ev->pending <= ev->pause_at / 2) {
        ev->paused = 0;
        cm_broker_resume(ev->broker);
    }
}

/* The message's header as the context's request metadata, in c's arena. 0 or CM_ENOMEM. */
static int
take_header(cm_ctx *c, const cm_md *h)
{
    size_t n = cm_md_count(h);
    cm_msg *m = cm_ctx_alloc(c, sizeof(*m));
    cm_hdr *hdrs = cm_ctx_alloc_array(c, n, sizeof(*hdrs));
    if (m == NULL || hdrs == NULL) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        cm_md_at(h, i, &k, &v);
        hdrs[i].key = cm_ctx_strdup(c, k);
        hdrs[i].val = cm_ctx_strdup(c, v);
        if (hdrs[i].key == NULL || hdrs[i].val == NULL) {
            return CM_ENOMEM;
        }
    }
    m->hdrs = hdrs;
    m->nhdrs = n;
    m->body = NULL;
    m->body_len = 0;
    c->req = m;
    return 0;
}

/* Decodes m into c. 0, or < 0 after logging why (rate-limited). */
static int
decode(cm_ctx *c, ev_sub *es, const cm_broker_msg *m)
{
    if (take_header(c, m->header) < 0) {
        sub_failed(es, "%s%s", "out of memory", "");
        return CM_ENOMEM;
    }
    const char *ct = cm_msg_header(c->req, "Content-Type");
    c->content_type = ct != NULL && ct[0] != '\0' ? ct : CM_CT_PROTOBUF;
    c->codec = cm_codec_find(c->content_type);
    if (c->codec == NULL) {
        sub_failed(es, "unsupported Content-Type: %s%s", c->content_type, "");
        return CM_ECONTENTTYPE;
    }
    char reason[160] = "";
    int rc = c->codec->unmarshal(es->sub.message, m->body, m->body_len, &c->arena.pbc, &c->req_msg,
                                 reason, sizeof(reason));
    if (rc < 0) {
        sub_failed(es, "unable to decode message body as %s: %s", c->content_type,
                   reason[0] ? reason : cm_strerror(rc));
    }
    return rc;
}

/* Drops a message: too many wait for a worker. Counted, and logged once per second (0: the
 * broker does not log it again as a handler's error). */
static int
drop(cm__events *ev, const char *topic)
{
    ev->st.dropped++;
    uint64_t now = cm_now_ms();
    if (now - ev->dropped_log_ms >= LOG_EVERY_MS) {
        cm_log(CM_LOG_WARN, "event",
               "topic %s: message dropped, %zu messages (%zu bytes) wait for a worker (%llu "
               "dropped so far)",
               topic, ev->pending, ev->pending_bytes, (unsigned long long)ev->st.dropped);
        ev->dropped_log_ms = now;
    }
    return 0;
}

/* The broker's handler of every subscription (loop thread). When many messages wait for a
 * worker, a broker that can keep them (NATS) pauses the worker-pool subscriptions until half of
 * them are handled, so that the backlog waits in the broker's queue and libnats's, not as call
 * contexts; others (HTTP) drop beyond PENDING_MAX or PENDING_BYTES_MAX. */
static int
on_message(const cm_broker_msg *m, void *arg)
{
    ev_sub *es = arg;
    cm__events *ev = es->ev;
    int inline_ = (es->sub.flags & CM_HANDLER_INLINE) != 0;
    if (!inline_ && ev->pending >= ev->pause_at && cm_broker_can_pause(ev->broker)) {
        ev->paused = 1;
        return CM_EAGAIN;
    }
    if (!inline_ && (ev->pending >= PENDING_MAX ||
                     (ev->pending > 0 && ev->pending_bytes + m->body_len > PENDING_BYTES_MAX))) {
        return drop(ev, es->sub.topic);
    }
    cm_ctx *c = cm__ctx_get(ev->srv);
    if (c == NULL) {
        return drop(ev, es->sub.topic);
    }
    cm__server_hold(ev->srv);
    c->conn = NULL;
    c->deadline_ms = -1;
    c->service = cm__server_name(ev->srv);
    c->endpoint = es->sub.topic;
    c->event_sub = es;
    c->start_ns = uv_hrtime();
    if (decode(c, es, m) < 0) {
        ev->st.decode_errors++;
        sub_release(c);
        return 0; /* logged */
    }
    ev->st.received++;
    if (inline_) {
        sub_run(c);
        sub_done(c);
        return 0;
    }
    ev->pending++;
    c->event_bytes = m->body_len;
    ev->pending_bytes += m->body_len;
    c->job.work = job_work;
    c->job.done = job_done;
    cm__server_submit(ev->srv, &c->job);
    return 0;
}

/* ---- start and stop (loop thread) ---- */

static void
on_sub_ready(int status, void *arg)
{
    ev_sub *es = arg;
    if (status < 0) {
        cm_log(CM_LOG_WARN, "event", "subscribe to %s on broker %s failed: %s (%s)", es->sub.topic,
               cm_broker_name(es->ev->broker), cm_strerror(status), cm_broker_why(es->ev->broker));
        return;
    }
    cm_log(CM_LOG_INFO, "event", "subscribed to %s%s%s on broker %s", es->sub.topic,
           es->sub.queue ? " in queue " : "", es->sub.queue ? es->sub.queue : "",
           cm_broker_name(es->ev->broker));
}

static int
subscribe_all(cm__events *ev)
{
    for (size_t i = 0; i < ev->nsubs; i++) {
        ev_sub *es = ev->subs[i];
        cm_broker_sub_opts so;
        cm_broker_sub_opts_init(&so);
        so.queue = es->sub.queue;
        so.ready = on_sub_ready;
        so.ready_arg = es;
        int rc = cm_broker_subscribe(ev->broker, es->sub.topic, &so, on_message, es, &es->bs);
        if (rc < 0) {
            cm_log(CM_LOG_ERROR, "event", "subscribe to %s on broker %s: %s (%s)", es->sub.topic,
                   cm_broker_name(ev->broker), cm_strerror(rc), cm_broker_why(ev->broker));
            return rc;
        }
    }
    return 0;
}

static void publish_now(pub_req *p);
static void publish_failed(pub_req *p, int status, const char *why);
static void fail_all(pub_req *p, const char *why);

/* Lets other threads publish with cm_broker_publish_now once the broker is connected and no
 * publish handed to the loop waits: a thread's publishes keep their order. Loop thread. */
static void
maybe_direct(cm__events *ev)
{
    if (ev->direct != 0 || ev->state != CONNECTED) {
        return;
    }
    uv_rwlock_wrlock(&ev->direct_lock);
    uv_mutex_lock(&ev->qmu);
    if (ev->q_head == NULL && ev->direct == 0) {
        ev->direct = 1; /* else the drain of what was handed over tries again */
    }
    uv_mutex_unlock(&ev->qmu);
    uv_rwlock_wrunlock(&ev->direct_lock);
}

static void
on_connected(int status, void *arg)
{
    cm__events *ev = arg;
    /* A failure goes to the publishes waiting and to the service's start, which say it. */
    ev->state = status == 0 ? CONNECTED : IDLE;
    pub_req *p = ev->wait_head;
    ev->wait_head = ev->wait_tail = NULL;
    ev->nwaiting = 0;
    while (p != NULL) {
        pub_req *next = p->next;
        if (status == 0) {
            publish_now(p);
        } else {
            publish_failed(p, status, cm_broker_why(ev->broker));
        }
        p = next;
    }
    maybe_direct(ev);
    cm__events_cb cb = ev->start_cb;
    ev->start_cb = NULL;
    if (cb != NULL) {
        if (status == 0 && ev->started) {
            status = subscribe_all(ev);
        }
        cb(status, ev->start_arg);
    }
}

/* Connects the broker unless it is (or is being) connected. 0 or the error of connect. */
static int
connect_broker(cm__events *ev)
{
    if (ev->state != IDLE) {
        return 0;
    }
    int rc = cm_broker_connect(ev->broker, on_connected, ev);
    if (rc == 0) {
        ev->state = CONNECTING;
    }
    return rc;
}

int
cm__events_start(cm__events *ev, cm__events_cb cb, void *arg)
{
    ev->started = 1;
    ev->start_cb = cb;
    ev->start_arg = arg;
    int rc = connect_broker(ev);
    if (rc < 0) {
        ev->start_cb = NULL;
        return rc;
    }
    if (ev->state == CONNECTED) {
        ev->start_cb = NULL;
        rc = subscribe_all(ev);
        return rc < 0 ? rc : 1;
    }
    return 0;
}

void
cm__events_stop(cm__events *ev)
{
    for (size_t i = 0; i < ev->nsubs; i++) {
        if (ev->subs[i]->bs != NULL) {
            cm_broker_unsubscribe(ev->subs[i]->bs);
            ev->subs[i]->bs = NULL;
        }
    }
}

/* The broker has closed: ev goes once no drain is posted either. Loop thread. */
static void
on_broker_closed(void *arg)
{
    cm__events *ev = arg;
    ev->broker_closed = 1;
    ev->closing = NULL;
    if (ev->close_done != NULL) {
        ev->close_done(ev->close_arg);
    }
    if (!ev->q_posted) {
        ev_free(ev); /* else the posted drain frees it */
    }
}

void
cm__events_close(cm__events *ev, void (*done)(void *arg), void *arg)
{
    if (ev == NULL) {
        if (done != NULL) {
            done(arg);
        }
        return;
    }
    cm__events_stop(ev);
    uv_rwlock_wrlock(&ev->direct_lock); /* waits for publishes on other threads */
    ev->direct = -1;
    uv_rwlock_wrunlock(&ev->direct_lock);
    uv_mutex_lock(&ev->qmu);
    pub_req *handed = ev->q_head;
    ev->q_head = ev->q_tail = NULL;
    ev->closed = 1; /* from now on only the loop changes q_posted */
    uv_mutex_unlock(&ev->qmu);
    fail_all(handed, "the service is closing");
    fail_all(ev->wait_head, "the service is closing");
    ev->wait_head = ev->wait_tail = NULL;
    for (size_t i = 0; i < ev->nsubs; i++) {
        sub_free(ev->subs[i]);
    }
    free(ev->subs);
    ev->subs = NULL;
    ev->nsubs = 0;
    ev->close_done = done;
    ev->close_arg = arg;
    /* The publishes in flight report to ev (on_published) until the broker has closed. */
    ev->closing = ev->broker;
    ev->broker = NULL;
    cm_broker_close(ev->closing, on_broker_closed, ev);
}

/* ---- publish ---- */

static void
pub_free(pub_req *p)
{
    cm_md_free(p->hdr);
    cm_buf_free(&p->body);
    free(p);
}

/* The broker a publish reports from: the service's, or the one closing (the publishes in flight
 * report until it has closed). */
static const cm_broker *
pub_broker(const cm__events *ev)
{
    return ev->broker != NULL ? ev->broker : ev->closing;
}

static void
publish_failed(pub_req *p, int status, const char *why)
{
    p->ev->st.publish_errors++;
    if (p->cb != NULL) {
        const cm_broker *b = pub_broker(p->ev);
        cm_error *e = cm_error_new(
            CM__CLIENT_ERROR_ID, status == CM_ECLOSED || status == UV_ECONNREFUSED ? 503 : 500,
            "publish %s on broker %s: %s%s%s", p->topic, b ? cm_broker_name(b) : "(closed)",
            cm_strerror(status), why && why[0] ? ": " : "", why ? why : "");
        p->cb(status, e, p->user);
        cm_error_free(e);
    }
    pub_free(p);
}

static void
on_published(int status, const cm_broker_node_err *errs, size_t nerrs, void *arg)
{
    pub_req *p = arg;
    if (status == 0) {
        p->ev->st.published += !p->done; /* else counted in published_now */
        if (p->cb != NULL) {
            p->cb(0, NULL, p->user);
        }
        pub_free(p);
        return;
    }
    char why[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < nerrs && len < sizeof why - 1; i++) {
        int n = snprintf(why + len, sizeof why - len, "%snode %s at %s: %s", i ? "; " : "",
                         errs[i].node_id, errs[i].address, cm_strerror(errs[i].status));
        len += n > 0 ? (size_t)n : 0;
    }
    publish_failed(p, status, nerrs > 0 ? why : cm_broker_why(pub_broker(p->ev)));
}

static void
fail_all(pub_req *p, const char *why)
{
    while (p != NULL) {
        pub_req *next = p->next;
        publish_failed(p, CM_ECANCELED, why);
        p = next;
    }
}

static void
publish_now(pub_req *p)
{
    cm__events *ev = p->ev;
    int rc =
        cm_broker_publish(ev->broker, p->topic, p->hdr, p->body.data, p->body.len, on_published, p);
    if (rc < 0) {
        publish_failed(p, rc, cm_broker_why(ev->broker));
    }
}

static void
publish_on_loop(void *arg)
{
    pub_req *p = arg;
    cm__events *ev = p->ev;
    if (p->done) { /* published (or refused) on the caller's thread */
        if (p->status < 0) {
            publish_failed(p, p->status, p->status == CM_ECLOSED ? "reconnecting" : NULL);
        } else {
            on_published(0, NULL, 0, p);
        }
        return;
    }
    if (ev->state == CONNECTED) {
        publish_now(p);
        return;
    }
    if (ev->nwaiting >= WAITING_MAX) {
        publish_failed(p, CM_ENOMEM, "too many publishes wait for the broker to connect");
        return;
    }
    int rc = connect_broker(ev);
    if (rc < 0) {
        publish_failed(p, rc, cm_broker_why(ev->broker));
        return;
    }
    if (ev->state == CONNECTED) {
        publish_now(p);
        return;
    }
    p->next = NULL; /* it was the hand-over queue's link */
    if (ev->wait_tail != NULL) {
        ev->wait_tail->next = p;
    } else {
        ev->wait_head = p;
    }
    ev->wait_tail = p;
    ev->nwaiting++;
}

/* The loop's side of the hand-over: every publish queued since the last drain. */
static void
drain_publishes(void *arg)
{
    cm__events *ev = arg;
    uv_mutex_lock(&ev->qmu);
    pub_req *p = ev->q_head;
    ev->q_head = ev->q_tail = NULL;
    ev->q_posted = 0;
    int closed = ev->closed;
    uv_mutex_unlock(&ev->qmu);
    if (closed) { /* closed while this was posted: its publishes were failed then */
        if (ev->broker_closed) {
            ev_free(ev); /* else the broker's close does */
        }
        return;
    }
    while (p != NULL) {
        pub_req *next = p->next;
        publish_on_loop(p);
        p = next;
    }
    maybe_direct(ev);
}

/* Queues p for the loop: one post, and one wake-up of the loop, per batch. 0, or CM_ESTATE (the
 * service is closing). */
static int
hand_over(cm__events *ev, pub_req *p)
{
    p->next = NULL;
    uv_mutex_lock(&ev->qmu);
    if (ev->closed) {
        uv_mutex_unlock(&ev->qmu);
        return CM_ESTATE;
    }
    int post = !ev->q_posted; /* then the queue is empty */
    if (ev->q_tail != NULL) {
        ev->q_tail->next = p;
    } else {
        ev->q_head = p;
    }
    ev->q_tail = p;
    ev->q_posted = 1;
    uv_mutex_unlock(&ev->qmu);
    if (post) { /* one drain posted at a time: its node is ev's, the post cannot fail */
        cm__loop_post_node(ev->loop, &ev->q_node, drain_publishes, ev);
    }
    return 0;
}

/* A random (version 4) UUID, as go-micro's uuid.New(), from the thread's pool of random bytes: no
 * system call for most publishes. 0 or CM_ENOMEM. */
static int
uuid4(char out[37])
{
    uint8_t b[16];
    if (cm__random_bytes(b, sizeof b) < 0) {
        return CM_ENOMEM;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *o++ = '-';
        }
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
    return 0;
}

#define HDR_FEW 16 /* pairs of a publish's header held without an allocation */

/* The header of a publish while its caller waits: pairs of strings borrowed from the parent's
 * metadata, the options and id, made into a cm_md of its own only for a publish handed to the
 * loop (hdr_own). */
typedef struct pub_hdr {
    char *few[2 * HDR_FEW];
    char **kv;
    size_t n, cap;
    char id[37];
    cm_md md; /* the view of kv */
} pub_hdr;

static void
hdr_init(pub_hdr *h)
{
    h->kv = h->few;
    h->n = 0;
    h->cap = HDR_FEW;
}

static void
hdr_fini(pub_hdr *h)
{
    if (h->kv != h->few) {
        free(h->kv);
    }
}

static int
hdr_grow(pub_hdr *h)
{
    char **kv = malloc(4 * h->cap * sizeof(*kv));
    if (kv == NULL) {
        return CM_ENOMEM;
    }
    memcpy(kv, h->kv, 2 * h->n * sizeof(*kv));
    hdr_fini(h);
    h->kv = kv;
    h->cap *= 2;
    return 0;
}

/* As cm_md_set: a key already there (without case) keeps its place and takes the new value. */
static int
hdr_set(pub_hdr *h, const char *key, const char *val)
{
    if (key == NULL || val == NULL || key[0] == '\0' || strpbrk(key, "\r\n:") != NULL ||
        strpbrk(val, "\r\n") != NULL) {
        return CM_EINVAL;
    }
    size_t i = 0;
    while (i < h->n && strcasecmp(h->kv[2 * i], key) != 0) {
        i++;
    }
    if (i == h->n) {
        if (h->n == h->cap && hdr_grow(h) < 0) {
            return CM_ENOMEM;
        }
        h->kv[2 * i] = (char *)key;
        h->n++;
    }
    h->kv[2 * i + 1] = (char *)val;
    return 0;
}

static void
hdr_del(pub_hdr *h, const char *key)
{
    for (size_t i = 0; i < h->n; i++) {
        if (strcasecmp(h->kv[2 * i], key) == 0) {
            memmove(&h->kv[2 * i], &h->kv[2 * i + 2], 2 * (h->n - i - 1) * sizeof(*h->kv));
            h->n--;
            return;
        }
    }
}

/* The header go-micro's client publishes with: the parent's metadata, the caller's, then
 * Content-Type, Micro-Topic and Micro-ID. 0, CM_EINVAL (a value cm_md refuses) or CM_ENOMEM. */
static int
make_header(pub_hdr *h, const char *topic, const char *ct, const cm_publish_opts *o)
{
    const cm_msg *pm = o && o->parent ? cm_ctx_headers(o->parent) : NULL;
    const char *tracestate = NULL;
    const char *span = o && o->parent ? cm__ctx_trace((cm_ctx *)o->parent, &tracestate) : NULL;
    int rc = 0;
    for (size_t i = 0; pm != NULL && i < pm->nhdrs && rc == 0; i++) {
        if (!cm__is_framework_header(pm->hdrs[i].key)) {
            rc = hdr_set(h, pm->hdrs[i].key, pm->hdrs[i].val);
        }
    }
    if (rc == 0 && span != NULL) {
        rc = hdr_set(h, "Traceparent", span);
        if (rc == 0 && tracestate != NULL) {
            rc = hdr_set(h, "Tracestate", tracestate);
        } else if (rc == 0) {
            hdr_del(h, "Tracestate");
        }
    }
    for (size_t i = 0; o != NULL && i < cm_md_count(o->md) && rc == 0; i++) {
        const char *k, *v;
        cm_md_at(o->md, i, &k, &v);
        rc = hdr_set(h, k, v);
    }
    if (rc == 0) {
        rc = uuid4(h->id);
    }
    if (rc == 0) {
        rc = hdr_set(h, "Content-Type", ct);
    }
    if (rc == 0) {
        rc = hdr_set(h, CM_BROKER_TOPIC_HEADER, topic);
    }
    if (rc == 0) {
        rc = hdr_set(h, CM_BROKER_ID_HEADER, h->id);
    }
    cm__md_view(&h->md, h->kv, h->n);
    return rc < 0 ? rc : 0;
}

/* Makes p's header a cm_md of its own, for the loop. 0 or CM_ENOMEM. */
static int
hdr_own(pub_req *p)
{
    if (p->hdr != NULL || p->hview == NULL) {
        return 0;
    }
    cm_md *md = cm_md_new();
    for (size_t i = 0; md != NULL && i < cm_md_count(p->hview); i++) {
        const char *k, *v;
        cm_md_at(p->hview, i, &k, &v);
        if (cm_md_set(md, k, v) < 0) {
            cm_md_free(md);
            md = NULL;
        }
    }
    p->hdr = md;
    p->hview = NULL;
    return md != NULL ? 0 : CM_ENOMEM;
}

/* Validates a publish and encodes it (header and body) into a new request. 0 or an error. */
static int
prepare(cm_client *c, const char *topic, const ProtobufCMessageDescriptor *desc, const void *msg,
        const cm_publish_opts *o, pub_hdr *h, pub_req **out)
{
    if (c == NULL || topic == NULL || topic[0] == '\0' || strpbrk(topic, "\r\n") || msg == NULL) {
        return CM_EINVAL;
    }
    cm__events *ev = cm__client_events(c);
    if (ev == NULL) {
        return CM_ESTATE;
    }
    cm_client_opts co;
    cm_client_get_opts(c, &co);
    const char *ct = o && o->content_type ? o->content_type : co.content_type;
    const cm_codec_ops *codec = cm_codec_find(ct);
    if (codec == NULL) {
        return CM_ECONTENTTYPE;
    }
    const char *bt = o && o->exchange && o->exchange[0] ? o->exchange : topic;
    size_t tlen = strlen(bt);
    pub_req *p = calloc(1, sizeof(*p) + tlen + 1);
    if (p == NULL) {
        return CM_ENOMEM;
    }
    p->ev = ev;
    p->topic = memcpy(p + 1, bt, tlen + 1);
    p->hview = &h->md;
    int rc = make_header(h, topic, ct, o);
    if (rc == 0) {
        rc = codec->marshal(desc, msg, &p->body);
    }
    if (rc < 0) {
        pub_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Publishes p on the caller's thread when the broker can, else hands it to the loop; either way
 * under the read lock, so that the loop's switch between the two keeps a thread's order.
 * Returns 1 (published here, p->status the outcome), 0 (handed over) or an error of the hand-over
 * (p not taken). */
static int
publish_or_hand_over(pub_req *p)
{
    cm__events *ev = p->ev;
    int rc = CM_ESTATE;
    uv_rwlock_rdlock(&ev->direct_lock);
    if (ev->direct == 1) {
        rc = cm_broker_publish_now(ev->broker, p->topic, p->hview, p->body.data, p->body.len);
    }
    if (rc == CM_ESTATE) { /* not (or no longer) connected: the loop connects, or says why */
        rc = hdr_own(p);
        rc = rc < 0 ? rc : hand_over(ev, p);
        uv_rwlock_rdunlock(&ev->direct_lock);
        return rc;
    }
    uv_rwlock_rdunlock(&ev->direct_lock);
    if (rc == 0) {
        atomic_fetch_add_explicit(&ev->published_now, 1, memory_order_relaxed);
    }
    p->done = 1;
    p->status = rc;
    return 1;
}

/* Publishes or hands over a prepared p (taken in every case). Returns 1 when it was published on
 * this thread and quiet_ok (its cb is not run then), 0 when cb will run on the loop, or an error
 * (cb will not run). */
static int
submit(cm_client *c, pub_req *p, int quiet_ok)
{
    int rc = publish_or_hand_over(p);
    if (rc == 1 && p->status == 0 && quiet_ok) {
        pub_free(p);
        return 1;
    }
    if (rc == 1) { /* the loop runs cb, and counts and logs a failure */
        p->hview = NULL;
        cm_buf_free(&p->body);
        rc = hand_over(p->ev, p);
    }
    if (rc < 0) {
        pub_free(p);
        return rc;
    }
    cm__client_autostart_loop(c);
    return 0;
}

int
cm_publish_async(cm_client *c, const char *topic, const ProtobufCMessageDescriptor *desc,
                 const void *msg, const cm_publish_opts *o, cm_publish_cb cb, void *user)
{
    pub_req *p;
    pub_hdr h;
    hdr_init(&h);
    int rc = prepare(c, topic, desc, msg, o, &h, &p);
    if (rc == 0) {
        p->cb = cb;
        p->user = user;
        rc = submit(c, p, cb == NULL);
    }
    hdr_fini(&h);
    return rc < 0 ? rc : 0;
}

typedef struct pub_waiter {
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
    int status;
    cm_error *err;
} pub_waiter;

static void
on_sync_published(int status, const cm_error *err, void *user)
{
    pub_waiter *w = user;
    cm_error *e = err ? cm_error_dup(err) : NULL;
    uv_mutex_lock(&w->mu);
    w->status = status;
    w->err = e;
    w->done = 1;
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu);
}

/* Submits p and waits for its outcome (cm_publish). */
static int
submit_sync(cm_client *c, pub_req *p, cm_error **err)
{
    pub_waiter w;
    memset(&w, 0, sizeof(w));
    uv_mutex_init(&w.mu);
    uv_cond_init(&w.cv);
    p->user = &w;
    int rc = submit(c, p, 1); /* 1: published on this thread, as go-micro's NATS publish returns */
    if (rc == 0) {
        uv_mutex_lock(&w.mu);
        while (!w.done) {
            uv_cond_wait(&w.cv, &w.mu);
        }
        uv_mutex_unlock(&w.mu);
        rc = w.status;
        if (err != NULL) {
            *err = w.err;
        } else {
            cm_error_free(w.err);
        }
    }
    rc = rc == 1 ? 0 : rc;
    uv_cond_destroy(&w.cv);
    uv_mutex_destroy(&w.mu);
    return rc;
}

int
cm_publish(cm_client *c, const char *topic, const ProtobufCMessageDescriptor *desc, const void *msg,
           const cm_publish_opts *o, cm_error **err)
{
    if (err != NULL) {
        *err = NULL;
    }
    if (c != NULL && cm_loop_on_loop_thread(cm_client_loop(c))) {
        return CM_ESTATE;
    }
    pub_req *p;
    pub_hdr h;
    hdr_init(&h);
    int rc = prepare(c, topic, desc, msg, o, &h, &p);
    if (rc == 0) {
        p->cb = on_sync_published;
        rc = submit_sync(c, p, err);
    }
    hdr_fini(&h);
    return rc;
}

_Atomic(void *) *
cm__ctx_event_series(cm_ctx *c)
{
    return ((ev_sub *)(uintptr_t)c->event_sub)->ok_series;
}
