/* The HTTP broker, C to C over the memory registry: the registrations go-micro expects
 * (micro.http.broker, ff.http.broadcast or the queue name, node "<topic>-<uuid>" with its
 * metadata), fan-out to two subscribers, a queue group of two (each message exactly once across
 * it), a subscriber whose process is gone (its node still registered, nothing listening) reported
 * to the publisher by node while the others keep receiving, malformed POSTs, unsubscribe and
 * disconnect deregistering, and the publisher's cache of its lookups. */
#include "harness.h"

#include <arpa/inet.h>
#include <cmicro/transport.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static cm_registry *reg;

typedef struct rx {
    int n;
    int seen[256];
    int bad;
} rx;

static int
on_msg(const cm_broker_msg *m, void *arg)
{
    rx *r = arg;
    char body[32] = "";
    if (m->body_len > 0 && m->body_len < sizeof(body)) {
        memcpy(body, m->body, m->body_len);
    }
    int i = atoi(body + 4);
    const char *seq = cm_md_get(m->header, "X-Seq");
    const char *topic = cm_md_get(m->header, CM_BROKER_TOPIC_HEADER);
    if (strncmp(body, "msg-", 4) != 0 || i < 0 || i >= 256 || seq == NULL ||
        strcmp(seq, body) != 0 || topic == NULL || strcmp(topic, m->topic) != 0) {
        r->bad++;
        return -1; /* logged and counted by the broker */
    }
    r->seen[i]++;
    r->n++;
    return 0;
}

/* cache_ms: publish_cache_ms, NULL for the default. */
static cm_broker *
http_broker_cached(const char *cache_ms)
{
    cm_broker_opts o;
    cm_broker_opts_init(&o);
    o.registry = reg;
    o.timeout_ms = 2000;
    if (cache_ms != NULL) {
        cm_broker_opts_set(&o, "publish_cache_ms", cache_ms);
    }
    return broker_up("http", &o);
}

static cm_broker *
http_broker(void)
{
    return http_broker_cached(NULL);
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
sub(cm_broker *b, const char *topic, const char *queue, rx *r)
{
    cm_broker_sub_opts so;
    cm_broker_sub_opts_init(&so);
    so.queue = queue;
    so.ready = on_ready;
    cm_broker_sub *s = NULL;
    int before = ready;
    CHECK_EQ_INT(cm_broker_subscribe(b, topic, &so, on_msg, r, &s), 0);
    CHECK(wait_until(&ready, before + 1, 5000));
    return s;
}

typedef struct pubres {
    int done;
    int status;
    int nerrs;
    char err_node[160];
    char err_addr[64];
    int err_status;
} pubres;

static void
on_published(int status, const cm_broker_node_err *errs, size_t nerrs, void *arg)
{
    pubres *p = arg;
    p->done++;
    p->status = status;
    p->nerrs += (int)nerrs;
    if (nerrs > 0) {
        snprintf(p->err_node, sizeof(p->err_node), "%s", errs[0].node_id);
        snprintf(p->err_addr, sizeof(p->err_addr), "%s", errs[0].address);
        p->err_status = errs[0].status;
    }
}

static void
publish_n(cm_broker *b, const char *topic, int from, int to, pubres *res)
{
    cm_md *h = cm_md_new();
    for (int i = from; i < to; i++) {
        char body[32];
        snprintf(body, sizeof(body), "msg-%d", i);
        cm_md_set(h, "X-Seq", body);
        CHECK_EQ_INT(
            cm_broker_publish(b, topic, h, (const uint8_t *)body, strlen(body), on_published, res),
            0);
    }
    cm_md_free(h);
    CHECK(wait_until(&res->done, to - from, 10000));
}

/* The registration, as go-micro's HTTP broker writes it. */
static int got;
static cm_reg_service_list *found;

static void
on_list(int status, const cm_reg_service_list *l, void *arg)
{
    (void)arg;
    CHECK_EQ_INT(status, 0);
    cm_reg_service_list_free(found);
    found = cm_reg_service_list_dup(l);
    got++;
}

static const cm_reg_service *
lookup(const char *version)
{
    got = 0;
    CHECK_EQ_INT(cm_registry_get_service(reg, "micro.http.broker", on_list, NULL), 0);
    CHECK(wait_until(&got, 1, 5000));
    for (size_t i = 0; i < found->n; i++) {
        if (strcmp(found->items[i]->version, version) == 0) {
            return found->items[i];
        }
    }
    return NULL;
}

static void
test_registration(cm_broker *s1)
{
    const cm_reg_service *svc = lookup("ff.http.broadcast");
    CHECK(svc != NULL);
    const cm_node *n = NULL;
    for (size_t i = 0; i < svc->nnodes; i++) {
        if (strcmp(svc->nodes[i].address, cm_broker_address(s1)) == 0 &&
            strncmp(svc->nodes[i].id, "fan-", 4) == 0) {
            n = &svc->nodes[i];
        }
    }
    CHECK(n != NULL);
    CHECK_EQ_INT(strlen(n->id), 4 + 36); /* "fan-" + a uuid */
    CHECK_EQ_STR(cm_md_get(n->metadata, "broker"), "http");
    CHECK_EQ_STR(cm_md_get(n->metadata, "topic"), "fan");
    CHECK_EQ_STR(cm_md_get(n->metadata, "secure"), "false");
    CHECK_EQ_INT(cm_md_count(n->metadata), 3);
    CHECK(strncmp(cm_broker_address(s1), "127.0.0.1:", 10) == 0); /* go-micro's default */
    svc = lookup("grp");
    CHECK(svc != NULL);
    CHECK_EQ_INT(svc->nnodes, 2);
}

static int regdone;

static void
on_reg(int status, void *arg)
{
    (void)arg;
    CHECK_EQ_INT(status, 0);
    regdone++;
}

/* A subscriber that died without deregistering: its node stays, nothing listens there. */
static cm_reg_service *
dead_subscriber(const char *topic, char *addr, size_t len)
{
    snprintf(addr, len, "127.0.0.1:%d", free_port());
    cm_reg_service *svc = cm_reg_service_new("micro.http.broker", "ff.http.broadcast");
    cm_md *md = cm_md_new();
    cm_md_set(md, "broker", "http");
    cm_md_set(md, "topic", topic);
    cm_md_set(md, "secure", "false");
    cm_reg_service_add_node(svc, "fan-00000000-dead-4000-8000-000000000000", addr, md);
    cm_md_free(md);
    regdone = 0;
    CHECK_EQ_INT(cm_registry_register_service(reg, svc, 60000, on_reg, NULL), 0);
    CHECK(wait_until(&regdone, 1, 5000));
    return svc;
}

/* Requests that deliver nothing: answered as go-micro's broker answers them (500 for what is no
 * message, 405 for another method) or 404 for an id that is not this broker's node (a node
 * left at this address by a process before), counted, never handed to a handler. */
static int posted;
static char post_codes[8][8];

static void
on_post(int status, unsigned flags, const cm_msg *rsp, void *arg)
{
    (void)flags;
    size_t i = (size_t)(uintptr_t)arg;
    const char *code = rsp != NULL ? cm_msg_header(rsp, ":status") : NULL;
    CHECK_EQ_INT(status, CM_EPROTO); /* a status other than 200 */
    snprintf(post_codes[i], sizeof(post_codes[i]), "%s", code != NULL ? code : "?");
    posted++;
}

static void
test_malformed(cm_broker *s1, rx *a)
{
    cm_transport *t = NULL;
    CHECK_EQ_INT(cm_transport_new(L, "http", NULL, &t), 0);
    char good_path[128];
    snprintf(good_path, sizeof(good_path), "/?id=fan-%s", "00000000-0000-4000-8000-000000000000");
    const char *good =
        "{\"Header\":{\"Micro-Topic\":\"fan\",\"X-Seq\":\"msg-1\"},\"Body\":\"bXNnLTE=\"}";
    struct {
        const char *path, *body, *code;
    } cases[] = {
        {"/?id=x", "junk", "500"}, {"/?id=x", "{\"Header\":{\"X\":\"1\"},\"Body\":\"\"}", "500"},
        {"/?id=x", "[]", "500"},   {"/?id=x", "{\"Header\":{\"Micro-Topic\":1}}", "500"},
        {good_path, good, "404"}, /* another broker's node id */
        {"/", good, "404"},       /* none */
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    posted = 0;
    for (size_t i = 0; i < n; i++) {
        cm_hdr h[] = {{"Content-Type", "application/json"}, {":path", cases[i].path}};
        cm_msg m = {h, 2, (const uint8_t *)cases[i].body, strlen(cases[i].body)};
        CHECK_EQ_INT(cm_transport_roundtrip(t, cm_broker_address(s1), &m, 2000, on_post,
                                            (void *)(uintptr_t)i, NULL),
                     0);
    }
    CHECK(wait_until(&posted, (int)n, 5000));
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_STR(post_codes[i], cases[i].code);
    }
    /* Another method: go-micro's 405, over a plain socket (the loop runs while it waits). */
    const char *addr = cm_broker_address(s1);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(atoi(strrchr(addr, ':') + 1))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    const char *get = "GET /?id=x HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(send(fd, get, strlen(get), 0) == (ssize_t)strlen(get));
    char rsp[512] = "";
    ssize_t got_n = -1;
    for (int i = 0; i < 200 && got_n <= 0; i++) {
        wait_until(NULL, 0, 10);
        got_n = recv(fd, rsp, sizeof(rsp) - 1, MSG_DONTWAIT);
    }
    close(fd);
    CHECK(got_n > 0 && strncmp(rsp, "HTTP/1.1 405 ", 13) == 0);
    cm_broker_stats st;
    cm_broker_get_stats(s1, &st);
    CHECK_EQ_INT(st.malformed, (uint64_t)n + 1);
    CHECK_EQ_INT(a->bad, 0);
    int closed = 0;
    cm_transport_close(t, NULL, NULL);
    wait_until(&closed, 1, 50);
}

static void
test_pubsub(void)
{
    cm_broker *pub = http_broker_cached("100"), *s1 = http_broker(), *s2 = http_broker();
    rx a = {0}, b = {0}, q1 = {0}, q2 = {0};
    sub(s1, "fan", NULL, &a);
    cm_broker_sub *sb = sub(s2, "fan", NULL, &b);
    sub(s1, "work", "grp", &q1);
    sub(s2, "work", "grp", &q2);
    test_registration(s1);

    pubres r = {0};
    publish_n(pub, "fan", 0, 20, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(wait_until(&a.n, 20, 5000) && wait_until(&b.n, 20, 5000));
    pubres w = {0};
    publish_n(pub, "work", 0, 100, &w);
    CHECK_EQ_INT(w.status, 0);
    CHECK_EQ_INT(q1.n + q2.n, 100); /* delivered before the POSTs were answered */
    for (int i = 0; i < 100; i++) {
        CHECK_EQ_INT(q1.seen[i] + q2.seen[i], 1);
    }
    CHECK(q1.n > 0 && q2.n > 0);
    fprintf(stderr, "   queue group split: %d + %d\n", q1.n, q2.n);

    /* No subscriber of a topic: nothing to do, as go-micro. */
    pubres none = {0};
    publish_n(pub, "nobody", 0, 1, &none);
    CHECK_EQ_INT(none.status, 0);

    /* A dead subscriber: the publisher hears which node failed; the others still receive. */
    char dead_addr[64];
    cm_reg_service *dead = dead_subscriber("fan", dead_addr, sizeof(dead_addr));
    wait_until(NULL, 0, 150); /* the publisher's last lookup expires */
    pubres d = {0};
    publish_n(pub, "fan", 20, 30, &d);
    CHECK_EQ_INT(d.status, UV_ECONNREFUSED);
    CHECK_EQ_INT(d.nerrs, 10);
    CHECK_EQ_STR(d.err_node, "fan-00000000-dead-4000-8000-000000000000");
    CHECK_EQ_STR(d.err_addr, dead_addr);
    fprintf(stderr, "   dead node: %s\n", cm_broker_why(pub));
    CHECK(strstr(cm_broker_why(pub), dead_addr) != NULL);
    CHECK_EQ_INT(a.n, 30);
    CHECK_EQ_INT(b.n, 30);
    cm_broker_stats st;
    cm_broker_get_stats(pub, &st);
    CHECK_EQ_INT(st.publish_errors, 10);
    regdone = 0;
    CHECK_EQ_INT(cm_registry_deregister_service(reg, dead, on_reg, NULL), 0);
    CHECK(wait_until(&regdone, 1, 5000));
    cm_reg_service_free(dead);

    test_malformed(s1, &a);

    /* Unsubscribed: its node leaves the registry, it gets nothing more. */
    cm_broker_unsubscribe(sb);
    wait_until(NULL, 0, 50);
    const cm_reg_service *svc = lookup("ff.http.broadcast");
    CHECK(svc != NULL && svc->nnodes == 1);
    pubres u = {0};
    publish_n(pub, "fan", 30, 40, &u);
    CHECK_EQ_INT(u.status, 0);
    CHECK_EQ_INT(a.n, 40);
    CHECK_EQ_INT(b.n, 30);
    CHECK_EQ_INT(a.bad + b.bad + q1.bad + q2.bad, 0);

    /* A subscriber that arrives after the publisher's (cached) lookup: the publisher's watch of
     * the registry says so, and the next publish reaches it too. */
    rx c = {0};
    cm_broker *s3 = http_broker();
    sub(s3, "fan", NULL, &c);
    wait_until(NULL, 0, 50);
    pubres n3 = {0};
    publish_n(pub, "fan", 40, 45, &n3);
    CHECK_EQ_INT(n3.status, 0);
    CHECK(wait_until(&c.n, 5, 5000));
    CHECK_EQ_INT(a.n, 45);
    broker_down(s3);

    /* Disconnect deregisters everything. */
    broker_down(s1);
    broker_down(s2);
    CHECK(lookup("ff.http.broadcast") == NULL);
    CHECK(lookup("grp") == NULL);
    broker_down(pub);
}

/* The publisher keeps its lookup: a subscriber that comes meanwhile is seen at the next publish
 * (the publisher's watch of the registry), one that goes without deregistering fails its POST,
 * which drops the lookup, and a burst shares one lookup. */
static void
test_cache(void)
{
    cm_broker *pub = http_broker_cached("60000"), *s1 = http_broker(), *s2 = http_broker();
    rx a = {0}, b = {0};
    sub(s1, "cached", NULL, &a);
    pubres r1 = {0};
    publish_n(pub, "cached", 0, 1, &r1);
    CHECK(wait_until(&a.n, 1, 5000));
    sub(s2, "cached", NULL, &b);
    wait_until(NULL, 0, 50);
    pubres r2 = {0};
    publish_n(pub, "cached", 1, 2, &r2); /* not the cached lookup: both */
    CHECK_EQ_INT(r2.status, 0);
    CHECK(wait_until(&a.n, 2, 5000) && wait_until(&b.n, 1, 5000));
    /* s2's node stays registered but nothing listens (a process killed): the POST to it fails,
     * and the next publish looks up again. */
    char dead_addr[64];
    cm_reg_service *dead = dead_subscriber("cached", dead_addr, sizeof(dead_addr));
    wait_until(NULL, 0, 50);
    pubres r4 = {0};
    publish_n(pub, "cached", 2, 3, &r4);
    CHECK_EQ_INT(r4.status, UV_ECONNREFUSED);
    regdone = 0;
    CHECK_EQ_INT(cm_registry_deregister_service(reg, dead, on_reg, NULL), 0);
    CHECK(wait_until(&regdone, 1, 5000));
    cm_reg_service_free(dead);
    wait_until(NULL, 0, 50);
    pubres r5 = {0};
    publish_n(pub, "cached", 3, 4, &r5);
    CHECK_EQ_INT(r5.status, 0);
    CHECK_EQ_INT(r5.nerrs, 0);
    CHECK(wait_until(&a.n, 4, 5000) && wait_until(&b.n, 3, 5000));
    /* A burst shares one lookup and reaches the subscribers whole. */
    pubres r6 = {0};
    publish_n(pub, "cached", 4, 200, &r6);
    CHECK_EQ_INT(r6.status, 0);
    CHECK(wait_until(&a.n, 200, 5000) && wait_until(&b.n, 199, 5000));
    for (int i = 0; i < 200; i++) {
        CHECK_EQ_INT(a.seen[i], 1);
    }
    CHECK_EQ_INT(a.bad + b.bad, 0);
    broker_down(s2);
    broker_down(s1);
    broker_down(pub);
}

/* A handler that changes the subscriptions while it runs. */
typedef struct edge {
    int n;
    cm_broker *b;
    cm_broker_sub *self; /* set: the handler unsubscribes it (once) and returns -1 */
    struct edge *child;  /* set: the handler subscribes it to the topic (once) */
} edge;

static cm_broker_sub *sub_edge(cm_broker *b, const char *topic, edge *e);

static int
on_edge(const cm_broker_msg *m, void *arg)
{
    edge *e = arg;
    e->n++;
    if (e->child != NULL) {
        sub_edge(e->b, m->topic, e->child);
        e->child = NULL;
    }
    if (e->self != NULL) {
        cm_broker_unsubscribe(e->self); /* its topic, logged below, outlives it */
        e->self = NULL;
        return -1;
    }
    return 0;
}

static cm_broker_sub *
sub_edge(cm_broker *b, const char *topic, edge *e)
{
    cm_broker_sub_opts so;
    cm_broker_sub_opts_init(&so);
    cm_broker_sub *s = NULL;
    e->b = b;
    CHECK_EQ_INT(cm_broker_subscribe(b, topic, &so, on_edge, e, &s), 0);
    return s;
}

/* Handlers that unsubscribe themselves (failing) or subscribe another while a message is
 * delivered: every subscription there when it came gets it once, and only those. Unsubscribing
 * one of two subscriptions of a topic leaves their node registered for the other. */
static void
test_handler_edges(void)
{
    cm_broker *pub = http_broker_cached("100"), *s = http_broker();
    edge x[3] = {{0}}, child = {0};
    for (int i = 0; i < 3; i++) {
        cm_broker_sub *h = sub_edge(s, "edge", &x[i]);
        x[i].self = i != 1 ? h : NULL;
    }
    x[1].child = &child;
    wait_until(NULL, 0, 100); /* registered */
    pubres r = {0};
    publish_n(pub, "edge", 0, 1, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(x[0].n == 1 && x[1].n == 1 && x[2].n == 1 && child.n == 0);
    cm_broker_stats st;
    cm_broker_get_stats(s, &st);
    CHECK_EQ_INT(st.handler_errors, 2);
    wait_until(NULL, 0, 150); /* the publisher's lookup expires */
    pubres r2 = {0};
    publish_n(pub, "edge", 1, 2, &r2);
    CHECK_EQ_INT(r2.status, 0);
    CHECK(x[0].n == 1 && x[1].n == 2 && x[2].n == 1 && child.n == 1);
    /* Two subscriptions of one topic share a node: unsubscribing one keeps it for the other. */
    edge y[2] = {{0}};
    cm_broker_sub *ys = sub_edge(s, "shared", &y[0]);
    sub_edge(s, "shared", &y[1]);
    wait_until(NULL, 0, 100);
    cm_broker_unsubscribe(ys);
    wait_until(NULL, 0, 150); /* deregistered, were it wrongly; the publisher's lookup expires */
    pubres r3 = {0};
    publish_n(pub, "shared", 2, 3, &r3);
    CHECK_EQ_INT(r3.status, 0);
    CHECK(y[0].n == 0 && y[1].n == 1);
    /* The longest topic, every byte percent-encoded in the node id's URL, is delivered; one byte
     * more is refused at subscribe. */
    char longest[402];
    memset(longest, '/', 400);
    longest[400] = '\0';
    edge z = {0};
    sub_edge(s, longest, &z);
    wait_until(NULL, 0, 150);
    pubres r4 = {0};
    CHECK_EQ_INT(cm_broker_publish(pub, longest, NULL, (const uint8_t *)"x", 1, on_published, &r4),
                 0);
    CHECK(wait_until(&r4.done, 1, 5000));
    CHECK_EQ_INT(r4.status, 0);
    CHECK_EQ_INT(z.n, 1);
    strcat(longest, "/");
    cm_broker_sub_opts so;
    cm_broker_sub_opts_init(&so);
    cm_broker_sub *none = NULL;
    CHECK_EQ_INT(cm_broker_subscribe(s, longest, &so, on_edge, &z, &none), CM_EINVAL);
    CHECK(strstr(cm_broker_why(s), "at most 400") != NULL);
    broker_down(s);
    broker_down(pub);
}

static void
on_ready_flag(int status, void *arg)
{
    CHECK_EQ_INT(status, 0);
    (*(int *)arg)++;
}

/* A publish still waiting for its lookup when the broker disconnects is reported failed, not
 * sent. */
static void
test_disconnect_waiting(void)
{
    cm_broker *pub = http_broker(), *s = http_broker();
    rx a = {0};
    sub(s, "late", NULL, &a);
    pubres r = {0};
    cm_md *h = cm_md_new();
    cm_md_set(h, "X-Seq", "msg-0");
    CHECK_EQ_INT(cm_broker_publish(pub, "late", h, (const uint8_t *)"msg-0", 5, on_published, &r),
                 0);
    cm_md_free(h);
    int down = 0;
    CHECK_EQ_INT(cm_broker_disconnect(pub, on_ready_flag, &down), 0);
    CHECK(wait_until(&r.done, 1, 5000));
    CHECK_EQ_INT(r.status, CM_ECANCELED);
    CHECK(strstr(cm_broker_why(pub), "disconnected before the publish") != NULL);
    CHECK(wait_until(&down, 1, 5000));
    wait_until(NULL, 0, 50);
    CHECK_EQ_INT(a.n, 0);
    broker_down(s);
    broker_down(pub);
}

/* A subscriber node that accepts connections and never answers (a hung process): the socket
 * listens, the test accepts what comes (the loop turns meanwhile) and counts it. */
static int
hung_subscriber(const char *topic, char *addr, size_t len, cm_reg_service **svc)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 64) == 0 &&
          getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    snprintf(addr, len, "127.0.0.1:%d", ntohs(sa.sin_port));
    *svc = cm_reg_service_new("micro.http.broker", "ff.http.broadcast");
    cm_md *md = cm_md_new();
    cm_md_set(md, "broker", "http");
    cm_md_set(md, "topic", topic);
    cm_md_set(md, "secure", "false");
    cm_reg_service_add_node(*svc, "hung-00000000-0000-4000-8000-000000000000", addr, md);
    cm_md_free(md);
    regdone = 0;
    CHECK_EQ_INT(cm_registry_register_service(reg, *svc, 60000, on_reg, NULL), 0);
    CHECK(wait_until(&regdone, 1, 5000));
    return fd;
}

/* Turns the loop for ms, accepting (and keeping) the connections that come to fd. */
static void
accept_for(int fd, int ms, int *conns, int *nconns)
{
    for (int t = 0; t < ms; t += 10) {
        wait_until(NULL, 0, 10);
        int c;
        while (*nconns < 64 && (c = accept(fd, NULL, NULL)) >= 0) {
            conns[(*nconns)++] = c;
        }
    }
}

/* Limits: a hung subscriber gets at most max_node_posts POSTs at once (each a connection of the
 * publisher) while another subscriber receives everything at once; publishes not finished are
 * bounded by queue_max, beyond which cm_broker_publish says CM_EAGAIN. */
static void
test_bounds(void)
{
    cm_broker_opts o;
    cm_broker_opts_init(&o);
    o.registry = reg;
    o.timeout_ms = 800;
    o.queue_max = 12;
    cm_broker_opts_set(&o, "max_node_posts", "4");
    cm_broker_opts_set(&o, "publish_cache_ms", "100");
    cm_broker *pub = broker_up("http", &o), *s = http_broker();
    rx a = {0};
    sub(s, "slow", NULL, &a);
    char hung_addr[64];
    cm_reg_service *hung = NULL;
    int lfd = hung_subscriber("slow", hung_addr, sizeof(hung_addr), &hung);
    wait_until(NULL, 0, 150);
    pubres r = {0};
    cm_md *h = cm_md_new();
    for (int i = 0; i < 12; i++) {
        char body[32];
        snprintf(body, sizeof(body), "msg-%d", i);
        cm_md_set(h, "X-Seq", body);
        CHECK_EQ_INT(cm_broker_publish(pub, "slow", h, (const uint8_t *)body, strlen(body),
                                       on_published, &r),
                     0);
    }
    CHECK_EQ_INT(cm_broker_publish(pub, "slow", h, (const uint8_t *)"msg-12", 6, NULL, NULL),
                 CM_EAGAIN);
    CHECK(strstr(cm_broker_why(pub), "queue_max") != NULL);
    cm_md_free(h);
    int conns[64], nconns = 0;
    accept_for(lfd, 300, conns, &nconns);
    CHECK_EQ_INT(a.n, 12);                 /* the other subscriber has them all */
    CHECK_EQ_INT(nconns, 4);               /* the hung one, four at a time */
    CHECK_EQ_INT(r.done, 0);               /* each publish waits for the hung node */
    accept_for(lfd, 1000, conns, &nconns); /* the first four time out: four more */
    CHECK_EQ_INT(nconns, 8);
    CHECK(wait_until(&r.done, 12, 5000));
    CHECK_EQ_INT(r.status, CM_ETIMEDOUT);
    CHECK_EQ_INT(r.nerrs, 12);
    CHECK_EQ_STR(r.err_addr, hung_addr);
    for (int i = 0; i < nconns; i++) {
        close(conns[i]);
    }
    close(lfd);
    regdone = 0;
    CHECK_EQ_INT(cm_registry_deregister_service(reg, hung, on_reg, NULL), 0);
    CHECK(wait_until(&regdone, 1, 5000));
    cm_reg_service_free(hung);
    broker_down(s);
    broker_down(pub);
}

static void
test_options(void)
{
    cm_broker_opts o;
    cm_broker_opts_init(&o);
    o.registry = reg;
    cm_broker_opts_set(&o, "name", "x"); /* a NATS key */
    cm_broker *b = NULL;
    CHECK_EQ_INT(cm_broker_new(L, "http", &o, &b), CM_EINVAL);
    fprintf(stderr, "   %s\n", "unknown key refused");
    cm_broker_opts_init(&o);
    o.registry = reg;
    cm_broker_opts_set(&o, "max_body_bytes", "-5");
    CHECK_EQ_INT(cm_broker_new(L, "http", &o, &b), CM_EINVAL);
    cm_broker_opts_init(&o);
    o.registry = reg;
    cm_broker_opts_set(&o, "publish_cache_ms", "soon");
    CHECK_EQ_INT(cm_broker_new(L, "http", &o, &b), CM_EINVAL);

    /* Body limit: a message whose JSON is over max_body_bytes is refused before any POST. */
    cm_broker_opts_init(&o);
    o.registry = reg;
    cm_broker_opts_set(&o, "max_body_bytes", "64");
    b = broker_up("http", &o);
    static const uint8_t big[100];
    CHECK_EQ_INT(cm_broker_publish(b, "t", NULL, big, sizeof(big), NULL, NULL), CM_ETOOBIG);
    CHECK(strstr(cm_broker_why(b), "max_body_bytes") != NULL);
    CHECK_EQ_INT(cm_broker_publish(b, "t", NULL, big, 8, NULL, NULL), 0);
    /* A subscriber with the smaller limit refuses a bigger message: its publisher hears it (HTTP
     * 413), the message is not lost silently. */
    rx small = {0};
    sub(b, "small", NULL, &small);
    cm_broker *pub = http_broker();
    pubres r = {0};
    CHECK_EQ_INT(cm_broker_publish(pub, "small", NULL, big, sizeof(big), on_published, &r), 0);
    CHECK(wait_until(&r.done, 1, 5000));
    CHECK_EQ_INT(r.status, CM_EREMOTE);
    CHECK_EQ_INT(r.nerrs, 1);
    fprintf(stderr, "   %s\n", cm_broker_why(pub));
    CHECK(strstr(cm_broker_why(pub), "refused with HTTP 413: message over max_body_bytes") != NULL);
    CHECK_EQ_INT(small.n, 0);
    broker_down(pub);
    broker_down(b);

    /* MICRO_BROKER and MICRO_BROKER_ADDRESS pick the backend and the listen address. */
    setenv("MICRO_BROKER", "http", 1);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
    setenv("MICRO_BROKER_ADDRESS", addr, 1);
    cm_broker_opts_init(&o);
    o.registry = reg;
    b = broker_up(NULL, &o);
    CHECK_EQ_STR(cm_broker_name(b), "http");
    CHECK_EQ_STR(cm_broker_address(b), addr);
    broker_down(b);
    unsetenv("MICRO_BROKER_ADDRESS");
    unsetenv("MICRO_BROKER");
}

int
main(void)
{
    harness_init();
    cm_registry_opts ro;
    cm_registry_opts_init(&ro);
    cm_registry_opts_set(&ro, "namespace", "broker-http-test");
    CHECK_EQ_INT(cm_registry_new(L, "memory", &ro, &reg), 0);
    RUN(test_options);
    RUN(test_pubsub);
    RUN(test_cache);
    RUN(test_handler_edges);
    RUN(test_disconnect_waiting);
    RUN(test_bounds);
    cm_reg_service_list_free(found);
    int closed = 0;
    cm_registry_close(reg, NULL, NULL);
    wait_until(&closed, 1, 50);
    cm_loop_free(L);
    TEST_DONE();
}
