/* The helpers of testsrv.h. */
#include "testsrv.h"

#include "test.h"

void
testsrv_new(testsrv *t, const cm_server_opts *o)
{
    memset(t, 0, sizeof(*t));
    uv_mutex_init(&t->mu);
    uv_cond_init(&t->cv);
    CHECK_EQ_INT(cm_loop_new(&t->loop), 0);
    CHECK_EQ_INT(cm_server_new(t->loop, o, &t->s), 0);
}

void
testsrv_start(testsrv *t)
{
    CHECK_EQ_INT(cm_server_start(t->s), 0);
    snprintf(t->addr, sizeof(t->addr), "%s", cm_server_address(t->s));
    CHECK_EQ_INT(cm_loop_start(t->loop), 0);
}

static void
on_stopped(void *arg)
{
    testsrv *t = arg;
    uv_mutex_lock(&t->mu);
    t->stopped = 1;
    uv_cond_signal(&t->cv);
    uv_mutex_unlock(&t->mu);
}

static void
do_stop(void *arg)
{
    testsrv *t = arg;
    int rc = cm_server_stop(t->s, on_stopped, t);
    if (rc != 0) { /* not CHECK: its counter belongs to the test's thread */
        fprintf(stderr, "cm_server_stop: %s\n", cm_strerror(rc));
        exit(1);
    }
}

void
testsrv_stop(testsrv *t)
{
    CHECK_EQ_INT(cm_loop_post(t->loop, do_stop, t), 0);
}

void
testsrv_wait_stopped(testsrv *t)
{
    uv_mutex_lock(&t->mu);
    while (!t->stopped) {
        uv_cond_wait(&t->cv, &t->mu);
    }
    uv_mutex_unlock(&t->mu);
}

static void
free_server(void *arg)
{
    cm_server_free(arg);
}

void
testsrv_free(testsrv *t)
{
    if (!t->stopped) {
        testsrv_stop(t);
        testsrv_wait_stopped(t);
    }
    /* The server is freed on its loop thread; the loop finishes closing its handles. */
    CHECK_EQ_INT(cm_loop_post(t->loop, free_server, t->s), 0);
    cm_loop_stop(t->loop);
    cm_loop_free(t->loop);
    uv_cond_destroy(&t->cv);
    uv_mutex_destroy(&t->mu);
}

static void
run_main(void *arg)
{
    testsvc *t = arg;
    t->rc = cm_service_run(t->svc);
}

/* On the service's loop, which runs once the server listens: its address. */
static void
read_address(void *arg)
{
    testsvc *t = arg;
    const char *a = cm_server_address(cm_service_server(t->svc));
    uv_mutex_lock(&t->mu);
    snprintf(t->addr, sizeof t->addr, "%s", a ? a : "");
    t->ready = 1;
    uv_cond_signal(&t->cv);
    uv_mutex_unlock(&t->mu);
}

const char *
testsvc_run(testsvc *t)
{
    uv_mutex_init(&t->mu);
    uv_cond_init(&t->cv);
    CHECK_EQ_INT(cm_loop_post(cm_service_loop(t->svc), read_address, t), 0);
    CHECK_EQ_INT(uv_thread_create(&t->thread, run_main, t), 0);
    uv_mutex_lock(&t->mu);
    while (!t->ready) {
        uv_cond_wait(&t->cv, &t->mu);
    }
    uv_mutex_unlock(&t->mu);
    CHECK(t->addr[0] != '\0');
    return t->addr;
}

void
testsvc_end(testsvc *t)
{
    cm_service_stop(t->svc);
    uv_thread_join(&t->thread);
    CHECK_EQ_INT(t->rc, 0);
    cm_service_free(t->svc);
    uv_cond_destroy(&t->cv);
    uv_mutex_destroy(&t->mu);
}
