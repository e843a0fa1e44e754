/* cmicro: the event loop every service runs on.
 *
 * One libuv loop owns all I/O of a service. It runs either on the thread that calls
 * cm_loop_run() (a server's main thread) or on a thread of its own started by cm_loop_start()
 * (a client-only program). Other threads hand work to it with cm_loop_post().
 */
#ifndef CMICRO_LOOP_H
#define CMICRO_LOOP_H

#include <cmicro/error.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cm_loop cm_loop;
/* libuv's loop type (uv_loop_t), declared here so that this header needs no <uv.h>. */
struct uv_loop_s;

/* Creates a loop with its own uv_loop_t. Returns 0 or CM_ENOMEM / a libuv error. */
CM_EXTERN int cm_loop_new(cm_loop **out);
/* The libuv loop (a uv_loop_t *), for handles of the caller's own. */
CM_EXTERN struct uv_loop_s *cm_loop_uv(cm_loop *l);
/* Runs the loop on the calling thread until cm_loop_stop(). Returns 0, or CM_ESTATE when the
 * loop already runs on another thread. */
CM_EXTERN int cm_loop_run(cm_loop *l);
/* Runs the loop on a new thread until cm_loop_stop() or cm_loop_free(). 0, CM_ESTATE (already
 * running) or a libuv error. */
CM_EXTERN int cm_loop_start(cm_loop *l);
/* Asks the loop to return from cm_loop_run() / its thread. Any thread. */
CM_EXTERN void cm_loop_stop(cm_loop *l);
/* Runs fn(arg) on the loop thread, soon, in posting order. Any thread, including the loop's
 * (fn then runs on a later turn, never inside this call). Returns 0 or CM_ENOMEM. */
CM_EXTERN int cm_loop_post(cm_loop *l, void (*fn)(void *arg), void *arg);
/* Non-zero when called on the thread currently running the loop. */
CM_EXTERN int cm_loop_on_loop_thread(const cm_loop *l);
/* Stops and joins the loop's own thread (when started with cm_loop_start), closes every handle
 * still open and frees the loop. Not on the loop thread. */
CM_EXTERN void cm_loop_free(cm_loop *l);

/* Monotonic milliseconds (uv_hrtime based). */
CM_EXTERN uint64_t cm_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif
