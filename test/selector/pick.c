/* Selector picks: strategies, filters, ejection with back-off, the panic threshold, and no
 * allocation on the hot path. */
#include "fixture.h"

static const char *const ADDRS[] = {"10.0.0.1:1001", "10.0.0.2:1002", "10.0.0.3:1003"};

/* A registry holding service "pick" with three nodes of version 1.0, and a resolved selector. */
static cm_registry *
three_nodes(const char *ns)
{
    cm_registry *r = registry_new(ns);
    add_node(r, "pick", "1.0", "pick-a", ADDRS[0], NULL, NULL);
    add_node(r, "pick", "1.0", "pick-b", ADDRS[1], NULL, NULL);
    add_node(r, "pick", "1.0", "pick-c", ADDRS[2], NULL, NULL);
    return r;
}

static void
test_random_spread(void)
{
    cm_registry *r = three_nodes("spread");
    cm_selector *s = selector_new(r, NULL);
    const char *a = NULL, *id = NULL;
    CHECK_EQ_INT(cm_selector_pick(s, "pick", NULL, &a, &id), CM_ENOTFOUND);
    CHECK_EQ_INT(resolve(s, "pick"), 0);
    int counts[3];
    pick_counts(s, "pick", NULL, ADDRS, 3, 3000, counts);
    double chi2 = 0;
    for (int i = 0; i < 3; i++) {
        fprintf(stderr, "   random: %s %d\n", ADDRS[i], counts[i]);
        CHECK(counts[i] >= 850 && counts[i] <= 1150);
        chi2 += (counts[i] - 1000.0) * (counts[i] - 1000.0) / 1000.0;
    }
    /* Two degrees of freedom: 13.8 is the 0.1% tail. */
    CHECK(chi2 < 13.8);
    /* The node id belongs to the address. */
    CHECK_EQ_INT(cm_selector_pick(s, "pick", NULL, &a, &id), 0);
    const char *ids[] = {"pick-a", "pick-b", "pick-c"};
    CHECK_EQ_STR(id, ids[index_of(a, ADDRS, 3)]);
    cm_selector_free(s);
    registry_close(r);
}

static void
test_round_robin(void)
{
    cm_registry *r = three_nodes("rr");
    cm_selector_opts o;
    cm_selector_opts_init(&o);
    o.strategy = CM_STRATEGY_ROUND_ROBIN;
    cm_selector *s = selector_new(r, &o);
    CHECK_EQ_INT(resolve(s, "pick"), 0);
    int counts[3];
    pick_counts(s, "pick", NULL, ADDRS, 3, 3000, counts);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(counts[i], 1000);
    }
    /* Every pick is its own call; the rotation goes on across them, and across a refresh. */
    const char *a = NULL;
    int prev = -1;
    for (int i = 0; i < 7; i++) {
        CHECK_EQ_INT(cm_selector_pick(s, "pick", NULL, &a, NULL), 0);
        int k = index_of(a, ADDRS, 3);
        if (prev >= 0) {
            CHECK_EQ_INT(k, (prev + 1) % 3);
        }
        prev = k;
        if (i == 3) {
            CHECK_EQ_INT(resolve(s, "pick"), 0);
        }
    }
    cm_selector_free(s);

    /* The start is random per selector: different seeds start at different nodes. */
    int seen[3] = {0, 0, 0};
    for (uint64_t seed = 1; seed <= 30; seed++) {
        s = selector_new(r, &o);
        cm__selector_seed(s, seed);
        CHECK_EQ_INT(resolve(s, "pick"), 0);
        CHECK_EQ_INT(cm_selector_pick(s, "pick", NULL, &a, NULL), 0);
        seen[index_of(a, ADDRS, 3)] = 1;
        cm_selector_free(s);
    }
    CHECK_EQ_INT(seen[0] + seen[1] + seen[2], 3);
    registry_close(r);
}

static void
test_ejection(void)
{
    cm_registry *r = three_nodes("eject");
    cm_selector_opts o;
    cm_selector_opts_init(&o);
    o.eject_backoff_ms = 300; /* long enough for a loaded machine */
    cm_selector *s = selector_new(r, &o);
    CHECK_EQ_INT(resolve(s, "pick"), 0);
    int counts[3];

    /* One failure (eject_failures 1) ejects for 300 ms. */
    cm_selector_mark(s, "pick", ADDRS[0], UV_ECONNREFUSED);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK_EQ_INT(counts[0], 0);
    CHECK(counts[1] > 200 && counts[2] > 200);
    /* Failures of calls under way while ejected do not lengthen the back-off. */
    cm_selector_mark(s, "pick", ADDRS[0], UV_ECONNRESET);
    run_for(450);
    /* Half-open: the first pick is the probe, and no other call goes there until its outcome
     * is known. */
    const char *a = NULL;
    CHECK_EQ_INT(cm_selector_pick(s, "pick", NULL, &a, NULL), 0);
    CHECK_EQ_STR(a, ADDRS[0]);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK_EQ_INT(counts[0], 0);

    /* The probe fails: open again, for twice as long: still out after 250 ms, probed by 750. */
    cm_selector_mark(s, "pick", ADDRS[0], UV_ECONNREFUSED);
    run_for(250);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK_EQ_INT(counts[0], 0);
    run_for(500);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK_EQ_INT(counts[0], 1); /* the probe */
    /* The probe succeeds: the breaker closes and the node takes its share again. */
    cm_selector_mark(s, "pick", ADDRS[0], 0);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK(counts[0] > 100);

    /* A success reset the level: the next ejection lasts 300 ms again (not 1200). */
    cm_selector_mark(s, "pick", ADDRS[0], UV_ECONNREFUSED);
    pick_counts(s, "pick", NULL, ADDRS, 3, 300, counts);
    CHECK_EQ_INT(counts[0], 0);
    run_for(450);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK_EQ_INT(counts[0], 1);
    cm_selector_mark(s, "pick", ADDRS[0], 0);

    /* A success while ejected brings the node back at once. */
    cm_selector_mark(s, "pick", ADDRS[1], UV_ECONNREFUSED);
    pick_counts(s, "pick", NULL, ADDRS, 3, 300, counts);
    CHECK_EQ_INT(counts[1], 0);
    cm_selector_mark(s, "pick", ADDRS[1], 0);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK(counts[1] > 100);

    /* Marks for unknown services or addresses change nothing. */
    cm_selector_mark(s, "nope", ADDRS[2], UV_ECONNREFUSED);
    cm_selector_mark(s, "pick", "10.9.9.9:1", UV_ECONNREFUSED);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK(counts[0] > 100 && counts[1] > 100 && counts[2] > 100);
    cm_selector_free(s);

    /* eject_failures 3: only the third consecutive failure ejects; a success resets the count. */
    o.eject_failures = 3;
    o.eject_backoff_ms = 10000;
    s = selector_new(r, &o);
    CHECK_EQ_INT(resolve(s, "pick"), 0);
    cm_selector_mark(s, "pick", ADDRS[2], UV_ECONNREFUSED);
    cm_selector_mark(s, "pick", ADDRS[2], UV_ECONNREFUSED);
    cm_selector_mark(s, "pick", ADDRS[2], 0);
    cm_selector_mark(s, "pick", ADDRS[2], UV_ECONNREFUSED);
    cm_selector_mark(s, "pick", ADDRS[2], UV_ECONNREFUSED);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK(counts[2] > 100);
    cm_selector_mark(s, "pick", ADDRS[2], UV_ECONNREFUSED);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK_EQ_INT(counts[2], 0);
    /* Ejection state survives a refresh when the address persists. */
    CHECK_EQ_INT(resolve(s, "pick"), 0);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK_EQ_INT(counts[2], 0);
    cm_selector_free(s);

    /* The error rate: 30% of failures over 10 calls ejects a node whose failures are never
     * consecutive enough for eject_failures. */
    o.eject_failures = 5;
    o.eject_error_pct = 30;
    o.eject_backoff_ms = 10000;
    s = selector_new(r, &o);
    CHECK_EQ_INT(resolve(s, "pick"), 0);
    for (int i = 0; i < 9; i++) {
        cm_selector_mark(s, "pick", ADDRS[1], i % 3 == 0 ? UV_ECONNRESET : 0);
    }
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK(counts[1] > 100); /* 3 of 9, under the 10-call minimum */
    cm_selector_mark(s, "pick", ADDRS[1], 0);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK(counts[1] > 100); /* 3 of 10 is 30%, but a success never ejects */
    cm_selector_mark(s, "pick", ADDRS[1], UV_ECONNRESET);
    pick_counts(s, "pick", NULL, ADDRS, 3, 600, counts);
    CHECK_EQ_INT(counts[1], 0); /* 4 of 11: 36% */
    cm_selector_free(s);
    registry_close(r);
}

static void
test_panic_threshold(void)
{
    cm_registry *r = three_nodes("panic");
    add_node(r, "pick", "2.0", "pick-d", "10.0.0.4:1004", NULL, NULL);
    cm_selector_opts o;
    cm_selector_opts_init(&o);
    o.eject_backoff_ms = 10000;
    cm_selector *s = selector_new(r, &o);
    CHECK_EQ_INT(resolve(s, "pick"), 0);
    const char *const all[] = {ADDRS[0], ADDRS[1], ADDRS[2], "10.0.0.4:1004"};
    int counts[4];

    /* Every node of version 1.0 ejected: the version filter still gets its own nodes. */
    cm_select_filter v1 = {.version = "1.0"};
    for (int i = 0; i < 3; i++) {
        cm_selector_mark(s, "pick", ADDRS[i], UV_ECONNREFUSED);
    }
    pick_counts(s, "pick", &v1, all, 4, 900, counts);
    CHECK_EQ_INT(counts[3], 0);
    CHECK(counts[0] > 200 && counts[1] > 200 && counts[2] > 200);
    /* Without a filter the healthy node takes everything. */
    pick_counts(s, "pick", NULL, all, 4, 300, counts);
    CHECK_EQ_INT(counts[3], 300);
    /* All four ejected: picks spread over all of them again. */
    cm_selector_mark(s, "pick", all[3], UV_ECONNREFUSED);
    pick_counts(s, "pick", NULL, all, 4, 1200, counts);
    for (int i = 0; i < 4; i++) {
        CHECK(counts[i] > 200);
    }
    /* One comes back: it takes everything. */
    cm_selector_mark(s, "pick", ADDRS[1], 0);
    pick_counts(s, "pick", NULL, all, 4, 300, counts);
    CHECK_EQ_INT(counts[1], 300);
    cm_selector_free(s);
    registry_close(r);
}

static void
test_filters(void)
{
    cm_registry *r = registry_new("filters");
    add_node(r, "f", "1.0", "f-a1", "10.1.0.1:1", "zone=us", "Greeter.Hello");
    add_node(r, "f", "1.0", "f-a2", "10.1.0.2:1", "zone=eu", "Greeter.Hello");
    add_node(r, "f", "2.0", "f-b1", "10.1.0.3:1", "zone=eu", "Greeter.Bye");
    const char *const addrs[] = {"10.1.0.1:1", "10.1.0.2:1", "10.1.0.3:1"};
    cm_selector *s = selector_new(r, NULL);
    CHECK_EQ_INT(resolve(s, "f"), 0);
    int counts[3];
    const char *a = NULL;

    /* No filter: every version. An empty filter is the same. */
    cm_select_filter none = {0};
    pick_counts(s, "f", &none, addrs, 3, 900, counts);
    CHECK(counts[0] > 200 && counts[1] > 200 && counts[2] > 200);

    cm_select_filter f = {.version = "1.0"};
    pick_counts(s, "f", &f, addrs, 3, 600, counts);
    CHECK(counts[0] > 200 && counts[1] > 200 && counts[2] == 0);
    f.version = "2.0";
    pick_counts(s, "f", &f, addrs, 3, 100, counts);
    CHECK_EQ_INT(counts[2], 100);
    f.version = "3.0";
    CHECK_EQ_INT(cm_selector_pick(s, "f", &f, &a, NULL), CM_ENONODE);

    cm_select_filter e = {.endpoint = "Greeter.Bye"};
    pick_counts(s, "f", &e, addrs, 3, 100, counts);
    CHECK_EQ_INT(counts[2], 100);
    e.endpoint = "Greeter.Hello";
    pick_counts(s, "f", &e, addrs, 3, 600, counts);
    CHECK(counts[0] > 200 && counts[1] > 200 && counts[2] == 0);
    e.endpoint = "Greeter.Nope";
    CHECK_EQ_INT(cm_selector_pick(s, "f", &e, &a, NULL), CM_ENONODE);

    cm_md *labels = cm_md_new();
    CHECK(labels != NULL);
    CHECK_EQ_INT(cm_md_set(labels, "zone", "eu"), 0);
    cm_select_filter l = {.labels = labels};
    pick_counts(s, "f", &l, addrs, 3, 600, counts);
    CHECK(counts[0] == 0 && counts[1] > 200 && counts[2] > 200);
    /* Filters combine: version 1.0 in zone eu is one node. */
    l.version = "1.0";
    pick_counts(s, "f", &l, addrs, 3, 100, counts);
    CHECK_EQ_INT(counts[1], 100);
    /* Every label pair must match. */
    l.version = NULL;
    CHECK_EQ_INT(cm_md_set(labels, "rack", "7"), 0);
    CHECK_EQ_INT(cm_selector_pick(s, "f", &l, &a, NULL), CM_ENONODE);
    CHECK_EQ_INT(cm_md_del(labels, "rack"), 0);
    CHECK_EQ_INT(cm_md_set(labels, "zone", "ap"), 0);
    CHECK_EQ_INT(cm_selector_pick(s, "f", &l, &a, NULL), CM_ENONODE);
    cm_md_free(labels);

    /* Round robin over a filtered set is exact too. */
    cm_selector_free(s);
    cm_selector_opts o;
    cm_selector_opts_init(&o);
    o.strategy = CM_STRATEGY_ROUND_ROBIN;
    s = selector_new(r, &o);
    CHECK_EQ_INT(resolve(s, "f"), 0);
    f.version = "1.0";
    pick_counts(s, "f", &f, addrs, 3, 1000, counts);
    CHECK(counts[0] == 500 && counts[1] == 500 && counts[2] == 0);
    cm_selector_free(s);
    registry_close(r);
}

static void
test_no_allocation(void)
{
    /* The counter works: the check below could fail. */
    long before = atomic_load(&allocs);
    /* Through a volatile pointer, so an optimiser cannot drop the pair. */
    void *(*volatile alloc_fn)(size_t) = malloc;
    void *p = alloc_fn(16);
    CHECK(atomic_load(&allocs) == before + 1);
    free(p);

    cm_registry *r = three_nodes("alloc");
    add_node(r, "pick", "2.0", "pick-d", "10.0.0.4:1004", "zone=eu", "Greeter.Hello");
    for (int strategy = 0; strategy < 2; strategy++) {
        cm_selector_opts o;
        cm_selector_opts_init(&o);
        o.strategy = (cm_strategy)strategy;
        cm_selector *s = selector_new(r, &o);
        CHECK_EQ_INT(resolve(s, "pick"), 0);
        cm_selector_mark(s, "pick", ADDRS[1], UV_ECONNREFUSED);
        cm_md *labels = cm_md_new();
        CHECK_EQ_INT(cm_md_set(labels, "zone", "eu"), 0);
        cm_select_filter fs[4] = {
            {.version = NULL},
            {.version = "1.0"},
            {.endpoint = "Greeter.Hello"},
            {.labels = labels},
        };
        const char *a = NULL, *id = NULL;
        int fails = 0;
        before = atomic_load(&allocs);
        for (int i = 0; i < 10000; i++) {
            fails += cm_selector_pick(s, "pick", i % 5 == 4 ? NULL : &fs[i % 4], &a, &id) != 0;
        }
        long used = atomic_load(&allocs) - before;
        CHECK_EQ_INT(fails, 0);
        CHECK_EQ_INT(used, 0);
        cm_md_free(labels);
        cm_selector_free(s);
    }
    registry_close(r);
}

static void
test_arguments(void)
{
    cm_registry *r = registry_new("args");
    cm_selector_opts o;
    cm_selector_opts_init(&o);
    CHECK_EQ_INT(o.strategy, CM_STRATEGY_RANDOM);
    CHECK_EQ_INT(o.cache_ttl_ms, 60000);
    CHECK_EQ_INT(o.eject_failures, 1);
    CHECK_EQ_INT(o.eject_backoff_ms, 1000);
    CHECK_EQ_INT(o.no_watch, 0);
    cm_selector *s = NULL;
    o.strategy = (cm_strategy)7;
    CHECK_EQ_INT(cm_selector_new(L, r, &o, &s), CM_EINVAL);
    CHECK_EQ_INT(cm_selector_new(NULL, r, NULL, &s), CM_EINVAL);
    CHECK_EQ_INT(cm_selector_new(L, NULL, NULL, &s), CM_EINVAL);
    CHECK(s == NULL);
    s = selector_new(r, NULL);
    const char *a = NULL;
    CHECK_EQ_INT(cm_selector_pick(s, NULL, NULL, &a, NULL), CM_EINVAL);
    CHECK_EQ_INT(cm_selector_pick(s, "x", NULL, NULL, NULL), CM_EINVAL);
    CHECK_EQ_INT(cm_selector_resolve(s, NULL, on_status, NULL), CM_EINVAL);
    CHECK_EQ_INT(cm_selector_resolve(s, "", on_status, NULL), CM_EINVAL);
    cm_selector_mark(s, NULL, "x", -1);
    cm_selector_mark(NULL, "x", "x", -1);
    cm_selector_reset(NULL, NULL);
    cm_selector_free(NULL);
    cm_selector_free(s);
    registry_close(r);
}

int
main(void)
{
    CHECK_EQ_INT(cm_loop_new(&L), 0);
    RUN(test_random_spread);
    RUN(test_round_robin);
    RUN(test_ejection);
    RUN(test_panic_threshold);
    RUN(test_filters);
    RUN(test_no_allocation);
    RUN(test_arguments);
    cm_loop_free(L);
    TEST_DONE();
}
