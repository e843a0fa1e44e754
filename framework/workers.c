/* The worker pool: a fixed set of threads taking jobs from one queue; completions return to the
 * loop through a uv_async_t. */
#include "framework_int.h"

#include <stdlib.h>

struct cm__workers {
    uv_mutex_t mu;
    uv_cond_t cv;
    cm__job *q_head, *q_tail;   /* waiting for a worker */
    cm__job *d_head, *d_tail;   /* finished, waiting for done() on the loop */
    int quit;
    unsigned n;
    uv_thread_t *threads;
    uv_async_t async;
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

static void
worker_main(void *arg)
{
    cm__workers *w = arg;
    uv_mutex_lock(&w->mu);
    for (;;) {
        while (w->q_head == NULL && !w->quit) {
            uv_cond_wait(&w->cv, &w->mu);
        }
        if (w->q_head == NULL) {
            break;
        }
        cm__job *j = w->q_head;
        w->q_head = j->next;
        if (w->q_head == NULL) {
            w->q_tail = NULL;
        }
        uv_mutex_unlock(&w->mu);
        j->work(j);
        uv_mutex_lock(&w->mu);
        push(&w->d_head, &w->d_tail, j);
        uv_async_send(&w->async);
    }
    uv_mutex_unlock(&w->mu);
}

static void
run_done(cm__workers *w)
{
    uv_mutex_lock(&w->mu);
    cm__job *j = w->d_head;
    w->d_head = w->d_tail = NULL;
    uv_mutex_unlock(&w->mu);
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

static void
free_after_close(uv_handle_t *h)
{
    free(h->data);
}

int
cm__workers_new(uv_loop_t *loop, unsigned n, cm__workers **out)
{
    if (n == 0) {
        n = 1;
    }
    cm__workers *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return CM_ENOMEM;
    }
    w->threads = calloc(n, sizeof(uv_thread_t));
    if (w->threads == NULL) {
        free(w);
        return CM_ENOMEM;
    }
    int rc = uv_async_init(loop, &w->async, on_async);
    if (rc < 0) {
        free(w->threads);
        free(w);
        return rc;
    }
    w->async.data = w;
    uv_unref((uv_handle_t *)&w->async);
    uv_mutex_init(&w->mu);
    uv_cond_init(&w->cv);
    for (unsigned i = 0; i < n; i++) {
        uv_thread_options_t o = {UV_THREAD_HAS_STACK_SIZE, 256 * 1024};
        rc = uv_thread_create_ex(&w->threads[i], &o, worker_main, w);
        if (rc < 0) {
            break;
        }
        w->n++;
    }
    if (rc < 0 && w->n == 0) {
        uv_cond_destroy(&w->cv);
        uv_mutex_destroy(&w->mu);
        free(w->threads);
        uv_close((uv_handle_t *)&w->async, free_after_close);
        return rc;
    }
    *out = w;
    return 0;
}

void
cm__workers_submit(cm__workers *w, cm__job *job)
{
    uv_mutex_lock(&w->mu);
    push(&w->q_head, &w->q_tail, job);
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu);
}

void
cm__workers_free(cm__workers *w)
{
    if (w == NULL) {
        return;
    }
    uv_mutex_lock(&w->mu);
    w->quit = 1;
    uv_cond_broadcast(&w->cv);
    uv_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < w->n; i++) {
        uv_thread_join(&w->threads[i]);
    }
    run_done(w);
    uv_cond_destroy(&w->cv);
    uv_mutex_destroy(&w->mu);
    free(w->threads);
    uv_close((uv_handle_t *)&w->async, free_after_close);
}
