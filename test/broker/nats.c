/* The NATS broker against a real nats-server on a loopback port: a clear error when no server
 * answers, fan-out to two subscribers, a queue group of two (each message exactly once across
 * it), malformed messages and a full delivery queue counted without a crash, a handler that
 * pauses delivery until it is resumed, a publisher closed right after a burst losing nothing, and
 * the server killed and restarted: publishes fail while it is down, then delivery resumes on the
 * same brokers with their subscriptions restored. */
#include "harness.h"

#include <nats/nats.h>
#include <unistd.h>

static int port;
static char url[64];

typedef struct rx {
    int n;
    int seen[512]; /* by message number */
    int bad;       /* messages whose header or body was not what was sent */
    const char *want_hdr;
} rx;

static int
on_msg(const cm_broker_msg *m, void *arg)
{
    rx *r = arg;
    char body[64];
    if (m->body_len == 0 || m->body_len >= sizeof(body)) {
        r->bad++;
        return 0;
    }
    memcpy(body, m->body, m->body_len);
    body[m->body_len] = '\0';
    int i = atoi(body + 4); /* "msg-N" */
    const char *h = cm_md_get(m->header, "X-Seq");
    if (strncmp(body, "msg-", 4) != 0 || i < 0 || i >= 512 || h == NULL || strcmp(h, body) != 0 ||
        (r->want_hdr != NULL && strcmp(m->topic, r->want_hdr) != 0)) {
        r->bad++;
        return 0;
    }
    r->seen[i]++;
    r->n++;
    return 0;
}

static int
publish_n(cm_broker *b, const char *topic, int from, int to)
{
    cm_md *h = cm_md_new();
    int rc = 0;
    for (int i = from; i < to && rc == 0; i++) {
        char body[32];
        snprintf(body, sizeof(body), "msg-%d", i);
        cm_md_set(h, "X-Seq", body);
        rc = cm_broker_publish(b, topic, h, (const uint8_t *)body, strlen(body), NULL, NULL);
    }
    cm_md_free(h);
    return rc;
}

static cm_broker *
nats_broker(size_t queue_max)
{
    cm_broker_opts o;
    cm_broker_opts_init(&o);
    o.addresses = url;
    o.queue_max = queue_max;
    cm_broker_opts_set(&o, "reconnect_wait_ms", "20");
    cm_broker_opts_set(&o, "reconnect_max_ms", "200");
    return broker_up("nats", &o);
}

static int ready;

static void
on_ready(int status, void *arg)
{
    (void)arg;
    CHECK_EQ_INT(status, 0);
    ready++;
}

static cm_broker_sub *
sub_fn(cm_broker *b, const char *topic, const char *queue, cm_broker_handler fn, void *arg)
{
    cm_broker_sub_opts so;
    cm_broker_sub_opts_init(&so);
    so.queue = queue;
    so.ready = on_ready;
    cm_broker_sub *s = NULL;
    int before = ready;
    CHECK_EQ_INT(cm_broker_subscribe(b, topic, &so, fn, arg, &s), 0);
    CHECK(wait_until(&ready, before + 1, 5000));
    return s;
}

static cm_broker_sub *
sub(cm_broker *b, const char *topic, const char *queue, rx *r)
{
    return sub_fn(b, topic, queue, on_msg, r);
}

static int connected, connect_status;

static void
on_connect(int status, void *arg)
{
    (void)arg;
    connect_status = status;
    connected++;
}

/* No server: a clear error, the callback exactly once, later. */
static void
test_unreachable(void)
{
    cm_broker_opts o;
    cm_broker_opts_init(&o);
    char dead[64];
    snprintf(dead, sizeof(dead), "127.0.0.1:%d", free_port());
    o.addresses = dead;
    cm_broker *b = NULL;
    CHECK_EQ_INT(cm_broker_new(L, "nats", &o, &b), 0);
    connected = 0;
    CHECK_EQ_INT(cm_broker_connect(b, on_connect, NULL), 0);
    CHECK_EQ_INT(connected, 0);
    CHECK(wait_until(&connected, 1, 5000));
    CHECK_EQ_INT(connect_status, UV_ECONNREFUSED);
    fprintf(stderr, "   why: %s\n", cm_broker_why(b));
    CHECK(strstr(cm_broker_why(b), "no server available at 127.0.0.1:") != NULL);
    CHECK_EQ_INT(cm_broker_publish(b, "t", NULL, (const uint8_t *)"x", 1, NULL, NULL), CM_ESTATE);
    /* It can try again (and fail again). */
    CHECK_EQ_INT(cm_broker_connect(b, on_connect, NULL), 0);
    CHECK(wait_until(&connected, 2, 5000));
    CHECK_EQ_INT(connect_status, UV_ECONNREFUSED);
    broker_down(b);
}

static void
test_options(void)
{
    cm_broker_opts o;
    cm_broker_opts_init(&o);
    cm_broker_opts_set(&o, "no_such_key", "1");
    cm_broker *b = NULL;
    CHECK_EQ_INT(cm_broker_new(L, "nats", &o, &b), CM_EINVAL);
    cm_broker_opts_init(&o);
    cm_broker_opts_set(&o, "reconnect_wait_ms", "soon");
    CHECK_EQ_INT(cm_broker_new(L, "nats", &o, &b), CM_EINVAL);
    CHECK_EQ_INT(cm_broker_new(L, "no-such-broker", NULL, &b), CM_ENOTFOUND);
}

static void
test_fanout_and_queue(cm_broker *pub)
{
    cm_broker *s1 = nats_broker(0), *s2 = nats_broker(0);
    rx a = {.want_hdr = "fan"}, b = {.want_hdr = "fan"}, q1 = {0}, q2 = {0};
    cm_broker_sub *sa = sub(s1, "fan", NULL, &a);
    cm_broker_sub *sb = sub(s2, "fan", NULL, &b);
    sub(s1, "work", "grp", &q1);
    sub(s2, "work", "grp", &q2);
    CHECK(cm_broker_sub_queue(sa) == NULL);
    CHECK_EQ_INT(publish_n(pub, "fan", 0, 50), 0);
    CHECK_EQ_INT(publish_n(pub, "work", 0, 200), 0);
    CHECK(wait_until(&a.n, 50, 5000));
    CHECK(wait_until(&b.n, 50, 5000));
    int total = q1.n + q2.n;
    for (int i = 0; i < 100 && total < 200; i++) {
        wait_until(NULL, 0, 20);
        total = q1.n + q2.n;
    }
    wait_until(NULL, 0, 100); /* time for a duplicate to show */
    CHECK_EQ_INT(q1.n + q2.n, 200);
    for (int i = 0; i < 200; i++) {
        CHECK_EQ_INT(q1.seen[i] + q2.seen[i], 1);
    }
    for (int i = 0; i < 50; i++) {
        CHECK_EQ_INT(a.seen[i], 1);
        CHECK_EQ_INT(b.seen[i], 1);
    }
    CHECK(q1.n > 0 && q2.n > 0);
    CHECK_EQ_INT(a.bad + b.bad + q1.bad + q2.bad, 0);
    fprintf(stderr, "   queue group split: %d + %d\n", q1.n, q2.n);
    /* Unsubscribed: no more deliveries there, the other still receives. */
    cm_broker_unsubscribe(sb);
    CHECK_EQ_INT(publish_n(pub, "fan", 50, 60), 0);
    CHECK(wait_until(&a.n, 60, 5000));
    wait_until(NULL, 0, 100);
    CHECK_EQ_INT(b.n, 50);
    cm_broker_stats st;
    cm_broker_get_stats(s1, &st);
    CHECK_EQ_INT(st.delivered, (uint64_t)(a.n + q1.n));
    CHECK_EQ_INT(st.malformed + st.dropped, 0);
    broker_down(s1);
    broker_down(s2);
}

/* Raw NATS messages that are no go-micro message: counted and logged, never delivered. Then a
 * loop that does not run while 50 messages arrive: a queue of 4 keeps 4 and counts 46 drops. */
static void
test_malformed_and_drops(void)
{
    natsConnection *raw = NULL;
    CHECK_EQ_INT(natsConnection_ConnectTo(&raw, url), NATS_OK);
    cm_broker *s = nats_broker(4);
    rx r = {0};
    sub(s, "raw", NULL, &r);
    const char *bad[] = {"",
                         "not json",
                         "[1,2]",
                         "{\"Header\":{\"a\":1}}",
                         "{\"Body\":\"%%%\"}",
                         "{\"Header\":{\"X-Seq\":\"msg-1\"},\"Body\":\"bXNnLTE=\"} x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        CHECK_EQ_INT(natsConnection_PublishString(raw, "raw", bad[i]), NATS_OK);
    }
    /* A good one last, as Go writes it, so that the test knows all have arrived. */
    CHECK_EQ_INT(natsConnection_PublishString(
                     raw, "raw", "{\"Header\":{\"X-Seq\":\"msg-7\"},\"Body\":\"bXNnLTc=\"}"),
                 NATS_OK);
    CHECK_EQ_INT(natsConnection_FlushTimeout(raw, 5000), NATS_OK);
    CHECK(wait_until(&r.n, 1, 5000));
    CHECK_EQ_INT(r.seen[7], 1);
    CHECK_EQ_INT(r.bad, 0);
    cm_broker_stats st;
    cm_broker_get_stats(s, &st);
    CHECK_EQ_INT(st.malformed, 6);

    /* The loop does not run while these arrive. */
    for (int i = 0; i < 50; i++) {
        char msg[128];
        snprintf(msg, sizeof(msg), "{\"Header\":{\"X-Seq\":\"msg-%d\"},\"Body\":null}", i);
        CHECK_EQ_INT(natsConnection_PublishString(raw, "raw", msg), NATS_OK);
    }
    CHECK_EQ_INT(natsConnection_FlushTimeout(raw, 5000), NATS_OK);
    usleep(300000);
    int before = r.n;
    wait_until(NULL, 0, 200);
    cm_broker_get_stats(s, &st);
    fprintf(stderr, "   queue of 4: %d delivered, %llu dropped\n", r.bad + r.n - before,
            (unsigned long long)st.dropped);
    CHECK_EQ_INT(st.dropped, 46);
    CHECK_EQ_INT(r.bad, 4); /* null bodies: handed over, and not what on_msg accepts */
    natsConnection_Destroy(raw);
    broker_down(s);
}

/* Disconnected, then closed, with messages queued for the loop: they are freed with their libnats
 * messages (the sanitizer build's leak check fails otherwise), none is delivered after, and they
 * are counted as dropped. */
static int disconnected;

static void
on_disconnect(int status, void *arg)
{
    (void)arg;
    CHECK_EQ_INT(status, 0);
    disconnected++;
}

static void
test_close_with_queued(void)
{
    natsConnection *raw = NULL;
    CHECK_EQ_INT(natsConnection_ConnectTo(&raw, url), NATS_OK);
    cm_broker *s = nats_broker(64);
    rx r = {0};
    sub(s, "queued", NULL, &r);
    for (int i = 0; i < 40; i++) {
        char msg[128];
        snprintf(msg, sizeof(msg), "{\"Header\":{\"X-Seq\":\"msg-%d\"},\"Body\":\"bXNnLTc=\"}", i);
        CHECK_EQ_INT(natsConnection_PublishString(raw, "queued", msg), NATS_OK);
    }
    CHECK_EQ_INT(natsConnection_FlushTimeout(raw, 5000), NATS_OK);
    usleep(300000); /* the loop does not run: all 40 wait in the queue */
    CHECK_EQ_INT(cm_broker_disconnect(s, on_disconnect, NULL), 0);
    CHECK(wait_until(&disconnected, 1, 10000));
    cm_broker_stats st;
    cm_broker_get_stats(s, &st);
    CHECK_EQ_INT(st.dropped, 40);
    CHECK_EQ_INT(st.delivered, 0);
    broker_down(s);
    CHECK_EQ_INT(r.n + r.bad, 0);
    natsConnection_Destroy(raw);
}

/* Delivered messages are freed together, some each second: deliveries go on across that, and a
 * close frees the rest (the sanitizer build checks both). */
static void
test_spent_freed(cm_broker *pub)
{
    cm_broker *s = nats_broker(0);
    rx r = {0};
    r.want_hdr = "spent";
    sub(s, "spent", NULL, &r);
    CHECK_EQ_INT(publish_n(pub, "spent", 0, 100), 0);
    CHECK(wait_until(&r.n, 100, 5000));
    wait_until(NULL, 0, 1200); /* the second's timer frees what was delivered */
    CHECK_EQ_INT(publish_n(pub, "spent", 100, 200), 0);
    CHECK(wait_until(&r.n, 200, 5000));
    CHECK_EQ_INT(r.bad, 0);
    for (int i = 0; i < 200; i++) {
        CHECK_EQ_INT(r.seen[i], 1);
    }
    broker_down(s);
}

/* A handler that closes (or disconnects) its broker: the rest of the batch is not delivered, and
 * it is freed (the sanitizer build checks). */
static cm_broker *self_closing;
static int self_closed, self_msgs, self_disconnect;

static void
on_self_closed(void *arg)
{
    (void)arg;
    self_closed++;
}

static int
on_msg_close(const cm_broker_msg *m, void *arg)
{
    (void)m;
    (void)arg;
    if (self_msgs++ > 0) {
        return 0;
    }
    if (self_disconnect) {
        CHECK_EQ_INT(cm_broker_disconnect(self_closing, on_disconnect, NULL), 0);
    } else {
        cm_broker_close(self_closing, on_self_closed, NULL);
    }
    return 0;
}

static void
test_close_in_handler(cm_broker *pub)
{
    /* Closed, then disconnected: the 29 not delivered are counted as dropped. */
    for (self_disconnect = 0; self_disconnect <= 1; self_disconnect++) {
        self_closing = nats_broker(0);
        self_msgs = self_closed = disconnected = 0;
        sub_fn(self_closing, "selfclose", NULL, on_msg_close, NULL);
        for (int i = 0; i < 30; i++) {
            CHECK_EQ_INT(cm_broker_publish_now(pub, "selfclose", NULL, (const uint8_t *)"x", 1), 0);
        }
        usleep(300000); /* the loop does not run: it finds the 30 in one batch */
        CHECK(wait_until(self_disconnect ? &disconnected : &self_closed, 1, 10000));
        CHECK_EQ_INT(self_msgs, 1);
        if (self_disconnect) {
            cm_broker_stats st;
            cm_broker_get_stats(self_closing, &st);
            CHECK_EQ_INT(st.delivered, 1);
            CHECK_EQ_INT(st.dropped, 29);
            broker_down(self_closing);
        }
    }
}

/* cm_broker_publish_now from another thread: every message arrives, in the thread's order. */
typedef struct ordered {
    int n, out_of_order;
    int last;
} ordered;

static int
on_ordered(const cm_broker_msg *m, void *arg)
{
    ordered *o = arg;
    char body[16] = "";
    memcpy(body, m->body, m->body_len < 15 ? m->body_len : 15);
    int i = atoi(body);
    o->out_of_order += i != o->last + 1;
    o->last = i;
    o->n++;
    return 0;
}

enum { NOW_COUNT = 20000 };

static void
publish_now_thread(void *arg)
{
    cm_broker *b = arg;
    for (int i = 1; i <= NOW_COUNT; i++) {
        char body[16];
        snprintf(body, sizeof(body), "%d", i);
        CHECK_EQ_INT(cm_broker_publish_now(b, "now", NULL, (const uint8_t *)body, strlen(body)), 0);
    }
}

static void
test_publish_now(cm_broker *pub)
{
    cm_broker *idle = NULL, *http = NULL;
    CHECK_EQ_INT(cm_broker_new(L, "nats", NULL, &idle), 0);
    CHECK_EQ_INT(cm_broker_publish_now(idle, "t", NULL, (const uint8_t *)"x", 1), CM_ESTATE);
    cm_broker_close(idle, NULL, NULL);
    CHECK_EQ_INT(cm_broker_new(L, "http", NULL, &http), 0);
    CHECK_EQ_INT(cm_broker_publish_now(http, "t", NULL, (const uint8_t *)"x", 1), CM_ENOTSUP);
    cm_broker_close(http, NULL, NULL);
    CHECK_EQ_INT(cm_broker_publish_now(pub, "", NULL, NULL, 0), CM_EINVAL);

    cm_broker *s = nats_broker(0);
    ordered o = {0};
    sub_fn(s, "now", NULL, on_ordered, &o);
    cm_broker_stats st0, st;
    cm_broker_get_stats(pub, &st0);
    uv_thread_t t;
    CHECK_EQ_INT(uv_thread_create(&t, publish_now_thread, pub), 0);
    CHECK(wait_until(&o.n, NOW_COUNT, 10000));
    uv_thread_join(&t);
    CHECK_EQ_INT(o.out_of_order, 0);
    cm_broker_get_stats(pub, &st);
    CHECK_EQ_INT(st.published - st0.published, NOW_COUNT);
    broker_down(s);
}

/* Flow control: a handler that returns CM_EAGAIN leaves its message in the broker, nothing more
 * of its subscription is delivered until cm_broker_resume, and delivery starts again with that
 * message: all arrive once, in order. The other subscriptions go on meanwhile. A broker without
 * flow control (http) says so. */
typedef struct pauser {
    rx r;
    int refusals; /* of message 10, still to make */
    int refused;
    int last, out_of_order;
} pauser;

static int
on_msg_pausing(const cm_broker_msg *m, void *arg)
{
    pauser *p = arg;
    if (p->r.n == 10 && p->refusals > 0) {
        p->refusals--;
        p->refused++;
        return CM_EAGAIN;
    }
    int before = p->r.n;
    on_msg(m, &p->r);
    if (p->r.n > before) {
        char body[16] = "";
        memcpy(body, m->body, m->body_len < 15 ? m->body_len : 15);
        int i = atoi(body + 4);
        p->out_of_order += i != p->last + 1;
        p->last = i;
    }
    return 0;
}

static void
test_pause_resume(cm_broker *pub)
{
    cm_broker *http = NULL;
    CHECK_EQ_INT(cm_broker_new(L, "http", NULL, &http), 0);
    CHECK_EQ_INT(cm_broker_can_pause(http), 0);
    cm_broker_close(http, NULL, NULL);
    cm_broker *s = nats_broker(0);
    CHECK_EQ_INT(cm_broker_can_pause(s), 1);
    cm_broker_resume(s); /* nothing paused: nothing happens */
    pauser p = {.refusals = 2, .last = -1};
    sub_fn(s, "pause", NULL, on_msg_pausing, &p);
    rx other = {0};
    sub(s, "pause-other", NULL, &other);
    CHECK_EQ_INT(publish_n(pub, "pause", 0, 40), 0);
    CHECK(wait_until(&p.refused, 1, 5000));
    CHECK_EQ_INT(publish_n(pub, "pause", 40, 50), 0);
    CHECK_EQ_INT(publish_n(pub, "pause-other", 0, 20), 0);
    CHECK(wait_until(&other.n, 20, 5000)); /* not held up by the paused one */
    wait_until(NULL, 0, 200);              /* the other 39 arrive meanwhile, and wait */
    CHECK_EQ_INT(p.r.n, 10);
    cm_broker_stats st;
    cm_broker_get_stats(s, &st);
    CHECK_EQ_INT(st.delivered, 30);
    cm_broker_resume(s); /* refused once more */
    CHECK(wait_until(&p.refused, 2, 5000));
    wait_until(NULL, 0, 100);
    CHECK_EQ_INT(p.r.n, 10);
    cm_broker_resume(s);
    CHECK(wait_until(&p.r.n, 50, 5000));
    CHECK_EQ_INT(p.out_of_order, 0);
    CHECK_EQ_INT(p.r.bad + other.bad, 0);
    for (int i = 0; i < 50; i++) {
        CHECK_EQ_INT(p.r.seen[i], 1);
    }
    cm_broker_get_stats(s, &st);
    CHECK_EQ_INT(st.delivered, 70);
    CHECK_EQ_INT(st.handler_errors + st.dropped, 0);

    /* Unsubscribed while paused: what waited is dropped, and counted. */
    pauser q = {.refusals = 1, .last = -1};
    cm_broker_sub *bs = sub_fn(s, "pause2", NULL, on_msg_pausing, &q);
    CHECK_EQ_INT(publish_n(pub, "pause2", 0, 40), 0);
    CHECK(wait_until(&q.refused, 1, 5000));
    wait_until(NULL, 0, 200);
    cm_broker_unsubscribe(bs);
    cm_broker_resume(s);
    wait_until(NULL, 0, 200);
    cm_broker_get_stats(s, &st);
    CHECK_EQ_INT(q.r.n, 10);
    CHECK_EQ_INT(st.delivered, 80);
    CHECK_EQ_INT(st.dropped, 30);
    broker_down(s);
}

/* A publisher closed right after a burst: every message reaches the server before the connection
 * goes (the close waits for the server's confirmation), so none is lost. */
static int
on_count(const cm_broker_msg *m, void *arg)
{
    (void)m;
    (*(int *)arg)++;
    return 0;
}

static void
test_close_flushes(void)
{
    enum { BURST = 20000 };
    cm_broker *s = nats_broker(0);
    int n = 0;
    sub_fn(s, "flushed", NULL, on_count, &n);
    for (int round = 1; round <= 5; round++) {
        cm_broker *p = nats_broker(0);
        int failed = 0;
        for (int i = 0; i < BURST; i++) {
            failed += cm_broker_publish_now(p, "flushed", NULL, (const uint8_t *)"x", 1) != 0;
        }
        broker_down(p);
        CHECK_EQ_INT(failed, 0);
        wait_until(&n, round * BURST, 10000);
        CHECK_EQ_INT(n, round * BURST);
    }
    broker_down(s);
}

/* A burst larger than libnats's pending limit (key: in messages or bytes) while the loop does
 * not run: what libnats drops (a slow consumer) is counted, so that delivered + dropped is what
 * was sent, and at least min_dropped are. */
static void
slow_consumer(const char *key, const char *limit, size_t queue_max, uint64_t min_dropped)
{
    cm_broker_opts o;
    cm_broker_opts_init(&o);
    o.addresses = url;
    o.queue_max = queue_max;
    cm_broker_opts_set(&o, key, limit);
    cm_broker *s = broker_up("nats", &o);
    rx r = {0};
    sub(s, "slow", NULL, &r);
    natsConnection *raw = NULL;
    CHECK_EQ_INT(natsConnection_ConnectTo(&raw, url), NATS_OK);
    enum { BURST = 20000 };
    for (int i = 0; i < BURST; i++) {
        CHECK_EQ_INT(natsConnection_PublishString(
                         raw, "slow", "{\"Header\":{\"X-Seq\":\"msg-7\"},\"Body\":\"bXNnLTc=\"}"),
                     NATS_OK);
    }
    CHECK_EQ_INT(natsConnection_FlushTimeout(raw, 5000), NATS_OK);
    usleep(500000); /* the loop does not run: both queues overflow */
    cm_broker_stats st;
    for (int i = 0; i < 100; i++) {
        wait_until(NULL, 0, 20);
        cm_broker_get_stats(s, &st);
        if (st.delivered + st.dropped >= BURST) {
            break;
        }
    }
    fprintf(stderr, "   burst of %d, %s %s: %llu delivered, %llu dropped\n", BURST, key, limit,
            (unsigned long long)st.delivered, (unsigned long long)st.dropped);
    CHECK_EQ_INT(st.delivered + st.dropped, BURST);
    CHECK(st.dropped >= min_dropped);
    natsConnection_Destroy(raw);
    broker_down(s);
}

static void
test_slow_consumer(void)
{
    /* The loop's queue (queue_max 8, or about 20 of these messages in queue_bytes_max) drops
     * nearly all. */
    slow_consumer("pending_max", "65536", 8, 20000 / 2);
    slow_consumer("queue_bytes_max", "1024", 0, 20000 / 2);
    /* The loop's queue holds the burst: only libnats drops, beyond 8 messages or about 20 of
     * these, as its reader outruns its delivery thread. */
    slow_consumer("pending_max", "8", 0, 1);
    slow_consumer("pending_bytes_max", "1024", 0, 1);
}

/* The server killed and restarted on the same port. */
static void
test_restart(cm_broker *pub, pid_t *natsd)
{
    cm_broker *s = nats_broker(0);
    rx r = {0};
    sub(s, "life", NULL, &r);
    CHECK_EQ_INT(publish_n(pub, "life", 0, 10), 0);
    CHECK(wait_until(&r.n, 10, 5000));

    natsd_kill(*natsd);
    uint64_t t0 = cm_now_ms();
    int rc = 0;
    while (rc == 0 && cm_now_ms() - t0 < 3000) {
        wait_until(NULL, 0, 5);
        rc = publish_n(pub, "life", 10, 11);
    }
    CHECK_EQ_INT(rc, CM_ECLOSED);
    fprintf(stderr, "   server down: publish says %s (%s) after %llu ms\n", cm_err_name(rc),
            cm_broker_why(pub), (unsigned long long)(cm_now_ms() - t0));
    wait_until(NULL, 0, 300);
    CHECK_EQ_INT(publish_n(pub, "life", 10, 11), CM_ECLOSED);

    *natsd = natsd_start(port);
    t0 = cm_now_ms();
    /* Probes until the subscriber has its subscription back: both brokers reconnect by
     * themselves, at their own pace. */
    int sent = 11, ok = 0;
    while (r.n <= 10 && cm_now_ms() - t0 < 8000) {
        if (publish_n(pub, "life", sent, sent + 1) == 0) {
            sent++;
            ok++;
        }
        wait_until(NULL, 0, 50);
    }
    CHECK(r.n > 10);
    fprintf(stderr,
            "   back after %llu ms: %d probes published after the restart, %d lost before "
            "the subscriber's subscription was restored\n",
            (unsigned long long)(cm_now_ms() - t0), ok, ok - (r.n - 10));
    int have = r.n;
    CHECK_EQ_INT(publish_n(pub, "life", 100, 150), 0);
    CHECK(wait_until(&r.n, have + 50, 5000));
    for (int i = 100; i < 150; i++) {
        CHECK_EQ_INT(r.seen[i], 1);
    }
    CHECK_EQ_INT(r.bad, 0);
    broker_down(s);
}

static int gave_up_logged;

static void
catch_gave_up(cm_log_level level, const char *module, const char *msg, void *user)
{
    gave_up_logged += level == CM_LOG_ERROR && strstr(msg, "gave up reconnecting") != NULL;
    cm_log_stderr(level, module, msg, user);
}

/* With max_reconnect set, libnats gives up when the server stays away: it is logged once as an
 * error, publishes say so (not "reconnecting"), the server's return changes nothing, and
 * connecting again recovers. */
static void
test_gave_up(pid_t *natsd)
{
    cm_log_set_handler(catch_gave_up, NULL);
    cm_broker_opts o;
    cm_broker_opts_init(&o);
    o.addresses = url;
    cm_broker_opts_set(&o, "reconnect_wait_ms", "20");
    cm_broker_opts_set(&o, "reconnect_max_ms", "20");
    cm_broker_opts_set(&o, "max_reconnect", "2");
    cm_broker *g = broker_up("nats", &o);
    CHECK_EQ_INT(publish_n(g, "gone", 0, 1), 0);
    natsd_kill(*natsd);
    uint64_t t0 = cm_now_ms();
    while (strstr(cm_broker_why(g), "gave up") == NULL && cm_now_ms() - t0 < 5000) {
        wait_until(NULL, 0, 20);
        CHECK_EQ_INT(publish_n(g, "gone", 1, 2), CM_ECLOSED);
    }
    fprintf(stderr, "   %s\n", cm_broker_why(g));
    CHECK(strstr(cm_broker_why(g), "gave up reconnecting after 2 attempts") != NULL);
    CHECK(wait_until(&gave_up_logged, 1, 3000)); /* within a second */
    *natsd = natsd_start(port);
    wait_until(NULL, 0, 1200);
    CHECK_EQ_INT(gave_up_logged, 1);
    CHECK_EQ_INT(publish_n(g, "gone", 1, 2), CM_ECLOSED);
    int down = 0;
    CHECK_EQ_INT(cm_broker_disconnect(g, on_connect, &down), 0);
    CHECK(wait_until(&connected, connected + 1, 5000));
    int before = connected;
    CHECK_EQ_INT(cm_broker_connect(g, on_connect, NULL), 0);
    CHECK(wait_until(&connected, before + 1, 5000));
    CHECK_EQ_INT(connect_status, 0);
    CHECK_EQ_INT(publish_n(g, "gone", 2, 3), 0);
    broker_down(g);
    cm_log_set_handler(NULL, NULL);
}

int
main(void)
{
    harness_init();
    RUN(test_options);
    RUN(test_unreachable);
    port = free_port();
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port);
    pid_t natsd = natsd_start(port);
    if (natsd == 0) {
        fprintf(stderr, "SKIP: nats-server not installed (scripts/setup.sh installs it)\n");
        return getenv("CI") != NULL ? 1 : 77;
    }
    cm_broker *pub = nats_broker(0);
    CHECK(strstr(cm_broker_address(pub), "127.0.0.1") != NULL);
    RUN(test_malformed_and_drops);
    RUN(test_slow_consumer);
    RUN(test_close_with_queued);
    fprintf(stderr, "-- test_close_in_handler\n");
    test_close_in_handler(pub);
    fprintf(stderr, "-- test_spent_freed\n");
    test_spent_freed(pub);
    fprintf(stderr, "-- test_publish_now\n");
    test_publish_now(pub);
    fprintf(stderr, "-- test_pause_resume\n");
    test_pause_resume(pub);
    RUN(test_close_flushes);
    fprintf(stderr, "-- test_fanout_and_queue\n");
    test_fanout_and_queue(pub);
    fprintf(stderr, "-- test_restart\n");
    test_restart(pub, &natsd);
    fprintf(stderr, "-- test_gave_up\n");
    test_gave_up(&natsd);
    broker_down(pub);
    natsd_kill(natsd);
    cm_loop_free(L);
    TEST_DONE();
}
