/* Helpers of the selector tests: one loop turned on the main thread, the memory registry, and
 * link-time wrappers (-Wl,--wrap) that count allocations and registry lookups and make lookups
 * fail on demand. The wrappers see every call made from the test and the static library. */
#ifndef CM_TEST_SELECTOR_FIXTURE_H
#define CM_TEST_SELECTOR_FIXTURE_H

#include "selector_int.h"
#include "test.h"

#include <stdatomic.h>
#include <unistd.h>

#define FIXTURE static __attribute__((unused))

static cm_loop *L;

/* ---- wrapped functions ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
int __real_cm_registry_get_service(cm_registry *r, const char *name, cm_registry_list_cb cb,
                                   void *user);
int __real_cm_registry_watch(cm_registry *r, const char *name, cm_watch_cb cb, void *user,
                             cm_watcher **out);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
int __wrap_cm_registry_get_service(cm_registry *r, const char *name, cm_registry_list_cb cb,
                                   void *user);
int __wrap_cm_registry_watch(cm_registry *r, const char *name, cm_watch_cb cb, void *user,
                             cm_watcher **out);

static atomic_long allocs;   /* allocation calls so far */
static int lookups;          /* cm_registry_get_service calls so far */
static int lookup_fail;      /* < 0: lookups answer this error (on a later loop turn) */
static int lookup_fail_sync; /* < 0: lookups return this error at once */
static int watches;          /* cm_registry_watch calls so far */

void *
__wrap_malloc(size_t n)
{
    atomic_fetch_add(&allocs, 1);
    return __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t size)
{
    atomic_fetch_add(&allocs, 1);
    return __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t n)
{
    atomic_fetch_add(&allocs, 1);
    return __real_realloc(p, n);
}

char *
__wrap_strdup(const char *s)
{
    atomic_fetch_add(&allocs, 1);
    return __real_strdup(s);
}

typedef struct failed_lookup {
    cm_registry_list_cb cb;
    void *user;
    int status;
} failed_lookup;

static void
answer_failed(void *arg)
{
    failed_lookup *f = arg;
    f->cb(f->status, NULL, f->user);
    free(f);
}

int
__wrap_cm_registry_get_service(cm_registry *r, const char *name, cm_registry_list_cb cb, void *user)
{
    lookups++;
    if (lookup_fail_sync < 0) {
        return lookup_fail_sync;
    }
    if (lookup_fail < 0) {
        failed_lookup *f = malloc(sizeof(*f));
        CHECK(f != NULL);
        f->cb = cb;
        f->user = user;
        f->status = lookup_fail;
        CHECK_EQ_INT(cm_loop_post(L, answer_failed, f), 0);
        return 0;
    }
    return __real_cm_registry_get_service(r, name, cb, user);
}

int
__wrap_cm_registry_watch(cm_registry *r, const char *name, cm_watch_cb cb, void *user,
                         cm_watcher **out)
{
    watches++;
    return __real_cm_registry_watch(r, name, cb, user, out);
}

/* ---- running the loop ---- */

FIXTURE void
on_guard(uv_timer_t *h)
{
    *(int *)h->data = 1;
}

/* Turns the loop until *flag becomes non-zero; fails the test after ms. */
FIXTURE void
run_until(volatile int *flag, uint64_t ms)
{
    int expired = 0;
    uv_timer_t guard;
    uv_timer_init(cm_loop_uv(L), &guard);
    guard.data = &expired;
    uv_timer_start(&guard, on_guard, ms, 0);
    while (!*flag && !expired) {
        uv_run(cm_loop_uv(L), UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(cm_loop_uv(L), UV_RUN_NOWAIT);
    CHECK(*flag);
}

/* Turns the loop for ms. */
FIXTURE void
run_for(uint64_t ms)
{
    int expired = 0;
    uv_timer_t guard;
    uv_timer_init(cm_loop_uv(L), &guard);
    guard.data = &expired;
    uv_timer_start(&guard, on_guard, ms, 0);
    while (!expired) {
        uv_run(cm_loop_uv(L), UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(cm_loop_uv(L), UV_RUN_NOWAIT);
}

/* ---- the registry ---- */

/* A memory registry of its own namespace, so that tests do not see each other's services. */
FIXTURE cm_registry *
registry_new(const char *ns)
{
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    cm_registry_opts_set(&o, "namespace", ns);
    cm_registry *r = NULL;
    CHECK_EQ_INT(cm_registry_new(L, "memory", &o, &r), 0);
    return r;
}

FIXTURE void
on_flag(void *arg)
{
    *(int *)arg = 1;
}

FIXTURE void
registry_close(cm_registry *r)
{
    int done = 0;
    cm_registry_close(r, on_flag, &done);
    run_until(&done, 2000);
}

typedef struct status_cb {
    int done;
    int status;
} status_cb;

FIXTURE void
on_status(int status, void *user)
{
    status_cb *c = user;
    c->done++;
    c->status = status;
}

/* A service with one node; label is "key=value" node metadata or NULL; endpoint may be NULL. */
FIXTURE cm_reg_service *
service_make(const char *name, const char *version, const char *id, const char *address,
             const char *label, const char *endpoint)
{
    cm_reg_service *svc = cm_reg_service_new(name, version);
    CHECK(svc != NULL);
    cm_md *md = cm_md_new();
    CHECK(md != NULL);
    if (label != NULL) {
        char key[64];
        const char *eq = strchr(label, '=');
        CHECK(eq != NULL && (size_t)(eq - label) < sizeof(key));
        memcpy(key, label, (size_t)(eq - label));
        key[eq - label] = '\0';
        CHECK_EQ_INT(cm_md_set(md, key, eq + 1), 0);
    }
    CHECK(cm_reg_service_add_node(svc, id, address, md) != NULL);
    cm_md_free(md);
    if (endpoint != NULL) {
        CHECK(cm_reg_service_add_endpoint(svc, endpoint, NULL, NULL, NULL) != NULL);
    }
    return svc;
}

/* Registers (or, with dereg, deregisters) one node and waits for the answer. */
FIXTURE void
node_op(cm_registry *r, int dereg, const char *name, const char *version, const char *id,
        const char *address, const char *label, const char *endpoint)
{
    cm_reg_service *svc = service_make(name, version, id, address, label, endpoint);
    status_cb c = {0, 1};
    if (dereg) {
        CHECK_EQ_INT(cm_registry_deregister_service(r, svc, on_status, &c), 0);
    } else {
        CHECK_EQ_INT(cm_registry_register_service(r, svc, 0, on_status, &c), 0);
    }
    run_until(&c.done, 2000);
    CHECK_EQ_INT(c.status, 0);
    cm_reg_service_free(svc);
}

FIXTURE void
add_node(cm_registry *r, const char *name, const char *version, const char *id, const char *address,
         const char *label, const char *endpoint)
{
    node_op(r, 0, name, version, id, address, label, endpoint);
}

FIXTURE void
del_node(cm_registry *r, const char *name, const char *version, const char *id, const char *address)
{
    node_op(r, 1, name, version, id, address, NULL, NULL);
}

/* Resolves service and returns the callback's status (checking it ran once, later). */
FIXTURE int
resolve(cm_selector *s, const char *service)
{
    status_cb c = {0, 1};
    CHECK_EQ_INT(cm_selector_resolve(s, service, on_status, &c), 0);
    CHECK_EQ_INT(c.done, 0);
    run_until(&c.done, 2000);
    CHECK_EQ_INT(c.done, 1);
    return c.status;
}

FIXTURE cm_selector *
selector_new(cm_registry *r, const cm_selector_opts *o)
{
    cm_selector *s = NULL;
    CHECK_EQ_INT(cm_selector_new(L, r, o, &s), 0);
    cm__selector_seed(s, 42);
    return s;
}

/* Index of address in addrs[n], or -1 (the test fails then). */
FIXTURE int
index_of(const char *address, const char *const *addrs, int n)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(address, addrs[i]) == 0) {
            return i;
        }
    }
    fprintf(stderr, "unexpected address %s\n", address);
    CHECK(0);
    return -1;
}

/* Picks k times and counts the picks per address in counts[n]. */
FIXTURE void
pick_counts(cm_selector *s, const char *service, const cm_select_filter *f,
            const char *const *addrs, int n, int k, int *counts)
{
    memset(counts, 0, (size_t)n * sizeof(int));
    for (int i = 0; i < k; i++) {
        const char *a = NULL;
        CHECK_EQ_INT(cm_selector_pick(s, service, f, &a, NULL), 0);
        counts[index_of(a, addrs, n)]++;
    }
}

#endif
