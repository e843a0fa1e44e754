/* Runs a function on a loop's thread and waits for it: what must happen there while the loop
 * runs on a thread of its own (cm_server_free, for one). */
#ifndef CM_TEST_LOOP_H
#define CM_TEST_LOOP_H

#include "test.h"

#include <cmicro/loop.h>
#include <cmicro/server.h>
#include <uv.h>

typedef struct test_on_loop_job {
    void (*fn)(void *arg);
    void *arg;
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
} test_on_loop_job;

static inline void
test_on_loop_run(void *arg)
{
    test_on_loop_job *j = arg;
    j->fn(j->arg);
    uv_mutex_lock(&j->mu);
    j->done = 1;
    uv_cond_signal(&j->cv);
    uv_mutex_unlock(&j->mu);
}

static inline void
test_on_loop(cm_loop *l, void (*fn)(void *arg), void *arg)
{
    test_on_loop_job j;
    memset(&j, 0, sizeof j);
    j.fn = fn;
    j.arg = arg;
    uv_mutex_init(&j.mu);
    uv_cond_init(&j.cv);
    CHECK_EQ_INT(cm_loop_post(l, test_on_loop_run, &j), 0);
    uv_mutex_lock(&j.mu);
    while (!j.done) {
        uv_cond_wait(&j.cv, &j.mu);
    }
    uv_mutex_unlock(&j.mu);
    uv_cond_destroy(&j.cv);
    uv_mutex_destroy(&j.mu);
}

/* cm_server_free on the server's loop thread (pass the cm_server *). */
static inline void
test_free_server(void *server)
{
    cm_server_free(server);
}

#endif
