/* The cmicro side of the pub/sub benchmark (bench/broker.sh):
 *
 *   pubsub-cmicro sub BROKER LAYER COUNT      receives up to COUNT messages, prints READY once
 *                                             subscribed, then RESULT (below) and exits after
 *                                             COUNT messages, IDLE_MS without one, or 60 s
 *   pubsub-cmicro pub BROKER LAYER COUNT SIZE RATE
 *                                             publishes COUNT messages whose payload is SIZE
 *                                             bytes, RATE per second (0: as fast as publishing
 *                                             goes), prints
 *                                             PUBLISHED <ok> <failed>
 *
 * BROKER: "nats" (the server at MICRO_BROKER_ADDRESS) or "http" (the registry of MICRO_REGISTRY,
 * Consul at CONSUL_HTTP_ADDR in the benchmark). LAYER: "events", the default configuration (a
 * service publishing from the main thread with cm_publish, or cm_publish_async with PUBLISH=async;
 * subscriber handlers on the worker pool), or "broker" (cm_broker_* on a loop, handlers on the
 * loop thread). The message is bench.EchoMsg;
 * the first 8 bytes of its payload are the publish time (CLOCK_REALTIME ns, little-endian).
 *
 *   RESULT n=<received> rate=<msg/s> p50_us=<..> p99_us=<..>
 *   STATS dropped=<..> ...      the framework's or broker's count of messages it dropped
 * rate is n over the time from the earliest publish time seen to the last delivery. Environment:
 * PUBLISH ("sync", the default, or "async"), WINDOW (cm_publish_async's publishes in flight,
 * default 256), IDLE_MS (default 3000), NATS_SEND_ASAP (1: the events layer's NATS broker with
 * send_asap). */
#include "echo.pb-c.h"

#include <cmicro/cmicro.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define TOPIC "bench.pubsub"
#define DEADLINE_MS 60000

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v != NULL && *v ? atoi(v) : def;
}

/* ---- the receiving side's record ---- */

static int want;
static uint64_t *lat; /* ns, one per message */
static atomic_int got;
static atomic_uint_fast64_t first_sent = UINT64_MAX;
static atomic_uint_fast64_t last_recv;
static cm_service *svc;
static cm_loop *loop;
static uv_timer_t watch;
static uint64_t started_ms;
static int idle_ms;

/* Records one message; returns 1 when it is the last one wanted. */
static int
record(const uint8_t *payload, size_t len)
{
    uint64_t now = now_ns(), sent = 0;
    if (len >= 8) {
        memcpy(&sent, payload, 8);
    }
    uint_fast64_t f = atomic_load(&first_sent);
    while (sent < f && !atomic_compare_exchange_weak(&first_sent, &f, sent)) {
    }
    uint_fast64_t l = atomic_load(&last_recv);
    while (now > l && !atomic_compare_exchange_weak(&last_recv, &l, now)) {
    }
    int i = atomic_fetch_add(&got, 1);
    if (i < want) {
        lat[i] = now > sent ? now - sent : 0;
    }
    return i + 1 == want;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void
print_result(void)
{
    int n = atomic_load(&got);
    if (n > want) {
        n = want;
    }
    double p50 = 0, p99 = 0, rate = 0;
    if (n > 0) {
        qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
        p50 = (double)lat[(size_t)n * 50 / 100] / 1e3;
        p99 = (double)lat[(size_t)n * 99 / 100] / 1e3;
        uint64_t span = atomic_load(&last_recv) - atomic_load(&first_sent);
        rate = span > 0 ? (double)n * 1e9 / (double)span : 0;
    }
    printf("RESULT n=%d rate=%.0f p50_us=%.1f p99_us=%.1f\n", n, rate, p50, p99);
    fflush(stdout);
}

static void
stop_receiving(void)
{
    if (svc != NULL) {
        cm_service_stop(svc);
    } else {
        cm_loop_stop(loop);
    }
}

/* Every 100 ms on the loop: stops after IDLE_MS without a message, or at the deadline. */
static void
on_watch(uv_timer_t *t)
{
    (void)t;
    uint64_t last = atomic_load(&last_recv);
    uint64_t now_ms = cm_now_ms();
    int idle = atomic_load(&got) > 0 && now_ns() - last > (uint64_t)idle_ms * 1000000u;
    if (idle || now_ms - started_ms > DEADLINE_MS) {
        stop_receiving();
    }
}

static void
start_watch(cm_loop *l)
{
    started_ms = cm_now_ms();
    uv_timer_init(cm_loop_uv(l), &watch);
    uv_timer_start(&watch, on_watch, 100, 100);
    uv_unref((uv_handle_t *)&watch);
}

static int
on_event(cm_ctx *ctx, const void *msg, void *user)
{
    (void)ctx;
    (void)user;
    const Bench__EchoMsg *m = msg;
    if (record(m->payload.data, m->payload.len)) {
        cm_service_stop(svc);
    }
    return 0;
}

/* READY once the framework says the subscription is live. */
static void
on_log(cm_log_level level, const char *module, const char *msg, void *user)
{
    if (level >= CM_LOG_WARN) {
        cm_log_stderr(level, module, msg, user);
    }
    if (strcmp(module, "event") == 0 && strncmp(msg, "subscribed to ", 14) == 0) {
        printf("READY\n");
        fflush(stdout);
    }
}

static cm_service *
make_service(const char *broker)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "bench-pubsub";
    o.address = "127.0.0.1:0";
    o.broker = broker;
    o.log_config = 0;
    if (strcmp(broker, "nats") == 0) {
        o.registry = "memory";
    }
    /* the default configuration (metrics and trace context on), with NATS_SEND_ASAP=1 the
     * broker's send_asap */
    cm_broker_opts bo;
    cm_broker_opts_init(&bo);
    if (env_int("NATS_SEND_ASAP", 0) == 1) {
        cm_broker_opts_set(&bo, "send_asap", "1");
        o.broker_opts = &bo;
    }
    cm_service *s = NULL;
    int rc = cm_service_new(&o, &s);
    if (rc < 0) {
        fprintf(stderr, "pubsub-cmicro: %s (%s)\n", cm_strerror(rc), cm_service_why());
        exit(1);
    }
    return s;
}

static int
sub_events(const char *broker)
{
    cm_log_set_handler(on_log, NULL);
    svc = make_service(broker);
    cm_subscriber s = {.topic = TOPIC, .message = &bench__echo_msg__descriptor, .fn = on_event};
    int rc = cm_service_subscribe(svc, &s, NULL);
    start_watch(cm_service_loop(svc));
    if (rc == 0) {
        rc = cm_service_run(svc);
    }
    print_result();
    cm_event_stats st;
    cm_service_event_stats(svc, &st);
    cm_broker_stats bst;
    cm_broker_get_stats(cm_service_broker(svc), &bst);
    printf("STATS dropped=%llu decode_errors=%llu broker_dropped=%llu\n",
           (unsigned long long)st.dropped, (unsigned long long)st.decode_errors,
           (unsigned long long)bst.dropped);
    cm_service_free(svc);
    return rc < 0 ? 1 : 0;
}

/* ---- the broker layer alone ---- */

static int
on_message(const cm_broker_msg *m, void *arg)
{
    (void)arg;
    Bench__EchoMsg *e = bench__echo_msg__unpack(NULL, m->body_len, m->body);
    if (e == NULL) {
        return -1;
    }
    if (record(e->payload.data, e->payload.len)) {
        cm_loop_stop(loop);
    }
    bench__echo_msg__free_unpacked(e, NULL);
    return 0;
}

static void
on_ready(int status, void *arg)
{
    (void)arg;
    if (status < 0) {
        fprintf(stderr, "pubsub-cmicro: subscribe: %s\n", cm_strerror(status));
        cm_loop_stop(loop);
        return;
    }
    printf("READY\n");
    fflush(stdout);
}

static void
on_sub_connected(int status, void *arg)
{
    cm_broker *b = arg;
    cm_broker_sub_opts so;
    cm_broker_sub_opts_init(&so);
    so.ready = on_ready;
    cm_broker_sub *s;
    if (status < 0 || cm_broker_subscribe(b, TOPIC, &so, on_message, NULL, &s) < 0) {
        fprintf(stderr, "pubsub-cmicro: %s\n", cm_broker_why(b));
        cm_loop_stop(loop);
    }
}

static cm_broker *
make_broker(const char *broker)
{
    cm_broker *b = NULL;
    if (cm_loop_new(&loop) < 0 || cm_broker_new(loop, broker, NULL, &b) < 0) {
        fprintf(stderr, "pubsub-cmicro: cannot make the %s broker\n", broker);
        exit(1);
    }
    return b;
}

static int
sub_broker(const char *broker)
{
    cm_broker *b = make_broker(broker);
    cm_broker_connect(b, on_sub_connected, b);
    start_watch(loop);
    cm_loop_run(loop);
    print_result();
    cm_broker_stats st;
    cm_broker_get_stats(b, &st);
    printf("STATS dropped=%llu malformed=%llu\n", (unsigned long long)st.dropped,
           (unsigned long long)st.malformed);
    cm_broker_close(b, NULL, NULL);
    uv_close((uv_handle_t *)&watch, NULL);
    uv_run(cm_loop_uv(loop), UV_RUN_DEFAULT);
    cm_loop_free(loop);
    return 0;
}

/* ---- publishing ---- */

static int count, rate, window;
static const char *publish_mode; /* PUBLISH: "sync" (cm_publish) or "async" */
static size_t size;
static atomic_int ok, failed;
static sem_t slots;

/* The message of one publish: the payload with the time stamped in. */
static void
stamp(uint8_t *payload, Bench__EchoMsg *m)
{
    uint64_t t = now_ns();
    memcpy(payload, &t, 8);
    bench__echo_msg__init(m);
    m->payload.data = payload;
    m->payload.len = size;
}

/* Sleeps until message i is due (rate > 0). */
static void
pace(uint64_t t0, int i)
{
    if (rate <= 0) {
        return;
    }
    uint64_t due = t0 + (uint64_t)i * 1000000000u / (uint64_t)rate, now = now_ns();
    if (due > now) {
        struct timespec ts = {(time_t)((due - now) / 1000000000u),
                              (long)((due - now) % 1000000000u)};
        nanosleep(&ts, NULL);
    }
}

static void
on_published(int status, const cm_error *err, void *user)
{
    (void)err;
    (void)user;
    atomic_fetch_add(status == 0 ? &ok : &failed, 1);
    sem_post(&slots);
}

static int
pub_events(const char *broker)
{
    svc = make_service(broker);
    uint8_t *payload = calloc(1, size);
    uint64_t t0 = now_ns();
    int sync = strcmp(publish_mode, "async") != 0;
    for (int i = 0; i < count; i++) {
        pace(t0, i);
        if (sync) { /* go-micro's Publish: returns once the broker took the message */
            Bench__EchoMsg m;
            stamp(payload, &m);
            int rc = cm_publish(cm_service_client(svc), TOPIC, &bench__echo_msg__descriptor, &m,
                                NULL, NULL);
            atomic_fetch_add(rc == 0 ? &ok : &failed, 1);
            continue;
        }
        sem_wait(&slots);
        Bench__EchoMsg m;
        stamp(payload, &m);
        if (cm_publish_async(cm_service_client(svc), TOPIC, &bench__echo_msg__descriptor, &m, NULL,
                             on_published, NULL) < 0) {
            atomic_fetch_add(&failed, 1);
            sem_post(&slots);
        }
    }
    for (int i = 0; i < window && !sync; i++) {
        sem_wait(&slots);
    }
    free(payload);
    cm_service_free(svc);
    return 0;
}

/* The broker layer's publisher runs on its loop: a pump that keeps the window full, paced by a
 * 1 ms timer when a rate is set. */
static cm_broker *pub_b;
static int sent, inflight;
static uint64_t pub_t0;
static uint8_t *pub_payload;
static uv_timer_t pump_timer;

static void pump(void);

static void
on_broker_published(int status, const cm_broker_node_err *errs, size_t nerrs, void *arg)
{
    (void)errs;
    (void)nerrs;
    (void)arg;
    atomic_fetch_add(status == 0 ? &ok : &failed, 1);
    inflight--;
    pump();
}

static void
pump(void)
{
    uint64_t now = now_ns();
    while (sent < count && inflight < window &&
           (rate <= 0 || pub_t0 + (uint64_t)sent * 1000000000u / (uint64_t)rate <= now)) {
        Bench__EchoMsg m;
        stamp(pub_payload, &m);
        uint8_t buf[65600];
        size_t n = bench__echo_msg__pack(&m, buf);
        sent++;
        if (cm_broker_publish(pub_b, TOPIC, NULL, buf, n, on_broker_published, NULL) < 0) {
            atomic_fetch_add(&failed, 1);
            continue;
        }
        inflight++;
    }
    if (sent == count && inflight == 0) {
        uv_timer_stop(&pump_timer);
        cm_loop_stop(loop);
    }
}

static void
on_pump_timer(uv_timer_t *t)
{
    (void)t;
    pump();
}

static void
on_pub_connected(int status, void *arg)
{
    (void)arg;
    if (status < 0) {
        fprintf(stderr, "pubsub-cmicro: %s\n", cm_broker_why(pub_b));
        cm_loop_stop(loop);
        return;
    }
    pub_t0 = now_ns();
    if (rate > 0) {
        uv_timer_start(&pump_timer, on_pump_timer, 1, 1);
    }
    pump();
}

static int
pub_broker(const char *broker)
{
    pub_b = make_broker(broker);
    pub_payload = calloc(1, size);
    uv_timer_init(cm_loop_uv(loop), &pump_timer);
    cm_broker_connect(pub_b, on_pub_connected, NULL);
    cm_loop_run(loop);
    cm_broker_close(pub_b, NULL, NULL);
    uv_close((uv_handle_t *)&pump_timer, NULL);
    uv_run(cm_loop_uv(loop), UV_RUN_DEFAULT);
    cm_loop_free(loop);
    free(pub_payload);
    return 0;
}

int
main(int argc, char **argv)
{
    idle_ms = env_int("IDLE_MS", 3000);
    window = env_int("WINDOW", 256);
    publish_mode = getenv("PUBLISH") ? getenv("PUBLISH") : "sync";
    if (argc == 5 && strcmp(argv[1], "sub") == 0) {
        want = atoi(argv[4]);
        lat = calloc((size_t)want + 1, sizeof(*lat));
        return strcmp(argv[3], "broker") == 0 ? sub_broker(argv[2]) : sub_events(argv[2]);
    }
    if (argc == 7 && strcmp(argv[1], "pub") == 0) {
        count = atoi(argv[4]);
        size = (size_t)atoi(argv[5]);
        rate = atoi(argv[6]);
        if (size < 8 || size > 65536 || window < 1) {
            fprintf(stderr, "pubsub-cmicro: SIZE is 8..65536\n");
            return 2;
        }
        sem_init(&slots, 0, (unsigned)window);
        int rc = strcmp(argv[3], "broker") == 0 ? pub_broker(argv[2]) : pub_events(argv[2]);
        printf("PUBLISHED %d %d\n", atomic_load(&ok), atomic_load(&failed));
        return rc;
    }
    fprintf(stderr, "usage: pubsub-cmicro sub BROKER LAYER COUNT | "
                    "pub BROKER LAYER COUNT SIZE RATE\n");
    return 2;
}
