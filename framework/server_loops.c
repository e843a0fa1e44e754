/* The server's loops. Loop 0 is the loop the server was made on; with loops N > 1 the server
 * starts N - 1 more, each on a thread of its own with a transport and a listener bound to the
 * address loop 0 bound (SO_REUSEPORT: the kernel spreads the connections among the listeners).
 * A connection is served on the loop that accepted it: its requests, the completions of their
 * handlers (the worker pool is shared and has a port on each loop) and its streams. The routes,
 * wrappers, limits and metrics are shared; the counters are per loop and summed when read.
 *
 * The stop runs on loop 0 and reaches the other loops by posts: stop accepting everywhere, wait
 * until no loop has a call in flight (each loop tells loop 0 when its count reaches 0) or for
 * the drain timeout, close every listener, and when the last one has closed run the done
 * callback. cm_server_free joins the threads and frees the loops. */
#include "server_int.h"

#include <string.h>

unsigned
cm__server_default_loops(void)
{
    /* Handlers run on the worker pool, so a loop's thread only reads, parses and writes: on two
     * CPUs one loop leaves the other CPU to the handlers; on more, half of them, at most 8. */
    unsigned n = uv_available_parallelism();
    if (n <= 2) {
        return 1;
    }
    return n / 2 > 8 ? 8 : n / 2;
}

/* A loop other than 0: its cm_loop, transport, worker port and listener on bound. */
static int
open_loop(cm__sloop *sl, const cm_transport_opts *o)
{
    cm_server *s = sl->s;
    int rc = cm_loop_new(&sl->loop);
    if (rc == 0) {
        rc = cm_transport_new(sl->loop, s->transport_name, o, &sl->transport);
    }
    if (rc == 0) {
        rc = cm__workers_port_new(s->workers, cm_loop_uv(sl->loop), &sl->port);
    }
    if (rc == 0) {
        rc = cm__workers_port_new(s->stream_workers, cm_loop_uv(sl->loop), &sl->stream_port);
    }
    if (rc == 0) {
        rc = cm_transport_listen(sl->transport, s->bound, cm__server_on_request, sl, &sl->listener);
    }
    if (rc == 0) {
        sl->shown = sl->listener;
    }
    return rc;
}

/* Loop 0's transport, the worker pool and loop 0's listener on s->address. */
static int
open_loop0(cm_server *s, const cm_transport_opts *o)
{
    cm__sloop *l0 = &s->loops[0];
    int rc = cm_transport_new(s->loop, s->transport_name, o, &l0->transport);
    if (rc == 0) {
        rc = cm__workers_new(cm_loop_uv(s->loop), s->nworkers, s->nworkers, &s->workers);
    }
    if (rc == 0) { /* no thread until a stream opens */
        rc = cm__workers_new(cm_loop_uv(s->loop), 0, s->max_streams, &s->stream_workers);
    }
    if (rc == 0) {
        l0->port = cm__workers_home(s->workers);
        l0->stream_port = cm__workers_home(s->stream_workers);
        rc = cm_transport_listen(l0->transport, s->address, cm__server_on_request, l0,
                                 &l0->listener);
    }
    if (rc == 0) {
        cm_listener_addr(l0->listener, s->bound, sizeof(s->bound));
        l0->shown = l0->listener;
    }
    return rc;
}

int
cm__server_listen_all(cm_server *s)
{
    cm_transport_opts o = s->topts;
    if (s->nloops > 1) {
        o.reuse_port = 1;
        /* max_conns bounds the server's connections: each loop takes its share. */
        o.max_conns = (o.max_conns + s->nloops - 1) / s->nloops;
    }
    int rc = open_loop0(s, &o);
    for (unsigned i = 1; rc == 0 && i < s->nloops; i++) {
        rc = open_loop(&s->loops[i], &o);
    }
    for (unsigned i = 1; rc == 0 && i < s->nloops; i++) {
        rc = cm_loop_start(s->loops[i].loop);
    }
    if (rc < 0) {
        cm__server_free_loops(s);
        s->bound[0] = '\0';
    }
    return rc;
}

/* ---- the stop ---- */

static void
stop_accepting(void *arg)
{
    cm__sloop *sl = arg;
    cm_listener_stop_accepting(sl->listener);
}

void
cm__server_stop_accepting(cm_server *s)
{
    stop_accepting(&s->loops[0]);
    for (unsigned i = 1; i < s->nloops; i++) {
        cm__loop_post_node(s->loops[i].loop, &s->loops[i].p_stop, stop_accepting, &s->loops[i]);
    }
}

static void
on_loop_drained(void *arg)
{
    cm__sloop *sl = arg;
    atomic_store(&sl->drain_posted, 0);
    cm__server_check_drained(sl->s);
}

void
cm__server_loop_drained(cm__sloop *sl)
{
    cm_server *s = sl->s;
    if (atomic_load(&s->stopped)) {
        return;
    }
    if (sl->idx == 0) {
        cm__server_check_drained(s);
    } else if (!atomic_exchange(&sl->drain_posted, 1)) {
        cm__loop_post_node(s->loop, &sl->p_drain, on_loop_drained, sl);
    }
}

/* Loop 0: one more listener has closed; after the last, the stop is done. */
static void
on_closed_main(void *arg)
{
    cm__sloop *sl = arg;
    cm_server *s = sl->s;
    if (--s->closing == 0 && s->stop_done != NULL) {
        s->stop_done(s->stop_arg);
    }
}

static void
on_listener_closed(void *arg)
{
    cm__sloop *sl = arg;
    if (sl->idx == 0) {
        on_closed_main(sl);
    } else {
        cm__loop_post_node(sl->s->loop, &sl->p_closed, on_closed_main, sl);
    }
}

/* On the loop's thread: cancels its streams when the drain timed out, closes its listener. */
static void
close_loop(void *arg)
{
    cm__sloop *sl = arg;
    if (sl->s->cancel) {
        cm__streams_cancel(sl);
    }
    uv_mutex_lock(&sl->mu);
    sl->shown = NULL;
    uv_mutex_unlock(&sl->mu);
    cm_listener *l = sl->listener;
    sl->listener = NULL;
    cm_listener_close(l, on_listener_closed, sl);
}

void
cm__server_close_all(cm_server *s, int cancel)
{
    if (atomic_load(&s->stopped)) {
        return;
    }
    atomic_store(&s->stopped, 1);
    uv_timer_stop(&s->drain_timer);
    uv_close((uv_handle_t *)&s->drain_timer, NULL);
    s->cancel = cancel;
    s->closing = s->nloops;
    for (unsigned i = 1; i < s->nloops; i++) {
        cm__loop_post_node(s->loops[i].loop, &s->loops[i].p_close, close_loop, &s->loops[i]);
    }
    close_loop(&s->loops[0]);
}

/* ---- freeing ---- */

static void
free_loop(cm__sloop *sl)
{
    if (sl->listener != NULL) {
        cm_listener_close(sl->listener, NULL, NULL);
        sl->listener = NULL;
    }
    sl->shown = NULL;
    if (sl->transport != NULL) {
        cm_transport_close(sl->transport, NULL, NULL);
        sl->transport = NULL;
    }
    while (sl->free_ctx != NULL) {
        cm_ctx *c = sl->free_ctx;
        sl->free_ctx = c->next_free;
        cm__ctx_destroy(c);
    }
    sl->nfree = 0;
    sl->port = sl->stream_port = NULL;
    if (sl->idx != 0 && sl->loop != NULL) {
        cm_loop_free(sl->loop); /* runs the closes above to their end */
        sl->loop = NULL;
    }
}

void
cm__server_free_loops(cm_server *s)
{
    for (unsigned i = 1; i < s->nloops; i++) {
        if (s->loops[i].loop != NULL) {
            cm__loop_stop_join(s->loops[i].loop);
        }
    }
    if (s->workers != NULL) {
        /* Handlers still running past the drain timeout finish here; their replies find the
         * connection closed. A stream handler waiting for its peer is canceled first, so that
         * nothing waits for ever. */
        for (unsigned i = 0; i < s->nloops; i++) {
            cm__streams_cancel(&s->loops[i]);
        }
        cm__workers_free(s->stream_workers);
        cm__workers_free(s->workers);
        s->workers = s->stream_workers = NULL;
    }
    for (unsigned i = 0; i < s->nloops; i++) {
        free_loop(&s->loops[i]);
    }
}

/* ---- stats ---- */

static void
add_listener(cm__sloop *sl, cm_listener_stats *sum)
{
    cm_listener_stats ls;
    memset(&ls, 0, sizeof ls);
    uv_mutex_lock(&sl->mu);
    if (sl->shown != NULL) {
        cm_listener_get_stats(sl->shown, &ls);
    }
    uv_mutex_unlock(&sl->mu);
    sum->accepted += ls.accepted;
    sum->active += ls.active;
    sum->requests += ls.requests;
    sum->rejected += ls.rejected;
    sum->timeouts += ls.timeouts;
    sum->evicted += ls.evicted;
    sum->refused += ls.refused;
    sum->tls_failed += ls.tls_failed;
}

void
cm__server_listener_stats(const cm_server *s, cm_listener_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < s->nloops; i++) {
        add_listener(&s->loops[i], out);
    }
}

/* Adds loop sl's counts to st. */
static void
add_loop(cm__sloop *sl, cm_server_stats *st)
{
    cm_listener_stats ls;
    memset(&ls, 0, sizeof ls);
    add_listener(sl, &ls);
    st->accepted += ls.accepted;
    st->active += ls.active;
    st->calls += cm__counted(&sl->calls);
    st->errors += cm__counted(&sl->errors);
    st->inflight += cm__counted(&sl->inflight);
}

void
cm_server_get_stats(const cm_server *s, cm_server_stats *st)
{
    memset(st, 0, sizeof(*st));
    for (unsigned i = 0; i < s->nloops; i++) {
        add_loop(&s->loops[i], st);
    }
}

unsigned
cm_server_loops(const cm_server *s)
{
    return s->nloops;
}

int
cm_server_get_loop_stats(const cm_server *s, unsigned i, cm_server_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (i >= s->nloops) {
        return CM_EINVAL;
    }
    add_loop(&s->loops[i], st);
    return 0;
}
