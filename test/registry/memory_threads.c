/* The memory registry across loops: two loops on two threads share one namespace; each side sees
 * the other's registrations and gets watch events on its own loop thread. */
#include "registry_int.h"
#include "test.h"

#include <stdatomic.h>

static uv_mutex_t mu;
static uv_cond_t cv;

/* CHECK for code on the loop threads: test.h's counter belongs to the main thread. */
#define LOOP_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: loop CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* ---- running things on a loop and waiting for results ---- */

typedef struct job {
    void (*fn)(void *arg);
    void *arg;
    uv_sem_t sem;
} job;

static void
run_job(void *p)
{
    job *j = p;
    j->fn(j->arg);
    uv_sem_post(&j->sem);
}

/* Runs fn(arg) on loop's thread and waits for it to return. */
static void
on_loop(cm_loop *loop, void (*fn)(void *), void *arg)
{
    job j;
    j.fn = fn;
    j.arg = arg;
    CHECK_EQ_INT(uv_sem_init(&j.sem, 0), 0);
    CHECK_EQ_INT(cm_loop_post(loop, run_job, &j), 0);
    uv_sem_wait(&j.sem);
    uv_sem_destroy(&j.sem);
}

/* Waits until *p >= target (p is guarded by mu), at most ms. */
static int
wait_for(const int *p, int target, uint64_t ms)
{
    uint64_t end = cm_now_ms() + ms;
    uv_mutex_lock(&mu);
    while (*p < target && cm_now_ms() < end) {
        uv_cond_timedwait(&cv, &mu, 10 * 1000 * 1000);
    }
    int ok = *p >= target;
    uv_mutex_unlock(&mu);
    return ok;
}

static int
read_locked(const int *p)
{
    uv_mutex_lock(&mu);
    int v = *p;
    uv_mutex_unlock(&mu);
    return v;
}

static void
bump(int *p)
{
    uv_mutex_lock(&mu);
    (*p)++;
    uv_cond_broadcast(&cv);
    uv_mutex_unlock(&mu);
}

/* ---- the two sides ---- */

typedef struct side {
    cm_loop *loop;
    cm_registry *reg;
    int done, failed, closed;
    size_t got_nnodes; /* from the last get_service */
} side;

static side A, B;

typedef struct evlog {
    side *s;
    const char *name;
    cm_watcher *w;
    int n, creates, updates, deletes, wrong_thread, wrong_nodes;
} evlog;

static void
on_event(cm_watch_action a, const cm_reg_service *svc, void *user)
{
    evlog *g = user;
    uv_mutex_lock(&mu);
    g->wrong_thread += !cm_loop_on_loop_thread(g->s->loop);
    g->creates += a == CM_WATCH_CREATE;
    g->updates += a == CM_WATCH_UPDATE;
    g->deletes += a == CM_WATCH_DELETE;
    /* Deletes carry the removed node only. */
    g->wrong_nodes += a == CM_WATCH_DELETE && svc->nnodes != 1;
    g->n++;
    uv_cond_broadcast(&cv);
    uv_mutex_unlock(&mu);
}

static void
start_watch(void *p)
{
    evlog *g = p;
    LOOP_CHECK(cm_registry_watch(g->s->reg, g->name, on_event, g, &g->w) == 0);
}

static void
stop_watch(void *p)
{
    evlog *g = p;
    cm_watcher_stop(g->w);
}

static void
on_done(int status, void *user)
{
    side *s = user;
    if (status != 0 || !cm_loop_on_loop_thread(s->loop)) {
        bump(&s->failed);
    }
    bump(&s->done);
}

static void
on_get(int status, const cm_reg_service_list *l, void *user)
{
    side *s = user;
    uv_mutex_lock(&mu);
    s->got_nnodes = 0;
    for (size_t i = 0; status == 0 && i < l->n; i++) {
        s->got_nnodes += l->items[i]->nnodes;
    }
    uv_mutex_unlock(&mu);
    on_done(status, user);
}

static void
on_closed(void *arg)
{
    bump(&((side *)arg)->closed);
}

/* Operations posted to a side's loop. */
typedef struct op {
    side *s;
    int kind; /* 0 register, 1 deregister, 2 get, 3 close */
    const char *name;
    int first, count; /* nodes first .. first+count-1, one call each */
    uint64_t ttl;
} op;

static void
run_op(void *p)
{
    op *o = p;
    char id[32];
    for (int i = o->first; o->kind < 2 && i < o->first + o->count; i++) {
        cm_reg_service *svc = cm_reg_service_new(o->name, "1");
        snprintf(id, sizeof(id), "%s-%d", o->name, i);
        LOOP_CHECK(cm_reg_service_add_node(svc, id, "127.0.0.1:1", NULL) != NULL);
        if (o->kind == 0) {
            LOOP_CHECK(cm_registry_register_service(o->s->reg, svc, o->ttl, on_done, o->s) == 0);
        } else {
            LOOP_CHECK(cm_registry_deregister_service(o->s->reg, svc, on_done, o->s) == 0);
        }
        cm_reg_service_free(svc);
    }
    if (o->kind == 2) {
        LOOP_CHECK(cm_registry_get_service(o->s->reg, o->name, on_get, o->s) == 0);
    } else if (o->kind == 3) {
        cm_registry_close(o->s->reg, on_closed, o->s);
    }
}

static void
post_op(side *s, int kind, const char *name, int first, int count, uint64_t ttl)
{
    op o = {s, kind, name, first, count, ttl};
    on_loop(s->loop, run_op, &o);
}

/* Runs an operation and waits for its callbacks. */
static void
do_op(side *s, int kind, const char *name, int first, int count, uint64_t ttl)
{
    int before = read_locked(&s->done);
    post_op(s, kind, name, first, count, ttl);
    CHECK(wait_for(&s->done, before + (kind == 2 ? 1 : count), 5000));
    CHECK_EQ_INT(read_locked(&s->failed), 0);
}

static size_t
nodes_seen(side *s, const char *name)
{
    do_op(s, 2, name, 0, 0, 0);
    uv_mutex_lock(&mu);
    size_t n = s->got_nnodes;
    uv_mutex_unlock(&mu);
    return n;
}

static void
setup(side *s)
{
    memset(s, 0, sizeof(*s));
    CHECK_EQ_INT(cm_loop_new(&s->loop), 0);
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    cm_registry_opts_set(&o, "namespace", "threads");
    CHECK_EQ_INT(cm_registry_new(s->loop, "memory", &o, &s->reg), 0);
    CHECK_EQ_INT(cm_loop_start(s->loop), 0);
}

static void
teardown(side *s)
{
    if (s->reg != NULL) {
        int before = read_locked(&s->closed);
        post_op(s, 3, NULL, 0, 0, 0);
        CHECK(wait_for(&s->closed, before + 1, 5000));
        s->reg = NULL;
    }
    cm_loop_free(s->loop);
}

static void
test_cross_loops(void)
{
    setup(&A);
    setup(&B);
    evlog b1 = {&B, "svc", NULL, 0, 0, 0, 0, 0, 0}, b2 = {&B, NULL, NULL, 0, 0, 0, 0, 0, 0};
    evlog b3 = {&B, "svc", NULL, 0, 0, 0, 0, 0, 0}, a1 = {&A, "svc", NULL, 0, 0, 0, 0, 0, 0};
    evlog bx = {&B, "nope", NULL, 0, 0, 0, 0, 0, 0};
    on_loop(B.loop, start_watch, &b1);
    on_loop(B.loop, start_watch, &b2);
    on_loop(B.loop, start_watch, &b3);
    on_loop(B.loop, start_watch, &bx);
    on_loop(A.loop, start_watch, &a1);

    /* A registers, B sees it; B's watchers hear it on B's thread, A's on A's. */
    do_op(&A, 0, "svc", 0, 1, 0);
    CHECK(wait_for(&b1.n, 1, 5000));
    CHECK(wait_for(&b2.n, 1, 5000));
    CHECK(wait_for(&b3.n, 1, 5000));
    CHECK(wait_for(&a1.n, 1, 5000));
    CHECK_EQ_INT(b1.creates, 1);
    CHECK_EQ_INT(a1.creates, 1);
    CHECK_EQ_INT(nodes_seen(&B, "svc"), 1);

    /* B adds a node; A sees two. */
    do_op(&B, 0, "svc", 1, 1, 0);
    CHECK(wait_for(&a1.n, 2, 5000));
    CHECK_EQ_INT(a1.updates, 1);
    CHECK_EQ_INT(nodes_seen(&A, "svc"), 2);

    /* Many changes from A while B watches: every watcher gets every event, in any thread. */
    do_op(&A, 0, "svc", 2, 98, 0);
    do_op(&A, 1, "svc", 0, 100, 0);
    CHECK(wait_for(&b1.n, 200, 5000));
    CHECK(wait_for(&b2.n, 200, 5000));
    CHECK(wait_for(&b3.n, 200, 5000));
    CHECK(wait_for(&a1.n, 200, 5000));
    CHECK_EQ_INT(b1.creates, 1);
    CHECK_EQ_INT(b1.updates, 99);
    CHECK_EQ_INT(b1.deletes, 100);
    CHECK_EQ_INT(b2.n, 200);
    CHECK_EQ_INT(a1.deletes, 100);
    CHECK_EQ_INT(nodes_seen(&B, "svc"), 0);
    CHECK_EQ_INT(read_locked(&bx.n), 0);
    CHECK_EQ_INT(b1.wrong_thread + b2.wrong_thread + b3.wrong_thread + a1.wrong_thread, 0);
    CHECK_EQ_INT(b1.wrong_nodes + a1.wrong_nodes, 0);

    /* A TTL registered through A lapses even after A is gone: B's timer sweeps it. */
    on_loop(B.loop, stop_watch, &b3);
    do_op(&A, 0, "svc", 500, 1, 400);
    CHECK(wait_for(&b1.n, 201, 5000));
    teardown(&A);
    CHECK_EQ_INT(nodes_seen(&B, "svc"), 1);
    CHECK(wait_for(&b1.deletes, 101, 5000));
    CHECK_EQ_INT(nodes_seen(&B, "svc"), 0);
    CHECK_EQ_INT(read_locked(&b3.n), 200); /* stopped before the last two events */
    teardown(&B);
}

/* ---- closing while the other side keeps changing things ---- */

static atomic_int churn_stop;

typedef struct churn {
    side *s;
    int i;
} churn;

static void churn_step(void *p);

static void
churn_done(int status, void *user)
{
    churn *c = user;
    (void)status;
    if (!atomic_load(&churn_stop)) {
        LOOP_CHECK(cm_loop_post(c->s->loop, churn_step, c) == 0);
    } else {
        bump(&c->s->done);
    }
}

/* Registers then deregisters one node, over and over, until told to stop. */
static void
churn_step(void *p)
{
    churn *c = p;
    cm_reg_service *svc = cm_reg_service_new("churn", "1");
    char id[32];
    snprintf(id, sizeof(id), "churn-%d", (c->i / 2) % 4);
    LOOP_CHECK(cm_reg_service_add_node(svc, id, "127.0.0.1:1", NULL) != NULL);
    if (c->i++ % 2 == 0) {
        LOOP_CHECK(cm_registry_register_service(c->s->reg, svc, 0, churn_done, c) == 0);
    } else {
        LOOP_CHECK(cm_registry_deregister_service(c->s->reg, svc, churn_done, c) == 0);
    }
    cm_reg_service_free(svc);
}

static void
test_close_under_churn(void)
{
    for (int round = 0; round < 20; round++) {
        setup(&A);
        setup(&B);
        evlog g = {&B, NULL, NULL, 0, 0, 0, 0, 0, 0}, h = {&B, "churn", NULL, 0, 0, 0, 0, 0, 0};
        on_loop(B.loop, start_watch, &g);
        on_loop(B.loop, start_watch, &h);
        atomic_store(&churn_stop, 0);
        churn c = {&A, 0};
        on_loop(A.loop, churn_step, &c);
        CHECK(wait_for(&g.n, 5 + round, 5000));
        /* B closes with events arriving from A's thread. */
        teardown(&B);
        atomic_store(&churn_stop, 1);
        CHECK(wait_for(&A.done, 1, 5000));
        teardown(&A);
    }
}

int
main(void)
{
    CHECK_EQ_INT(uv_mutex_init(&mu), 0);
    CHECK_EQ_INT(uv_cond_init(&cv), 0);
    RUN(test_cross_loops);
    RUN(test_close_under_churn);
    uv_cond_destroy(&cv);
    uv_mutex_destroy(&mu);
    TEST_DONE();
}
