/* The memory registry on one loop: register, deregister, get, list, watch, TTLs, watcher stops
 * from callbacks, and close with operations in flight. */
#include "registry_int.h"
#include "test.h"

static cm_loop *L;
static uv_timer_t poll_timer;
static volatile int *wait_ptr;
static int wait_target;
static uint64_t wait_deadline;

static void
poll_cb(uv_timer_t *t)
{
    (void)t;
    if ((wait_ptr != NULL && *wait_ptr >= wait_target) || cm_now_ms() >= wait_deadline) {
        cm_loop_stop(L);
    }
}

/* Runs the loop until *p >= target or ms pass; returns whether *p got there. p NULL: just run
 * the loop for ms. */
static int
wait_until(volatile int *p, int target, uint64_t ms)
{
    wait_ptr = p;
    wait_target = target;
    wait_deadline = cm_now_ms() + ms;
    uv_timer_start(&poll_timer, poll_cb, 1, 1);
    cm_loop_run(L);
    uv_timer_stop(&poll_timer);
    return p != NULL && *p >= target;
}

static cm_registry *
new_reg(const char *ns)
{
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    cm_registry_opts_set(&o, "namespace", ns);
    cm_registry *r = NULL;
    CHECK_EQ_INT(cm_registry_new(L, "memory", &o, &r), 0);
    CHECK(r != NULL);
    return r;
}

static int closed;

static void
on_closed(void *arg)
{
    (void)arg;
    closed++;
}

static void
close_reg(cm_registry *r)
{
    int before = closed;
    cm_registry_close(r, on_closed, NULL);
    CHECK_EQ_INT(closed, before); /* never inside the call */
    CHECK(wait_until(&closed, before + 1, 2000));
}

static cm_reg_service *
svc(const char *name, const char *version, const char *id, const char *addr)
{
    cm_reg_service *s = cm_reg_service_new(name, version);
    cm_md *md = cm_md_new();
    CHECK(cm_md_set(md, "protocol", "mucp") == 0);
    CHECK(cm_reg_service_add_node(s, id, addr, md) != NULL);
    cm_md_free(md);
    return s;
}

/* ---- operation results ---- */

static int in_call, done_count, last_status;
static cm_reg_service_list *last_list;

static void
on_done(int status, void *user)
{
    CHECK(!in_call);
    CHECK(user == &done_count);
    last_status = status;
    done_count++;
}

static void
on_list(int status, const cm_reg_service_list *l, void *user)
{
    CHECK(!in_call);
    CHECK(user == &done_count);
    last_status = status;
    cm_reg_service_list_free(last_list);
    last_list = status == 0 ? cm_reg_service_list_dup(l) : NULL;
    CHECK(status != 0 || last_list != NULL);
    done_count++;
}

static void
do_register(cm_registry *r, const cm_reg_service *s, uint64_t ttl)
{
    int before = done_count;
    in_call = 1;
    CHECK_EQ_INT(cm_registry_register_service(r, s, ttl, on_done, &done_count), 0);
    in_call = 0;
    CHECK_EQ_INT(done_count, before);
    CHECK(wait_until(&done_count, before + 1, 2000));
    CHECK_EQ_INT(last_status, 0);
}

static void
do_deregister(cm_registry *r, const cm_reg_service *s)
{
    int before = done_count;
    in_call = 1;
    CHECK_EQ_INT(cm_registry_deregister_service(r, s, on_done, &done_count), 0);
    in_call = 0;
    CHECK(wait_until(&done_count, before + 1, 2000));
    CHECK_EQ_INT(last_status, 0);
}

/* The services named name (NULL: all), as the registry reports them. */
static cm_reg_service_list *
do_get(cm_registry *r, const char *name)
{
    int before = done_count;
    in_call = 1;
    if (name != NULL) {
        CHECK_EQ_INT(cm_registry_get_service(r, name, on_list, &done_count), 0);
    } else {
        CHECK_EQ_INT(cm_registry_list_services(r, on_list, &done_count), 0);
    }
    in_call = 0;
    CHECK(wait_until(&done_count, before + 1, 2000));
    CHECK_EQ_INT(last_status, 0);
    return last_list;
}

static const cm_reg_service *
find_version(const cm_reg_service_list *l, const char *name, const char *version)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i]->name, name) == 0 && strcmp(l->items[i]->version, version) == 0) {
            return l->items[i];
        }
    }
    return NULL;
}

/* ---- watch events ---- */

typedef struct evlog {
    int n, creates, updates, deletes;
    char last_name[64];
    cm_watch_action last_action;
    size_t last_nnodes;
    char last_node[64];
    cm_watcher *self;
    cm_watcher *stop_other; /* stopped by this watcher's first callback */
    int stop_self_at;       /* stops itself at this event number (0: never) */
    int close_reg;          /* closes its registry at the first event */
} evlog;

static void
on_event(cm_watch_action a, const cm_reg_service *s, void *user)
{
    evlog *g = user;
    CHECK(!in_call);
    g->n++;
    g->creates += a == CM_WATCH_CREATE;
    g->updates += a == CM_WATCH_UPDATE;
    g->deletes += a == CM_WATCH_DELETE;
    g->last_action = a;
    snprintf(g->last_name, sizeof(g->last_name), "%s", s->name);
    g->last_nnodes = s->nnodes;
    snprintf(g->last_node, sizeof(g->last_node), "%s", s->nnodes ? s->nodes[0].id : "");
    if (g->stop_other != NULL) {
        cm_watcher_stop(g->stop_other);
        g->stop_other = NULL;
    }
    if (g->stop_self_at == g->n) {
        cm_watcher_stop(g->self);
    }
    if (g->close_reg) {
        g->close_reg = 0;
        cm_registry_close(g->self->reg, on_closed, NULL);
    }
}

static cm_watcher *
watch(cm_registry *r, const char *name, evlog *g)
{
    cm_watcher *w = NULL;
    CHECK_EQ_INT(cm_registry_watch(r, name, on_event, g, &w), 0);
    g->self = w;
    return w;
}

/* ---- tests ---- */

static void
test_new_errors(void)
{
    cm_registry *r = NULL;
    CHECK_EQ_INT(cm_registry_new(L, "nosuch", NULL, &r), CM_ENOTFOUND);
    CHECK_EQ_INT(cm_registry_new(NULL, "memory", NULL, &r), CM_EINVAL);
    setenv("MICRO_REGISTRY", "memory", 1);
    CHECK_EQ_INT(cm_registry_new(L, NULL, NULL, &r), 0);
    CHECK_EQ_STR(cm_registry_name(r), "memory");
    close_reg(r);
    CHECK_EQ_INT(cm_registry_new(L, "", NULL, &r), 0);
    CHECK_EQ_STR(cm_registry_name(r), "memory");
    close_reg(r);
    setenv("MICRO_REGISTRY", "nosuch", 1);
    CHECK_EQ_INT(cm_registry_new(L, NULL, NULL, &r), CM_ENOTFOUND);
    unsetenv("MICRO_REGISTRY");

    r = new_reg(NULL);
    cm_reg_service *s = cm_reg_service_new("a", "1");
    CHECK_EQ_INT(cm_registry_register_service(r, s, 0, NULL, NULL), CM_EINVAL); /* no node */
    CHECK(cm_reg_service_add_node(s, "", "1.2.3.4:1", NULL) != NULL);
    CHECK_EQ_INT(cm_registry_register_service(r, s, 0, NULL, NULL), CM_EINVAL); /* empty id */
    CHECK_EQ_INT(cm_registry_register_service(r, NULL, 0, NULL, NULL), CM_EINVAL);
    CHECK_EQ_INT(cm_registry_get_service(r, NULL, on_list, NULL), CM_EINVAL);
    CHECK_EQ_INT(cm_registry_get_service(r, "a", NULL, NULL), CM_EINVAL);
    cm_watcher *w = NULL;
    CHECK_EQ_INT(cm_registry_watch(r, "a", NULL, NULL, &w), CM_EINVAL);
    cm_reg_service_free(s);
    close_reg(r);
}

static void
test_register_get_list(void)
{
    cm_registry *r = new_reg(NULL);
    cm_reg_service_list *l = do_get(r, "greeter");
    CHECK_EQ_INT(l->n, 0);

    cm_reg_service *s1 = svc("greeter", "v1", "greeter-1", "10.0.0.1:1");
    cm_value req = {"Req", "Req", NULL, 0};
    CHECK(cm_reg_service_add_endpoint(s1, "Greeter.Hello", &req, NULL, NULL) != NULL);
    do_register(r, s1, 0);
    l = do_get(r, "greeter");
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_STR(l->items[0]->version, "v1");
    CHECK_EQ_INT(l->items[0]->nnodes, 1);
    CHECK_EQ_STR(l->items[0]->nodes[0].address, "10.0.0.1:1");
    CHECK_EQ_STR(cm_md_get(l->items[0]->nodes[0].metadata, "protocol"), "mucp");
    CHECK_EQ_INT(l->items[0]->nendpoints, 1);
    CHECK_EQ_STR(l->items[0]->endpoints[0].request->name, "Req");

    /* A second node merges into the same version; another version is another service. */
    cm_reg_service *s2 = svc("greeter", "v1", "greeter-2", "10.0.0.2:1");
    do_register(r, s2, 0);
    cm_reg_service *s3 = svc("greeter", "v2", "greeter-3", "10.0.0.3:1");
    do_register(r, s3, 0);
    cm_reg_service *o = svc("other", "", "other-1", "10.0.0.9:1");
    do_register(r, o, 0);
    l = do_get(r, "greeter");
    CHECK_EQ_INT(l->n, 2);
    CHECK_EQ_INT(find_version(l, "greeter", "v1")->nnodes, 2);
    CHECK_EQ_INT(find_version(l, "greeter", "v2")->nnodes, 1);
    l = do_get(r, NULL);
    CHECK_EQ_INT(l->n, 3);
    CHECK(find_version(l, "other", "") != NULL);

    /* Registering again with a new address replaces the node, not adds one. */
    free(s2->nodes[0].address);
    s2->nodes[0].address = strdup("10.0.0.22:1");
    do_register(r, s2, 0);
    l = do_get(r, "greeter");
    const cm_reg_service *v1 = find_version(l, "greeter", "v1");
    CHECK_EQ_INT(v1->nnodes, 2);
    CHECK_EQ_STR(v1->nodes[1].address, "10.0.0.22:1");

    /* Deregistering removes nodes by id; the version goes with its last node. */
    do_deregister(r, s1);
    l = do_get(r, "greeter");
    CHECK_EQ_INT(find_version(l, "greeter", "v1")->nnodes, 1);
    do_deregister(r, s1); /* not there any more: still fine */
    cm_reg_service *bare = cm_reg_service_new("greeter", "v1");
    CHECK(cm_reg_service_add_node(bare, "greeter-2", "", NULL) != NULL);
    do_deregister(r, bare);
    l = do_get(r, "greeter");
    CHECK_EQ_INT(l->n, 1);
    CHECK(find_version(l, "greeter", "v1") == NULL);
    do_deregister(r, s3);
    l = do_get(r, "greeter");
    CHECK_EQ_INT(l->n, 0);
    l = do_get(r, NULL);
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_STR(l->items[0]->name, "other");

    /* Another registry of the namespace sees the same store; another namespace does not. */
    cm_registry *same = new_reg("default");
    cm_registry *other = new_reg("elsewhere");
    l = do_get(same, "other");
    CHECK_EQ_INT(l->n, 1);
    l = do_get(other, "other");
    CHECK_EQ_INT(l->n, 0);
    close_reg(same);
    close_reg(other);
    do_deregister(r, o);
    close_reg(r);

    cm_reg_service_free(s1);
    cm_reg_service_free(s2);
    cm_reg_service_free(s3);
    cm_reg_service_free(o);
    cm_reg_service_free(bare);
}

static void
test_watch(void)
{
    cm_registry *r = new_reg(NULL);
    cm_registry *r2 = new_reg(NULL);
    evlog all = {0}, a = {0}, b = {0}, a2 = {0};
    watch(r, NULL, &all);
    watch(r, "a", &a);
    watch(r, "b", &b);
    watch(r2, "a", &a2);

    cm_reg_service *s = svc("a", "1", "a-1", "10.0.0.1:1");
    do_register(r, s, 0);
    CHECK(wait_until(&a2.n, 1, 2000));
    CHECK(wait_until(&all.n, 1, 2000));
    CHECK_EQ_INT(a.n, 1);
    CHECK_EQ_INT(a.creates, 1);
    CHECK_EQ_STR(a.last_name, "a");
    CHECK_EQ_INT(a.last_nnodes, 1);
    CHECK_EQ_INT(a2.creates, 1);
    CHECK_EQ_INT(b.n, 0);

    /* A refresh changes nothing: no event. */
    do_register(r, s, 0);
    wait_until(NULL, 0, 30);
    CHECK_EQ_INT(a.n, 1);
    CHECK_EQ_INT(a2.n, 1);

    /* New metadata on the node, then a second node: updates carrying every node. */
    CHECK(cm_md_set(s->nodes[0].metadata, "zone", "eu") == 0);
    do_register(r, s, 0);
    CHECK(wait_until(&a2.n, 2, 2000));
    CHECK_EQ_INT(a.updates, 1);
    cm_reg_service *s2 = svc("a", "1", "a-2", "10.0.0.2:1");
    do_register(r2, s2, 0);
    CHECK(wait_until(&a.n, 3, 2000));
    CHECK(wait_until(&a2.n, 3, 2000));
    CHECK_EQ_INT(a.updates, 2);
    CHECK_EQ_INT(a.last_nnodes, 2);

    /* Deregistering one node: a delete carrying that node only. */
    do_deregister(r, s);
    CHECK(wait_until(&a2.n, 4, 2000));
    CHECK(wait_until(&a.n, 4, 2000));
    CHECK_EQ_INT(a.deletes, 1);
    CHECK_EQ_INT(a.last_nnodes, 1);
    CHECK_EQ_STR(a.last_node, "a-1");
    CHECK_EQ_INT(a2.deletes, 1);

    cm_reg_service *sb = svc("b", "", "b-1", "10.0.0.3:1");
    do_register(r, sb, 0);
    CHECK(wait_until(&b.n, 1, 2000));
    CHECK_EQ_STR(b.last_name, "b");
    CHECK(wait_until(&all.n, 5, 2000));
    CHECK_EQ_INT(a.n, 4);
    CHECK_EQ_INT(a2.n, 4);
    CHECK_EQ_INT(all.creates, 2);
    CHECK_EQ_INT(all.updates, 2);
    CHECK_EQ_INT(all.deletes, 1);

    do_deregister(r, s2);
    do_deregister(r, sb);
    CHECK(wait_until(&all.n, 7, 2000));
    CHECK_EQ_INT(all.deletes, 3);
    cm_watcher_stop(a.self);
    close_reg(r2); /* stops a2's watcher */
    close_reg(r);
    cm_reg_service_free(s);
    cm_reg_service_free(s2);
    cm_reg_service_free(sb);
}

static void
test_watch_stops(void)
{
    cm_registry *r = new_reg(NULL);
    cm_reg_service *s = svc("w", "1", "w-1", "10.0.0.1:1");

    /* Stopped before the delivery: nothing. */
    evlog gone = {0}, keep = {0};
    cm_watcher *w = watch(r, "w", &gone);
    watch(r, "w", &keep);
    CHECK_EQ_INT(cm_registry_register_service(r, s, 0, NULL, NULL), 0);
    cm_watcher_stop(w);
    CHECK(wait_until(&keep.n, 1, 2000));
    wait_until(NULL, 0, 20);
    CHECK_EQ_INT(gone.n, 0);

    /* Started after the change but before its delivery: not that event, the next one. */
    evlog late = {0};
    do_deregister(r, s);
    CHECK_EQ_INT(cm_registry_register_service(r, s, 0, NULL, NULL), 0);
    watch(r, "w", &late);
    CHECK(wait_until(&keep.n, 3, 2000));
    wait_until(NULL, 0, 20);
    CHECK_EQ_INT(late.n, 0);
    do_deregister(r, s);
    CHECK(wait_until(&late.n, 1, 2000));
    CHECK_EQ_INT(late.deletes, 1);

    /* Stops itself at its first event; another stops the watcher it would reach next. */
    evlog selfstop = {0}, victim = {0}, killer = {0};
    watch(r, "w", &victim);
    watch(r, "w", &killer); /* newest first: killer runs before victim */
    killer.stop_other = victim.self;
    watch(r, "w", &selfstop);
    selfstop.stop_self_at = 1;
    do_register(r, s, 0);
    CHECK(wait_until(&keep.n, 5, 2000));
    CHECK_EQ_INT(selfstop.n, 1);
    CHECK_EQ_INT(killer.n, 1);
    CHECK_EQ_INT(victim.n, 0);
    do_deregister(r, s);
    CHECK(wait_until(&keep.n, 6, 2000));
    CHECK_EQ_INT(selfstop.n, 1);
    CHECK_EQ_INT(killer.n, 2);
    CHECK_EQ_INT(victim.n, 0);

    /* Closing the registry from a watch callback. */
    evlog closer = {0}, after = {0};
    cm_registry *r2 = new_reg(NULL);
    watch(r2, "w", &after); /* runs after closer: stopped by the close */
    watch(r2, "w", &closer);
    closer.close_reg = 1;
    int before = closed;
    do_register(r, s, 0);
    CHECK(wait_until(&closed, before + 1, 2000));
    CHECK_EQ_INT(closer.n, 1);
    CHECK_EQ_INT(after.n, 0);
    do_deregister(r, s);
    CHECK(wait_until(&keep.n, 8, 2000));
    CHECK_EQ_INT(closer.n, 1);

    close_reg(r);
    cm_reg_service_free(s);
}

static void
test_ttl(void)
{
    cm_registry *r = new_reg(NULL);
    evlog g = {0};
    watch(r, NULL, &g);

    /* No refresh: the node lapses and a delete arrives without anyone asking. */
    cm_reg_service *s = svc("ttl", "1", "ttl-1", "10.0.0.1:1");
    uint64_t t0 = cm_now_ms();
    do_register(r, s, 100);
    CHECK(wait_until(&g.deletes, 1, 2000));
    CHECK(cm_now_ms() - t0 >= 100);
    CHECK_EQ_STR(g.last_node, "ttl-1");
    cm_reg_service_list *l = do_get(r, "ttl");
    CHECK_EQ_INT(l->n, 0);

    /* Refreshed every 60 ms with a 200 ms TTL: still there after 600 ms. */
    t0 = cm_now_ms();
    while (cm_now_ms() - t0 < 600) {
        do_register(r, s, 200);
        wait_until(NULL, 0, 60);
    }
    l = do_get(r, "ttl");
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_INT(g.deletes, 1);
    CHECK_EQ_INT(g.creates, 2);
    CHECK(wait_until(&g.deletes, 2, 2000));

    /* Lapsed while the loop was busy: a read sees it gone before any timer runs. */
    do_register(r, s, 30);
    uv_sleep(60);
    CHECK_EQ_INT(cm_registry_get_service(r, "ttl", on_list, &done_count), 0);
    int before = done_count;
    CHECK(wait_until(&done_count, before + 1, 2000));
    CHECK_EQ_INT(last_list->n, 0);

    /* A TTL of 0 never lapses; a shorter TTL on another node lapses alone. */
    do_register(r, s, 0);
    cm_reg_service *s2 = svc("ttl", "1", "ttl-2", "10.0.0.2:1");
    do_register(r, s2, 50);
    int dels = g.deletes;
    CHECK(wait_until(&g.deletes, dels + 1, 2000));
    CHECK_EQ_STR(g.last_node, "ttl-2");
    l = do_get(r, "ttl");
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_INT(l->items[0]->nnodes, 1);
    CHECK_EQ_STR(l->items[0]->nodes[0].id, "ttl-1");
    do_deregister(r, s);
    close_reg(r);
    cm_reg_service_free(s);
    cm_reg_service_free(s2);
}

static int cancelled, finished_before_done;

static void
on_cancel_done(int status, void *user)
{
    (void)user;
    CHECK_EQ_INT(status, CM_ECANCELED);
    cancelled++;
    finished_before_done += closed == 0;
}

static void
on_cancel_list(int status, const cm_reg_service_list *l, void *user)
{
    (void)user;
    CHECK_EQ_INT(status, CM_ECANCELED);
    CHECK(l == NULL);
    cancelled++;
    finished_before_done += closed == 0;
}

static void
test_close_in_flight(void)
{
    cm_registry *r = new_reg(NULL);
    cm_registry *r2 = new_reg(NULL);
    evlog g = {0}, g2 = {0};
    watch(r, NULL, &g);
    watch(r2, NULL, &g2);
    cm_reg_service *s = svc("fly", "1", "fly-1", "10.0.0.1:1");
    closed = 0;
    CHECK_EQ_INT(cm_registry_register_service(r, s, 0, on_cancel_done, NULL), 0);
    CHECK_EQ_INT(cm_registry_get_service(r, "fly", on_cancel_list, NULL), 0);
    CHECK_EQ_INT(cm_registry_list_services(r, on_cancel_list, NULL), 0);
    CHECK_EQ_INT(cm_registry_deregister_service(r, s, on_cancel_done, NULL), 0);
    CHECK_EQ_INT(cm_registry_register_service(r, s, 1000, on_cancel_done, NULL), 0);
    cm_registry_close(r, on_closed, NULL);
    CHECK_EQ_INT(cancelled, 0);
    CHECK_EQ_INT(closed, 0);
    /* Closing: new requests are refused. */
    CHECK_EQ_INT(cm_registry_get_service(r, "fly", on_cancel_list, NULL), CM_ESTATE);
    cm_registry_close(r, on_closed, NULL); /* a second close is ignored */
    CHECK(wait_until(&closed, 1, 2000));
    CHECK_EQ_INT(cancelled, 5);
    CHECK_EQ_INT(finished_before_done, 5);
    CHECK_EQ_INT(g.n, 0);

    /* The other registry saw the changes; its watcher gets them. */
    CHECK(wait_until(&g2.n, 3, 2000));
    /* Events queued for a registry that closes are dropped. */
    cm_registry *r3 = new_reg(NULL);
    evlog g3 = {0};
    watch(r3, NULL, &g3);
    CHECK_EQ_INT(cm_registry_deregister_service(r2, s, NULL, NULL), 0);
    close_reg(r3);
    wait_until(NULL, 0, 20);
    CHECK_EQ_INT(g3.n, 0);
    close_reg(r2);
    cm_reg_service_free(s);
}

int
main(void)
{
    CHECK_EQ_INT(cm_loop_new(&L), 0);
    CHECK_EQ_INT(uv_timer_init(cm_loop_uv(L), &poll_timer), 0);
    RUN(test_new_errors);
    RUN(test_register_get_list);
    RUN(test_watch);
    RUN(test_watch_stops);
    RUN(test_ttl);
    RUN(test_close_in_flight);
    cm_reg_service_list_free(last_list);

    /* Closed with work queued and never run again: freeing the loop completes the close. */
    cm_registry *r = new_reg(NULL);
    evlog g = {0};
    watch(r, NULL, &g);
    cm_reg_service *s = svc("end", "1", "end-1", "10.0.0.1:1");
    closed = cancelled = 0;
    CHECK_EQ_INT(cm_registry_register_service(r, s, 0, on_cancel_done, NULL), 0);
    CHECK_EQ_INT(cm_registry_list_services(r, on_cancel_list, NULL), 0);
    cm_registry_close(r, on_closed, NULL);
    cm_reg_service_free(s);
    cm_loop_free(L);
    CHECK_EQ_INT(cancelled, 2);
    CHECK_EQ_INT(closed, 1);
    CHECK_EQ_INT(g.n, 0);
    TEST_DONE();
}
