/* Helpers of the transport socket tests: one loop on the main thread, an echo server on it,
 * and raw blocking-socket clients run on a helper thread while the loop keeps turning.
 * Compiled once (harness.c) and linked by the tests that use it (test/transport/meson.build). */
#ifndef CM_TEST_TRANSPORT_HARNESS_H
#define CM_TEST_TRANSPORT_HARNESS_H

#include "http_int.h"
#include "test.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <unistd.h>

/* The loop of the test (harness_init). */
extern cm_loop *CL;
extern uv_loop_t *L; /* cm_loop_uv(CL) */

/* ---- running the loop ---- */

/* Turns the loop until *flag becomes non-zero; fails the test after ms. */
void run_until(volatile int *flag, uint64_t ms);

/* Turns the loop for ms. */
void run_for(uint64_t ms);

/* ---- a helper thread ---- */

typedef struct worker {
    uv_thread_t th;
    uv_async_t async;
    volatile int finished;
    void (*fn)(void *arg);
    void *arg;
} worker;

void worker_start(worker *w, void (*fn)(void *), void *arg);

/* Turns the loop until the thread is done, then joins it. */
void worker_wait(worker *w, uint64_t ms);

/* Runs fn on a thread while the loop turns. */
void in_thread(void (*fn)(void *), void *arg);

/* ---- raw blocking sockets (helper thread only) ---- */

int raw_connect(int port);

/* Sends everything; returns 0, or -1 when the peer is gone. */
int raw_send(int fd, const void *p, size_t n);

void raw_send_str(int fd, const char *s);

/* Reads until EOF (returns the length, *eof = 1) or error/timeout (*eof = 0). */
size_t raw_read_all(int fd, char *buf, size_t cap, int *eof);

/* Finds a header's value in a raw response head (case-insensitive key). */
const char *raw_header(const char *head, const char *key, char *val, size_t cap);

/* Reads one response delimited by Content-Length; returns its total length, 0 on EOF or
 * timeout before a full response. Bytes past it stay in buf at [ret, *have). */
size_t raw_read_response(int fd, char *buf, size_t cap, size_t *have);

/* Drops the first n bytes of buf. */
void raw_consume(char *buf, size_t *have, size_t n);

char *strdupf(const char *fmt, ...);

/* ---- an echo server ---- */

enum { REPLY_NOW, REPLY_LATER, REPLY_NEVER };

#define MAX_HELD 64

typedef struct server {
    cm_transport *t;
    cm_listener *l;
    int port;
    char addr[64];
    int mode;
    int seen;                 /* requests delivered */
    char *last;               /* the last request, rendered */
    cm_tconn *held[MAX_HELD]; /* requests not replied yet (REPLY_LATER, REPLY_NEVER) */
    const cm_msg *held_req[MAX_HELD];
    int held_seq[MAX_HELD];
    int nheld;
    uv_timer_t later; /* replies held requests in REPLY_LATER mode */
    int reply_rc;     /* the last cm_tconn_reply() result */
    int refused;      /* requests refused over a limit (status < 0 in the callback) */
    int last_refusal; /* the last such status */
} server;

char *render(const cm_msg *m);

/* Echo: the body back, plus X-Seq (the request's number on the server), X-Echo (the request's
 * x-test header, looked up in another case), Content-Type and X-Render (the whole request as
 * render() writes it, its newlines sent as spaces). */
void echo_reply(server *s, cm_tconn *c, const cm_msg *req, int seq);

void on_request(cm_tconn *c, int status, const cm_msg *req, void *user);

void server_start(server *s, const cm_transport_opts *o);

void set_flag(void *arg);

/* Replies what is still held (the results are those of closed connections), closes all and
 * checks that everything went away. */
void server_stop(server *s);

void harness_init(void);

/* Every handle was closed: the loop closes cleanly. */
void harness_done(void);

#endif
