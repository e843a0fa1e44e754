/* The mdns backend in one process: interface choice, address checks, deferred callbacks, IPv6
 * node addresses, refresh versus re-announce, deregister and close goodbyes, cancellation.
 * Two registries on one loop stand for two programs. Runs inside a private network namespace. */
#include "mdns_test.h"

#include "mdns_int.h"

#define EVENTS_MAX 64

typedef struct event {
    cm_watch_action action;
    char id[32];
    char address[64];
    char color[16];
    uint64_t at;
} event;

static event events[EVENTS_MAX];
static int nevents;

static void
on_event(cm_watch_action action, const cm_reg_service *svc, void *user)
{
    (void)user;
    CHECK_EQ_INT(svc->nnodes, 1);
    if (nevents < EVENTS_MAX) {
        event *e = &events[nevents++];
        e->action = action;
        e->at = now_ms();
        snprintf(e->id, sizeof e->id, "%s", svc->nodes[0].id);
        snprintf(e->address, sizeof e->address, "%s", svc->nodes[0].address);
        const char *c = cm_md_get(svc->nodes[0].metadata, "color");
        snprintf(e->color, sizeof e->color, "%s", c ? c : "");
    }
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

static int seq; /* orders callbacks */

static void
set_flag(void *arg)
{
    *(int *)arg = 1;
}

static int closed_order;

static void
set_closed(void *arg)
{
    closed_order = ++seq;
    *(int *)arg = 1;
}

typedef struct result {
    int done;
    int status;
    int order;
    uint64_t at;
    cm_reg_service_list *list;
} result;

static void
on_status(int status, void *user)
{
    result *r = user;
    r->status = status;
    r->at = now_ms();
    r->order = ++seq;
    r->done = 1;
}

static void
on_list(int status, const cm_reg_service_list *l, void *user)
{
    result *r = user;
    r->status = status;
    r->at = now_ms();
    r->list = l != NULL ? cm_reg_service_list_dup(l) : NULL;
    CHECK((status == 0) == (l != NULL));
    r->order = ++seq;
    r->done = 1;
}

static cm_reg_service_list *
lookup(cm_loop *loop, cm_registry *r, const char *name)
{
    result res = {0};
    if (name != NULL) {
        CHECK_EQ_INT(cm_registry_get_service(r, name, on_list, &res), 0);
    } else {
        CHECK_EQ_INT(cm_registry_list_services(r, on_list, &res), 0);
    }
    CHECK(!res.done);
    CHECK(run_until(loop, &res.done, 2000));
    CHECK_EQ_INT(res.status, 0);
    return res.list;
}

static cm_reg_service *
make_service(const char *color)
{
    cm_reg_service *s = cm_reg_service_new("six", "1.0");
    cm_md *md = cm_md_new();
    CHECK(s != NULL && md != NULL);
    CHECK(cm_md_set(md, "color", color) == 0);
    CHECK(cm_reg_service_add_node(s, "six-v6", "[::1]:8081", md) != NULL);
    CHECK(cm_reg_service_add_node(s, "six-v4", "127.0.0.1:8080", md) != NULL);
    cm_md_free(md);
    gen_endpoints(s, 3);
    return s;
}

static const cm_node *
find_node(const cm_reg_service_list *l, const char *id)
{
    for (size_t i = 0; l != NULL && i < l->n; i++) {
        for (size_t j = 0; j < l->items[i]->nnodes; j++) {
            if (strcmp(l->items[i]->nodes[j].id, id) == 0) {
                return &l->items[i]->nodes[j];
            }
        }
    }
    return NULL;
}

static void
test_interfaces(cm_loop *loop)
{
    cm_registry *r = NULL;
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    cm_registry_opts_set(&o, "interface", "nosuchif0");
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", &o, &r), CM_EINVAL);
    CHECK(r == NULL);
    cm_registry_opts_set(&o, "interface", "nosuchif0,lo");
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", &o, &r), 0);
    int closed = 0;
    cm_registry_close(r, set_flag, &closed);
    CHECK(!closed);
    CHECK(run_until(loop, &closed, 1000));
    setenv("MICRO_MDNS_INTERFACE", "nosuchif1", 1);
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", NULL, &r), CM_EINVAL);
    setenv("MICRO_MDNS_INTERFACE", "lo", 1);
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", NULL, &r), 0);
    unsetenv("MICRO_MDNS_INTERFACE");
    closed = 0;
    cm_registry_close(r, set_flag, &closed);
    CHECK(run_until(loop, &closed, 1000));
    run_for(loop, 10); /* the failed registries' handles close too */
}

static void
test_bad_registrations(cm_loop *loop, cm_registry *r)
{
    static const char *bad[] = {"localhost:8080",  "127.0.0.1", "127.0.0.1:0",
                                "127.0.0.1:70000", "::1:8080",  "[::1:8080",
                                "[127.0.0.1]:80",  ":8080",     "1.2.3.4:x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cm_reg_service *s = cm_reg_service_new("bad", "1");
        CHECK(cm_reg_service_add_node(s, "bad-1", bad[i], NULL) != NULL);
        result res = {0};
        CHECK_EQ_INT(cm_registry_register_service(r, s, 0, on_status, &res), CM_EINVAL);
        cm_reg_service_free(s);
        run_for(loop, 1);
        CHECK(!res.done); /* an error return never calls back */
    }
    cm_reg_service *s = cm_reg_service_new("bad", "1");
    CHECK_EQ_INT(cm_registry_register_service(r, s, 0, NULL, NULL), CM_EINVAL); /* no nodes */
    CHECK(cm_reg_service_add_node(s, "", "127.0.0.1:80", NULL) != NULL);
    CHECK_EQ_INT(cm_registry_register_service(r, s, 0, NULL, NULL), CM_EINVAL); /* no id */
    cm_reg_service_free(s);
    /* All or nothing: one bad node refuses the whole service. */
    s = cm_reg_service_new("bad", "1");
    CHECK(cm_reg_service_add_node(s, "bad-ok", "127.0.0.1:80", NULL) != NULL);
    CHECK(cm_reg_service_add_node(s, "bad-no", "example.com:80", NULL) != NULL);
    CHECK_EQ_INT(cm_registry_register_service(r, s, 0, NULL, NULL), CM_EINVAL);
    cm_reg_service_free(s);
    /* A payload that cannot fit one datagram is refused at once. */
    s = cm_reg_service_new("bad", "1");
    CHECK(cm_reg_service_add_node(s, "bad-big", "127.0.0.1:80", NULL) != NULL);
    gen_endpoints(s, 3000);
    CHECK_EQ_INT(cm_registry_register_service(r, s, 0, NULL, NULL), CM_ETOOBIG);
    cm_reg_service_free(s);
    cm_reg_service_list *l = lookup(loop, r, "bad");
    CHECK_EQ_INT(l->n, 0);
    cm_reg_service_list_free(l);
    /* The empty answer says why: no answers, the window, the interfaces. */
    const char *why = cm_registry_why(r, "bad");
    CHECK(why != NULL);
    CHECK(strstr(why, "mdns: 0 answers in 100 ms on interfaces [lo") != NULL);
    CHECK(strstr(why, "multicast may be blocked") != NULL);
    CHECK(cm_registry_why(r, "other") == NULL);
}

static void
test_txt_round_trip(void)
{
    cm_reg_service *s = make_service("red");
    char *hex;
    size_t len;
    CHECK_EQ_INT(cm__mdns_txt_encode(s, &s->nodes[0], &hex, &len), 0);
    CHECK_EQ_INT(strlen(hex), len);
    cm_reg_service *d;
    cm_md *md;
    CHECK_EQ_INT(cm__mdns_txt_decode(hex, len, &d, &md), 0);
    CHECK_EQ_STR(d->name, "six");
    CHECK_EQ_STR(d->version, "1.0");
    CHECK_EQ_INT(d->nendpoints, 3);
    CHECK_EQ_STR(cm_md_get(md, "color"), "red");
    cm_reg_service_free(d);
    cm_md_free(md);
    CHECK_EQ_INT(cm__mdns_txt_decode(hex, len - 1, &d, &md), CM_EPROTO);
    CHECK(d == NULL && md == NULL);
    free(hex);
    cm_reg_service_free(s);
}

int
main(void)
{
    require_private_netns();
    cm_loop *loop;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);

    RUN(test_txt_round_trip);
    fprintf(stderr, "-- interfaces\n");
    test_interfaces(loop);

    cm_registry *r1, *r2;
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", NULL, &r1), 0);
    CHECK_EQ_INT(cm_registry_new(loop, NULL, NULL, &r2), 0); /* mdns is the default */
    CHECK_EQ_STR(cm_registry_name(r2), "mdns");
    cm_watcher *w;
    CHECK_EQ_INT(cm_registry_watch(r2, "six", on_event, NULL, &w), 0);

    fprintf(stderr, "-- bad addresses are refused\n");
    test_bad_registrations(loop, r1);

    fprintf(stderr, "-- register: deferred callback, IPv4 and IPv6 nodes\n");
    cm_reg_service *s = make_service("red");
    result reg = {0};
    CHECK_EQ_INT(cm_registry_register_service(r1, s, 30000, on_status, &reg), 0);
    CHECK(!reg.done);
    CHECK(run_until(loop, &reg.done, 1000));
    CHECK_EQ_INT(reg.status, 0);
    uint64_t end = now_ms() + 1000;
    while ((count_events(CM_WATCH_CREATE, "six-v4") == 0 ||
            count_events(CM_WATCH_CREATE, "six-v6") == 0) &&
           now_ms() < end) {
        run_for(loop, 10);
    }
    CHECK_EQ_INT(count_events(CM_WATCH_CREATE, "six-v4"), 1);
    CHECK_EQ_INT(count_events(CM_WATCH_CREATE, "six-v6"), 1);
    cm_reg_service_list *l = lookup(loop, r2, "six");
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_INT(l->items[0]->nnodes, 2);
    CHECK_EQ_INT(l->items[0]->nendpoints, 3);
    CHECK_EQ_STR(find_node(l, "six-v6")->address, "[::1]:8081");
    CHECK_EQ_STR(find_node(l, "six-v4")->address, "127.0.0.1:8080");
    CHECK_EQ_STR(cm_md_get(find_node(l, "six-v4")->metadata, "color"), "red");
    cm_reg_service_list_free(l);

    fprintf(stderr, "-- registering again unchanged is a quiet refresh\n");
    int before = nevents;
    reg.done = 0;
    CHECK_EQ_INT(cm_registry_register_service(r1, s, 30000, on_status, &reg), 0);
    CHECK(run_until(loop, &reg.done, 1000));
    run_for(loop, 150);
    CHECK_EQ_INT(nevents, before);

    fprintf(stderr, "-- registering again changed re-announces at once\n");
    cm_reg_service_free(s);
    s = make_service("blue");
    uint64_t t0 = now_ms();
    CHECK_EQ_INT(cm_registry_register_service(r1, s, 30000, NULL, NULL), 0);
    end = now_ms() + 400;
    int got = -1;
    while (got < 0 && now_ms() < end) {
        run_for(loop, 10);
        for (int i = before; i < nevents; i++) {
            if (strcmp(events[i].color, "blue") == 0 && events[i].action == CM_WATCH_CREATE) {
                got = i;
            }
        }
    }
    CHECK(got >= 0);
    CHECK(events[got].at - t0 < 300);
    l = lookup(loop, r2, "six");
    CHECK_EQ_STR(cm_md_get(find_node(l, "six-v6")->metadata, "color"), "blue");
    cm_reg_service_list_free(l);

    fprintf(stderr, "-- deregister: goodbye, delete event\n");
    cm_reg_service *one = cm_reg_service_new("six", "1.0");
    CHECK(cm_reg_service_add_node(one, "six-v6", "[::1]:8081", NULL) != NULL);
    result dereg = {0};
    CHECK_EQ_INT(cm_registry_deregister_service(r1, one, on_status, &dereg), 0);
    CHECK(!dereg.done);
    cm_reg_service_free(one);
    end = now_ms() + 1000;
    while (count_events(CM_WATCH_DELETE, "six-v6") == 0 && now_ms() < end) {
        run_for(loop, 10);
    }
    CHECK(dereg.done && dereg.status == 0);
    CHECK_EQ_INT(count_events(CM_WATCH_DELETE, "six-v6"), 1);
    CHECK_EQ_INT(count_events(CM_WATCH_DELETE, "six-v4"), 0);
    l = lookup(loop, r2, "six");
    CHECK(find_node(l, "six-v6") == NULL && find_node(l, "six-v4") != NULL);
    cm_reg_service_list_free(l);
    l = lookup(loop, r2, NULL);
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_STR(l->items[0]->name, "six");
    cm_reg_service_list_free(l);

    fprintf(stderr, "-- close: goodbye for what is left, pending lookups canceled first\n");
    result pending = {0}, reg2 = {0};
    CHECK_EQ_INT(cm_registry_get_service(r1, "six", on_list, &pending), 0);
    cm_reg_service *other = cm_reg_service_new("other", "1");
    CHECK(cm_reg_service_add_node(other, "other-1", "127.0.0.1:1", NULL) != NULL);
    CHECK_EQ_INT(cm_registry_register_service(r1, other, 0, on_status, &reg2), 0);
    cm_reg_service_free(other);
    int closed = 0;
    cm_registry_close(r1, set_closed, &closed);
    CHECK(!pending.done && !closed);
    CHECK_EQ_INT(cm_registry_get_service(r1, "six", on_list, &pending), CM_ESTATE);
    while (!closed) {
        CHECK(run_until(loop, &closed, 1000));
    }
    CHECK(pending.done);
    CHECK_EQ_INT(pending.status, CM_ECANCELED);
    CHECK(pending.list == NULL);
    CHECK(pending.order < closed_order);
    CHECK(reg2.done && reg2.status == 0); /* a register that was accepted still reports */
    CHECK(reg2.order < closed_order);
    end = now_ms() + 1000;
    while (count_events(CM_WATCH_DELETE, "six-v4") == 0 && now_ms() < end) {
        run_for(loop, 10);
    }
    CHECK_EQ_INT(count_events(CM_WATCH_DELETE, "six-v4"), 1);
    l = lookup(loop, r2, "six");
    CHECK_EQ_INT(l->n, 0);
    cm_reg_service_list_free(l);

    cm_reg_service_free(s);
    cm_watcher_stop(w);
    closed = 0;
    cm_registry_close(r2, set_flag, &closed);
    CHECK(run_until(loop, &closed, 1000));
    cm_loop_free(loop);
    TEST_DONE();
}
