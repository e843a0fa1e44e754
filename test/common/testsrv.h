/* A server on a loop of its own thread, and a service run on a thread, for the suites that
 * serve real calls on loopback. Compiled once (testsrv.c); a failure exits the test (CHECK). */
#ifndef CM_TEST_TESTSRV_H
#define CM_TEST_TESTSRV_H

#include <cmicro/cmicro.h>
#include <uv.h>

typedef struct testsrv {
    cm_loop *loop;
    cm_server *s;
    char addr[128];
    uv_mutex_t mu;
    uv_cond_t cv;
    int stopped;
} testsrv;

/* A new loop and a server on it with o; add handlers, then testsrv_start. */
void testsrv_new(testsrv *t, const cm_server_opts *o);
/* Starts listening (t->addr) and the loop's thread. */
void testsrv_start(testsrv *t);
/* Asks for a graceful stop on the loop; testsrv_wait_stopped waits for its end. */
void testsrv_stop(testsrv *t);
void testsrv_wait_stopped(testsrv *t);
/* Stops the server gracefully unless it was, frees it on its loop, then stops the loop's thread
 * and frees the loop. */
void testsrv_free(testsrv *t);

/* A service whose cm_service_run() runs on a thread of its own. */
typedef struct testsvc {
    cm_service *svc;
    uv_thread_t thread;
    int rc; /* what cm_service_run returned */
    uv_mutex_t mu;
    uv_cond_t cv;
    int ready;
    char addr[128];
} testsvc;

/* Runs t->svc on a new thread and waits until its loop runs (its server listens then); returns
 * the server's address (in t). */
const char *testsvc_run(testsvc *t);
/* cm_service_stop, joins the thread (run must have returned 0), frees the service. */
void testsvc_end(testsvc *t);

#endif
