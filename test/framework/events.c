/* Events through services, C to C: cm_publish and cm_service_subscribe on the HTTP broker over
 * the memory registry. Typed messages in both codecs reach every subscriber of a topic with their
 * metadata, a queue group gets each message once, a subscriber's error and a body that does not
 * decode are counted and never crash, subscriber wrappers run around the handlers (and can
 * short-circuit), the registry entry carries go-micro's subscriber endpoint, a graceful stop
 * removes the subscriptions, and a broker that cannot connect fails cm_service_run. */
#include "rpctest.pb-c.h"
#include "test.h"
#include <uv.h>

#include <arpa/inet.h>
#include <cmicro/cmicro.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define N 20

/* ---- what the subscribers saw ---- */

typedef struct rx {
    const char *name;
    atomic_int n;
    atomic_int seen[N * 2];
    atomic_int bad; /* a message without its metadata, or on the wrong topic */
    atomic_int json;
} rx;

static rx fan_a = {.name = "fan-a"}, fan_b = {.name = "fan-b"};
static rx q_a = {.name = "q-a"}, q_b = {.name = "q-b"}, raw = {.name = "raw"};
static rx failing = {.name = "failing"}, guarded = {.name = "guarded"};

static int
on_event(cm_ctx *ctx, const void *msg, void *user)
{
    rx *r = user;
    const Rpctest__Req *m = msg;
    const char *seq = cm_ctx_get(ctx, "X-Seq");
    const char *topic = cm_ctx_get(ctx, "Micro-Topic");
    const char *id = cm_ctx_get(ctx, "Micro-ID");
    if (seq == NULL || atoi(seq) != (int)m->n || topic == NULL ||
        strcmp(topic, cm_ctx_endpoint(ctx)) != 0 || id == NULL || strlen(id) != 36 ||
        id[14] != '4' || strchr("89ab", id[19]) == NULL || m->n < 0 || m->n >= N * 2) {
        atomic_fetch_add(&r->bad, 1);
        return CM_EINVAL;
    }
    if (strcmp(cm_ctx_content_type(ctx), "application/json") == 0) {
        atomic_fetch_add(&r->json, 1);
    }
    atomic_fetch_add(&r->seen[m->n], 1);
    atomic_fetch_add(&r->n, 1);
    return m->fail_code ? cm_ctx_error(ctx, m->fail_code, "refused %lld", (long long)m->n) : 0;
}

static int
on_raw(cm_ctx *ctx, const void *msg, void *user)
{
    (void)ctx;
    rx *r = user;
    const ProtobufCBinaryData *b = msg;
    if (b->len == 3 && memcmp(b->data, "\x01\x02\x03", 3) == 0) {
        atomic_fetch_add(&r->n, 1);
    } else {
        atomic_fetch_add(&r->bad, 1);
    }
    return 0;
}

/* ---- a subscriber wrapper ---- */

static atomic_int w_before, w_after, w_after_failed, w_denied;
static char w_endpoint[64];

static int
sw_before(cm_wrap_info *w, void *arg, void **state, cm_error **err)
{
    (void)arg;
    (void)state;
    CHECK_EQ_INT(w->kind, CM_WRAP_SUBSCRIBER);
    snprintf(w_endpoint, sizeof w_endpoint, "%s", w->endpoint);
    atomic_fetch_add(&w_before, 1);
    const char *deny = cm_msg_header(w->md, "X-Deny");
    if (deny != NULL) {
        atomic_fetch_add(&w_denied, 1);
        *err = cm_error_new("events.test", 403, "denied");
        return CM_EREMOTE;
    }
    return 0;
}

static void
sw_after(const cm_wrap_info *w, void *arg, void *state)
{
    (void)arg;
    (void)state;
    atomic_fetch_add(&w_after, 1);
    if (w->status != 0) {
        atomic_fetch_add(&w_after_failed, 1);
    }
}

/* ---- services on threads ---- */

typedef struct svc {
    cm_service *s;
    uv_thread_t th;
    int rc;
} svc;

static void
run_thread(void *arg)
{
    svc *v = arg;
    v->rc = cm_service_run(v->s);
}

static cm_service *
make_service(const char *name)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = name;
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.deregister_wait_ms = 10;
    o.log_config = 0;
    cm_service *s = NULL;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    return s;
}

static void
subscribe(cm_service *s, const char *topic, const char *queue, rx *r, unsigned flags)
{
    cm_subscriber sub = {0};
    sub.topic = topic;
    sub.queue = queue;
    sub.message = &rpctest__req__descriptor;
    sub.fn = on_event;
    sub.flags = flags;
    CHECK_EQ_INT(cm_service_subscribe(s, &sub, r), 0);
}

/* ---- the memory registry, seen from the test's thread ---- */

static cm_loop *RL;
static cm_registry *reg;

typedef struct lookup {
    const char *name;
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
    size_t nodes;
    char endpoints[512];
} lookup;

static void
on_list(int status, const cm_reg_service_list *list, void *user)
{
    lookup *l = user;
    uv_mutex_lock(&l->mu);
    for (size_t i = 0; status == 0 && i < list->n; i++) {
        const cm_reg_service *s = list->items[i];
        l->nodes += s->nnodes;
        for (size_t e = 0; e < s->nendpoints; e++) {
            const cm_endpoint *ep = &s->endpoints[e];
            const char *sub = cm_md_get(ep->metadata, "subscriber");
            const char *topic = cm_md_get(ep->metadata, "topic");
            size_t len = strlen(l->endpoints);
            snprintf(l->endpoints + len, sizeof l->endpoints - len, "%s%s(%s,%s,%s)",
                     len ? " " : "", ep->name, sub ? sub : "-", topic ? topic : "-",
                     ep->request ? ep->request->name : "-");
        }
    }
    l->done = 1;
    uv_cond_signal(&l->cv);
    uv_mutex_unlock(&l->mu);
}

static void
start_lookup(void *arg)
{
    lookup *l = arg;
    if (cm_registry_get_service(reg, l->name, on_list, l) < 0) {
        on_list(-1, NULL, l);
    }
}

/* The nodes of name in the registry; its endpoints in eps (may be NULL). */
static size_t
nodes_of(const char *name, char *eps, size_t len)
{
    lookup l;
    memset(&l, 0, sizeof l);
    l.name = name;
    uv_mutex_init(&l.mu);
    uv_cond_init(&l.cv);
    CHECK_EQ_INT(cm_loop_post(RL, start_lookup, &l), 0);
    uv_mutex_lock(&l.mu);
    while (!l.done) {
        uv_cond_wait(&l.cv, &l.mu);
    }
    uv_mutex_unlock(&l.mu);
    uv_cond_destroy(&l.cv);
    uv_mutex_destroy(&l.mu);
    if (eps != NULL) {
        snprintf(eps, len, "%s", l.endpoints);
    }
    return l.nodes;
}

static void
wait_nodes(const char *name, size_t want)
{
    size_t n = 0;
    for (int i = 0; i < 500 && (n = nodes_of(name, NULL, 0)) != want; i++) {
        uv_sleep(10);
    }
    CHECK_EQ_INT(n, want);
}

static int
wait_count(atomic_int *p, int want)
{
    for (int i = 0; i < 1000 && atomic_load(p) < want; i++) {
        uv_sleep(10);
    }
    return atomic_load(p);
}

/* ---- publishing ---- */

static int
publish(cm_client *c, const char *topic, int n, const char *ct, int fail_code, const char *deny)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.n = n;
    req.fail_code = fail_code;
    char seq[16];
    snprintf(seq, sizeof seq, "%d", n);
    cm_md *md = cm_md_new();
    cm_md_set(md, "X-Seq", seq);
    if (deny != NULL) {
        cm_md_set(md, "X-Deny", deny);
    }
    cm_publish_opts o = {0};
    o.content_type = ct;
    o.md = md;
    cm_error *err = NULL;
    int rc = cm_publish(c, topic, &rpctest__req__descriptor, &req, &o, &err);
    if (rc < 0) {
        fprintf(stderr, "publish %s: %s\n", topic, err ? err->detail : cm_strerror(rc));
    }
    cm_error_free(err);
    cm_md_free(md);
    return rc;
}

static void
test_fan_out_and_queue(cm_client *c)
{
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(publish(c, "ev.fan", i, i % 2 ? "application/json" : NULL, 0, NULL), 0);
        CHECK_EQ_INT(publish(c, "ev.work", i, NULL, 0, NULL), 0);
    }
    CHECK_EQ_INT(wait_count(&fan_a.n, N), N);
    CHECK_EQ_INT(wait_count(&fan_b.n, N), N);
    for (int i = 0; i < 100 && atomic_load(&q_a.n) + atomic_load(&q_b.n) < N; i++) {
        uv_sleep(10);
    }
    uv_sleep(100); /* a duplicate would arrive by now */
    CHECK_EQ_INT(atomic_load(&q_a.n) + atomic_load(&q_b.n), N);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(atomic_load(&fan_a.seen[i]), 1);
        CHECK_EQ_INT(atomic_load(&fan_b.seen[i]), 1);
        CHECK_EQ_INT(atomic_load(&q_a.seen[i]) + atomic_load(&q_b.seen[i]), 1);
    }
    CHECK_EQ_INT(atomic_load(&fan_a.json), N / 2);
    CHECK_EQ_INT(atomic_load(&fan_a.bad) + atomic_load(&fan_b.bad), 0);
    CHECK_EQ_STR(w_endpoint, "ev.work"); /* the topic, as the wrapper sees it */
}

static void
test_errors(cm_service *sub, cm_client *c)
{
    cm_event_stats before, after;
    int w0 = atomic_load(&w_after), wf0 = atomic_load(&w_after_failed);
    cm_service_event_stats(sub, &before);
    /* A handler that returns a go-micro error: counted and logged, seen by the wrappers. */
    CHECK_EQ_INT(publish(c, "ev.fail", 1, NULL, 409, NULL), 0);
    CHECK_EQ_INT(wait_count(&failing.n, 1), 1);
    /* A body that is not the message: not decoded, the handler does not run. */
    ProtobufCBinaryData junk = {5, (uint8_t *)"\xff\xff\xff\xff\xff"};
    CHECK_EQ_INT(cm_publish(c, "ev.fail", NULL, &junk, NULL, NULL), 0);
    /* A wrapper that short-circuits: the handler does not run, the after sees the error. */
    CHECK_EQ_INT(publish(c, "ev.guarded", 2, NULL, 0, "yes"), 0);
    CHECK_EQ_INT(publish(c, "ev.guarded", 3, NULL, 0, NULL), 0);
    CHECK_EQ_INT(wait_count(&guarded.n, 1), 1);
    /* Raw bytes both ways. */
    ProtobufCBinaryData b = {3, (uint8_t *)"\x01\x02\x03"};
    cm_publish_opts o = {0};
    o.content_type = "application/octet-stream";
    CHECK_EQ_INT(cm_publish(c, "ev.raw", NULL, &b, &o, NULL), 0);
    CHECK_EQ_INT(wait_count(&raw.n, 1), 1);
    for (int i = 0; i < 200; i++) {
        cm_service_event_stats(sub, &after);
        if (after.decode_errors > before.decode_errors &&
            after.handler_errors > before.handler_errors + 1 && atomic_load(&w_after) >= w0 + 2) {
            break;
        }
        uv_sleep(10);
    }
    CHECK_EQ_INT(after.decode_errors - before.decode_errors, 1);
    CHECK_EQ_INT(after.handler_errors - before.handler_errors, 2); /* 409, and the denied one */
    CHECK_EQ_INT(atomic_load(&guarded.seen[2]), 0);
    CHECK_EQ_INT(atomic_load(&guarded.seen[3]), 1);
    CHECK_EQ_INT(atomic_load(&w_denied), 1);
    /* The 409; the wrapper that short-circuited runs no after of its own. */
    CHECK_EQ_INT(atomic_load(&w_after_failed) - wf0, 1);
    CHECK_EQ_INT(atomic_load(&w_after) - w0, 2); /* the 409 and guarded 3 */
    CHECK_EQ_INT(atomic_load(&raw.bad), 0);
    /* Nobody subscribes to this topic: go-micro's answer, no error. */
    CHECK_EQ_INT(publish(c, "ev.nobody", 0, NULL, 0, NULL), 0);
    /* Bad arguments. */
    Rpctest__Req req = RPCTEST__REQ__INIT;
    CHECK_EQ_INT(cm_publish(c, "", &rpctest__req__descriptor, &req, NULL, NULL), CM_EINVAL);
    CHECK_EQ_INT(cm_publish(c, "a\nb", &rpctest__req__descriptor, &req, NULL, NULL), CM_EINVAL);
    o.content_type = "text/nope";
    CHECK_EQ_INT(cm_publish(c, "ev.fan", &rpctest__req__descriptor, &req, &o, NULL),
                 CM_ECONTENTTYPE);
}

static void
test_registry_entry(void)
{
    char eps[512];
    CHECK_EQ_INT(nodes_of("events-sub", eps, sizeof eps), 1);
    CHECK(strstr(eps, "Func(true,ev.fan,-)") != NULL); /* no shape given */
    CHECK(strstr(eps, "Work.Handle(true,ev.work,Req)") != NULL);
    CHECK(strstr(eps, "ev.raw") == NULL); /* internal */
}

/* Publishes still on their way when the service is freed: each callback runs once (delivered, or
 * canceled), nothing is touched after the free. */
static atomic_int late_cbs, late_ok;

static void
on_late(int status, const cm_error *err, void *user)
{
    (void)err;
    (void)user;
    atomic_fetch_add(&late_cbs, 1);
    if (status == 0) {
        atomic_fetch_add(&late_ok, 1);
    }
}

static void
test_free_with_publishes(void)
{
    cm_service *pub = make_service("events-late");
    Rpctest__Req req = RPCTEST__REQ__INIT;
    for (int i = 0; i < 200; i++) {
        CHECK_EQ_INT(cm_publish_async(cm_service_client(pub), "ev.late", &rpctest__req__descriptor,
                                      &req, NULL, on_late, NULL),
                     0);
    }
    cm_service_free(pub);
    CHECK_EQ_INT(atomic_load(&late_cbs), 200);
    fprintf(stderr, "   %d of 200 published before the free\n", atomic_load(&late_ok));
}

/* A publish waiting for the HTTP broker's registry lookup when the service is freed, the
 * registry (Consul at a socket that accepts and never answers) failing it later: its callback
 * says so once; nothing reads the broker after the free. */
static atomic_int stuck_cbs, stuck_status;

static void
on_stuck(int status, const cm_error *err, void *user)
{
    (void)user;
    atomic_fetch_add(&stuck_cbs, 1);
    atomic_store(&stuck_status, status);
    CHECK(err != NULL && strstr(err->detail, "broker http") != NULL);
}

static void
test_free_with_lookup_in_flight(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 16) == 0 &&
          getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    setenv("MICRO_REGISTRY_TIMEOUT", "500ms", 1);
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "events-stuck";
    o.address = "127.0.0.1:0";
    o.registry = "consul";
    o.registry_address = addr;
    o.log_config = 0;
    cm_service *s = NULL;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    unsetenv("MICRO_REGISTRY_TIMEOUT");
    ProtobufCBinaryData body = {5, (uint8_t *)"hello"};
    CHECK_EQ_INT(
        cm_publish_async(cm_service_client(s), "ev.stuck", NULL, &body, NULL, on_stuck, NULL), 0);
    usleep(200 * 1000); /* connected; the lookup waits for the registry */
    cm_service_free(s);
    close(fd);
    CHECK_EQ_INT(atomic_load(&stuck_cbs), 1);
    CHECK(atomic_load(&stuck_status) < 0);
}

/* A subscriber still running when the drain times out, which then publishes and calls with the
 * service's client, while cm_service_free runs: both work (the loop turns while the workers
 * finish), nothing is used after it is freed. */
static cm_client *late_client; /* taken before the stop, as a handler's user pointer would be */
static atomic_int late_in, late_pub_rc = 1, late_call_rc = 1;

static int
on_late_event(cm_ctx *ctx, const void *msg, void *user)
{
    (void)ctx;
    (void)msg;
    (void)user;
    atomic_store(&late_in, 1);
    usleep(400 * 1000); /* past the drain timeout */
    ProtobufCBinaryData body = {3, (uint8_t *)"out"};
    cm_client *c = late_client;
    atomic_store(&late_pub_rc, cm_publish(c, "ev.late.out", NULL, &body, NULL, NULL));
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = "127.0.0.1:1"; /* refused: an answer, from the loop */
    o.max_attempts = 1;
    ProtobufCBinaryData *out = NULL;
    atomic_store(&late_call_rc,
                 cm_client_call(c, "nobody", "X.Y", NULL, &body, NULL, (void **)&out, &o, NULL));
    return 0;
}

static void
test_free_with_late_handler(void)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "events-late-handler";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.deregister_wait_ms = 10;
    o.drain_timeout_ms = 100;
    o.log_config = 0;
    svc v = {NULL, 0, 0};
    CHECK_EQ_INT(cm_service_new(&o, &v.s), 0);
    late_client = cm_service_client(v.s);
    cm_subscriber sd = {0};
    sd.topic = "ev.late.in";
    sd.fn = on_late_event;
    CHECK_EQ_INT(cm_service_subscribe(v.s, &sd, NULL), 0);
    CHECK_EQ_INT(uv_thread_create(&v.th, run_thread, &v), 0);
    ProtobufCBinaryData body = {2, (uint8_t *)"in"};
    for (int i = 0; i < 100 && !atomic_load(&late_in); i++) { /* until it has subscribed */
        CHECK_EQ_INT(cm_publish(cm_service_client(v.s), "ev.late.in", NULL, &body, NULL, NULL), 0);
        usleep(50 * 1000);
    }
    CHECK(atomic_load(&late_in));
    cm_service_stop(v.s);
    uv_thread_join(&v.th);
    cm_service_free(v.s);
    CHECK_EQ_INT(atomic_load(&late_pub_rc), 0);
    CHECK_EQ_INT(atomic_load(&late_call_rc), UV_ECONNREFUSED);
}

/* A client that is not a service's has no broker. */
static void
test_no_broker(void)
{
    cm_client *c;
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &c), 0);
    Rpctest__Req req = RPCTEST__REQ__INIT;
    CHECK_EQ_INT(cm_publish(c, "ev", &rpctest__req__descriptor, &req, NULL, NULL), CM_ESTATE);
    cm_client_free(c);
}

/* A service with a subscriber whose NATS server is not there does not run. */
static void
test_broker_down(void)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "events-down";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.broker = "nats";
    o.broker_address = "nats://127.0.0.1:1";
    o.deregister_wait_ms = 10;
    o.log_config = 0;
    cm_service *s;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    subscribe(s, "ev.down", NULL, &fan_a, 0);
    uint64_t t0 = cm_now_ms();
    int rc = cm_service_run(s);
    CHECK(rc < 0);
    CHECK(cm_now_ms() - t0 < 15000);
    cm_service_free(s);
    o.broker = "nope";
    CHECK_EQ_INT(cm_service_new(&o, &s), CM_ENOTFOUND);
    CHECK(strstr(cm_service_why(), "broker nope") != NULL);
}

static void
start_lookups(void)
{
    CHECK_EQ_INT(cm_loop_new(&RL), 0);
    CHECK_EQ_INT(cm_registry_new(RL, "memory", NULL, &reg), 0);
    CHECK_EQ_INT(cm_loop_start(RL), 0);
}

static void
close_reg(void *arg)
{
    (void)arg;
    cm_registry_close(reg, NULL, NULL);
}

int
main(void)
{
    setenv("CMICRO_QUIET", "1", 1);
    setenv("MICRO_BROKER", "http", 1);
    start_lookups();
    svc a = {make_service("events-sub"), 0, 0}, b = {make_service("events-sub2"), 0, 0};
    subscribe(a.s, "ev.fan", NULL, &fan_a, 0);
    subscribe(a.s, "ev.fan", NULL, &fan_b, CM_HANDLER_INLINE);
    cm_subscriber work = {0};
    work.topic = "ev.work";
    work.queue = "grp";
    work.message = &rpctest__req__descriptor;
    work.fn = on_event;
    work.endpoint = "Work.Handle";
    static const cm_value_desc req_value = {"Req", "Req", 0, NULL};
    work.message_value = &req_value;
    CHECK_EQ_INT(cm_service_subscribe(a.s, &work, &q_a), 0);
    CHECK_EQ_INT(cm_service_subscribe(b.s, &work, &q_b), 0);
    subscribe(b.s, "ev.fail", NULL, &failing, 0);
    subscribe(b.s, "ev.guarded", NULL, &guarded, 0);
    cm_subscriber rs = {0};
    rs.topic = "ev.raw";
    rs.fn = on_raw;
    rs.flags = CM_HANDLER_INTERNAL;
    CHECK_EQ_INT(cm_service_subscribe(a.s, &rs, &raw), 0);
    cm_wrapper w = {"sw", sw_before, sw_after, NULL};
    CHECK_EQ_INT(cm_server_wrap_subscriber(cm_service_server(b.s), &w), 0);
    CHECK_EQ_INT(uv_thread_create(&a.th, run_thread, &a), 0);
    CHECK_EQ_INT(uv_thread_create(&b.th, run_thread, &b), 0);
    /* The subscriptions are nodes of go-micro's broker service, one per topic and broker (the
     * two of ev.fan share theirs): fan, 2 queue, fail, guarded, raw. */
    wait_nodes("micro.http.broker", 6);
    wait_nodes("events-sub", 1);

    cm_service *pub = make_service("events-pub"); /* client only: never runs */
    cm_client *c = cm_service_client(pub);
    test_fan_out_and_queue(c);
    test_errors(b.s, c);
    RUN(test_registry_entry);
    RUN(test_no_broker);
    RUN(test_free_with_publishes);
    RUN(test_free_with_lookup_in_flight);
    RUN(test_free_with_late_handler);

    cm_service_stop(a.s);
    cm_service_stop(b.s);
    uv_thread_join(&a.th);
    uv_thread_join(&b.th);
    CHECK_EQ_INT(a.rc, 0);
    CHECK_EQ_INT(b.rc, 0);
    /* The graceful stop ended the subscriptions. */
    wait_nodes("micro.http.broker", 0);
    /* /metrics of the subscriber with the failures (rendered once its loop stopped). */
    cm_buf m = {0};
    CHECK_EQ_INT(cm_metrics_render(cm_service_metrics(b.s), &m), 0);
    CHECK_EQ_INT(cm_buf_append(&m, "", 1), 0);
    const char *text = (const char *)m.data;
    CHECK(strstr(text, "micro_events_total{outcome=\"handler_error\"} 2\n") != NULL);
    CHECK(strstr(text, "micro_events_total{outcome=\"decode_error\"} 1\n") != NULL);
    CHECK(strstr(text, "micro_request_total{service=\"events-sub2\",endpoint=\"ev.fail\","
                       "status=\"fail\",code=\"409\"} 1\n") != NULL);
    /* Every success of a subscriber is counted in its one series (found at the first). */
    char want[200];
    snprintf(want, sizeof want,
             "micro_request_total{service=\"events-sub2\",endpoint=\"ev.work\",status=\"success\","
             "code=\"200\"} %d\n",
             atomic_load(&q_b.n));
    CHECK(atomic_load(&q_b.n) == 0 || strstr(text, want) != NULL);
    CHECK(strstr(text, "micro_broker_messages_total{broker=\"http\",outcome=\"malformed\"} 0\n") !=
          NULL);
    cm_buf_free(&m);
    cm_event_stats st;
    cm_service_event_stats(pub, &st);
    CHECK(st.published >= 2 * N + 6);
    CHECK_EQ_INT(st.publish_errors, 0);
    cm_service_free(pub);
    cm_service_free(a.s);
    cm_service_free(b.s);
    RUN(test_broker_down);
    cm_loop_post(RL, close_reg, NULL);
    cm_loop_free(RL);
    TEST_DONE();
}
