/* The events API on the NATS broker, against a real nats-server on a loopback port. Once the
 * broker is connected a publish goes to libnats on the caller's thread (cm_broker_publish_now):
 * a fresh publisher's messages, the first handed to the loop while it connects and the rest
 * published on the caller's thread, all arrive in the thread's order, each callback runs once on
 * the loop, and the counts add up. With the server killed, cm_publish and cm_publish_async fail
 * with a clear error (counted), and publishing works again once it is back. A burst beyond the
 * bound of publishes waiting for the connection fails its excess, each callback once. A burst
 * that the workers cannot keep up with pauses the broker instead of dropping. The broker's
 * settings reach it through the service's options. */
#include "harness.h"
#include "rpctest.pb-c.h"

#include <cmicro/cmicro.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <unistd.h>

enum { COUNT = 20000 };

static char url[64];
static atomic_int got, out_of_order, last_n;

/* Inline (on the loop): messages are handled in arrival order. */
static int
on_event(cm_ctx *ctx, const void *msg, void *user)
{
    (void)ctx;
    (void)user;
    const Rpctest__Req *m = msg;
    if (m->n != atomic_load(&last_n) + 1) {
        atomic_fetch_add(&out_of_order, 1);
    }
    atomic_store(&last_n, (int)m->n);
    atomic_fetch_add(&got, 1);
    return 0;
}

static atomic_int cb_ok, cb_failed, cb_off_loop;
static cm_client *pub_client;

static void
on_published(int status, const cm_error *err, void *user)
{
    (void)user;
    if (!cm_loop_on_loop_thread(cm_client_loop(pub_client))) {
        atomic_fetch_add(&cb_off_loop, 1);
    }
    if (status == 0) {
        atomic_fetch_add(&cb_ok, 1);
        return;
    }
    if (atomic_fetch_add(&cb_failed, 1) == 0) {
        fprintf(stderr, "   async publish failed: %s\n", err != NULL ? err->detail : "?");
    }
}

static cm_service *
make_service_with(const char *name, const cm_broker_opts *bo)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.broker_opts = bo;
    o.name = name;
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.broker = "nats";
    o.broker_address = url;
    o.deregister_wait_ms = 10;
    o.log_config = 0;
    cm_service *s = NULL;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    return s;
}

static cm_service *
make_service(const char *name)
{
    return make_service_with(name, NULL);
}

static atomic_int burst_got, burst_ok, burst_failed;

static int
on_burst(cm_ctx *ctx, const void *msg, void *user)
{
    (void)ctx;
    (void)msg;
    (void)user;
    atomic_fetch_add(&burst_got, 1);
    return 0;
}

static void
on_burst_published(int status, const cm_error *err, void *user)
{
    (void)user;
    if (status == 0) {
        atomic_fetch_add(&burst_ok, 1);
    } else if (atomic_fetch_add(&burst_failed, 1) == 0) {
        fprintf(stderr, "   first failure: %s\n", err != NULL ? err->detail : "?");
    }
}

static int
wait_count(atomic_int *p, int want, int ms)
{
    for (int i = 0; i < ms / 10 && atomic_load(p) < want; i++) {
        uv_sleep(10);
    }
    return atomic_load(p);
}

static int
publish_async(int n)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.n = n;
    return cm_publish_async(pub_client, "evn.order", &rpctest__req__descriptor, &req, NULL,
                            on_published, NULL);
}

static int
publish_sync(int n, char *why, size_t len)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.n = n;
    cm_error *err = NULL;
    int rc = cm_publish(pub_client, "evn.order", &rpctest__req__descriptor, &req, NULL, &err);
    snprintf(why, len, "%s", err != NULL ? err->detail : "");
    cm_error_free(err);
    return rc;
}

static void
run_thread(void *arg)
{
    CHECK_EQ_INT(cm_service_run(arg), 0);
}

/* A fresh publisher's burst larger than the bound of publishes waiting for the connection
 * (4,096): every callback runs once, those beyond the bound fail (counted), the others arrive. */
static void
test_burst_while_connecting(void)
{
    cm_service *pub = make_service("evn-burst");
    cm_client *c = cm_service_client(pub);
    enum { BURST = 6000 };
    Rpctest__Req req = RPCTEST__REQ__INIT;
    for (int i = 0; i < BURST; i++) {
        CHECK_EQ_INT(cm_publish_async(c, "evn.burst", &rpctest__req__descriptor, &req, NULL,
                                      on_burst_published, NULL),
                     0);
    }
    for (int i = 0; i < 500 && atomic_load(&burst_ok) + atomic_load(&burst_failed) < BURST; i++) {
        uv_sleep(10);
    }
    CHECK_EQ_INT(atomic_load(&burst_ok) + atomic_load(&burst_failed), BURST);
    CHECK_EQ_INT(wait_count(&burst_got, atomic_load(&burst_ok), 5000), atomic_load(&burst_ok));
    fprintf(stderr, "   burst of %d while connecting: %d published, %d refused\n", BURST,
            atomic_load(&burst_ok), atomic_load(&burst_failed));
    cm_service_free(pub);
}

/* A publish's header with more entries than are held without an allocation, a repeated key (its
 * value replaced, without case) and the framework's own entries after the caller's: the same
 * whether handed to the loop (a fresh publisher, connecting) or published on the caller's thread
 * (then connected). */
static atomic_int hdr_got, hdr_bad;

static int
on_hdr(cm_ctx *ctx, const void *msg, void *user)
{
    (void)msg;
    (void)user;
    const cm_msg *m = cm_ctx_headers(ctx);
    size_t mine = 0;
    for (size_t i = 0; i < m->nhdrs; i++) {
        mine += strncmp(m->hdrs[i].key, "X-K", 3) == 0;
    }
    const char *k1 = cm_msg_header(m, "X-K1"), *k20 = cm_msg_header(m, "x-k20");
    const char *ct = cm_msg_header(m, "Content-Type"), *id = cm_msg_header(m, "Micro-Id");
    if (mine != 20 || k1 == NULL || strcmp(k1, "again") != 0 || k20 == NULL ||
        strcmp(k20, "v20") != 0 || ct == NULL || strcmp(ct, "application/protobuf") != 0 ||
        id == NULL || strlen(id) != 36) {
        atomic_fetch_add(&hdr_bad, 1);
    }
    atomic_fetch_add(&hdr_got, 1);
    return 0;
}

static void
test_publish_header(void)
{
    cm_md *md = cm_md_new();
    for (int i = 1; i <= 20; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "X-K%d", i);
        snprintf(v, sizeof v, "v%d", i);
        CHECK_EQ_INT(cm_md_set(md, k, v), 0);
    }
    cm_md_set(md, "content-type", "text/plain"); /* replaced by the publish's own, after */
    cm_publish_opts po = {0};
    po.md = md;
    cm_service *pub = make_service("evn-hdr");
    cm_client *c = cm_service_client(pub);
    Rpctest__Req req = RPCTEST__REQ__INIT;
    cm_md *again = cm_md_new();
    for (size_t i = 0; i < cm_md_count(md); i++) {
        const char *k, *v;
        cm_md_at(md, i, &k, &v);
        cm_md_set(again, k, v);
    }
    cm_md_set(again, "x-k1", "again");
    po.md = again;
    natsConnection *nc = NULL;
    natsSubscription *raw = NULL;
    CHECK_EQ_INT(natsConnection_ConnectTo(&nc, url), NATS_OK);
    CHECK_EQ_INT(natsConnection_SubscribeSync(&raw, nc, "evn.hdr"), NATS_OK);
    CHECK_EQ_INT(natsConnection_FlushTimeout(nc, 5000), NATS_OK);
    CHECK_EQ_INT(cm_publish(c, "evn.hdr", &rpctest__req__descriptor, &req, &po, NULL), 0);
    CHECK_EQ_INT(cm_publish(c, "evn.hdr", &rpctest__req__descriptor, &req, &po, NULL), 0);
    CHECK_EQ_INT(wait_count(&hdr_got, 2, 5000), 2);
    CHECK_EQ_INT(atomic_load(&hdr_bad), 0);
    for (int i = 0; i < 2; i++) { /* on the wire: the repeated key once, with its new value */
        natsMsg *m = NULL;
        CHECK_EQ_INT(natsSubscription_NextMsg(&m, raw, 5000), NATS_OK);
        const char *json = m != NULL ? natsMsg_GetData(m) : "";
        CHECK(strstr(json, "\"X-K1\":\"again\"") != NULL && strstr(json, "\"x-k1\"") == NULL);
        CHECK(strstr(json, "text/plain") == NULL);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(raw);
    natsConnection_Destroy(nc);
    cm_md_free(again);
    cm_md_free(md);
    cm_service_free(pub);
}

/* A handler's publish with its message as parent carries the message's metadata and a span of
 * its trace: with the incoming tracestate when the incoming traceparent is valid, without it
 * otherwise (a new trace). */
static cm_service *relay_svc;
static atomic_int relay_failed;

static int
on_relay(cm_ctx *ctx, const void *msg, void *user)
{
    (void)user;
    cm_publish_opts po = {0};
    po.parent = ctx;
    int rc = cm_publish(cm_service_client(relay_svc), "evn.relayed", &rpctest__req__descriptor, msg,
                        &po, NULL);
    if (rc < 0) {
        atomic_fetch_add(&relay_failed, 1);
    }
    return rc;
}

/* The JSON of the next message on raw. */
static char *
next_json(natsSubscription *raw)
{
    natsMsg *m = NULL;
    CHECK_EQ_INT(natsSubscription_NextMsg(&m, raw, 5000), NATS_OK);
    char *json = strdup(m != NULL ? natsMsg_GetData(m) : "");
    natsMsg_Destroy(m);
    return json;
}

static void
test_publish_with_parent(void)
{
    natsConnection *nc = NULL;
    natsSubscription *raw = NULL;
    CHECK_EQ_INT(natsConnection_ConnectTo(&nc, url), NATS_OK);
    CHECK_EQ_INT(natsConnection_SubscribeSync(&raw, nc, "evn.relayed"), NATS_OK);
    CHECK_EQ_INT(natsConnection_FlushTimeout(nc, 5000), NATS_OK);
    CHECK_EQ_INT(natsConnection_PublishString(
                     nc, "evn.relay",
                     "{\"Header\":{\"Content-Type\":\"application/protobuf\",\"X-Keep\":\"1\","
                     "\"Tracestate\":\"a=b\"},\"Body\":\"\"}"),
                 NATS_OK);
    char *json = next_json(raw);
    CHECK(strstr(json, "\"X-Keep\":\"1\"") != NULL);
    CHECK(strstr(json, "\"Traceparent\":\"00-") != NULL);
    CHECK(strstr(json, "Tracestate") == NULL);
    free(json);
    CHECK_EQ_INT(natsConnection_PublishString(
                     nc, "evn.relay",
                     "{\"Header\":{\"Content-Type\":\"application/protobuf\",\"Tracestate\":"
                     "\"a=b\",\"Traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-"
                     "b7ad6b7169203331-01\"},\"Body\":\"\"}"),
                 NATS_OK);
    json = next_json(raw);
    CHECK(strstr(json, "\"Tracestate\":\"a=b\"") != NULL);
    CHECK(strstr(json, "\"Traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-") != NULL);
    CHECK(strstr(json, "b7ad6b7169203331") == NULL);
    free(json);
    CHECK_EQ_INT(atomic_load(&relay_failed), 0);
    natsSubscription_Destroy(raw);
    natsConnection_Destroy(nc);
}

/* The broker's settings through the service: send_asap publishes, an unknown key is refused. */
static void
test_broker_opts(int next)
{
    cm_broker_opts bo;
    cm_broker_opts_init(&bo);
    CHECK_EQ_INT(cm_broker_opts_set(&bo, "send_asap", "1"), 0);
    cm_service *pub = make_service_with("evn-asap", &bo);
    cm_client *c = cm_service_client(pub);
    int before = atomic_load(&got);
    for (int i = 0; i < 100; i++) {
        Rpctest__Req req = RPCTEST__REQ__INIT;
        req.n = next + i;
        CHECK_EQ_INT(cm_publish(c, "evn.order", &rpctest__req__descriptor, &req, NULL, NULL), 0);
    }
    CHECK_EQ_INT(wait_count(&got, before + 100, 5000), before + 100);
    CHECK_EQ_INT(atomic_load(&out_of_order), 0);
    cm_service_free(pub);

    cm_broker_opts_init(&bo);
    CHECK_EQ_INT(cm_broker_opts_set(&bo, "no_such_key", "1"), 0);
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "evn-bad";
    o.registry = "memory";
    o.broker = "nats";
    o.broker_opts = &bo;
    o.log_config = 0;
    cm_service *s = NULL;
    CHECK_EQ_INT(cm_service_new(&o, &s), CM_EINVAL);
    CHECK(strstr(cm_service_why(), "broker nats") != NULL);
}

/* Flow control: with every worker held, a burst larger than the bound of messages waiting for a
 * worker (65,536) is not dropped. Past max(1024, 4 workers) waiting, the framework pauses the
 * broker's subscription, and the rest wait in its queue (queue_max 100,000 here) until the
 * workers go on; each message is handled once. Without the pause the framework would take 65,536
 * and drop the rest. An inline subscriber of the same service is not paused meanwhile. */
enum { FLOW_COUNT = 70000, FLOW_INLINE = 100 };
static atomic_int flow_gate, flow_got, flow_dup, flow_range, flow_inline;
static atomic_int *flow_seen;

static int
on_flow_inline(cm_ctx *ctx, const void *msg, void *user)
{
    (void)ctx;
    (void)msg;
    (void)user;
    atomic_fetch_add(&flow_inline, 1);
    return 0;
}

static int
on_flow(cm_ctx *ctx, const void *msg, void *user)
{
    (void)ctx;
    (void)user;
    const Rpctest__Req *m = msg;
    while (!atomic_load(&flow_gate)) {
        uv_sleep(1);
    }
    if (m->n < 0 || m->n >= FLOW_COUNT) {
        atomic_fetch_add(&flow_range, 1);
    } else if (atomic_fetch_add(&flow_seen[m->n], 1) != 0) {
        atomic_fetch_add(&flow_dup, 1);
    }
    atomic_fetch_add(&flow_got, 1);
    return 0;
}

static void
test_flow_control(void)
{
    flow_seen = calloc(FLOW_COUNT, sizeof(*flow_seen));
    cm_broker_opts bo;
    cm_broker_opts_init(&bo);
    bo.queue_max = 100000;
    cm_service *svc = make_service_with("evn-flow", &bo);
    cm_subscriber fs = {0};
    fs.topic = "evn.flow";
    fs.message = &rpctest__req__descriptor;
    fs.fn = on_flow;
    CHECK_EQ_INT(cm_service_subscribe(svc, &fs, NULL), 0);
    cm_subscriber is = fs;
    is.topic = "evn.flow-inline";
    is.fn = on_flow_inline;
    is.flags = CM_HANDLER_INLINE;
    CHECK_EQ_INT(cm_service_subscribe(svc, &is, NULL), 0);
    uv_thread_t th;
    CHECK_EQ_INT(uv_thread_create(&th, run_thread, svc), 0);
    uv_sleep(300);
    int failed = 0;
    for (int i = 0; i < FLOW_COUNT; i++) {
        Rpctest__Req req = RPCTEST__REQ__INIT;
        req.n = i;
        failed +=
            cm_publish(pub_client, "evn.flow", &rpctest__req__descriptor, &req, NULL, NULL) != 0;
    }
    CHECK_EQ_INT(failed, 0);
    uv_sleep(500); /* all reach the subscriber, and wait */
    for (int i = 0; i < FLOW_INLINE; i++) {
        Rpctest__Req req = RPCTEST__REQ__INIT;
        failed += cm_publish(pub_client, "evn.flow-inline", &rpctest__req__descriptor, &req, NULL,
                             NULL) != 0;
    }
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(wait_count(&flow_inline, FLOW_INLINE, 5000), FLOW_INLINE);
    CHECK(atomic_load(&flow_got) == 0); /* the workers are still held */
    atomic_store(&flow_gate, 1);
    CHECK_EQ_INT(wait_count(&flow_got, FLOW_COUNT, 30000), FLOW_COUNT);
    uv_sleep(100); /* time for a duplicate to show */
    CHECK_EQ_INT(atomic_load(&flow_got), FLOW_COUNT);
    CHECK_EQ_INT(atomic_load(&flow_dup) + atomic_load(&flow_range), 0);
    cm_service_stop(svc);
    uv_thread_join(&th);
    cm_event_stats st;
    cm_service_event_stats(svc, &st);
    fprintf(stderr, "   %d held: %llu handled, %llu dropped\n", FLOW_COUNT,
            (unsigned long long)st.handled, (unsigned long long)st.dropped);
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_EQ_INT(st.handled, FLOW_COUNT + FLOW_INLINE);
    cm_service_free(svc);
    free(flow_seen);
}

/* The server killed: publishes fail with a clear error, then work again once it is back. */
static void
test_server_down(pid_t *natsd, int port, int next)
{
    natsd_kill(*natsd);
    char why[256] = "";
    int rc = 0;
    for (int i = 0; i < 300 && rc == 0; i++) {
        rc = publish_sync(next, why, sizeof why);
        uv_sleep(rc == 0 ? 10 : 0);
    }
    fprintf(stderr, "   server down: cm_publish says %s: %s\n", cm_err_name(rc), why);
    CHECK_EQ_INT(rc, CM_ECLOSED);
    CHECK(strstr(why, "reconnecting") != NULL);
    int failed = atomic_load(&cb_failed);
    CHECK_EQ_INT(publish_async(next), 0);
    CHECK(wait_count(&cb_failed, failed + 1, 5000) == failed + 1);

    *natsd = natsd_start(port);
    rc = -1;
    for (int i = 0; i < 800 && rc != 0; i++) { /* until the broker reconnected */
        rc = publish_sync(next, why, sizeof why);
        uv_sleep(rc == 0 ? 0 : 10);
    }
    CHECK_EQ_INT(rc, 0);
}

int
main(void)
{
    setenv("CMICRO_QUIET", "1", 1);
    harness_init();
    int port = free_port();
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port);
    pid_t natsd = natsd_start(port);
    if (natsd == 0) {
        fprintf(stderr, "SKIP: nats-server not installed (scripts/setup.sh installs it)\n");
        return getenv("CI") != NULL ? 1 : 77;
    }
    cm_service *sub = make_service("evn-sub");
    cm_subscriber s = {0};
    s.topic = "evn.order";
    s.message = &rpctest__req__descriptor;
    s.fn = on_event;
    s.flags = CM_HANDLER_INLINE;
    CHECK_EQ_INT(cm_service_subscribe(sub, &s, NULL), 0);
    cm_subscriber b = s;
    b.topic = "evn.burst";
    b.fn = on_burst;
    CHECK_EQ_INT(cm_service_subscribe(sub, &b, NULL), 0);
    cm_subscriber hs = s;
    hs.topic = "evn.hdr";
    hs.fn = on_hdr;
    hs.flags = 0;
    CHECK_EQ_INT(cm_service_subscribe(sub, &hs, NULL), 0);
    cm_subscriber rs = hs;
    rs.topic = "evn.relay";
    rs.fn = on_relay;
    CHECK_EQ_INT(cm_service_subscribe(sub, &rs, NULL), 0);
    relay_svc = sub;
    uv_thread_t th;
    CHECK_EQ_INT(uv_thread_create(&th, run_thread, sub), 0);
    uv_sleep(300); /* the subscription reaches the server (the service subscribes as it runs) */

    RUN(test_burst_while_connecting);
    /* A fresh publisher: the first publishes wait on the loop for the connection. */
    cm_service *pub = make_service("evn-pub"); /* client only: never runs */
    pub_client = cm_service_client(pub);
    for (int i = 1; i <= COUNT; i++) {
        CHECK_EQ_INT(publish_async(i), 0);
        if (i % 1000 == 0) { /* at most 3,000 wait for the connection (the bound is 4,096) */
            wait_count(&cb_ok, i - 2000, 5000);
        }
    }
    CHECK_EQ_INT(wait_count(&got, COUNT, 10000), COUNT);
    CHECK_EQ_INT(wait_count(&cb_ok, COUNT, 5000), COUNT);
    CHECK_EQ_INT(atomic_load(&out_of_order), 0);
    CHECK_EQ_INT(atomic_load(&cb_failed), 0);
    /* cm_publish returns once libnats took the message */
    char why[256];
    CHECK_EQ_INT(publish_sync(COUNT + 1, why, sizeof why), 0);
    CHECK_EQ_INT(wait_count(&got, COUNT + 1, 5000), COUNT + 1);
    CHECK_EQ_INT(atomic_load(&out_of_order), 0);

    RUN(test_publish_header);
    RUN(test_publish_with_parent);
    RUN(test_flow_control);
    test_broker_opts(COUNT + 2);
    test_server_down(&natsd, port, COUNT + 102);
    CHECK_EQ_INT(atomic_load(&cb_off_loop), 0);
    cm_service_stop(sub);
    uv_thread_join(&th);
    cm_event_stats st;
    cm_service_event_stats(pub, &st);
    fprintf(stderr, "   publisher: %llu published, %llu failed\n", (unsigned long long)st.published,
            (unsigned long long)st.publish_errors);
    CHECK(st.published >= COUNT + 2);
    CHECK(st.publish_errors >= 2);
    cm_service_free(pub);
    cm_service_free(sub);
    natsd_kill(natsd);
    cm_loop_free(L);
    TEST_DONE();
}
