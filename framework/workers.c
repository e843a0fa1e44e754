/* The worker pool: a set of threads taking jobs from one queue; completions return to the
 * loop through a uv_async_t.
 *
 * The hand-off is batched both ways, so that a busy server pays a wake-up per batch, not per
 * call:
 * - to the workers: cm__workers_post() (loop thread) appends to a batch that the loop hands over
 *   in its next idle phase, after the I/O callbacks of this iteration: one lock and at most one
 *   wake-up for all the requests read in one turn of the loop;
 * - on the workers: a worker takes jobs one at a time and goes back to the queue after each,
 *   sleeping only when it is empty; it wakes a sleeping peer only when it takes a job and more
 *   are waiting and no wake-up is already on its way. So one woken worker drains a batch when
 *   handlers are quick, and a handler that blocks still leaves a worker free for the jobs behind
 *   it (while any worker sleeps): each job taken with others waiting hands them to a peer;
 * - back to the loop: a finished job joins the done list; only the one that finds the list empty
 *   sends the uv_async_t, and the loop runs every done callback of the list in one callback.
 *
 * A pool may grow: started with n threads and a cap above n, it starts a thread whenever jobs
 * wait that the sleeping (and starting) workers cannot all take, up to the cap. Threads that
 * have started stay until the pool is freed. The streams' pool starts empty and grows this
 * way, so that each stream's handler has a thread at once. */
#include "framework_int.h"

#include <stdlib.h>

/* One loop's side of the pool: the batch it posts and the jobs finished for it. */
struct cm__wport {
    cm__workers *w;
    cm__wport *next;          /* the pool's other ports */
    cm__job *d_head, *d_tail; /* finished, waiting for done() on the loop (under w->mu) */
    /* Loop thread only: the batch posted since the last hand-over. */
    cm__job *p_head, *p_tail;
    unsigned np;  /* jobs in the batch */
    int flushing; /* idle is started */
    int open_handles;
    int home; /* the pool's own port, in the pool's memory: its close frees the pool */
    uv_async_t async;
    uv_idle_t idle;
};

struct cm__workers {
    uv_mutex_t mu;
    uv_cond_t cv;
    cm__job *q_head, *q_tail; /* waiting for a worker */
    unsigned sleeping;        /* workers waiting on cv */
    unsigned wakes;           /* signals sent that no worker has woken up for yet */
    int quit;
    unsigned n;        /* threads started */
    unsigned max;      /* the cap on n */
    unsigned starting; /* started threads that have not taken the lock yet */
    unsigned nq;       /* jobs in the queue */
    uv_thread_t *threads;
    cm__wport home;   /* the loop the pool was made on */
    cm__wport *ports; /* the other loops' (cm__workers_port_new) */
};

static void
push(cm__job **head, cm__job **tail, cm__job *j)
{
    j->next = NULL;
    if (*tail) {
        (*tail)->next = j;
    } else {
        *head = j;
    }
    *tail = j;
}

/* Under mu: should a sleeping worker be woken for the queued jobs? Counts the wake-up. */
static int
need_wake(cm__workers *w)
{
    if (w->q_head == NULL || w->wakes > 0 || w->sleeping == 0) {
        return 0;
    }
    w->wakes++;
    return 1;
}

/* Under mu: appends a finished job to its port; non-zero when the loop must be told (the list
 * was empty). */
static int
push_done(cm__job *j)
{
    cm__wport *p = j->port;
    int first = p->d_head == NULL;
    push(&p->d_head, &p->d_tail, j);
    return first;
}

static void
worker_main(void *arg)
{
    cm__workers *w = arg;
    uv_mutex_lock(&w->mu);
    w->starting--;
    for (;;) {
        while (w->q_head == NULL && !w->quit) {
            w->sleeping++;
            uv_cond_wait(&w->cv, &w->mu);
            w->sleeping--;
            if (w->wakes > 0) {
                w->wakes--;
            }
        }
        if (w->q_head == NULL) {
            break;
        }
        cm__job *j = w->q_head;
        w->nq--;
        w->q_head = j->next;
        if (w->q_head == NULL) {
            w->q_tail = NULL;
        }
        int wake = need_wake(w);
        uv_mutex_unlock(&w->mu);
        if (wake) {
            uv_cond_signal(&w->cv);
        }
        j->work(j);
        uv_mutex_lock(&w->mu);
        uv_async_t *tell = push_done(j) ? &j->port->async : NULL;
        if (tell != NULL) {
            uv_mutex_unlock(&w->mu);
            uv_async_send(tell);
            uv_mutex_lock(&w->mu);
        }
    }
    uv_mutex_unlock(&w->mu);
}

/* Under mu: starts one thread. 0 or a libuv error. */
static int
start_thread(cm__workers *w)
{
    uv_thread_options_t o = {UV_THREAD_HAS_STACK_SIZE, 256 * 1024};
    int rc = uv_thread_create_ex(&w->threads[w->n], &o, worker_main, w);
    if (rc == 0) {
        w->n++;
        w->starting++;
    }
    return rc;
}

/* Under mu: starts threads for the queued jobs that no sleeping or starting worker will take,
 * up to the cap. */
static void
grow(cm__workers *w)
{
    while (!w->quit && w->n < w->max && w->nq > w->sleeping + w->starting) {
        int rc = start_thread(w);
        if (rc < 0) {
            cm_log(CM_LOG_WARN, "server", "cannot start a thread (%u running): %s", w->n,
                   uv_strerror(rc));
            break;
        }
    }
}

static void
run_done(cm__wport *p)
{
    uv_mutex_lock(&p->w->mu);
    cm__job *j = p->d_head;
    p->d_head = p->d_tail = NULL;
    uv_mutex_unlock(&p->w->mu);
    while (j != NULL) {
        cm__job *next = j->next;
        j->done(j);
        j = next;
    }
}

static void
on_async(uv_async_t *a)
{
    run_done(a->data);
}

/* Moves the port's posted batch to the queue and wakes a worker if none is on its way. */
static void
flush(cm__wport *p)
{
    if (p->p_head == NULL) {
        return;
    }
    cm__workers *w = p->w;
    uv_mutex_lock(&w->mu);
    if (w->q_tail != NULL) {
        w->q_tail->next = p->p_head;
    } else {
        w->q_head = p->p_head;
    }
    w->q_tail = p->p_tail;
    p->p_head = p->p_tail = NULL;
    w->nq += p->np;
    p->np = 0;
    grow(w);
    int wake = need_wake(w);
    uv_mutex_unlock(&w->mu);
    if (wake) {
        uv_cond_signal(&w->cv);
    }
}

static void
on_idle(uv_idle_t *h)
{
    cm__wport *p = h->data;
    flush(p);
    p->flushing = 0;
    uv_idle_stop(h);
}

static void
free_after_close(uv_handle_t *h)
{
    cm__wport *p = h->data;
    if (--p->open_handles == 0) {
        if (p->home) {
            free(p->w);
        } else {
            free(p);
        }
    }
}

/* The port's handles on loop. 0 or a libuv error (nothing to close). */
static int
port_init(cm__workers *w, cm__wport *p, uv_loop_t *loop)
{
    p->w = w;
    int rc = uv_async_init(loop, &p->async, on_async);
    if (rc < 0) {
        return rc;
    }
    p->async.data = p;
    uv_unref((uv_handle_t *)&p->async);
    uv_idle_init(loop, &p->idle); /* cannot fail */
    p->idle.data = p;
    p->open_handles = 2;
    return 0;
}

static void
port_close(cm__wport *p)
{
    uv_close((uv_handle_t *)&p->async, free_after_close);
    uv_close((uv_handle_t *)&p->idle, free_after_close);
}

static int
start_threads(cm__workers *w, unsigned n)
{
    int rc = 0;
    uv_mutex_lock(&w->mu);
    for (unsigned i = 0; i < n && rc == 0; i++) {
        rc = start_thread(w);
    }
    uv_mutex_unlock(&w->mu);
    return w->n > 0 || n == 0 ? 0 : rc;
}

int
cm__workers_new(uv_loop_t *loop, unsigned n, unsigned max, cm__workers **out)
{
    if (max < n) {
        max = n;
    }
    if (max == 0) {
        n = max = 1;
    }
    cm__workers *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return CM_ENOMEM;
    }
    w->max = max;
    w->threads = calloc(max, sizeof(uv_thread_t));
    w->home.home = 1;
    int rc = w->threads == NULL ? CM_ENOMEM : port_init(w, &w->home, loop);
    if (rc < 0) {
        free(w->threads);
        free(w);
        return rc;
    }
    uv_mutex_init(&w->mu);
    uv_cond_init(&w->cv);
    rc = start_threads(w, n);
    if (rc < 0) {
        uv_cond_destroy(&w->cv);
        uv_mutex_destroy(&w->mu);
        free(w->threads);
        port_close(&w->home);
        return rc;
    }
    *out = w;
    return 0;
}

int
cm__workers_port_new(cm__workers *w, uv_loop_t *loop, cm__wport **out)
{
    cm__wport *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return CM_ENOMEM;
    }
    int rc = port_init(w, p, loop);
    if (rc < 0) {
        free(p);
        return rc;
    }
    uv_mutex_lock(&w->mu);
    p->next = w->ports;
    w->ports = p;
    uv_mutex_unlock(&w->mu);
    *out = p;
    return 0;
}

void
cm__workers_submit(cm__workers *w, cm__job *job)
{
    job->port = &w->home;
    uv_mutex_lock(&w->mu);
    push(&w->q_head, &w->q_tail, job);
    w->nq++;
    grow(w);
    int wake = need_wake(w);
    uv_mutex_unlock(&w->mu);
    if (wake) {
        uv_cond_signal(&w->cv);
    }
}

void
cm__workers_port_post(cm__wport *p, cm__job *job)
{
    job->port = p;
    push(&p->p_head, &p->p_tail, job);
    p->np++;
    if (!p->flushing) {
        p->flushing = 1;
        uv_idle_start(&p->idle, on_idle);
    }
}

cm__wport *
cm__workers_home(cm__workers *w)
{
    return &w->home;
}

void
cm__workers_post(cm__workers *w, cm__job *job)
{
    cm__workers_port_post(&w->home, job);
}

int
cm__workers_busy(cm__workers *w)
{
    if (w == NULL) {
        return 0;
    }
    int busy = w->home.np > 0;
    for (cm__wport *p = w->ports; p != NULL && !busy; p = p->next) {
        busy = p->np > 0;
    }
    uv_mutex_lock(&w->mu);
    busy = busy || w->nq > 0 || w->sleeping + w->starting < w->n || w->home.d_head != NULL;
    uv_mutex_unlock(&w->mu);
    return busy;
}

void
cm__workers_free(cm__workers *w)
{
    if (w == NULL) {
        return;
    }
    flush(&w->home);
    for (cm__wport *p = w->ports; p != NULL; p = p->next) {
        flush(p);
    }
    uv_mutex_lock(&w->mu);
    w->quit = 1;
    uv_mutex_unlock(&w->mu);
    uv_cond_broadcast(&w->cv);
    for (unsigned i = 0; i < w->n; i++) {
        uv_thread_join(&w->threads[i]);
    }
    run_done(&w->home);
    for (cm__wport *p = w->ports; p != NULL; p = p->next) {
        run_done(p);
    }
    for (cm__wport *p = w->ports, *next; p != NULL; p = next) {
        next = p->next;
        port_close(p);
    }
    uv_cond_destroy(&w->cv);
    uv_mutex_destroy(&w->mu);
    free(w->threads);
    port_close(&w->home);
}
