/* The NATS broker on libnats, on the wire as go-micro's NATS broker plugin for v4
 * (github.com/go-micro/plugins/v4/broker/nats): a message is the JSON of broker.Message published
 * on the subject named by the topic; a queue group is a NATS queue subscription.
 *
 * Threads: libnats connects, reads and reconnects on threads of its own and calls on_msg on a
 * delivery thread per subscription. on_msg decodes the message there into one allocation and
 * appends it to a bounded queue shared with the loop (struct shared), then wakes the loop with
 * uv_async_send; the loop runs the handlers of a batch, and frees delivered messages with their
 * libnats messages together, a few batches at a time (see spend). Connecting, flushing a new
 * subscription and closing block in libnats, so they run on libuv's worker threads, never on the
 * loop. Publishing appends to libnats's buffer, which its flusher thread writes; only when that
 * buffer is full does libnats write it out from the publishing thread (a short blocking write,
 * bounded by the connection's write deadline). */
#include "broker_int.h"

#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MODULE "broker"
#define WAKE_BATCH 256 /* messages queued for the loop before it is woken regardless */
#define SPENT_MAX 2048 /* delivered messages freed together, at most */
#define SPENT_BYTES (1024 * 1024) /* and their bytes received, at most */

/* A received message: the start of the block its decoding is in (cm__broker_msg_decode_block). */
typedef struct item {
    struct item *next;
    int64_t sid;
    natsMsg *msg; /* destroyed with the item: see items_free */
    const cm_md *header;
    const uint8_t *body;
    size_t body_len;
} item;

/* What the loop shares with libnats's threads, for one connection. Freed by the last of the
 * broker and the subscriptions libnats still holds (their on-complete callbacks). */
typedef struct shared {
    uv_mutex_t mu;
    atomic_int refs;
    int closed; /* the loop stopped listening: on_msg drops, async must not be touched */
    uv_async_t *async;
    item *head, *tail;
    size_t queued;               /* messages in head..tail */
    size_t n, max;               /* messages waiting: queued, or held by the loop for a paused
                                    subscription (nats_sub.held); their bound (queue_max) */
    size_t bytes, bytes_max;     /* their bytes (item_bytes), and their bound (queue_bytes_max) */
    uint64_t dropped, malformed; /* counted here, moved to the broker's stats by the loop */
    int dropping;                /* a drop was logged; reset when the queue drains */
    int signalled;               /* async sent since the loop last drained */
} shared;

typedef struct nats_priv {
    cm_broker *b;
    natsConnection *nc;
    shared *sh;
    uv_async_t async;
    uv_timer_t drops_timer; /* counts libnats's drops each second while connected */
    item *spent;            /* delivered items waiting to be freed together (see spend) */
    size_t nspent, spent_bytes;
    uv_work_t work;
    int conn_rc;   /* a failed connect's status, reported once the async handle closed */
    int busy;      /* steps of a disconnect still to finish */
    int flushes;   /* subscription flushes in flight (they use nc) */
    int nc_closed; /* nc is closed, to be destroyed once no flush uses it */
    natsStatus st;
    char err[256];
    char url[256];
    cm_buf out; /* the encoded message of a publish */
    /* nc for cm_broker_publish_now's threads: set once connected, NULL from the start of a
     * disconnect; read under the read lock, written under the write lock. */
    uv_rwlock_t live_lock;
    natsConnection *live;
    atomic_uint_fast64_t slow_log_ms; /* a slow consumer was last logged (libnats's threads) */
    int gave_up; /* libnats closed nc after max_reconnect rounds (logged once) */
    int64_t wait_ms, max_ms, pending_max, pending_bytes_max, queue_bytes_max, send_asap;
    int max_reconnect;
} nats_priv;

/* What libnats's delivery thread gets with a subscription's messages. Freed by the subscription's
 * on-complete callback (sub_ref_done), with its reference to sh. */
typedef struct sub_ref {
    shared *sh;
    _Atomic int64_t sid; /* 0 until the subscription is made: then on_msg asks libnats */
} sub_ref;

typedef struct nats_sub {
    natsSubscription *ns;
    int64_t sid;
    int64_t lib_dropped; /* libnats's count of its drops, as last moved to the stats */
    /* The loop's: the messages its handler refused (CM_EAGAIN) and those after them, oldest
     * first, until nats_resume; counted in the shared queue's bounds. */
    item *held, *held_tail;
    size_t held_n, held_bytes;
    int paused; /* its handler refused a message; nats_resume not yet run */
} nats_sub;

/* What a queued message holds: the bytes received and its decoded body. */
static size_t
item_bytes(const item *it)
{
    return (size_t)natsMsg_GetDataLength(it->msg) + it->body_len;
}

/* Appends it to the list head..tail. */
static void
append(item **head, item **tail, item *it)
{
    it->next = NULL;
    if (*tail != NULL) {
        (*tail)->next = it;
    } else {
        *head = it;
    }
    *tail = it;
}

static void
item_free(item *it)
{
    natsMsg_Destroy(it->msg);
    free(it);
}

/* Frees a list of items and their libnats messages (see spend). */
static void
items_free(item *it)
{
    while (it != NULL) {
        item *next = it->next;
        item_free(it);
        it = next;
    }
}

static void shared_unref(void *p);

static void
sub_ref_done(void *arg)
{
    sub_ref *r = arg;
    shared_unref(r->sh);
    free(r);
}

static void
shared_unref(void *p)
{
    shared *sh = p;
    if (atomic_fetch_sub(&sh->refs, 1) != 1) {
        return;
    }
    items_free(sh->head);
    uv_mutex_destroy(&sh->mu);
    free(sh);
}

/* Wakes the loop, once until it drains the queue. Under sh->mu. */
static void
wake(shared *sh)
{
    if (!sh->signalled) {
        sh->signalled = 1;
        uv_async_send(sh->async);
    }
}

/* libnats's delivery thread. */
static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    sub_ref *r = closure;
    shared *sh = r->sh;
    int64_t sid = atomic_load_explicit(&r->sid, memory_order_acquire);
    char why[128];
    cm__broker_dmsg m;
    int rc = cm__broker_msg_decode_block((const uint8_t *)natsMsg_GetData(msg),
                                         (size_t)natsMsg_GetDataLength(msg), sizeof(item), &m, why,
                                         sizeof(why));
    if (rc < 0) {
        uv_mutex_lock(&sh->mu);
        uint64_t n = ++sh->malformed;
        uv_mutex_unlock(&sh->mu);
        if ((n & (n - 1)) == 0) { /* the 1st, 2nd, 4th, 8th, ... */
            cm_log(CM_LOG_WARN, MODULE, "nats: message on \"%s\" dropped (%s): %s (%llu so far)",
                   natsMsg_GetSubject(msg), cm_strerror(rc), rc == CM_ECODEC ? why : "",
                   (unsigned long long)n);
        }
        natsMsg_Destroy(msg);
        return;
    }
    item *it = m.block;
    it->sid = sid != 0 ? sid : natsSubscription_GetID(sub);
    it->msg = msg;
    it->header = m.header;
    it->body = m.body;
    it->body_len = m.body_len;
    int log_drop = 0;
    size_t sz = item_bytes(it);
    uv_mutex_lock(&sh->mu);
    if (sh->closed || sh->n >= sh->max || (sh->n > 0 && sh->bytes + sz > sh->bytes_max)) {
        if (!sh->closed) {
            sh->dropped++;
            log_drop = !sh->dropping;
            sh->dropping = 1;
            wake(sh); /* when the queue filled while libnats still held more */
        }
        uv_mutex_unlock(&sh->mu);
        item_free(it);
        if (log_drop) {
            cm_log(CM_LOG_WARN, MODULE,
                   "nats: delivery queue full (%zu messages or %zu bytes): dropping", sh->max,
                   sh->bytes_max);
        }
        return;
    }
    append(&sh->head, &sh->tail, it);
    sh->queued++;
    sh->n++;
    sh->bytes += sz;
    /* One wake-up of the loop per batch: while libnats holds more messages of this subscription
     * it calls again at once, so the loop is woken at the last one (or every WAKE_BATCH). */
    int more = 0;
    if (sh->queued >= WAKE_BATCH || sh->n >= sh->max ||
        natsSubscription_GetPending(sub, &more, NULL) != NATS_OK || more == 0) {
        wake(sh);
    }
    uv_mutex_unlock(&sh->mu);
}

static cm_broker_sub *
find_sub(cm_broker *b, int64_t sid)
{
    for (cm_broker_sub *s = b->subs; s != NULL; s = s->next) {
        if (((nats_sub *)cm_broker_sub_priv(s))->sid == sid) {
            return s;
        }
    }
    return NULL;
}

/* Moves libnats's drops (a subscription whose pending messages reached libnats's limit: a slow
 * consumer) into the broker's stats. */
static void
count_lib_drops(cm_broker *b)
{
    for (cm_broker_sub *s = b->subs; s != NULL; s = s->next) {
        nats_sub *ns = cm_broker_sub_priv(s);
        int64_t n = 0;
        if (ns->ns != NULL && natsSubscription_GetDropped(ns->ns, &n) == NATS_OK &&
            n > ns->lib_dropped) {
            b->stats.dropped += (uint64_t)(n - ns->lib_dropped);
            ns->lib_dropped = n;
        }
    }
}

/* Frees the delivered items kept by spend. */
static void
spent_free(nats_priv *p)
{
    items_free(p->spent);
    p->spent = NULL;
    p->nspent = p->spent_bytes = 0;
}

/* Keeps a delivered batch (head to tail: n items, bytes received) until SPENT_MAX items or
 * SPENT_BYTES are kept, then frees them all together: each libnats message destroyed goes to
 * libnats's collector thread, which is woken and contends for its list's lock while a burst goes
 * on; the fewer bursts, the fewer wake-ups. The rest is freed each second (on_drops_timer) and at
 * the disconnect. */
static void
spend(nats_priv *p, item *head, item *tail, size_t n, size_t bytes)
{
    tail->next = p->spent;
    p->spent = head;
    p->nspent += n;
    p->spent_bytes += bytes;
    if (p->nspent >= SPENT_MAX || p->spent_bytes >= SPENT_BYTES) {
        spent_free(p);
    }
}

static void
on_drops_timer(uv_timer_t *t)
{
    nats_priv *p = t->data;
    count_lib_drops(p->b);
    spent_free(p);
    if (!p->gave_up && natsConnection_IsClosed(p->nc)) { /* not a disconnect: it stops this */
        p->gave_up = 1;
        cm_log(CM_LOG_ERROR, MODULE,
               "nats: gave up reconnecting after %d attempts (max_reconnect): the connection is "
               "closed; publishes fail and subscriptions receive nothing until the broker "
               "connects again",
               p->max_reconnect);
    }
}

/* ---- delivery on the loop; a subscription whose handler refuses a message (CM_EAGAIN) holds it
 * and those after it until nats_resume, while the others go on ---- */

/* What a turn of the loop is done with (delivered, or dropped because the subscription ended),
 * to be freed together (see spend). */
typedef struct done_list {
    item *head, *tail;
    size_t n, bytes;
} done_list;

static void
done_add(done_list *d, item *it)
{
    append(&d->head, &d->tail, it);
    d->n++;
    d->bytes += item_bytes(it);
}

/* Holds it for ns: after what it holds, or first (a refused message back in front). */
static void
hold(nats_sub *ns, item *it, int first)
{
    if (first && ns->held != NULL) {
        it->next = ns->held;
        ns->held = it;
    } else {
        append(&ns->held, &ns->held_tail, it);
    }
    ns->held_n++;
    ns->held_bytes += item_bytes(it);
}

static item *
unhold(nats_sub *ns)
{
    item *it = ns->held;
    ns->held = it->next;
    ns->held_tail = ns->held != NULL ? ns->held_tail : NULL;
    ns->held_n--;
    ns->held_bytes -= item_bytes(it);
    return it;
}

/* Frees what ns holds (at its unsubscribe), counted as dropped, as go-micro discards a message
 * whose subscription ended. */
static void
held_free(nats_priv *p, nats_sub *ns)
{
    if (ns->held == NULL) {
        return;
    }
    if (p->sh != NULL) {
        uv_mutex_lock(&p->sh->mu);
        p->sh->n -= ns->held_n;
        p->sh->bytes -= ns->held_bytes;
        uv_mutex_unlock(&p->sh->mu);
    }
    p->b->stats.dropped += ns->held_n;
    items_free(ns->held);
    ns->held = ns->held_tail = NULL;
    ns->held_n = ns->held_bytes = 0;
}

/* Runs the handler of it, or holds it while its subscription is paused or holds older ones
 * (from_held: it is the oldest of those). A message whose subscription has ended meanwhile (an
 * unsubscribe while it waited, as at a graceful stop), or whose connection a handler before it
 * closed, is dropped and counted. */
static void
deliver_one(cm_broker *b, item *it, int from_held, done_list *d)
{
    cm_broker_sub *s = b->state == BROKER_CONNECTED ? find_sub(b, it->sid) : NULL;
    nats_sub *ns = s != NULL ? cm_broker_sub_priv(s) : NULL;
    if (ns != NULL && !from_held && (ns->paused || ns->held != NULL)) {
        hold(ns, it, 0);
        return;
    }
    if (s != NULL && cm_broker_deliver(s, it->header, it->body, it->body_len) == CM_EAGAIN) {
        /* the handler may have ended its subscription, or the connection */
        s = b->state == BROKER_CONNECTED ? find_sub(b, it->sid) : NULL;
        if (s != NULL) {
            ns = cm_broker_sub_priv(s);
            ns->paused = 1;
            hold(ns, it, 1);
            return;
        }
    }
    b->stats.dropped += s == NULL;
    done_add(d, it);
}

/* Delivers what the subscriptions no longer paused hold, oldest first. */
static void
deliver_held(cm_broker *b, done_list *d)
{
    for (;;) {
        nats_sub *ns = NULL;
        for (cm_broker_sub *s = b->state == BROKER_CONNECTED ? b->subs : NULL; s != NULL;
             s = s->next) {
            nats_sub *x = cm_broker_sub_priv(s);
            if (x->held != NULL && !x->paused) {
                ns = x;
                break;
            }
        }
        if (ns == NULL) {
            return;
        }
        deliver_one(b, unhold(ns), 1, d);
    }
}

/* Are all of b's subscriptions paused? Then the queue need not wake the loop until nats_resume
 * (or a new subscription): what it would deliver would only be held. */
static int
all_paused(cm_broker *b)
{
    for (cm_broker_sub *s = b->subs; s != NULL; s = s->next) {
        if (!((nats_sub *)cm_broker_sub_priv(s))->paused) {
            return 0;
        }
    }
    return b->subs != NULL;
}

/* The loop: runs the handlers of the held messages that may go on, then of the queued ones. */
static void
on_async(uv_async_t *a)
{
    nats_priv *p = a->data;
    cm_broker *b = p->b;
    shared *sh = p->sh;
    uv_mutex_lock(&sh->mu);
    item *it = sh->head;
    sh->head = sh->tail = NULL;
    sh->queued = 0;
    sh->dropping = 0;
    sh->signalled = 0;
    b->stats.dropped += sh->dropped;
    b->stats.malformed += sh->malformed;
    sh->dropped = sh->malformed = 0;
    uv_mutex_unlock(&sh->mu);
    done_list d = {0};
    deliver_held(b, &d);
    while (it != NULL) {
        item *next = it->next;
        deliver_one(b, it, 0, &d);
        it = next;
    }
    int quiet = b->state == BROKER_CONNECTED && all_paused(b);
    if (d.n > 0 || quiet) {
        uv_mutex_lock(&sh->mu);
        sh->n -= d.n;
        sh->bytes -= d.bytes;
        sh->signalled |= quiet; /* until nats_resume */
        uv_mutex_unlock(&sh->mu);
    }
    if (d.head != NULL && b->state == BROKER_CONNECTED) {
        spend(p, d.head, d.tail, d.n, d.bytes);
    } else {
        items_free(d.head); /* a handler began the disconnect, which freed what was kept */
    }
    count_lib_drops(b);
}

/* cm_broker_resume: the paused subscriptions deliver again, from the message refused. */
static void
nats_resume(cm_broker *b)
{
    for (cm_broker_sub *s = b->subs; s != NULL; s = s->next) {
        ((nats_sub *)cm_broker_sub_priv(s))->paused = 0;
    }
    uv_async_send(&((nats_priv *)cm_broker_priv(b))->async);
}

/* ---- connection events (libnats threads): logged once per change of state ---- */

static void
on_disconnected(natsConnection *nc, void *closure)
{
    (void)closure;
    if (natsConnection_IsClosed(nc)) {
        return; /* closed on purpose (disconnect) */
    }
    cm_log(CM_LOG_WARN, MODULE, "nats: disconnected from the server; reconnecting");
}

/* Asynchronous errors: a slow consumer is the one that loses messages. Once per episode, as
 * libnats reports it. */
static void
on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    nats_priv *p = closure;
    if (err == NATS_SLOW_CONSUMER && sub != NULL) {
        uint64_t now = cm_now_ms(), last = atomic_load(&p->slow_log_ms);
        if ((last != 0 && now - last < 1000) ||
            !atomic_compare_exchange_strong(&p->slow_log_ms, &last, now)) {
            return; /* logged less than a second ago */
        }
        cm_log(CM_LOG_WARN, MODULE,
               "nats: the subscription on \"%s\" cannot keep up: libnats drops its messages "
               "beyond %lld messages or %lld bytes pending (counted as dropped; options "
               "pending_max, pending_bytes_max)",
               natsSubscription_GetSubject(sub), (long long)p->pending_max,
               (long long)p->pending_bytes_max);
    } else {
        cm_log(CM_LOG_WARN, MODULE, "nats: %s", natsStatus_GetText(err));
    }
}

static void
on_reconnected(natsConnection *nc, void *closure)
{
    (void)closure;
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    cm_log(CM_LOG_INFO, MODULE, "nats: reconnected to %s; subscriptions restored", url);
}

/* Back-off between reconnect rounds: wait, 2 wait, 4 wait, ... up to max, plus up to a quarter
 * of jitter. */
static int64_t
reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    (void)nc;
    nats_priv *p = closure;
    int64_t d = p->wait_ms;
    for (int i = 1; i < attempts && d < p->max_ms; i++) {
        d *= 2;
    }
    if (d > p->max_ms) {
        d = p->max_ms;
    }
    return d + (d >= 4 ? (int64_t)(uv_hrtime() % (uint64_t)(d / 4)) : 0);
}

/* ---- connect (a worker thread) ---- */

/* "a:1,nats://b:2" → servers with nats:// added where missing, as the Go plugin does. */
static int
split_servers(const char *addrs, char ***out, int *n)
{
    char *copy = strdup(addrs != NULL ? addrs : "nats://127.0.0.1:4222");
    size_t cap = 1;
    for (const char *c = copy; c != NULL && *c; c++) {
        cap += *c == ',';
    }
    char **v = calloc(cap, sizeof(*v));
    if (copy == NULL || v == NULL) {
        free(copy);
        free(v);
        return CM_ENOMEM;
    }
    int k = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') {
            t++;
        }
        if (*t == '\0') {
            continue;
        }
        size_t len = strlen(t) + 8;
        if ((v[k] = malloc(len)) == NULL) {
            break;
        }
        snprintf(v[k], len, "%s%s", strstr(t, "://") != NULL ? "" : "nats://", t);
        k++;
    }
    free(copy);
    *out = v;
    *n = k;
    return 0;
}

static natsStatus
make_options(nats_priv *p, natsOptions **opts)
{
    cm_broker *b = p->b;
    char **servers = NULL;
    int n = 0;
    if (split_servers(cm_broker_addresses(b), &servers, &n) < 0) {
        return NATS_NO_MEMORY;
    }
    natsStatus s = natsOptions_Create(opts);
    if (s == NATS_OK && n > 0) {
        s = natsOptions_SetServers(*opts, (const char **)servers, n);
    }
    for (int i = 0; i < n; i++) {
        free(servers[i]);
    }
    free(servers);
    const char *name = cm_broker_option(b, "name");
    if (s == NATS_OK && name != NULL) {
        s = natsOptions_SetName(*opts, name);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetNoRandomize(*opts, true);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetTimeout(*opts, (int64_t)cm_broker_timeout_ms(b));
    }
    if (s == NATS_OK) {
        s = natsOptions_SetMaxReconnect(*opts, p->max_reconnect);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetCustomReconnectDelay(*opts, reconnect_delay, p);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetDisconnectedCB(*opts, on_disconnected, p);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectedCB(*opts, on_reconnected, p);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetErrorHandler(*opts, on_error, p);
    }
    if (s == NATS_OK && p->send_asap) {
        s = natsOptions_SetSendAsap(*opts, true);
    }
    return s;
}

static void
connect_work(uv_work_t *w)
{
    nats_priv *p = w->data;
    natsOptions *opts = NULL;
    p->st = make_options(p, &opts);
    if (p->st == NATS_OK) {
        p->st = natsConnection_Connect(&p->nc, opts);
    }
    if (p->st != NATS_OK) {
        natsStatus st;
        const char *last = nats_GetLastError(&st);
        const char *where = last != NULL && last[0] == '(' ? strstr(last, "): ") : NULL;
        if (where != NULL) {
            last = where + 3; /* "(conn.c:2088): No server ..." without the source place */
        }
        snprintf(p->err, sizeof(p->err), "%s",
                 last != NULL && last[0] ? last : natsStatus_GetText(p->st));
    }
    natsOptions_Destroy(opts);
}

static int
status_error(natsStatus s)
{
    switch (s) {
    case NATS_OK:
        return 0;
    case NATS_NO_SERVER:
        return UV_ECONNREFUSED;
    case NATS_TIMEOUT:
        return UV_ETIMEDOUT;
    case NATS_NO_MEMORY:
        return CM_ENOMEM;
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_INSUFFICIENT_BUFFER:
        return CM_ECLOSED;
    case NATS_MAX_PAYLOAD:
        return CM_ETOOBIG;
    case NATS_INVALID_SUBJECT:
    case NATS_INVALID_ARG:
        return CM_EINVAL;
    default:
        return CM_EPROTO;
    }
}

static void
connect_failed(uv_handle_t *h)
{
    nats_priv *p = h->data;
    shared_unref(p->sh);
    p->sh = NULL;
    cm_broker_connected(p->b, p->conn_rc);
}

static void
connect_done(uv_work_t *w, int status)
{
    nats_priv *p = w->data;
    cm_broker *b = p->b;
    int rc = status < 0 ? status : status_error(p->st);
    if (rc == 0) {
        natsConnection_GetConnectedUrl(p->nc, p->url, sizeof(p->url));
        cm_log(CM_LOG_DEBUG, MODULE, "nats: connected to %s", p->url);
        p->gave_up = 0;
        uv_rwlock_wrlock(&p->live_lock);
        p->live = p->nc;
        uv_rwlock_wrunlock(&p->live_lock);
        /* libnats's drops are counted as messages arrive, and each second, so that drops with
         * no delivery after them are counted too */
        uv_timer_init(cm_loop_uv(cm_broker_loop(b)), &p->drops_timer);
        p->drops_timer.data = p;
        uv_timer_start(&p->drops_timer, on_drops_timer, 1000, 1000);
        uv_unref((uv_handle_t *)&p->drops_timer);
        cm_broker_connected(b, 0);
        return;
    }
    const char *addrs = cm_broker_addresses(b);
    cm_broker_set_why(b, "nats: no server available at %s (%s)",
                      addrs != NULL ? addrs : "nats://127.0.0.1:4222", p->err);
    natsConnection_Destroy(p->nc);
    p->nc = NULL;
    p->conn_rc = rc;
    p->sh->closed = 1;
    uv_close((uv_handle_t *)&p->async, connect_failed); /* reports once the handle is closed */
}

static int
nats_connect(cm_broker *b)
{
    nats_priv *p = cm_broker_priv(b);
    shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL || uv_mutex_init(&sh->mu) != 0) {
        free(sh);
        return CM_ENOMEM;
    }
    atomic_init(&sh->refs, 1);
    sh->max = cm_broker_queue_max(b);
    sh->bytes_max = (size_t)p->queue_bytes_max;
    sh->async = &p->async;
    int rc = uv_async_init(cm_loop_uv(cm_broker_loop(b)), &p->async, on_async);
    if (rc < 0) {
        uv_mutex_destroy(&sh->mu);
        free(sh);
        return rc;
    }
    p->async.data = p;
    p->sh = sh;
    p->url[0] = '\0';
    p->work.data = p;
    /* Cannot fail: the loop and both callbacks are given. */
    return uv_queue_work(cm_loop_uv(cm_broker_loop(b)), &p->work, connect_work, connect_done);
}

/* ---- disconnect: the async handle closed, the connection closed (on a worker: it joins
 * libnats's threads), and every flush in flight finished; then the connection is freed ---- */

static void
step_done(nats_priv *p)
{
    if (--p->busy == 0) {
        cm_broker_disconnected(p->b);
    }
}

static void
maybe_destroy(nats_priv *p)
{
    if (p->nc_closed && p->flushes == 0) {
        natsConnection_Destroy(p->nc);
        p->nc = NULL;
        p->nc_closed = 0;
        step_done(p);
    }
}

static void
close_work(uv_work_t *w)
{
    nats_priv *p = w->data;
    /* What was published reaches the server first: libnats's close writes out its buffer, but
     * does not wait for the server to read it, and a publisher that closes at once loses what the
     * server has not read yet. A flush waits for the server's answer to a PING sent after it. */
    if (natsConnection_Status(p->nc) == NATS_CONN_STATUS_CONNECTED) {
        natsStatus st = natsConnection_FlushTimeout(p->nc, (int64_t)cm_broker_timeout_ms(p->b));
        if (st != NATS_OK) {
            cm_log(CM_LOG_WARN, MODULE,
                   "nats: closing without the server's confirmation of what was published: %s",
                   natsStatus_GetText(st));
        }
    }
    natsConnection_Close(p->nc);
}

static void
close_done(uv_work_t *w, int status)
{
    (void)status;
    nats_priv *p = w->data;
    p->nc_closed = 1;
    maybe_destroy(p);
}

static void
timer_closed(uv_handle_t *h)
{
    step_done(h->data);
}

static void
async_closed(uv_handle_t *h)
{
    nats_priv *p = h->data;
    shared_unref(p->sh);
    p->sh = NULL;
    step_done(p);
}

static void
nats_disconnect(cm_broker *b)
{
    nats_priv *p = cm_broker_priv(b);
    uv_rwlock_wrlock(&p->live_lock); /* no publish_now uses nc from here on */
    p->live = NULL;
    uv_rwlock_wrunlock(&p->live_lock);
    uv_mutex_lock(&p->sh->mu);
    p->sh->closed = 1;
    /* What still waits for the loop is lost with the connection (every subscription has ended
     * already; cm_broker_disconnect unsubscribes first): counted, as an unsubscribe counts. */
    b->stats.dropped += p->sh->queued + p->sh->dropped;
    b->stats.malformed += p->sh->malformed;
    p->sh->dropped = p->sh->malformed = 0;
    uv_mutex_unlock(&p->sh->mu);
    spent_free(p);
    p->busy = 3;
    uv_close((uv_handle_t *)&p->async, async_closed);
    uv_close((uv_handle_t *)&p->drops_timer, timer_closed);
    uv_queue_work(cm_loop_uv(cm_broker_loop(b)), &p->work, close_work, close_done);
}

/* ---- publish, subscribe ---- */

typedef struct pub_done {
    cm_broker_publish_cb cb;
    void *arg;
} pub_done;

static void
run_pub_done(void *arg)
{
    pub_done *d = arg;
    d->cb(0, NULL, 0, d->arg);
    free(d);
}

/* Encodes the message into out and publishes it on nc. 0 or an error; *st is libnats's status
 * (NATS_OK when it was not reached). */
static int
encode_publish(natsConnection *nc, cm_buf *out, const char *topic, const cm_md *header,
               const uint8_t *body, size_t body_len, natsStatus *st)
{
    *st = NATS_OK;
    if (natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED) {
        return CM_ECLOSED;
    }
    out->len = 0;
    int rc = cm_broker_msg_encode(header, body, body_len, out);
    if (rc == 0 && out->len > INT32_MAX) {
        rc = CM_ETOOBIG;
    }
    if (rc == 0) {
        *st = natsConnection_Publish(nc, topic, out->data, (int)out->len);
        rc = status_error(*st);
    }
    return rc;
}

static int
nats_publish(cm_broker *b, const char *topic, const cm_md *header, const uint8_t *body,
             size_t body_len, cm_broker_publish_cb cb, void *arg)
{
    nats_priv *p = cm_broker_priv(b);
    pub_done *d = NULL;
    if (cb != NULL && (d = malloc(sizeof(*d))) == NULL) {
        return CM_ENOMEM;
    }
    natsStatus s;
    int rc = encode_publish(p->nc, &p->out, topic, header, body, body_len, &s);
    if (rc == CM_ECLOSED && s == NATS_OK && natsConnection_IsClosed(p->nc)) {
        cm_broker_set_why(b,
                          "nats: the connection is closed: gave up reconnecting after %d attempts "
                          "(max_reconnect); disconnect and connect the broker again",
                          p->max_reconnect);
    } else if (rc == CM_ECLOSED && s == NATS_OK) {
        cm_broker_set_why(b, "nats: not connected to the server (reconnecting)");
    } else if (rc < 0 && s != NATS_OK) {
        cm_broker_set_why(b, "nats: publish on \"%s\": %s", topic, natsStatus_GetText(s));
    }
    if (p->out.cap > 1 << 20) {
        cm_buf_free(&p->out); /* a big message leaves no big buffer behind */
    }
    if (rc == 0 && d != NULL) {
        d->cb = cb;
        d->arg = arg;
        rc = cm__broker_defer(b, run_pub_done, d);
    }
    if (rc < 0) {
        free(d);
    }
    return rc;
}

/* The size of the message encoded when no header byte needs escaping (then its buffer is not
 * grown while it is written). */
static size_t
encoded_size(const cm_md *header, size_t body_len)
{
    size_t n = 32 + (body_len + 2) / 3 * 4;
    for (size_t i = 0; i < cm_md_count(header); i++) {
        const char *k, *v;
        cm_md_at(header, i, &k, &v);
        n += strlen(k) + strlen(v) + 6;
    }
    return n;
}

/* Any thread: the message is encoded into a buffer of this call. */
static int
nats_publish_now(cm_broker *b, const char *topic, const cm_md *header, const uint8_t *body,
                 size_t body_len)
{
    nats_priv *p = cm_broker_priv(b);
    cm_buf out = {0};
    if (cm_buf_reserve(&out, encoded_size(header, body_len)) < 0) {
        return CM_ENOMEM;
    }
    natsStatus s;
    int rc = CM_ESTATE;
    uv_rwlock_rdlock(&p->live_lock);
    if (p->live != NULL) {
        rc = encode_publish(p->live, &out, topic, header, body, body_len, &s);
    }
    uv_rwlock_rdunlock(&p->live_lock);
    cm_buf_free(&out);
    return rc;
}

/* Tells the subscription it is live once the server has seen its SUB (a flush: PING/PONG). */
typedef struct flush_req {
    uv_work_t work;
    cm_broker *b;
    natsConnection *nc;
    int64_t sid;
    natsStatus st;
} flush_req;

static void
flush_work(uv_work_t *w)
{
    flush_req *f = w->data;
    f->st = natsConnection_FlushTimeout(f->nc, (int64_t)cm_broker_timeout_ms(f->b));
}

static void
flush_done(uv_work_t *w, int status)
{
    flush_req *f = w->data;
    cm_broker *b = f->b;
    cm_broker_sub *s = b->state == BROKER_CONNECTED ? find_sub(b, f->sid) : NULL;
    if (s != NULL) {
        cm_broker_sub_ready(s, status < 0 ? status : status_error(f->st));
    }
    free(f);
    nats_priv *p = cm_broker_priv(b);
    p->flushes--;
    maybe_destroy(p);
}

static int
nats_subscribe(cm_broker *b, cm_broker_sub *s)
{
    nats_priv *p = cm_broker_priv(b);
    nats_sub *ns = cm_broker_sub_priv(s);
    const char *q = cm_broker_sub_queue(s);
    const char *topic = cm_broker_sub_topic(s);
    sub_ref *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return CM_ENOMEM;
    }
    r->sh = p->sh;
    natsStatus st = q != NULL ? natsConnection_QueueSubscribe(&ns->ns, p->nc, topic, q, on_msg, r)
                              : natsConnection_Subscribe(&ns->ns, p->nc, topic, on_msg, r);
    if (st != NATS_OK) {
        free(r);
        cm_broker_set_why(b, "nats: subscribe to \"%s\": %s", topic, natsStatus_GetText(st));
        return status_error(st);
    }
    /* cannot fail on a live async subscription with positive limits */
    (void)natsSubscription_SetPendingLimits(ns->ns, (int)p->pending_max, (int)p->pending_bytes_max);
    ns->sid = natsSubscription_GetID(ns->ns);
    uv_async_send(&p->async); /* the loop may wait for a resume while all others are paused */
    atomic_store_explicit(&r->sid, ns->sid, memory_order_release);
    atomic_fetch_add(&p->sh->refs, 1);
    if (natsSubscription_SetOnCompleteCB(ns->ns, sub_ref_done, r) != NATS_OK) {
        /* cannot fail on a live async subscription; else r stays, for a delivery thread whose
         * end cannot be known */
        atomic_fetch_sub(&p->sh->refs, 1);
    }
    if (s->ready == NULL) {
        return 0;
    }
    flush_req *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return 0; /* the subscription stands; only its ready callback is lost */
    }
    f->work.data = f;
    f->b = b;
    f->nc = p->nc;
    f->sid = ns->sid;
    if (uv_queue_work(cm_loop_uv(cm_broker_loop(b)), &f->work, flush_work, flush_done) < 0) {
        free(f);
        return 0;
    }
    p->flushes++;
    return 0;
}

static void
nats_unsubscribe(cm_broker *b, cm_broker_sub *s)
{
    nats_sub *ns = cm_broker_sub_priv(s);
    held_free(cm_broker_priv(b), ns);
    if (ns->ns != NULL) {
        natsSubscription_Unsubscribe(ns->ns); /* fails harmlessly while reconnecting */
        natsSubscription_Destroy(ns->ns);
        ns->ns = NULL;
    }
}

static const char *
nats_address(cm_broker *b)
{
    nats_priv *p = cm_broker_priv(b);
    if (p->nc != NULL) {
        natsConnection_GetConnectedUrl(p->nc, p->url, sizeof(p->url));
    }
    return p->url;
}

/* ---- life ---- */

static int
opt_int(cm_broker *b, const char *key, int64_t def, int64_t min, int64_t *out)
{
    const char *v = cm_broker_option(b, key);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || n < min) {
        cm_broker_set_why(b, "nats broker: option \"%s\" is not a number >= %lld: \"%s\"", key,
                          (long long)min, v);
        return CM_EINVAL;
    }
    *out = n;
    return 0;
}

static int
nats_init(cm_broker *b)
{
    nats_priv *p = cm_broker_priv(b);
    p->b = b;
    cm_broker_set_resume(b, nats_resume);
    if (uv_rwlock_init(&p->live_lock) != 0) {
        return CM_ENOMEM;
    }
    int64_t mr = 0;
    int rc = opt_int(b, "reconnect_wait_ms", 100, 1, &p->wait_ms);
    if (rc == 0) {
        rc = opt_int(b, "reconnect_max_ms", 2000, 1, &p->max_ms);
    }
    if (rc == 0) {
        rc = opt_int(b, "max_reconnect", -1, -1, &mr);
    }
    if (rc == 0) {
        rc = opt_int(b, "pending_max", 65536, 1, &p->pending_max);
    }
    if (rc == 0) {
        rc = opt_int(b, "pending_bytes_max", 64 * 1024 * 1024, 1, &p->pending_bytes_max);
    }
    if (rc == 0) {
        rc = opt_int(b, "queue_bytes_max", 64 * 1024 * 1024, 1, &p->queue_bytes_max);
    }
    if (rc == 0) {
        rc = opt_int(b, "send_asap", 0, 0, &p->send_asap);
    }
    p->pending_max = p->pending_max > INT32_MAX ? INT32_MAX : p->pending_max;
    p->pending_bytes_max = p->pending_bytes_max > INT32_MAX ? INT32_MAX : p->pending_bytes_max;
    if (rc == 0 && p->max_ms < p->wait_ms) {
        p->max_ms = p->wait_ms;
    }
    p->max_reconnect = mr > INT32_MAX ? INT32_MAX : (int)mr;
    if (rc < 0) {
        uv_rwlock_destroy(&p->live_lock);
    }
    return rc;
}

static void
nats_fini(cm_broker *b)
{
    nats_priv *p = cm_broker_priv(b);
    cm_buf_free(&p->out);
    uv_rwlock_destroy(&p->live_lock);
}

static const char *const nats_keys[] = {
    "name",        "reconnect_wait_ms", "reconnect_max_ms", "max_reconnect",
    "pending_max", "pending_bytes_max", "queue_bytes_max",  "send_asap",
    NULL};

const cm_broker_ops cm__broker_nats = {
    .abi_version = CM_ABI_VERSION,
    .name = "nats",
    .priv_size = sizeof(nats_priv),
    .sub_priv_size = sizeof(nats_sub),
    .option_keys = nats_keys,
    .init = nats_init,
    .fini = nats_fini,
    .connect = nats_connect,
    .disconnect = nats_disconnect,
    .publish = nats_publish,
    .subscribe = nats_subscribe,
    .unsubscribe = nats_unsubscribe,
    .address = nats_address,
    .publish_now = nats_publish_now,
};
