/* The event loop: a uv_loop_t, a queue of posted closures, and optionally a thread of its own.
 *
 * One FIFO under a mutex keeps posting order across threads. A post from another thread wakes
 * the loop through the async handle (a write to its eventfd); a post from the loop thread starts
 * an idle handle instead, so that the loop's next turn polls without sleeping and runs it: no
 * system call. */
#include "core_int.h"

#include <uv.h>

#include <assert.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef cm__post post;

struct cm_loop {
    uv_loop_t uv;
    uv_async_t async;
    uv_mutex_t mu;
    post *head, *tail; /* under mu */
    uv_idle_t idle;     /* active after a post from the loop thread, until the queue is empty */
    atomic_int stop;
    atomic_int has_thread;
    uv_mutex_t start_mu; /* held while the loop's own thread starts or is joined */
    uv_thread_t thread;
    atomic_ulong runner; /* uv_thread_t of the thread running the loop, as integer; 0 when none */
    int running;
};

static void
run_posts(post *p)
{
    while (p != NULL) {
        post *next = p->next;
        void (*fn)(void *) = p->fn;
        void *arg = p->arg;
        if (p->owned) {
            free(p);
        }
        fn(arg);
        p = next;
    }
}

/* Runs what is queued now; what that posts runs at the next drain. 1 when the queue was empty. */
static int
drain(cm_loop *l)
{
    uv_mutex_lock(&l->mu);
    post *p = l->head;
    l->head = l->tail = NULL;
    uv_mutex_unlock(&l->mu);
    run_posts(p);
    return p == NULL;
}

static void
on_async(uv_async_t *a)
{
    cm_loop *l = a->data;
    drain(l);
    if (atomic_load(&l->stop)) {
        uv_stop(&l->uv);
    }
}

static void
on_idle(uv_idle_t *h)
{
    cm_loop *l = h->data;
    if (drain(l)) {
        uv_idle_stop(&l->idle);
    }
}

/* A peer that resets a connection while a write is in flight makes write() raise SIGPIPE, whose
 * default action ends the process, and libuv does not block it. The first loop sets SIGPIPE to
 * ignored when it still has its default action (an application's own handler stays), as Go's
 * runtime does: the write then fails with EPIPE, which the transports report as a closed
 * connection. */
static void
ignore_sigpipe_once(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
        sa.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
    }
}

static void
ignore_sigpipe(void)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, ignore_sigpipe_once);
}

int
cm_loop_new(cm_loop **out)
{
    ignore_sigpipe();
    cm_loop *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return CM_ENOMEM;
    }
    int rc = uv_loop_init(&l->uv);
    if (rc < 0) {
        free(l);
        return rc;
    }
    uv_mutex_init(&l->mu);
    uv_mutex_init(&l->start_mu);
    rc = uv_async_init(&l->uv, &l->async, on_async);
    if (rc < 0) {
        uv_mutex_destroy(&l->mu);
        uv_mutex_destroy(&l->start_mu);
        uv_loop_close(&l->uv);
        free(l);
        return rc;
    }
    l->async.data = l;
    uv_idle_init(&l->uv, &l->idle);
    l->idle.data = l;
    /* The async handle must not keep cm_loop_run() alive by itself. */
    uv_unref((uv_handle_t *)&l->async);
    l->uv.data = l;
    *out = l;
    return 0;
}

uv_loop_t *
cm_loop_uv(cm_loop *l)
{
    return &l->uv;
}

static unsigned long
self_id(void)
{
    uv_thread_t t = uv_thread_self();
    return (unsigned long)t;
}

static void
run(cm_loop *l)
{
    atomic_store(&l->runner, self_id());
    uv_ref((uv_handle_t *)&l->async);
    while (!atomic_load(&l->stop)) {
        uv_run(&l->uv, UV_RUN_DEFAULT);
    }
    uv_unref((uv_handle_t *)&l->async);
    atomic_store(&l->runner, 0);
}

/* has_thread is the one claim on the loop: 0 free, OWN_THREAD for cm_loop_start's thread,
 * CALLER for a thread in cm_loop_run (or one that claimed it with cm__loop_claim), taken with a
 * compare-and-swap so that two threads never run the loop at once. */
enum { FREE = 0, OWN_THREAD = 1, CALLER = 2 };

/* Under start_mu: stops and joins the loop's own thread, if it has one. */
static void
stop_join_locked(cm_loop *l)
{
    if (atomic_load(&l->has_thread) == OWN_THREAD) {
        cm_loop_stop(l);
        uv_thread_join(&l->thread);
        atomic_store(&l->has_thread, FREE);
    }
}

int
cm__loop_claim(cm_loop *l)
{
    uv_mutex_lock(&l->start_mu);
    stop_join_locked(l);
    int expected = FREE;
    int ok = atomic_compare_exchange_strong(&l->has_thread, &expected, CALLER);
    uv_mutex_unlock(&l->start_mu);
    return ok ? 0 : CM_ESTATE;
}

void
cm__loop_unclaim(cm_loop *l)
{
    atomic_store(&l->has_thread, FREE);
}

int
cm_loop_run(cm_loop *l)
{
    int expected = FREE;
    if (!atomic_compare_exchange_strong(&l->has_thread, &expected, CALLER) &&
        (expected != CALLER || atomic_load(&l->runner) != 0)) {
        return CM_ESTATE; /* claimed by cm__loop_claim (expected CALLER, no runner): ours */
    }
    atomic_store(&l->stop, 0);
    run(l);
    atomic_store(&l->has_thread, FREE);
    return 0;
}

static void
thread_main(void *arg)
{
    run(arg);
}

int
cm_loop_start(cm_loop *l)
{
    uv_mutex_lock(&l->start_mu);
    int expected = FREE;
    int rc = CM_ESTATE;
    if (atomic_compare_exchange_strong(&l->has_thread, &expected, OWN_THREAD)) {
        atomic_store(&l->stop, 0);
        rc = uv_thread_create(&l->thread, thread_main, l);
        if (rc < 0) {
            atomic_store(&l->has_thread, FREE);
        }
    }
    uv_mutex_unlock(&l->start_mu);
    return rc;
}

void
cm__loop_stop_join(cm_loop *l)
{
    uv_mutex_lock(&l->start_mu);
    stop_join_locked(l);
    uv_mutex_unlock(&l->start_mu);
}

void
cm_loop_stop(cm_loop *l)
{
    atomic_store(&l->stop, 1);
    uv_async_send(&l->async);
}

void
cm__loop_post_node(cm_loop *l, post *p, void (*fn)(void *arg), void *arg)
{
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    uv_mutex_lock(&l->mu);
    if (l->tail) {
        l->tail->next = p;
    } else {
        l->head = p;
    }
    l->tail = p;
    uv_mutex_unlock(&l->mu);
    if (cm_loop_on_loop_thread(l)) {
        uv_idle_start(&l->idle, on_idle); /* no-op when active */
    } else {
        uv_async_send(&l->async);
    }
}

int
cm_loop_post(cm_loop *l, void (*fn)(void *arg), void *arg)
{
    post *p = malloc(sizeof(*p));
    if (p == NULL) {
        return CM_ENOMEM;
    }
    p->owned = 1;
    cm__loop_post_node(l, p, fn, arg);
    return 0;
}

int
cm_loop_on_loop_thread(const cm_loop *l)
{
    unsigned long r = atomic_load(&((cm_loop *)l)->runner);
    return r != 0 && r == self_id();
}

static void
free_posts(post *p)
{
    while (p != NULL) {
        post *next = p->next;
        if (p->owned) {
            free(p);
        }
        p = next;
    }
}

static void
close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

void
cm_loop_free(cm_loop *l)
{
    if (l == NULL) {
        return;
    }
    cm__loop_stop_join(l);
    /* Run what is posted and what that posts (bounded: a closure that keeps posting itself
     * does not hold this up), then close every handle left open; twice, for what the close
     * callbacks post. A stop request may end a run early: run until every close callback ran. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 64 && !drain(l); i++) {
        }
        uv_walk(&l->uv, close_walk, NULL);
        while (uv_run(&l->uv, UV_RUN_DEFAULT) != 0) {
        }
        uv_run(&l->uv, UV_RUN_NOWAIT);
    }
    /* Never run: the nodes of cm_loop_post are freed. */
    free_posts(l->head);
    int rc = uv_loop_close(&l->uv);
    (void)rc;
    assert(rc == 0);
    uv_mutex_destroy(&l->mu);
    uv_mutex_destroy(&l->start_mu);
    free(l);
}

uint64_t
cm_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

int
cm__loop_running(const cm_loop *l)
{
    return atomic_load(&((cm_loop *)l)->runner) != 0;
}
