/* The worker pool's hand-off: batches posted from the loop, jobs that block, completions that
 * return to the loop while other jobs block, and a pool freed with a batch not yet handed over.
 * No timing is asserted: a job that waits for others gives up after WAIT_MS and says so. */
#include "framework_int.h"
#include "test.h"

#include <stdatomic.h>

#define WAIT_MS 10000

typedef struct tjob {
    cm__job base;
    int blocking; /* waits for the others (see work) */
    int done;
    int ok;
} tjob;

static uv_loop_t *uv;
static uv_thread_t loop_thread;
static cm__workers *pool;
static atomic_int started;  /* jobs whose work began */
static atomic_int dones;    /* done callbacks run */
static atomic_int off_loop; /* done callbacks run off the loop thread */
static int want_together;   /* a blocking job waits until this many work at once */
static int want_dones;      /* ... or until this many done callbacks ran */
static int total;           /* jobs of the case; the loop stops when all are done */

static int
wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < WAIT_MS; i++) {
        if (atomic_load(v) >= want) {
            return 1;
        }
        uv_sleep(1);
    }
    return 0;
}

static void
work(cm__job *j)
{
    tjob *t = (tjob *)j;
    atomic_fetch_add(&started, 1);
    if (t->blocking == 1) {
        t->ok = wait_for(&started, want_together);
    } else if (t->blocking == 2) {
        t->ok = wait_for(&dones, want_dones);
    } else {
        t->ok = 1;
    }
}

static void
done(cm__job *j)
{
    tjob *t = (tjob *)j;
    t->done++;
    if (!uv_thread_equal(&loop_thread, &(uv_thread_t){uv_thread_self()})) {
        atomic_fetch_add(&off_loop, 1);
    }
    if (atomic_fetch_add(&dones, 1) + 1 == total) {
        uv_stop(uv);
    }
}

static void
reset(int n)
{
    atomic_store(&started, 0);
    atomic_store(&dones, 0);
    atomic_store(&off_loop, 0);
    want_together = 0;
    want_dones = 0;
    total = n;
}

static tjob *
jobs_new(int n)
{
    tjob *t = calloc((size_t)n, sizeof(*t));
    CHECK(t != NULL);
    for (int i = 0; i < n; i++) {
        t[i].base.work = work;
        t[i].base.done = done;
    }
    return t;
}

static void
keep_alive(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until every job of the case is done (the pool's own handles do not keep the
 * loop alive, a server's connections do: here a timer); post() posts them from a loop callback. */
static void
run_case(void (*post)(uv_timer_t *), void *arg)
{
    uv_timer_t tm, alive;
    uv_timer_init(uv, &tm);
    uv_timer_init(uv, &alive);
    uv_timer_start(&alive, keep_alive, 3600 * 1000, 0);
    tm.data = arg;
    uv_timer_start(&tm, post, 0, 0);
    uv_run(uv, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&tm, NULL);
    uv_close((uv_handle_t *)&alive, NULL);
    uv_run(uv, UV_RUN_NOWAIT);
}

static void
post_all(uv_timer_t *tm)
{
    tjob *t = tm->data;
    for (int i = 0; i < total; i++) {
        cm__workers_post(pool, &t[i].base);
    }
}

/* Jobs of one batch that wait for each other: as many as there are workers all run at once, so
 * one wake-up per batch still leaves no worker asleep while jobs wait. A pool of n threads that
 * may grow to max runs a batch of max such jobs at once, and again (its threads stay). */
static void
test_blocking_batch(unsigned n, unsigned max)
{
    CHECK_EQ_INT(cm__workers_new(uv, n, max, &pool), 0);
    for (int round = 0; round < 2; round++) {
        reset((int)max);
        want_together = (int)max;
        tjob *t = jobs_new(total);
        for (int i = 0; i < total; i++) {
            t[i].blocking = 1;
        }
        run_case(post_all, t);
        for (int i = 0; i < total; i++) {
            CHECK_EQ_INT(t[i].done, 1);
            CHECK_EQ_INT(t[i].ok, 1);
        }
        CHECK_EQ_INT(atomic_load(&off_loop), 0);
        free(t);
    }
    cm__workers_free(pool);
    uv_run(uv, UV_RUN_NOWAIT);
}

static void
test_blocking(void)
{
    test_blocking_batch(2, 2);
    test_blocking_batch(8, 8);
    test_blocking_batch(0, 6);
    test_blocking_batch(2, 7);
}

/* A job that blocks until the quick jobs queued behind it have come back to the loop: their
 * completions reach the loop while it blocks. */
static void
test_blocked_holds_nothing_back(void)
{
    CHECK_EQ_INT(cm__workers_new(uv, 2, 2, &pool), 0);
    reset(200);
    want_dones = total - 1;
    tjob *t = jobs_new(total);
    t[0].blocking = 2;
    run_case(post_all, t);
    for (int i = 0; i < total; i++) {
        CHECK_EQ_INT(t[i].done, 1);
        CHECK_EQ_INT(t[i].ok, 1);
    }
    CHECK_EQ_INT(atomic_load(&off_loop), 0);
    cm__workers_free(pool);
    uv_run(uv, UV_RUN_NOWAIT);
    free(t);
}

/* Many batches, posted over many turns of the loop while the workers run the earlier ones. */
static int ticks;

static void
post_some(uv_timer_t *tm)
{
    tjob *t = tm->data;
    for (int i = 0; i < 50; i++) {
        cm__workers_post(pool, &t[ticks * 50 + i].base);
    }
    if (++ticks * 50 < total) {
        uv_timer_start(tm, post_some, 0, 0);
    }
}

static void
test_many_batches(void)
{
    CHECK_EQ_INT(cm__workers_new(uv, 3, 3, &pool), 0);
    reset(5000);
    ticks = 0;
    tjob *t = jobs_new(total);
    run_case(post_some, t);
    for (int i = 0; i < total; i++) {
        CHECK_EQ_INT(t[i].done, 1);
    }
    CHECK_EQ_INT(atomic_load(&started), total);
    CHECK_EQ_INT(atomic_load(&off_loop), 0);
    cm__workers_free(pool);
    uv_run(uv, UV_RUN_NOWAIT);
    free(t);
}

/* Freed on the loop right after posting: the batch not yet handed over still runs, and its
 * done callbacks run in cm__workers_free(). */
static void
post_then_free(uv_timer_t *tm)
{
    tjob *t = tm->data;
    for (int i = 0; i < total; i++) {
        cm__workers_post(pool, &t[i].base);
    }
    cm__workers_free(pool);
}

static void
test_free_with_posted_batch(void)
{
    CHECK_EQ_INT(cm__workers_new(uv, 4, 4, &pool), 0);
    reset(100);
    tjob *t = jobs_new(total);
    run_case(post_then_free, t);
    for (int i = 0; i < total; i++) {
        CHECK_EQ_INT(t[i].done, 1);
    }
    CHECK_EQ_INT(atomic_load(&started), total);
    free(t);
}

int
main(void)
{
    uv_loop_t loop;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    uv = &loop;
    loop_thread = uv_thread_self();
    RUN(test_blocking);
    RUN(test_blocked_holds_nothing_back);
    RUN(test_many_batches);
    RUN(test_free_with_posted_batch);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    TEST_DONE();
}
