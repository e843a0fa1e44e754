/* The selector's cache: resolve, single flight, stale-if-error, the authoritative empty answer,
 * watch events, reset, and free with resolves pending. */
#include "fixture.h"
#include "logcap.h"

#include <stdio.h>

static const char *const ADDRS[] = {"10.2.0.1:1", "10.2.0.2:1", "10.2.0.3:1"};

/* Non-zero when some of k picks of service return address. */
static int
pickable(cm_selector *s, const char *service, const char *address, int k)
{
    for (int i = 0; i < k; i++) {
        const char *a = NULL;
        if (cm_selector_pick(s, service, NULL, &a, NULL) == 0 && strcmp(a, address) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- capturing the log ---- */

static void
capture_start(void)
{
    logcap_start();
}

/* Stops capturing and returns how many captured lines equal line (NULL: none). */
static int
capture_end(const char *line)
{
    char *t = logcap_end();
    int n = line != NULL ? logcap_count(t, line) : 0;
    free(t);
    return n;
}

/* ---- tests ---- */

static void
test_resolve_single_flight(void)
{
    cm_registry *r = registry_new("flight");
    add_node(r, "sf", "1.0", "sf-1", ADDRS[0], NULL, NULL);
    cm_selector *s = selector_new(r, NULL);
    status_cb a = {0, 1}, b = {0, 1}, c = {0, 1};
    int before = lookups;
    CHECK_EQ_INT(cm_selector_resolve(s, "sf", on_status, &a), 0);
    CHECK_EQ_INT(cm_selector_resolve(s, "sf", on_status, &b), 0);
    /* A resolve without a callback joins (or starts) a lookup too. */
    CHECK_EQ_INT(cm_selector_resolve(s, "sf", NULL, NULL), 0);
    CHECK_EQ_INT(a.done + b.done, 0);
    CHECK_EQ_INT(lookups, before + 1);
    run_until(&b.done, 2000);
    CHECK_EQ_INT(a.done, 1);
    CHECK_EQ_INT(b.done, 1);
    CHECK_EQ_INT(a.status, 0);
    CHECK_EQ_INT(b.status, 0);
    const char *addr = NULL, *id = NULL;
    CHECK_EQ_INT(cm_selector_pick(s, "sf", NULL, &addr, &id), 0);
    CHECK_EQ_STR(addr, ADDRS[0]);
    CHECK_EQ_STR(id, "sf-1");
    /* Once answered, the next resolve is a new lookup. */
    CHECK_EQ_INT(cm_selector_resolve(s, "sf", on_status, &c), 0);
    CHECK_EQ_INT(lookups, before + 2);
    run_until(&c.done, 2000);
    CHECK_EQ_INT(c.status, 0);
    /* Lookups of different names do not share. */
    status_cb d = {0, 1}, e = {0, 1};
    CHECK_EQ_INT(cm_selector_resolve(s, "sf", on_status, &d), 0);
    CHECK_EQ_INT(cm_selector_resolve(s, "other", on_status, &e), 0);
    CHECK_EQ_INT(lookups, before + 4);
    run_until(&e.done, 2000);
    run_until(&d.done, 2000);
    CHECK_EQ_INT(d.status, 0);
    CHECK_EQ_INT(e.status, CM_ENOTFOUND);
    CHECK_EQ_INT(cm_selector_pick(s, "other", NULL, &addr, NULL), CM_ENOTFOUND);
    cm_selector_free(s);
    registry_close(r);
}

static void
test_ttl(void)
{
    cm_registry *r = registry_new("ttl");
    add_node(r, "t", "1.0", "t-1", ADDRS[0], NULL, NULL);
    cm_selector_opts o;
    cm_selector_opts_init(&o);
    o.cache_ttl_ms = 100;
    o.no_watch = 1;
    cm_selector *s = selector_new(r, &o);
    int watches_before = watches;
    CHECK_EQ_INT(resolve(s, "t"), 0);
    CHECK_EQ_INT(watches, watches_before);
    const char *a = NULL;
    CHECK_EQ_INT(cm_selector_pick(s, "t", NULL, &a, NULL), 0);
    /* Without a watch a new node shows only after a refresh. */
    add_node(r, "t", "1.0", "t-2", ADDRS[1], NULL, NULL);
    run_for(20);
    CHECK(!pickable(s, "t", ADDRS[1], 100));
    run_for(120);
    /* Past the TTL the entry still serves, and the pick refreshes it in the background (one
     * lookup, joined by later picks): a slow registry never holds a call up. */
    int before = lookups;
    CHECK_EQ_INT(cm_selector_pick(s, "t", NULL, &a, NULL), 0);
    CHECK_EQ_INT(lookups, before + 1);
    CHECK_EQ_INT(cm_selector_pick(s, "t", NULL, &a, NULL), 0);
    CHECK_EQ_INT(lookups, before + 1);
    run_for(20);
    CHECK(pickable(s, "t", ADDRS[1], 100));
    cm_selector_free(s);
    registry_close(r);
}

static void
test_stale_if_error(void)
{
    cm_registry *r = registry_new("stale");
    add_node(r, "st", "1.0", "st-1", ADDRS[0], NULL, NULL);
    add_node(r, "st", "1.0", "st-2", ADDRS[1], NULL, NULL);
    cm_selector_opts o;
    cm_selector_opts_init(&o);
    o.cache_ttl_ms = 100;
    cm_selector *s = selector_new(r, &o);
    CHECK_EQ_INT(resolve(s, "st"), 0);
    const char *a = NULL;

    /* The registry fails: an uncached service gets the error. */
    lookup_fail = CM_EREGISTRY;
    CHECK_EQ_INT(resolve(s, "uncached"), CM_EREGISTRY);
    CHECK_EQ_INT(cm_selector_pick(s, "uncached", NULL, &a, NULL), CM_ENOTFOUND);

    /* A cached one keeps serving past its TTL (the pick asks the registry in the background),
     * logged once. */
    run_for(120);
    CHECK_EQ_INT(cm_selector_pick(s, "st", NULL, &a, NULL), 0);
    capture_start();
    int first = resolve(s, "st");
    int second = resolve(s, "st");
    int n = capture_end("[selector] registry error for st: registry error; "
                        "serving 2 cached nodes");
    CHECK_EQ_INT(first, 0);
    CHECK_EQ_INT(second, 0);
    CHECK_EQ_INT(n, 1);
    CHECK(pickable(s, "st", ADDRS[0], 200));
    CHECK(pickable(s, "st", ADDRS[1], 200));

    /* Picks past the TTL serve the stale entry and ask the registry again in the background,
     * at most once per retry interval (here the TTL). */
    int before = lookups;
    run_for(120);
    CHECK_EQ_INT(cm_selector_pick(s, "st", NULL, &a, NULL), 0);
    CHECK_EQ_INT(cm_selector_pick(s, "st", NULL, &a, NULL), 0);
    CHECK_EQ_INT(lookups, before + 1);
    run_for(20);
    CHECK_EQ_INT(cm_selector_pick(s, "st", NULL, &a, NULL), 0);
    CHECK_EQ_INT(lookups, before + 1);

    /* A registry that refuses at once is handled the same way. */
    lookup_fail_sync = CM_ECLOSED;
    capture_start();
    first = resolve(s, "st");
    n = capture_end("[selector] registry error for st: connection closed; "
                    "serving 2 cached nodes");
    CHECK_EQ_INT(first, 0);
    CHECK_EQ_INT(n, 0); /* still the same failure: logged already */
    status_cb c = {0, 1};
    CHECK_EQ_INT(cm_selector_resolve(s, "uncached", on_status, &c), CM_ECLOSED);
    run_for(20);
    CHECK_EQ_INT(c.done, 0);
    lookup_fail_sync = 0;

    /* The registry recovers: the next background refresh clears the error state, after which an
     * expired entry is refreshed at its first pick again. A node added meanwhile shows up. */
    lookup_fail = 0;
    add_node(r, "st", "1.0", "st-3", ADDRS[2], NULL, NULL);
    run_for(120);
    before = lookups;
    CHECK_EQ_INT(cm_selector_pick(s, "st", NULL, &a, NULL), 0);
    CHECK_EQ_INT(lookups, before + 1);
    run_for(20);
    CHECK(pickable(s, "st", ADDRS[2], 300));
    run_for(120);
    CHECK_EQ_INT(cm_selector_pick(s, "st", NULL, &a, NULL), 0);
    CHECK_EQ_INT(lookups, before + 2);
    run_for(20);

    /* A later failure is logged again (once). */
    CHECK_EQ_INT(resolve(s, "st"), 0);
    lookup_fail = CM_ETIMEDOUT;
    capture_start();
    first = resolve(s, "st");
    n = capture_end("[selector] registry error for st: timed out; serving 3 cached nodes");
    CHECK_EQ_INT(first, 0);
    CHECK_EQ_INT(n, 1);
    lookup_fail = 0;
    cm_selector_free(s);
    registry_close(r);
}

static void
test_authoritative_empty(void)
{
    cm_registry *r = registry_new("empty");
    add_node(r, "em", "1.0", "em-1", ADDRS[0], NULL, NULL);
    cm_selector_opts o;
    cm_selector_opts_init(&o);
    o.no_watch = 1;
    cm_selector *s = selector_new(r, &o);
    CHECK_EQ_INT(resolve(s, "em"), 0);
    del_node(r, "em", "1.0", "em-1", ADDRS[0]);
    /* No watch: the cache still has the node until the registry says otherwise. */
    const char *a = NULL;
    CHECK_EQ_INT(cm_selector_pick(s, "em", NULL, &a, NULL), 0);
    CHECK_EQ_INT(resolve(s, "em"), CM_ENOTFOUND);
    CHECK_EQ_INT(cm_selector_pick(s, "em", NULL, &a, NULL), CM_ENOTFOUND);
    /* And it comes back with the service. */
    add_node(r, "em", "1.0", "em-2", ADDRS[1], NULL, NULL);
    CHECK_EQ_INT(resolve(s, "em"), 0);
    CHECK_EQ_INT(cm_selector_pick(s, "em", NULL, &a, NULL), 0);
    CHECK_EQ_STR(a, ADDRS[1]);
    cm_selector_free(s);
    registry_close(r);
}

static void
test_watch(void)
{
    cm_registry *r = registry_new("watch");
    add_node(r, "w", "1.0", "w-1", ADDRS[0], NULL, NULL);
    cm_selector_opts o;
    cm_selector_opts_init(&o);
    o.cache_ttl_ms = 3600 * 1000;
    cm_selector *s = selector_new(r, &o);
    int watches_before = watches;
    CHECK_EQ_INT(resolve(s, "w"), 0);
    CHECK_EQ_INT(resolve(s, "w"), 0);
    CHECK_EQ_INT(watches, watches_before + 1);
    int before = lookups;
    const char *a = NULL, *id = NULL;

    /* A new node becomes pickable without a lookup. */
    add_node(r, "w", "1.0", "w-2", ADDRS[1], NULL, NULL);
    run_for(20);
    CHECK(pickable(s, "w", ADDRS[1], 200));
    CHECK(pickable(s, "w", ADDRS[0], 200));
    /* A new version too, and filters see it. */
    add_node(r, "w", "2.0", "w-3", ADDRS[2], NULL, NULL);
    run_for(20);
    cm_select_filter v2 = {.version = "2.0"};
    CHECK_EQ_INT(cm_selector_pick(s, "w", &v2, &a, &id), 0);
    CHECK_EQ_STR(a, ADDRS[2]);
    CHECK_EQ_STR(id, "w-3");
    /* An update of a node (same id, new address) replaces it. */
    add_node(r, "w", "2.0", "w-3", "10.2.0.33:1", NULL, NULL);
    run_for(20);
    CHECK_EQ_INT(cm_selector_pick(s, "w", &v2, &a, &id), 0);
    CHECK_EQ_STR(a, "10.2.0.33:1");
    /* A deleted node goes at once; the version left without nodes goes with it. */
    del_node(r, "w", "1.0", "w-1", ADDRS[0]);
    run_for(20);
    CHECK(!pickable(s, "w", ADDRS[0], 300));
    CHECK(pickable(s, "w", ADDRS[1], 300));
    del_node(r, "w", "2.0", "w-3", "10.2.0.33:1");
    run_for(20);
    CHECK_EQ_INT(cm_selector_pick(s, "w", &v2, &a, NULL), CM_ENONODE);
    CHECK_EQ_INT(lookups, before);
    /* The last node deleted: the entry is gone. */
    del_node(r, "w", "1.0", "w-2", ADDRS[1]);
    run_for(20);
    CHECK_EQ_INT(cm_selector_pick(s, "w", NULL, &a, NULL), CM_ENOTFOUND);
    /* Events for a service not cached are ignored: it comes back only by a resolve. */
    add_node(r, "w", "1.0", "w-4", ADDRS[0], NULL, NULL);
    run_for(20);
    CHECK_EQ_INT(cm_selector_pick(s, "w", NULL, &a, NULL), CM_ENOTFOUND);
    CHECK_EQ_INT(resolve(s, "w"), 0);
    CHECK_EQ_INT(cm_selector_pick(s, "w", NULL, &a, NULL), 0);
    CHECK_EQ_STR(a, ADDRS[0]);
    /* The watch still runs: it was started once, lazily, for this service only. */
    add_node(r, "w", "1.0", "w-5", ADDRS[1], NULL, NULL);
    run_for(20);
    CHECK(pickable(s, "w", ADDRS[1], 200));
    CHECK_EQ_INT(watches, watches_before + 1);
    /* Events of other services do not touch this one. */
    add_node(r, "w2", "1.0", "w2-1", ADDRS[2], NULL, NULL);
    run_for(20);
    CHECK(!pickable(s, "w", ADDRS[2], 200));
    cm_selector_free(s);
    registry_close(r);
}

static void
test_reset(void)
{
    cm_registry *r = registry_new("reset");
    add_node(r, "r1", "1.0", "r1-1", ADDRS[0], NULL, NULL);
    add_node(r, "r2", "1.0", "r2-1", ADDRS[1], NULL, NULL);
    cm_selector *s = selector_new(r, NULL);
    CHECK_EQ_INT(resolve(s, "r1"), 0);
    CHECK_EQ_INT(resolve(s, "r2"), 0);
    const char *a = NULL;
    cm_selector_reset(s, "r1");
    CHECK_EQ_INT(cm_selector_pick(s, "r1", NULL, &a, NULL), CM_ENOTFOUND);
    CHECK_EQ_INT(cm_selector_pick(s, "r2", NULL, &a, NULL), 0);
    /* A reset entry comes back with a resolve, with its watch. */
    CHECK_EQ_INT(resolve(s, "r1"), 0);
    add_node(r, "r1", "1.0", "r1-2", ADDRS[2], NULL, NULL);
    run_for(20);
    CHECK(pickable(s, "r1", ADDRS[2], 200));
    cm_selector_reset(s, NULL);
    CHECK_EQ_INT(cm_selector_pick(s, "r1", NULL, &a, NULL), CM_ENOTFOUND);
    CHECK_EQ_INT(cm_selector_pick(s, "r2", NULL, &a, NULL), CM_ENOTFOUND);
    /* A reset during a lookup: the answer still fills the cache. */
    status_cb c = {0, 1};
    CHECK_EQ_INT(cm_selector_resolve(s, "r2", on_status, &c), 0);
    cm_selector_reset(s, NULL);
    run_until(&c.done, 2000);
    CHECK_EQ_INT(c.status, 0);
    CHECK_EQ_INT(cm_selector_pick(s, "r2", NULL, &a, NULL), 0);
    cm_selector_free(s);
    registry_close(r);
}

/* The cache's event handling on its own, for backends whose events carry only the nodes that
 * changed (mDNS, Consul) rather than the whole version as the memory registry's do. */
static cm_reg_service *
svc_nodes(const char *version, const char *ids, const char *endpoint)
{
    cm_reg_service *svc = cm_reg_service_new("ev", version);
    CHECK(svc != NULL);
    for (const char *p = ids; *p != '\0'; p++) {
        char id[8], addr[32];
        snprintf(id, sizeof(id), "ev-%c", *p);
        snprintf(addr, sizeof(addr), "10.3.0.%d:1", *p);
        CHECK(cm_reg_service_add_node(svc, id, addr, NULL) != NULL);
    }
    if (endpoint != NULL) {
        CHECK(cm_reg_service_add_endpoint(svc, endpoint, NULL, NULL, NULL) != NULL);
    }
    return svc;
}

/* The node ids of version in c as a string of their last letters ("" when absent). */
static const char *
ids_of(const cm__scache *c, const char *version)
{
    static char out[32];
    out[0] = '\0';
    for (size_t i = 0; i < c->nsvcs; i++) {
        if (strcmp(c->svcs[i]->version, version) != 0) {
            continue;
        }
        CHECK_EQ_INT(c->ranges[i].n, c->svcs[i]->nnodes);
        for (size_t j = 0; j < c->ranges[i].n; j++) {
            const cm_node *n = c->nodes[c->ranges[i].first + j].node;
            CHECK(n == &c->svcs[i]->nodes[j]);
            size_t len = strlen(out);
            out[len] = n->id[strlen(n->id) - 1];
            out[len + 1] = '\0';
        }
    }
    return out;
}

static void
apply(cm__scache *c, cm_watch_action action, const char *version, const char *ids, int want)
{
    cm_reg_service *svc = svc_nodes(version, ids, NULL);
    CHECK_EQ_INT(cm__scache_apply(c, action, svc), want);
    cm_reg_service_free(svc);
}

static void
test_cache_events(void)
{
    cm__scache c;
    memset(&c, 0, sizeof(c));
    cm_reg_service *v1 = svc_nodes("1.0", "ab", "Old.Endpoint");
    cm_reg_service *items[] = {v1};
    cm_reg_service_list l = {items, 1};
    CHECK_EQ_INT(cm__scache_set(&c, &l), 0);
    cm_reg_service_free(v1);
    CHECK_EQ_STR(ids_of(&c, "1.0"), "ab");

    /* Partial create/update events merge by id; the event's endpoints win. Known nodes keep
     * their places and new ones come after: a node announced again (mDNS announces three
     * times) must not move, or round robin skews (found by test/interop: 30 calls over three
     * go-micro instances went 11/10/9). */
    cm_reg_service *ev = svc_nodes("1.0", "c", "New.Endpoint");
    CHECK_EQ_INT(cm__scache_apply(&c, CM_WATCH_UPDATE, ev), 0);
    cm_reg_service_free(ev);
    CHECK_EQ_STR(ids_of(&c, "1.0"), "abc");
    CHECK_EQ_INT(c.svcs[0]->nendpoints, 1);
    CHECK_EQ_STR(c.svcs[0]->endpoints[0].name, "New.Endpoint");
    ev = svc_nodes("1.0", "c", "Newer.Endpoint");
    CHECK_EQ_INT(cm__scache_apply(&c, CM_WATCH_CREATE, ev), 0);
    cm_reg_service_free(ev);
    CHECK_EQ_STR(ids_of(&c, "1.0"), "abc");
    ev = svc_nodes("1.0", "ecb", "Newer.Endpoint");
    CHECK_EQ_INT(cm__scache_apply(&c, CM_WATCH_UPDATE, ev), 0);
    cm_reg_service_free(ev);
    CHECK_EQ_STR(ids_of(&c, "1.0"), "abce");
    apply(&c, CM_WATCH_DELETE, "1.0", "e", 0);
    ev = svc_nodes("1.0", "a", "Newer.Endpoint");
    CHECK_EQ_INT(cm__scache_apply(&c, CM_WATCH_CREATE, ev), 0);
    cm_reg_service_free(ev);
    CHECK_EQ_STR(ids_of(&c, "1.0"), "abc");
    CHECK_EQ_STR(c.svcs[0]->endpoints[0].name, "Newer.Endpoint");
    apply(&c, CM_WATCH_CREATE, "2.0", "d", 0);
    CHECK_EQ_INT(c.nsvcs, 2);
    CHECK_EQ_INT(c.nnodes, 4);
    CHECK_EQ_STR(ids_of(&c, "2.0"), "d");

    /* Node state follows the address through events. */
    size_t b = 0;
    while (strcmp(c.nodes[b].node->id, "ev-b") != 0) {
        b++;
    }
    c.nodes[b].until = 12345;
    c.nodes[b].level = 2;
    c.nejected = 1;
    apply(&c, CM_WATCH_DELETE, "1.0", "c", 0);
    CHECK_EQ_STR(ids_of(&c, "1.0"), "ab");
    CHECK_EQ_INT(c.nejected, 1);
    CHECK_EQ_INT(c.nodes[1].until, 12345);
    CHECK_EQ_INT(c.nodes[1].level, 2);
    CHECK_EQ_INT(c.nodes[0].until, 0);
    /* A delete keeps the version's endpoints. */
    CHECK_EQ_INT(c.svcs[0]->nendpoints, 1);
    CHECK_EQ_STR(c.svcs[0]->endpoints[0].name, "Newer.Endpoint");

    /* Deletes of unknown nodes or versions change nothing. */
    apply(&c, CM_WATCH_DELETE, "1.0", "z", 0);
    apply(&c, CM_WATCH_DELETE, "3.0", "a", 0);
    CHECK_EQ_INT(c.nnodes, 3);
    /* The last node of a version takes the version; of the last version, the service. */
    apply(&c, CM_WATCH_DELETE, "2.0", "d", 0);
    CHECK_EQ_INT(c.nsvcs, 1);
    CHECK_EQ_STR(ids_of(&c, "2.0"), "");
    apply(&c, CM_WATCH_DELETE, "1.0", "ab", 1);
    /* A delete without nodes takes the whole service. */
    apply(&c, CM_WATCH_DELETE, "1.0", "", 1);
    apply(&c, CM_WATCH_DELETE, "9.9", "", 1);
    CHECK_EQ_INT(c.nnodes, 2);
    cm__scache_free(&c);
    CHECK(c.svcs == NULL && c.nnodes == 0);
}

typedef struct freeing {
    cm_selector *s;
    status_cb st;
} freeing;

static void
free_in_callback(int status, void *user)
{
    freeing *f = user;
    f->st.done++;
    f->st.status = status;
    cm_selector_free(f->s);
}

static void
test_free_pending(void)
{
    cm_registry *r = registry_new("free");
    add_node(r, "fp", "1.0", "fp-1", ADDRS[0], NULL, NULL);
    cm_selector *s = selector_new(r, NULL);
    CHECK_EQ_INT(resolve(s, "fp"), 0);
    status_cb a = {0, 1}, b = {0, 1};
    CHECK_EQ_INT(cm_selector_resolve(s, "fp", on_status, &a), 0);
    CHECK_EQ_INT(cm_selector_resolve(s, "nope", on_status, &b), 0);
    cm_selector_free(s);
    /* Cancelled, but not inside free. */
    CHECK_EQ_INT(a.done + b.done, 0);
    run_until(&b.done, 2000);
    run_until(&a.done, 2000);
    CHECK_EQ_INT(a.status, CM_ECANCELED);
    CHECK_EQ_INT(b.status, CM_ECANCELED);
    /* The registry's answers still arrive later and must not touch the freed selector. */
    run_for(20);
    CHECK_EQ_INT(a.done, 1);
    CHECK_EQ_INT(b.done, 1);

    /* Freed from inside its own resolve callback, with a second waiter on the same lookup. */
    s = selector_new(r, NULL);
    freeing f = {s, {0, 1}};
    status_cb c = {0, 1};
    CHECK_EQ_INT(cm_selector_resolve(s, "fp", free_in_callback, &f), 0);
    CHECK_EQ_INT(cm_selector_resolve(s, "fp", on_status, &c), 0);
    run_until(&c.done, 2000);
    CHECK_EQ_INT(f.st.status, 0);
    CHECK_EQ_INT(c.status, 0);

    /* Freed with the watch running, while the registry keeps going. */
    s = selector_new(r, NULL);
    CHECK_EQ_INT(resolve(s, "fp"), 0);
    cm_selector_free(s);
    add_node(r, "fp", "1.0", "fp-2", ADDRS[1], NULL, NULL);
    run_for(20);

    /* The registry closed under a lookup answers it cancelled: an uncached service gets that.
     * (No watch: the registry must outlive a selector that watches.) */
    cm_selector_opts o;
    cm_selector_opts_init(&o);
    o.no_watch = 1;
    s = selector_new(r, &o);
    status_cb d = {0, 1};
    CHECK_EQ_INT(cm_selector_resolve(s, "fp", on_status, &d), 0);
    registry_close(r);
    run_until(&d.done, 2000);
    CHECK(d.status == CM_ECANCELED || d.status == 0);
    cm_selector_free(s);
}

int
main(void)
{
    CHECK_EQ_INT(cm_loop_new(&L), 0);
    RUN(test_cache_events);
    RUN(test_resolve_single_flight);
    RUN(test_ttl);
    RUN(test_stale_if_error);
    RUN(test_authoritative_empty);
    RUN(test_watch);
    RUN(test_reset);
    RUN(test_free_pending);
    cm_loop_free(L);
    TEST_DONE();
}
