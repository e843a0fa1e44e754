/* Several processes on one host find each other through the mdns backend: three helper servers
 * (mdns-server) and this client. Runs inside a private network namespace (run-netns.sh).
 *   test-mdns-discovery PATH_TO_MDNS_SERVER */
#include "logcap.h"
#include "mdns_test.h"

#include <sys/stat.h>

#define EVENTS_MAX 64

typedef struct event {
    cm_watch_action action;
    char id[64];
    char address[64];
    char zone[16];
    uint64_t at;
} event;

static event events[EVENTS_MAX];
static int nevents;

static void
on_event(cm_watch_action action, const cm_reg_service *svc, void *user)
{
    (void)user;
    CHECK_EQ_STR(svc->name, "greeter");
    CHECK_EQ_INT(svc->nnodes, 1);
    if (nevents == EVENTS_MAX) {
        return;
    }
    event *e = &events[nevents++];
    e->action = action;
    e->at = now_ms();
    snprintf(e->id, sizeof e->id, "%s", svc->nodes[0].id);
    snprintf(e->address, sizeof e->address, "%s", svc->nodes[0].address);
    const char *zone = cm_md_get(svc->nodes[0].metadata, "zone");
    snprintf(e->zone, sizeof e->zone, "%s", zone ? zone : "");
}

static int
find_event(cm_watch_action action, const char *id)
{
    for (int i = 0; i < nevents; i++) {
        if (events[i].action == action && strcmp(events[i].id, id) == 0) {
            return i;
        }
    }
    return -1;
}

static int
count_events(cm_watch_action action, const char *id)
{
    int n = 0;
    for (int i = 0; i < nevents; i++) {
        n += events[i].action == action && strcmp(events[i].id, id) == 0;
    }
    return n;
}

/* Announcements (t, t+1 s, t+3 s) reach the watcher over IPv4 and IPv6: each is one event, so
 * two creates of one node are never close together. */
static void
check_no_copies(const char *id)
{
    uint64_t last = 0;
    for (int i = 0; i < nevents; i++) {
        if (events[i].action == CM_WATCH_CREATE && strcmp(events[i].id, id) == 0) {
            CHECK(last == 0 || events[i].at - last >= 700);
            last = events[i].at;
        }
    }
    CHECK(count_events(CM_WATCH_CREATE, id) <= 3);
}

/* ---- lookups ---- */

typedef struct lookup {
    int done;
    int status;
    cm_reg_service_list *list;
    uint64_t started, took;
} lookup;

static void
on_list(int status, const cm_reg_service_list *l, void *user)
{
    lookup *lk = user;
    lk->status = status;
    lk->list = status == 0 ? cm_reg_service_list_dup(l) : NULL;
    lk->took = now_ms() - lk->started;
    lk->done = 1;
}

static cm_reg_service_list *
get_service(cm_loop *loop, cm_registry *r, const char *name, uint64_t *took)
{
    lookup lk = {0};
    lk.started = now_ms();
    CHECK_EQ_INT(cm_registry_get_service(r, name, on_list, &lk), 0);
    CHECK(!lk.done); /* never from inside the call */
    CHECK(run_until(loop, &lk.done, 3000));
    CHECK_EQ_INT(lk.status, 0);
    CHECK(lk.list != NULL);
    if (took != NULL) {
        *took = lk.took;
    }
    return lk.list;
}

static cm_reg_service_list *
list_services(cm_loop *loop, cm_registry *r)
{
    lookup lk = {0};
    CHECK_EQ_INT(cm_registry_list_services(r, on_list, &lk), 0);
    CHECK(run_until(loop, &lk.done, 3000));
    CHECK_EQ_INT(lk.status, 0);
    CHECK(lk.list != NULL);
    return lk.list;
}

static const cm_reg_service *
find_version(const cm_reg_service_list *l, const char *version)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i]->version, version) == 0) {
            return l->items[i];
        }
    }
    return NULL;
}

static int
has_name(const cm_reg_service_list *l, const char *name)
{
    int n = 0;
    for (size_t i = 0; i < l->n; i++) {
        n += strcmp(l->items[i]->name, name) == 0;
    }
    return n;
}

static size_t
count_nodes(const cm_reg_service_list *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        n += l->items[i]->nnodes;
    }
    return n;
}

static void
check_endpoints(const cm_reg_service *s, unsigned n)
{
    CHECK_EQ_INT(s->nendpoints, n);
    for (unsigned i = 0; i < n; i++) {
        char name[64];
        gen_endpoint_name(i, name, sizeof name);
        const cm_endpoint *e = &s->endpoints[i];
        CHECK_EQ_STR(e->name, name);
        CHECK(e->request != NULL && e->response != NULL);
        CHECK_EQ_STR(e->request->name, "Request");
        CHECK_EQ_INT(e->request->nvalues, 2);
        CHECK_EQ_STR(e->request->values[1].type, "int64");
        CHECK_EQ_INT(e->response->nvalues, 1);
        const char *stream = cm_md_get(e->metadata, "stream");
        CHECK((i % 3 == 0) == (stream != NULL && strcmp(stream, "true") == 0));
    }
}

static void
set_flag(void *arg)
{
    *(int *)arg = 1;
}

/* Captures the library's log lines of the next calls (test/common/logcap.c). */
static void
capture_start(void)
{
    logcap_start();
}

static void
capture_end(char *out, size_t len)
{
    char *t = logcap_end();
    snprintf(out, len, "%s", t);
    free(t);
}

int
main(int argc, char **argv)
{
    require_private_netns();
    CHECK(argc == 2);
    char *server = argv[1];
    signal(SIGPIPE, SIG_IGN);

    cm_loop *loop;
    cm_registry *r;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", NULL, &r), 0);
    CHECK_EQ_STR(cm_registry_name(r), "mdns");
    cm_watcher *w;
    CHECK_EQ_INT(cm_registry_watch(r, "greeter", on_event, NULL, &w), 0);

    fprintf(stderr, "-- three servers in separate processes\n");
    char *a_argv[] = {server,   "greeter", "1.0.0", "greeter-a", "127.0.0.1:9001",
                      "zone=a", "-e",      "2",     NULL};
    char *b_argv[] = {server,   "greeter", "2.0.0", "greeter-b", "127.0.0.2:9002",
                      "zone=b", "-e",      "40",    NULL};
    char *c_argv[] = {server, "billing", "1.0.0", "billing-c", "127.0.0.3:9003", NULL};
    child a = spawn_ready(a_argv);
    child b = spawn_ready(b_argv);
    child c = spawn_ready(c_argv);

    fprintf(stderr, "-- watch: announcements give create events\n");
    uint64_t end = now_ms() + 3000;
    while ((find_event(CM_WATCH_CREATE, "greeter-a") < 0 ||
            find_event(CM_WATCH_CREATE, "greeter-b") < 0) &&
           now_ms() < end) {
        run_for(loop, 20);
    }
    int ea = find_event(CM_WATCH_CREATE, "greeter-a");
    int eb = find_event(CM_WATCH_CREATE, "greeter-b");
    CHECK(ea >= 0 && eb >= 0);
    CHECK_EQ_STR(events[ea].address, "127.0.0.1:9001");
    CHECK_EQ_STR(events[ea].zone, "a");
    CHECK_EQ_STR(events[eb].address, "127.0.0.2:9002");
    CHECK_EQ_INT(find_event(CM_WATCH_CREATE, "billing-c"), -1); /* filtered by name */

    fprintf(stderr, "-- get_service finds both nodes, grouped by version\n");
    cm_reg_service_list *l = get_service(loop, r, "greeter", NULL);
    CHECK_EQ_INT(l->n, 2);
    const cm_reg_service *v1 = find_version(l, "1.0.0");
    const cm_reg_service *v2 = find_version(l, "2.0.0");
    CHECK(v1 != NULL && v2 != NULL);
    CHECK_EQ_STR(v1->name, "greeter");
    CHECK_EQ_INT(v1->nnodes, 1);
    CHECK_EQ_STR(v1->nodes[0].id, "greeter-a");
    CHECK_EQ_STR(v1->nodes[0].address, "127.0.0.1:9001");
    CHECK_EQ_STR(cm_md_get(v1->nodes[0].metadata, "zone"), "a");
    CHECK_EQ_INT(cm_md_count(v1->nodes[0].metadata), 1);
    check_endpoints(v1, 2);
    CHECK_EQ_INT(v2->nnodes, 1);
    CHECK_EQ_STR(v2->nodes[0].id, "greeter-b");
    CHECK_EQ_STR(v2->nodes[0].address, "127.0.0.2:9002");
    CHECK_EQ_STR(cm_md_get(v2->nodes[0].metadata, "zone"), "b");
    check_endpoints(v2, 40); /* a TXT record of many 255-character strings */
    cm_reg_service_list_free(l);

    l = get_service(loop, r, "billing", NULL);
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_INT(l->items[0]->nnodes, 1);
    CHECK_EQ_STR(l->items[0]->nodes[0].address, "127.0.0.3:9003");
    CHECK_EQ_INT(l->items[0]->nendpoints, 0);
    cm_reg_service_list_free(l);

    fprintf(stderr, "-- list_services sees both names, once each\n");
    l = list_services(loop, r);
    CHECK_EQ_INT(has_name(l, "greeter"), 1);
    CHECK_EQ_INT(has_name(l, "billing"), 1);
    CHECK_EQ_INT(l->n, 2);
    cm_reg_service_list_free(l);

    fprintf(stderr, "-- SIGTERM: goodbye, delete event, gone from lookups\n");
    int status = stop_child(&a, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    end = now_ms() + 2000;
    while (find_event(CM_WATCH_DELETE, "greeter-a") < 0 && now_ms() < end) {
        run_for(loop, 20);
    }
    int da = find_event(CM_WATCH_DELETE, "greeter-a");
    CHECK(da >= 0);
    run_for(loop, 300);
    CHECK_EQ_INT(count_events(CM_WATCH_DELETE, "greeter-a"), 1); /* one goodbye, two groups */
    check_no_copies("greeter-a");
    CHECK_EQ_STR(events[da].address, "127.0.0.1:9001");
    CHECK_EQ_INT(find_event(CM_WATCH_DELETE, "greeter-b"), -1);
    l = get_service(loop, r, "greeter", NULL);
    CHECK_EQ_INT(count_nodes(l), 1);
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_STR(l->items[0]->nodes[0].id, "greeter-b");
    cm_reg_service_list_free(l);

    fprintf(stderr, "-- SIGKILL: no goodbye, but no answer either\n");
    int before = nevents;
    status = stop_child(&b, SIGKILL);
    CHECK(WIFSIGNALED(status));
    capture_start();
    l = get_service(loop, r, "greeter", NULL);
    char err[1024];
    capture_end(err, sizeof err);
    CHECK_EQ_INT(l->n, 0);
    cm_reg_service_list_free(l);
    CHECK(strstr(err, "0 answers for greeter") != NULL);
    for (int i = before; i < nevents; i++) {
        CHECK(events[i].action != CM_WATCH_DELETE); /* killed: nothing was said */
    }
    l = list_services(loop, r);
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_STR(l->items[0]->name, "billing");
    cm_reg_service_list_free(l);

    check_no_copies("greeter-b");

    fprintf(stderr, "-- no answer: an empty list after the window, and one diagnostic line\n");
    capture_start();
    uint64_t took = 0;
    l = get_service(loop, r, "nobody.here", &took);
    capture_end(err, sizeof err);
    CHECK_EQ_INT(l->n, 0);
    cm_reg_service_list_free(l);
    fprintf(stderr, "   (took %llu ms; said: %s)\n", (unsigned long long)took, err);
    CHECK(took >= 95 && took < 600);
    const char *v6 = getenv("CMICRO_TEST_IPV6");
    CHECK(strstr(err, v6 != NULL && strcmp(v6, "1") == 0
                          ? "[registry.mdns] 0 answers for nobody.here in 100 ms on interfaces "
                            "[lo (v4+v6)]; multicast may be blocked\n"
                          : "[registry.mdns] 0 answers for nobody.here in 100 ms on interfaces "
                            "[lo (v4)]; multicast may be blocked\n") != NULL);
    CHECK(strchr(err, '\n') == err + strlen(err) - 1); /* exactly one line */

    status = stop_child(&c, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cm_watcher_stop(w);
    int closed = 0;
    cm_registry_close(r, set_flag, &closed);
    CHECK(run_until(loop, &closed, 2000));
    cm_loop_free(loop);
    TEST_DONE();
}
