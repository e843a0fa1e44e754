/* The etcd registry backend against a real three-member etcd cluster (test/etcd/cluster.sh,
 * started here on loopback ports and stopped at the end): the stored keys and values checked
 * with etcdctl, discovery, watch events, leases (keepalive, expiry), endpoint failover, a killed
 * leader under load, quorum loss, compaction past a watch's revision, authentication and TLS.
 * Without etcd installed it prints SKIP and exits 77, or fails when CI=true. */
#include "consul/harness.h"
#include "etcd_int.h"

#include <stdarg.h>
#include <sys/stat.h>

static cm_loop *loop;
static char dir[64];
static char endpoints[512];
static char urls[3][128];

/* ---- the cluster ---- */

/* Runs a shell command; its stdout (owned) in *out when out is not NULL. Returns the exit code. */
static int
sh(char **out, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    fflush(stdout);
    fflush(stderr);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    cm_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0) {
        CHECK(cm_buf_append(&b, chunk, n) == 0);
    }
    CHECK(cm_buf_append(&b, "", 1) == 0);
    int st = pclose(p);
    if (out != NULL) {
        *out = (char *)b.data;
    } else {
        cm_buf_free(&b);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void cluster_stop(void);

static void
cluster_start(void)
{
    snprintf(dir, sizeof(dir), "/tmp/cm-etcd-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    char *out = NULL;
    int rc = sh(&out, "%s start %s", CLUSTER_SH, dir);
    if (rc == 77) {
        const char *ci = getenv("CI");
        fprintf(stderr, "%s: etcd is not installed (Debian: etcd-server etcd-client)\n",
                ci != NULL && strcmp(ci, "true") == 0 ? "FAIL" : "SKIP");
        rmdir(dir);
        exit(ci != NULL && strcmp(ci, "true") == 0 ? 1 : 77);
    }
    atexit(cluster_stop);
    CHECK_EQ_INT(rc, 0);
    out[strcspn(out, "\n")] = '\0';
    snprintf(endpoints, sizeof(endpoints), "%s", out);
    free(out);
    char *p = endpoints;
    for (int i = 0; i < 3; i++) {
        size_t n = strcspn(p, ",");
        snprintf(urls[i], sizeof(urls[i]), "%.*s", (int)n, p);
        p += n + (p[n] == ',');
    }
    printf("cluster: %s in %s\n", endpoints, dir);
}

/* At exit, also after a failed CHECK: no member outlives the test. */
static void
cluster_stop(void)
{
    if (dir[0] != '\0') {
        sh(NULL, "%s stop %s", CLUSTER_SH, dir);
        sh(NULL, "rm -rf %s", dir);
        dir[0] = '\0';
    }
}

static int
leader(void)
{
    char *out = NULL;
    CHECK_EQ_INT(sh(&out, "%s leader %s", CLUSTER_SH, dir), 0);
    int n = atoi(out);
    free(out);
    CHECK(n >= 1 && n <= 3);
    return n;
}

static void
member_kill(int n)
{
    CHECK_EQ_INT(sh(NULL, "%s kill %s %d", CLUSTER_SH, dir, n), 0);
}

static void
member_restart(int n)
{
    CHECK_EQ_INT(sh(NULL, "%s restart %s %d", CLUSTER_SH, dir, n), 0);
}

/* etcdctl's value of key ("" when absent); owned. */
static char *
ctl_value(const char *key)
{
    char *out = NULL;
    CHECK_EQ_INT(sh(&out, "%s ctl %s get '%s' --print-value-only", CLUSTER_SH, dir, key), 0);
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '\n') {
        out[--n] = '\0';
    }
    return out;
}

/* The lease of key as etcdctl reports it (0: none or no key). */
static long long
ctl_lease(const char *key)
{
    char *out = NULL;
    CHECK_EQ_INT(sh(&out, "%s ctl %s get '%s' -w json", CLUSTER_SH, dir, key), 0);
    /* Read from the text: a lease ID needs all 64 bits (a JSON double has 53). */
    const char *p = strstr(out, "\"lease\":");
    long long v = p != NULL ? strtoll(p + 8, NULL, 10) : 0;
    free(out);
    return v;
}

/* ---- registries, services, watch events ---- */

static cm_registry *
etcd_registry(const char *addresses, uint64_t timeout_ms, const char *user, const char *pass)
{
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    o.addresses = addresses;
    o.timeout_ms = timeout_ms;
    if (user != NULL) {
        cm_registry_opts_set(&o, "username", user);
        cm_registry_opts_set(&o, "password", pass);
    }
    cm_registry *r = NULL;
    CHECK_EQ_INT(cm_registry_new(loop, "etcd", &o, &r), 0);
    CHECK_EQ_STR(cm_registry_name(r), "etcd");
    return r;
}

static cm_reg_service *
make_svc(const char *name, const char *id, const char *address, const char *mdval)
{
    cm_reg_service *s = cm_reg_service_new(name, "1.0.0");
    cm_value leaf = {.name = "name", .type = "string"};
    cm_value req = {.name = "Request", .type = "Request", .values = &leaf, .nvalues = 1};
    cm_value rsp = {.name = "Response", .type = "Response"};
    CHECK(cm_reg_service_add_endpoint(s, "Greeter.Hello", &req, &rsp, NULL) != NULL);
    cm_md *md = cm_md_new();
    cm_md_set(md, "registry", "etcd");
    cm_md_set(md, "protocol", "mucp");
    cm_md_set(md, "html", mdval);
    CHECK(cm_reg_service_add_node(s, id, address, md) != NULL);
    cm_md_free(md);
    return s;
}

typedef struct event {
    cm_watch_action action;
    char id[96];
} event;

typedef struct events {
    event ev[4096];
    int n;
} events;

static void
on_event(cm_watch_action action, const cm_reg_service *svc, void *user)
{
    events *e = user;
    CHECK(!in_call);
    CHECK_EQ_INT(svc->nnodes, 1); /* go-micro's etcd watcher: one node per event */
    CHECK(e->n < 4096);
    e->ev[e->n].action = action;
    snprintf(e->ev[e->n].id, sizeof(e->ev[0].id), "%s", svc->nodes[0].id);
    e->n++;
}

static int
wait_events(events *e, int n, uint64_t ms)
{
    uint64_t end = cm_now_ms() + ms;
    while (e->n < n && cm_now_ms() < end) {
        run_for(loop, 20);
    }
    return e->n;
}

static int
count_of(const events *e, cm_watch_action a, const char *id)
{
    int n = 0;
    for (int i = 0; i < e->n; i++) {
        n += e->ev[i].action == a && strcmp(e->ev[i].id, id) == 0;
    }
    return n;
}

/* ---- the tests ---- */

/* The key and the value are go-micro's plugin's, byte for byte. */
static void
test_register_discover(void)
{
    cm_registry *r = etcd_registry(endpoints, 0, NULL, NULL);
    cm_reg_service *s = make_svc("cm.test.basic", "cm.test.basic-1", "127.0.0.1:1234", "<a&b>");
    CHECK_EQ_INT(reg_sync(loop, r, s, 10000), 0);
    char *v = ctl_value("/micro/registry/cm.test.basic/cm.test.basic-1");
    CHECK_EQ_STR(
        v, "{\"name\":\"cm.test.basic\",\"version\":\"1.0.0\",\"metadata\":null,"
           "\"endpoints\":[{\"name\":\"Greeter.Hello\",\"request\":{\"name\":\"Request\","
           "\"type\":\"Request\",\"values\":[{\"name\":\"name\",\"type\":\"string\","
           "\"values\":null}]},\"response\":{\"name\":\"Response\",\"type\":\"Response\","
           "\"values\":null},\"metadata\":{}}],\"nodes\":[{\"id\":\"cm.test.basic-1\","
           "\"address\":\"127.0.0.1:1234\",\"metadata\":{\"html\":\"\\u003ca\\u0026b\\u003e\","
           "\"protocol\":\"mucp\",\"registry\":\"etcd\"}}]}");
    free(v);
    CHECK(ctl_lease("/micro/registry/cm.test.basic/cm.test.basic-1") != 0);

    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.basic", &l), 0);
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_STR(l->items[0]->version, "1.0.0");
    CHECK_EQ_INT(l->items[0]->nendpoints, 1);
    const cm_node *nd = find_node(l, "cm.test.basic-1");
    CHECK(nd != NULL);
    CHECK_EQ_STR(nd->address, "127.0.0.1:1234");
    CHECK_EQ_STR(cm_md_get(nd->metadata, "html"), "<a&b>");
    cm_reg_service_list_free(l);

    /* A second node of another version: two entries. */
    cm_reg_service *s2 = make_svc("cm.test.basic", "cm.test.basic-2", "127.0.0.1:1235", "x");
    free(s2->version);
    s2->version = strdup("2.0.0");
    CHECK_EQ_INT(reg_sync(loop, r, s2, 10000), 0);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.basic", &l), 0);
    CHECK_EQ_INT(l->n, 2);
    CHECK_EQ_INT(count_nodes(l), 2);
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(get_sync(loop, r, NULL, &l), 0);
    int found = 0;
    for (size_t i = 0; i < l->n; i++) {
        found += strcmp(l->items[i]->name, "cm.test.basic") == 0;
    }
    CHECK_EQ_INT(found, 2); /* one per version, as go-micro's ListServices */
    cm_reg_service_list_free(l);

    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    CHECK_EQ_INT(dereg_sync(loop, r, s2), 0);
    v = ctl_value("/micro/registry/cm.test.basic/cm.test.basic-1");
    CHECK_EQ_STR(v, "");
    free(v);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.basic", &l), 0);
    CHECK_EQ_INT(l->n, 0);
    cm_reg_service_list_free(l);
    cm_reg_service_free(s);
    cm_reg_service_free(s2);
    close_registry(loop, r);
}

static void
test_watch(void)
{
    cm_registry *w = etcd_registry(endpoints, 0, NULL, NULL);
    cm_registry *r = etcd_registry(endpoints, 0, NULL, NULL);
    static events ev;
    memset(&ev, 0, sizeof(ev));
    cm_watcher *wt = NULL;
    CHECK_EQ_INT(cm_registry_watch(w, "cm.test.watch", on_event, &ev, &wt), 0);
    run_for(loop, 300);
    CHECK_EQ_INT(ev.n, 0);
    cm_reg_service *a = make_svc("cm.test.watch", "a", "127.0.0.1:1", "1");
    cm_reg_service *b = make_svc("cm.test.watch", "b", "127.0.0.1:2", "1");
    cm_reg_service *other = make_svc("cm.test.other", "o", "127.0.0.1:3", "1");
    CHECK_EQ_INT(reg_sync(loop, r, a, 10000), 0);
    CHECK_EQ_INT(reg_sync(loop, r, other, 10000), 0);
    CHECK_EQ_INT(wait_events(&ev, 1, 3000), 1);
    CHECK_EQ_INT(ev.ev[0].action, CM_WATCH_CREATE);
    CHECK_EQ_STR(ev.ev[0].id, "a");
    cm_md_set(a->nodes[0].metadata, "html", "2");
    CHECK_EQ_INT(reg_sync(loop, r, a, 10000), 0);
    CHECK_EQ_INT(reg_sync(loop, r, b, 10000), 0);
    CHECK_EQ_INT(dereg_sync(loop, r, a), 0);
    CHECK_EQ_INT(wait_events(&ev, 4, 3000), 4);
    CHECK_EQ_INT(ev.ev[1].action, CM_WATCH_UPDATE);
    CHECK_EQ_INT(ev.ev[2].action, CM_WATCH_CREATE);
    CHECK_EQ_STR(ev.ev[2].id, "b");
    CHECK_EQ_INT(ev.ev[3].action, CM_WATCH_DELETE);
    CHECK_EQ_STR(ev.ev[3].id, "a");
    /* A keepalive (same value) changes no key: no event. */
    CHECK_EQ_INT(reg_sync(loop, r, b, 10000), 0);
    run_for(loop, 300);
    CHECK_EQ_INT(ev.n, 4);

    /* A new watcher starts with a create per node there is. */
    static events ev2;
    memset(&ev2, 0, sizeof(ev2));
    cm_watcher *wt2 = NULL;
    CHECK_EQ_INT(cm_registry_watch(w, NULL, on_event, &ev2, &wt2), 0);
    CHECK(wait_events(&ev2, 2, 3000) >= 2);
    CHECK_EQ_INT(count_of(&ev2, CM_WATCH_CREATE, "b"), 1);
    CHECK_EQ_INT(count_of(&ev2, CM_WATCH_CREATE, "o"), 1);
    cm_watcher_stop(wt2);
    CHECK_EQ_INT(dereg_sync(loop, r, b), 0);
    CHECK_EQ_INT(dereg_sync(loop, r, other), 0);
    CHECK_EQ_INT(wait_events(&ev, 5, 3000), 5);
    cm_watcher_stop(wt);
    cm_reg_service_free(a);
    cm_reg_service_free(b);
    cm_reg_service_free(other);
    close_registry(loop, r);
    close_registry(loop, w);
}

/* Registering again with the same value keeps the lease alive; without it the key goes when the
 * TTL runs out (what a node killed with -9 leaves behind). */
static void
test_lease(void)
{
    cm_registry *w = etcd_registry(endpoints, 0, NULL, NULL);
    static events ev;
    memset(&ev, 0, sizeof(ev));
    cm_watcher *wt = NULL;
    CHECK_EQ_INT(cm_registry_watch(w, "cm.test.lease", on_event, &ev, &wt), 0);
    cm_registry *r = etcd_registry(endpoints, 0, NULL, NULL);
    cm_reg_service *s = make_svc("cm.test.lease", "l1", "127.0.0.1:1", "1");
    const char *key = "/micro/registry/cm.test.lease/l1";
    CHECK_EQ_INT(reg_sync(loop, r, s, 3000), 0);
    long long lease = ctl_lease(key);
    CHECK(lease != 0);
    for (int i = 0; i < 6; i++) { /* 6 s: twice the TTL */
        run_for(loop, 1000);
        CHECK_EQ_INT(reg_sync(loop, r, s, 3000), 0);
    }
    CHECK_EQ_INT(ctl_lease(key), lease);
    /* The process "dies": no deregister, no more keepalives. */
    close_registry(loop, r);
    uint64_t t0 = cm_now_ms();
    CHECK_EQ_INT(wait_events(&ev, 2, 10000), 2);
    uint64_t took = cm_now_ms() - t0;
    CHECK_EQ_INT(ev.ev[1].action, CM_WATCH_DELETE);
    CHECK_EQ_STR(ev.ev[1].id, "l1");
    printf("lease expiry seen by the watcher after %llu ms (TTL 3 s)\n", (unsigned long long)took);
    CHECK(took <= 6000);
    char *v = ctl_value(key);
    CHECK_EQ_STR(v, "");
    free(v);

    /* A lease etcd lost (revoked here) is noticed by the next keepalive: registered again. */
    r = etcd_registry(endpoints, 0, NULL, NULL);
    CHECK_EQ_INT(reg_sync(loop, r, s, 5000), 0);
    lease = ctl_lease(key);
    CHECK_EQ_INT(sh(NULL, "%s ctl %s lease revoke %llx >/dev/null", CLUSTER_SH, dir, lease), 0);
    CHECK_EQ_INT(reg_sync(loop, r, s, 5000), 0);
    CHECK(ctl_lease(key) != 0 && ctl_lease(key) != lease);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    cm_watcher_stop(wt);
    cm_reg_service_free(s);
    close_registry(loop, r);
    close_registry(loop, w);
}

static void
test_failover(void)
{
    char list[700];
    snprintf(list, sizeof(list), "127.0.0.1:%d, %s", free_port(), endpoints);
    cm_registry *r = etcd_registry(list, 0, NULL, NULL);
    cm_reg_service *s = make_svc("cm.test.failover", "f1", "127.0.0.1:1", "1");
    CHECK_EQ_INT(reg_sync(loop, r, s, 10000), 0);
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.failover", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 1);
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    cm_reg_service_free(s);
    close_registry(loop, r);

    /* Nothing reachable: a connection error, not a hang. */
    snprintf(list, sizeof(list), "127.0.0.1:%d", free_port());
    r = etcd_registry(list, 1000, NULL, NULL);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.failover", &l), UV_ECONNREFUSED);
    close_registry(loop, r);
}

/* A member that takes requests and answers nothing (SIGSTOP: its sockets stay open): the request
 * to it times out, and the next ones go to the next member. */
static void
test_stalled_member(void)
{
    int lead = leader(), stalled = lead % 3 + 1, other = stalled % 3 + 1;
    char list[700];
    snprintf(list, sizeof(list), "%s,%s", urls[stalled - 1], urls[other - 1]);
    cm_registry *r = etcd_registry(list, 1000, NULL, NULL);
    cm_reg_service *s = make_svc("cm.test.stalled", "s1", "127.0.0.1:1", "1");
    CHECK_EQ_INT(reg_sync(loop, r, s, 10000), 0);
    CHECK_EQ_INT(sh(NULL, "%s pause %s %d", CLUSTER_SH, dir, stalled), 0);
    cm_reg_service *s2 = make_svc("cm.test.stalled", "s2", "127.0.0.1:2", "1");
    CHECK_EQ_INT(reg_sync(loop, r, s2, 10000), CM_ETIMEDOUT);
    CHECK_EQ_INT(reg_sync(loop, r, s2, 10000), 0);
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.stalled", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 2);
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(sh(NULL, "%s resume %s %d", CLUSTER_SH, dir, stalled), 0);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    CHECK_EQ_INT(dereg_sync(loop, r, s2), 0);
    cm_reg_service_free(s);
    cm_reg_service_free(s2);
    close_registry(loop, r);
}

/* Registers name/prefix<i> until it succeeds (writes fail while a leader is elected). */
static void
register_retrying(cm_registry *r, cm_reg_service *s, uint64_t ttl_ms)
{
    uint64_t end = cm_now_ms() + 20000;
    int rc;
    while ((rc = reg_sync(loop, r, s, ttl_ms)) != 0) {
        CHECK(cm_now_ms() < end);
        run_for(loop, 100);
    }
}

/* The leader killed while nodes register: every registration completes (after retries) and a
 * watcher streaming from the leader resumes on another member with each create exactly once. */
static void
test_leader_killed(void)
{
    int lead = leader();
    char list[700];
    snprintf(list, sizeof(list), "%s,%s,%s", urls[lead - 1], urls[lead % 3], urls[(lead + 1) % 3]);
    cm_registry *w = etcd_registry(list, 2000, NULL, NULL);
    cm_registry *r = etcd_registry(list, 2000, NULL, NULL);
    static events ev;
    memset(&ev, 0, sizeof(ev));
    cm_watcher *wt = NULL;
    CHECK_EQ_INT(cm_registry_watch(w, "cm.test.leader", on_event, &ev, &wt), 0);
    run_for(loop, 200);
    enum { N = 60 };
    cm_reg_service *s[N];
    int failed = 0;
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof(id), "n%d", i);
        s[i] = make_svc("cm.test.leader", id, "127.0.0.1:1", "1");
        if (i == 20) {
            printf("killing the leader, member %d\n", lead);
            member_kill(lead);
        }
        if (reg_sync(loop, r, s[i], 30000) != 0) {
            failed++;
            register_retrying(r, s[i], 30000);
        }
    }
    printf("%d registrations failed once during the election\n", failed);
    CHECK_EQ_INT(wait_events(&ev, N, 10000), N);
    run_for(loop, 500);
    CHECK_EQ_INT(ev.n, N);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(count_of(&ev, CM_WATCH_CREATE, s[i]->nodes[0].id), 1);
    }
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.leader", &l), 0);
    CHECK_EQ_INT(count_nodes(l), N);
    cm_reg_service_list_free(l);
    member_restart(lead);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(dereg_sync(loop, r, s[i]), 0);
        cm_reg_service_free(s[i]);
    }
    CHECK_EQ_INT(wait_events(&ev, 2 * N, 10000), 2 * N);
    cm_watcher_stop(wt);
    close_registry(loop, r);
    close_registry(loop, w);
}

/* Two of three members down: writes fail (no quorum), reads of the survivor still answer, and
 * registering works again once quorum is back. */
static void
test_quorum_loss(void)
{
    cm_registry *r = etcd_registry(endpoints, 1500, NULL, NULL);
    cm_reg_service *old = make_svc("cm.test.quorum", "q0", "127.0.0.1:1", "1");
    cm_reg_service *s = make_svc("cm.test.quorum", "q1", "127.0.0.1:2", "1");
    CHECK_EQ_INT(reg_sync(loop, r, old, 30000), 0);
    int lead = leader();
    int down1 = lead, down2 = lead % 3 + 1;
    member_kill(down1);
    member_kill(down2);
    uint64_t t0 = cm_now_ms();
    int rc = reg_sync(loop, r, s, 30000);
    printf("register without quorum: %s after %llu ms\n", cm_strerror(rc),
           (unsigned long long)(cm_now_ms() - t0));
    CHECK_EQ_INT(rc, CM_ETIMEDOUT);
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.quorum", &l), 0);
    CHECK(find_node(l, "q0") != NULL);
    cm_reg_service_list_free(l);
    member_restart(down1);
    member_restart(down2);
    t0 = cm_now_ms();
    register_retrying(r, s, 30000);
    printf("registered again %llu ms after quorum returned\n",
           (unsigned long long)(cm_now_ms() - t0));
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.quorum", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 2);
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    CHECK_EQ_INT(dereg_sync(loop, r, old), 0);
    cm_reg_service_free(s);
    cm_reg_service_free(old);
    close_registry(loop, r);
}

/* A watcher cut off while the history it needs is compacted: it resyncs from a range and reports
 * exactly what changed meanwhile. */
static void
test_compaction(void)
{
    int lead = leader();
    int a = lead % 3 + 1, b = a % 3 + 1; /* two followers: no election when a stops */
    char wl[300], rl[300];
    snprintf(wl, sizeof(wl), "%s,%s", urls[a - 1], urls[b - 1]);
    snprintf(rl, sizeof(rl), "%s,%s", urls[b - 1], urls[lead - 1]);
    cm_registry *r = etcd_registry(rl, 0, NULL, NULL);
    cm_registry *w = etcd_registry(wl, 0, NULL, NULL);
    cm_reg_service *gone = make_svc("cm.test.compact", "gone", "127.0.0.1:1", "1");
    cm_reg_service *stay = make_svc("cm.test.compact", "stay", "127.0.0.1:2", "1");
    cm_reg_service *fresh = make_svc("cm.test.compact", "fresh", "127.0.0.1:3", "1");
    CHECK_EQ_INT(reg_sync(loop, r, gone, 30000), 0);
    CHECK_EQ_INT(reg_sync(loop, r, stay, 30000), 0);
    static events ev;
    memset(&ev, 0, sizeof(ev));
    cm_watcher *wt = NULL;
    uint64_t base = cm__etcd_watch_base_ms;
    cm__etcd_watch_base_ms = 4000; /* room to write and compact before it reconnects */
    CHECK_EQ_INT(cm_registry_watch(w, "cm.test.compact", on_event, &ev, &wt), 0);
    CHECK_EQ_INT(wait_events(&ev, 2, 3000), 2);
    logcap_start();
    member_kill(a);
    run_for(loop, 100);
    CHECK_EQ_INT(dereg_sync(loop, r, gone), 0);
    CHECK_EQ_INT(reg_sync(loop, r, fresh, 30000), 0);
    char *out = NULL;
    CHECK_EQ_INT(sh(&out, "%s ctl %s get /x -w json", CLUSTER_SH, dir), 0);
    cJSON *j = cJSON_Parse(out);
    long long rev =
        (long long)cJSON_GetObjectItem(cJSON_GetObjectItem(j, "header"), "revision")->valuedouble;
    cJSON_Delete(j);
    free(out);
    CHECK_EQ_INT(sh(NULL, "%s ctl %s compact %lld >/dev/null", CLUSTER_SH, dir, rev), 0);
    CHECK_EQ_INT(wait_events(&ev, 4, 8000), 4);
    char *log = logcap_end();
    CHECK(strstr(log, "compacted") != NULL);
    CHECK(strstr(log, "resynced") != NULL);
    free(log);
    cm__etcd_watch_base_ms = base;
    CHECK_EQ_INT(count_of(&ev, CM_WATCH_DELETE, "gone"), 1);
    CHECK_EQ_INT(count_of(&ev, CM_WATCH_CREATE, "fresh"), 1);
    CHECK_EQ_INT(count_of(&ev, CM_WATCH_CREATE, "stay"), 1);
    /* And it streams again. */
    CHECK_EQ_INT(dereg_sync(loop, r, stay), 0);
    CHECK_EQ_INT(wait_events(&ev, 5, 3000), 5);
    CHECK_EQ_INT(count_of(&ev, CM_WATCH_DELETE, "stay"), 1);
    member_restart(a);
    CHECK_EQ_INT(dereg_sync(loop, r, fresh), 0);
    cm_watcher_stop(wt);
    cm_reg_service_free(gone);
    cm_reg_service_free(stay);
    cm_reg_service_free(fresh);
    close_registry(loop, r);
    close_registry(loop, w);
}

/* Authentication: wrong credentials fail with a clear log line that holds no secret; right ones
 * work, and an expired token (TTL 2 s in cluster.sh) is replaced without the caller noticing. */
static void
test_auth(void)
{
    CHECK_EQ_INT(sh(NULL, "%s ctl %s user add root --new-user-password=S3cret-root >/dev/null",
                    CLUSTER_SH, dir),
                 0);
    CHECK_EQ_INT(sh(NULL, "%s ctl %s auth enable >/dev/null", CLUSTER_SH, dir), 0);
    cm_reg_service *s = make_svc("cm.test.auth", "a1", "127.0.0.1:1", "1");

    logcap_start();
    cm_registry *bad = etcd_registry(endpoints, 0, "root", "Wrong-pass-42");
    int rc = reg_sync(loop, bad, s, 10000);
    cm_reg_service_list *l = NULL;
    int rc2 = get_sync(loop, bad, "cm.test.auth", &l);
    close_registry(loop, bad);
    char *log = logcap_end();
    CHECK_EQ_INT(rc, CM_EREGISTRY);
    CHECK_EQ_INT(rc2, CM_EREGISTRY);
    CHECK(strstr(log, "authentication as user root failed: etcdserver: authentication failed, "
                      "invalid user ID or password") != NULL);
    CHECK(strstr(log, "Wrong-pass-42") == NULL);
    free(log);

    /* Without credentials on a cluster with auth on: etcd's own words. */
    cm_registry *anon = etcd_registry(endpoints, 0, NULL, NULL);
    CHECK_EQ_INT(reg_sync(loop, anon, s, 10000), CM_EREGISTRY);
    close_registry(loop, anon);

    logcap_start();
    cm_registry *r = etcd_registry(endpoints, 0, "root", "S3cret-root");
    static events ev;
    memset(&ev, 0, sizeof(ev));
    cm_watcher *wt = NULL;
    CHECK_EQ_INT(cm_registry_watch(r, "cm.test.auth", on_event, &ev, &wt), 0);
    CHECK_EQ_INT(reg_sync(loop, r, s, 10000), 0);
    CHECK_EQ_INT(wait_events(&ev, 1, 3000), 1);
    run_for(loop, 3500); /* the token expires */
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.auth", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 1);
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    CHECK_EQ_INT(wait_events(&ev, 2, 3000), 2);
    cm_watcher_stop(wt);
    close_registry(loop, r);
    log = logcap_end();
    CHECK(strstr(log, "authenticating again") != NULL);
    CHECK(strstr(log, "S3cret-root") == NULL);
    free(log);
    cm_reg_service_free(s);
    CHECK_EQ_INT(
        sh(NULL, "%s ctl %s --user root:S3cret-root auth disable >/dev/null", CLUSTER_SH, dir), 0);
}

static cm_registry *
tls_registry(const char *addresses, const char *ca, const char *insecure)
{
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    o.addresses = addresses;
    if (ca != NULL) {
        cm_registry_opts_set(&o, "ca_file", ca);
    }
    if (insecure != NULL) {
        cm_registry_opts_set(&o, "insecure_skip_verify", insecure);
    }
    cm_registry *r = NULL;
    CHECK_EQ_INT(cm_registry_new(loop, "etcd", &o, &r), 0);
    return r;
}

/* TLS: verified against the CA given, a certificate of an unknown CA refused with libcurl's
 * words in the log, verification skipped only when asked (with a warning). */
static void
test_tls(void)
{
    char *url = NULL;
    CHECK_EQ_INT(sh(&url, "%s tls %s", CLUSTER_SH, dir), 0);
    url[strcspn(url, "\n")] = '\0';
    char ca[128];
    snprintf(ca, sizeof(ca), "%s/tls/ca.pem", dir);
    cm_reg_service *s = make_svc("cm.test.tls", "t1", "127.0.0.1:1", "1");
    cm_registry *r = tls_registry(url, ca, NULL);
    CHECK_EQ_INT(reg_sync(loop, r, s, 10000), 0);
    close_registry(loop, r);
    /* host:port with a CA set means https. */
    r = tls_registry(url + strlen("https://"), ca, NULL);
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.tls", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 1);
    cm_reg_service_list_free(l);
    close_registry(loop, r);

    logcap_start();
    r = tls_registry(url, NULL, NULL);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.tls", &l), CM_EREGISTRY);
    close_registry(loop, r);
    char *log = logcap_end();
    CHECK(strstr(log, "SSL certificate problem") != NULL);
    free(log);

    logcap_start();
    r = tls_registry(url, NULL, "true");
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.tls", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 1);
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    close_registry(loop, r);
    log = logcap_end();
    CHECK(strstr(log, "TLS certificates of etcd are not verified") != NULL);
    free(log);
    cm_reg_service_free(s);
    free(url);
}

/* Closing with requests and a watch in flight: each callback runs once, with CM_ECANCELED. */
static void
test_close_in_flight(void)
{
    cm_registry *r = etcd_registry(endpoints, 0, NULL, NULL);
    cm_watcher *wt = NULL;
    static events ev;
    memset(&ev, 0, sizeof(ev));
    CHECK_EQ_INT(cm_registry_watch(r, NULL, on_event, &ev, &wt), 0);
    result res = {0};
    CHECK_EQ_INT(cm_registry_get_service(r, "x", on_list, &res), 0);
    int done = 0;
    cm_registry_close(r, closed_cb, &done);
    CHECK(run_until(loop, &done, 5000));
    CHECK_EQ_INT(res.done, 1);
    CHECK_EQ_INT(res.status, CM_ECANCELED);
}

int
main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    cluster_start();
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    RUN(test_register_discover);
    RUN(test_watch);
    RUN(test_lease);
    RUN(test_failover);
    RUN(test_stalled_member);
    RUN(test_close_in_flight);
    RUN(test_compaction);
    RUN(test_leader_killed);
    RUN(test_quorum_loss);
    RUN(test_auth);
    RUN(test_tls);
    cm_loop_free(loop);
    cluster_stop();
    TEST_DONE();
}
