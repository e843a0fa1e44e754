/* cmicro: the server's state, shared by server.c (requests and replies) and server_loops.c (its
 * loops: start, stop, stats). Not installed. */
#ifndef CMICRO_SERVER_INT_H
#define CMICRO_SERVER_INT_H

#include "framework_int.h"

/* The most loops a server runs. */
#define CM__MAX_LOOPS 64

/* One loop of the server. Loop 0 is the server's own (the service's loop); each other one runs
 * on a thread of its own, with a transport and a listener bound to the same address
 * (SO_REUSEPORT). A connection, its requests and their replies stay on the loop that accepted
 * it. Everything here belongs to the loop's thread except the counters and what mu guards. */
struct cm__sloop {
    cm_server *s;
    unsigned idx;
    cm_loop *loop;
    cm_transport *transport;
    cm_listener *listener;
    cm__wport *port;        /* the worker pool's port on this loop */
    cm__wport *stream_port; /* the streams' pool's */
    cm_ctx *free_ctx;
    unsigned nfree; /* contexts in free_ctx, at most CM__CTX_KEEP */
    /* One writer (this loop's thread), read from any thread. */
    _Atomic uint64_t calls, errors, inflight;
    uv_mutex_t mu;      /* guards the two below */
    cm_listener *shown; /* the listener, for stats read on any thread; NULL once it closes */
    cm_stream *streams; /* the streams being served */
    atomic_int drain_posted;
    /* Posts between the loops (server_loops.c), one node per kind. */
    cm__post p_stop, p_close, p_closed, p_drain;
};

struct cm_server {
    cm_loop *loop;
    char *name;
    char *address;
    char *transport_name;
    cm_transport_opts topts;
    unsigned nworkers;
    uint64_t drain_timeout_ms;

    cm__route *routes; /* sorted by endpoint */
    size_t nroutes;

    cm__workers *workers;
    cm__workers *stream_workers; /* a thread per stream being served, up to max_streams */
    unsigned max_streams;
    atomic_uint nstreams;             /* streams being served, on every loop */
    _Atomic uint64_t streams_refused; /* past max_streams */
    char bound[128];
    int started;
    uint64_t started_unix;
    atomic_int stopping;
    atomic_int stopped;
    int cancel;       /* the stop cancels the streams (the drain timed out) */
    unsigned closing; /* listeners not closed yet */
    uv_timer_t drain_timer;
    void (*stop_done)(void *arg);
    void *stop_arg;

    cm__wraps wraps;     /* handler wrappers */
    cm__limits *limits;  /* the built-in limits, when configured */
    cm__wraps sub_wraps; /* subscriber wrappers */
    cm__get_fn get_fn;   /* answers GET requests (health, metrics, status); NULL: 404 */
    void *get_arg;
    unsigned nloops;
    cm__sloop *loops; /* nloops */
};

/* A counter of one writer: a relaxed load and store, which cost what a plain add does. */
static inline void
cm__count(_Atomic uint64_t *v, int up)
{
    uint64_t n = atomic_load_explicit(v, memory_order_relaxed);
    atomic_store_explicit(v, up ? n + 1 : n - 1, memory_order_relaxed);
}

static inline uint64_t
cm__counted(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* server.c's request callback (user: the cm__sloop). */
void cm__server_on_request(cm_tconn *conn, int status, const cm_msg *req, void *user);

/* server_loops.c. The loops (1 when loops is 0 and the machine has at most 2 CPUs; see
 * server.h). */
unsigned cm__server_default_loops(void);
/* Starts listening on every loop: loop 0 on s->address, then each other loop's transport,
 * listener and worker port on the address loop 0 bound, and their threads. 0 or an error
 * (everything undone). */
int cm__server_listen_all(cm_server *s);
/* The drain is over when no loop has a call in flight: then closes all (no cancel). Loop 0. */
void cm__server_check_drained(cm_server *s);
/* The stop: stops accepting on every loop. */
void cm__server_stop_accepting(cm_server *s);
/* A loop's calls in flight reached 0 during the stop: the drain ends when all loops' do. */
void cm__server_loop_drained(cm__sloop *sl);
/* Ends the stop (the drain is over or timed out): closes every loop's listener, then runs
 * stop_done on loop 0. Loop 0. */
void cm__server_close_all(cm_server *s, int cancel);
/* cm_server_free's part: joins the other loops' threads, frees the worker pool (handlers
 * still running finish) and every loop's transport and memory. */
void cm__server_free_loops(cm_server *s);

#endif
