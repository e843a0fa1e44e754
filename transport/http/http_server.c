/* cmicro: the server side of go-micro's HTTP/1.1 transport. Each accepted connection reads
 * requests one at a time: http_parser pauses at the end of a message, the request goes to the
 * callback, and bytes that follow it stay buffered until cm_tconn_reply().
 *
 * A deadline bounds whatever a connection waits for: the header block (header_timeout_ms from
 * its first byte), the body and the writing of a reply (body_timeout_ms without progress), the
 * next request (idle_timeout_ms, above the 60 s go-micro clients keep idle connections), and the
 * linger after a final reply. Each kind has one timeout per listener, so the connections waiting
 * for one kind form a list in deadline order (re-arming moves one to the tail), and one timer per
 * listener serves them all: no timer per connection, no heap operation per request. A handler's own
 * time is not bounded here: the RPC layer's deadline does that. max_conns closes the oldest idle
 * connection to make room for a new one, and max_conns_per_ip caps one client address. A peer that
 * shuts down its writing side after a request (HTTP/1.0 clients, nc -N) still gets its reply.
 *
 * With TLS (http_tls.c) a connection first runs the handshake, bounded by header_timeout_ms;
 * received bytes are decrypted into the same read buffer, replies are encrypted on their way
 * out, and a final reply ends with close_notify. A plain HTTP request on a TLS listener gets
 * Go's plain-text 400. */
#include "http_int.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* While a request is handled, reading goes on (to see the peer leave) until this many bytes
 * wait unparsed. */
#define PENDING_MAX (64 * 1024)
/* After a final reply the connection is shut down for writing and drained for at most this
 * long (and this many bytes) before it is closed, so that the peer reads the reply instead of
 * a reset. */
#define LINGER_MS 2000
#define LINGER_BYTES (16 * 1024 * 1024)
/* Buffers bigger than this are freed after their message. */
#define KEEP_WBUF_MAX (1024 * 1024)
/* A connection with no unparsed bytes holds no read buffer: its reads go to the listener's
 * buffer of this size, and only what is left unparsed after one (pipelined requests) is copied
 * to memory of the connection's. */
#define LOAN_BYTES (64 * 1024)

/* A pooled buffer bigger than this is freed rather than kept. */
#define POOL_KEEP_BYTES (16 * 1024)
/* GET requests a listener takes beyond max_calls (see slots_full). */
#define GET_SLOTS 4

#define ADDR_MAX 64 /* "[v6 address]:port" and its NUL */

/* Before the connection's addresses are known, or when there was no memory for them. */
static char no_addr[] = "";

typedef struct listener listener;
typedef struct sconn sconn;

/* What a connection holds only while a request is read, handled and answered (or while it is a
 * stream): the parser with its buffers, and the reply's header block. An idle connection, or one
 * waiting for a call slot, holds none. */
typedef struct work {
    cm__http_in in;
    cm__http_buf wb;
    int early;     /* the header block is in wb and early_sent bytes were written */
    int early_err; /* the write failed (a libuv error): the connection closes */
    size_t early_sent;
    size_t early_blen; /* the body length its header block announced */
    /* A stream's (cm_tconn_stream): its handle, callbacks and queued writes. */
    cm__http_tstream ts;
    const cm_tstream_cbs *scbs;
    void *suser;
    cm__http_wq wq;
    struct sconn *c;   /* the connection that holds it */
    struct work *next; /* in the listener's pool */
    char *rspare;      /* a read buffer's spare, kept with the parser while it is pooled */
    size_t rspare_cap;
} work;

/* The listener's counters (cm_listener_stats). One writer, the loop thread; readers on any
 * thread (a server with several loops sums them): a relaxed load and store, which cost what a
 * plain increment does. */
typedef struct lstats {
    _Atomic uint64_t accepted, active, requests, rejected, timeouts, evicted, refused, tls_failed;
} lstats;

static void
bump(_Atomic uint64_t *v, int up)
{
    uint64_t n = atomic_load_explicit(v, memory_order_relaxed);
    atomic_store_explicit(v, up ? n + 1 : n - 1, memory_order_relaxed);
}

static uint64_t
get(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

enum {
    S_READ,   /* parsing; idle between requests */
    S_HANDLE, /* a request is with the callback */
    S_WRITE,  /* the reply is being written */
    S_LINGER, /* a final reply was sent; draining until the peer closes */
    S_STREAM, /* a stream: requests go to the stream's callbacks, responses are sent freely */
    S_CLOSED, /* the socket is closing or closed */
};

enum { T_NONE, T_IDLE, T_HEADER, T_BODY, T_LINGER, T_KINDS };

struct sconn {
    struct cm_tconn base;
    listener *l; /* NULL once the socket is closed */
    uv_tcp_t tcp;
    uint64_t deadline; /* loop time (uv_now) when what it waits for (tkind) times out */
    /* Written by the loop thread only (bit-fields share their words). */
    unsigned tkind : 3; /* T_*: what the deadline bounds; its list in the listener */
    unsigned state : 3;
    unsigned in_request : 1;    /* a request was delivered and not replied yet */
    unsigned parsing : 1;       /* inside process() */
    unsigned read_stopped : 1;  /* reading paused: too many unparsed bytes */
    unsigned close_after : 1;   /* close once the reply is written */
    unsigned queued : 1;        /* in the listener's resume queue */
    unsigned idle : 1;          /* in the listener's idle list */
    unsigned waiting : 1;       /* in the listener's list of connections waiting for a call slot */
    unsigned counted : 1;       /* holds one of the listener's call slots */
    unsigned peer_eof : 1;      /* the peer shut down its writing side */
    unsigned continue_sent : 1; /* "100 Continue" was sent for the current request */
    unsigned ip_counted : 1;    /* counted in the listener's per-address table */
    unsigned spaused : 1;       /* the stream's reader asked to stop reading */
    unsigned sdone : 1;         /* the stream was released or told of its end: no more callbacks */
    /* The early reply (cm_tconn_reply_early), written by the thread that ran the handler. The
     * loop sets early_ok and early_fd when it delivers a request; the handler's thread writes
     * the header block into the work's wb and sets the work's early fields, and the loop reads
     * them in cm_tconn_reply() (the hand-off of the finished call orders the two). wguard keeps
     * the socket open while that thread writes: 0 free, 1 writing, 2 closed (conn_close waits
     * for 1 to end). */
    int early_ok;
    int early_fd;
    _Atomic int wguard;
    unsigned nhandles;
    size_t drained;
    cm__http_rbuf rb;
    work *w;              /* NULL while idle */
    cm__tls *tls;         /* NULL: plain HTTP */
    sconn *prev, *next;   /* the listener's connections */
    sconn *qprev, *qnext; /* the listener's resume queue */
    sconn *iprev, *inext; /* the listener's idle list, oldest first, or its waiting list */
    sconn *dprev, *dnext; /* the listener's list of the deadline kind tkind */
    char *peer;           /* "addr:port", then local's bytes: one allocation */
    char *local;
};

struct listener {
    struct cm_listener base;
    cm_transport *t;
    uv_tcp_t server;
    uv_idle_t idle; /* parses bytes left behind by pipelining; see on_idle() */
    uv_tcp_t spare; /* takes and closes a connection when memory for it runs out */
    int spare_busy;
    cm_request_cb cb;
    void *user;
    sconn *conns;
    sconn *qhead, *qtail;
    sconn *ihead, *itail; /* idle connections, oldest first */
    sconn *whead, *wtail; /* connections with a request, waiting for a call slot */
    unsigned calls;       /* requests with the callback (the slots taken) */
    work *pool;           /* parsers kept for the next requests */
    unsigned npool;
    sconn *dhead[T_KINDS], *dtail[T_KINDS]; /* by deadline kind, earliest first */
    uv_timer_t timer;                       /* the earliest deadline of all */
    uint64_t timer_due;                     /* when it fires, while it runs */
    char *rbuf;           /* LOAN_BYTES lent to one read at a time (cm__http_rbuf_lend) */
    cm__ipcount *ips;
    uint64_t evict_logged_ms; /* when the last eviction was logged (one line per burst) */
    uint64_t tls_logged_ms;   /* when the last failed handshake was logged (the same) */
    lstats st;
    unsigned nhandles;
    int accepting;
    int closing;
    void (*done)(void *arg);
    void *done_arg;
    char addr[64];
};

static void process(sconn *c);
static void conn_close(sconn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void update_phase(sconn *c);
static void start_linger(sconn *c);

/* ---- lists ---- */

static void
conn_link(listener *l, sconn *c)
{
    c->prev = NULL;
    c->next = l->conns;
    if (l->conns) {
        l->conns->prev = c;
    }
    l->conns = c;
}

static void
conn_unlink(listener *l, sconn *c)
{
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        l->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
}

static void on_idle(uv_idle_t *h);

static void
enqueue(sconn *c)
{
    listener *l = c->l;
    if (c->queued) {
        return;
    }
    c->queued = 1;
    c->qnext = NULL;
    c->qprev = l->qtail;
    if (l->qtail) {
        l->qtail->qnext = c;
    } else {
        l->qhead = c;
        uv_idle_start(&l->idle, on_idle);
    }
    l->qtail = c;
}

static void
dequeue(sconn *c)
{
    listener *l = c->l;
    if (!c->queued) {
        return;
    }
    c->queued = 0;
    if (c->qprev) {
        c->qprev->qnext = c->qnext;
    } else {
        l->qhead = c->qnext;
    }
    if (c->qnext) {
        c->qnext->qprev = c->qprev;
    } else {
        l->qtail = c->qprev;
    }
    c->qprev = c->qnext = NULL;
    if (!l->qhead && !l->closing) {
        uv_idle_stop(&l->idle);
    }
}

/* The idle list and the waiting list share a connection's links (it is in one at most). */
static void
ilist_append(sconn **head, sconn **tail, sconn *c)
{
    c->inext = NULL;
    c->iprev = *tail;
    if (*tail) {
        (*tail)->inext = c;
    } else {
        *head = c;
    }
    *tail = c;
}

static void
ilist_remove(sconn **head, sconn **tail, sconn *c)
{
    if (c->iprev) {
        c->iprev->inext = c->inext;
    } else {
        *head = c->inext;
    }
    if (c->inext) {
        c->inext->iprev = c->iprev;
    } else {
        *tail = c->iprev;
    }
    c->iprev = c->inext = NULL;
}

static void
idle_unlink(sconn *c)
{
    listener *l = c->l;
    if (c->idle && l != NULL) {
        c->idle = 0;
        ilist_remove(&l->ihead, &l->itail, c);
    }
}

static void
idle_link(sconn *c)
{
    listener *l = c->l;
    if (!c->idle) {
        c->idle = 1;
        ilist_append(&l->ihead, &l->itail, c);
    }
}

/* Takes the connection off its deadline list (the listener's timer is left to find out). */
static void
deadline_unlink(sconn *c)
{
    listener *l = c->l;
    int k = c->tkind;
    if (k == T_NONE || l == NULL || (c->dprev == NULL && l->dhead[k] != c)) {
        return;
    }
    if (c->dprev) {
        c->dprev->dnext = c->dnext;
    } else {
        l->dhead[k] = c->dnext;
    }
    if (c->dnext) {
        c->dnext->dprev = c->dprev;
    } else {
        l->dtail[k] = c->dprev;
    }
    c->dprev = c->dnext = NULL;
}

/* ---- the parsers' pool ---- */

static void
work_free(work *w)
{
    if (w != NULL) {
        cm__http_in_free(&w->in);
        cm__http_buf_free(&w->wb);
        cm__http_wq_free(&w->wq);
        free(w->rspare);
        free(w);
    }
}

/* Gives c a parser (and a reply buffer) for its next request, from the listener's pool when it
 * has one. 0 or CM_ENOMEM. */
static int
work_get(sconn *c)
{
    if (c->w != NULL) {
        return 0;
    }
    listener *l = c->l;
    work *w = l->pool;
    if (w != NULL) {
        l->pool = w->next;
        l->npool--;
    } else if ((w = calloc(1, sizeof(*w))) == NULL) {
        return CM_ENOMEM;
    }
    cm__http_in kept = w->in; /* the buffers go on; the parser starts afresh */
    cm__http_in_init(&w->in, HTTP_REQUEST, l->t->opts.max_header_bytes, l->t->opts.max_body_bytes);
    w->in.strs = kept.strs;
    w->in.hdrs = kept.hdrs;
    w->in.hcap = kept.hcap;
    w->in.body = kept.body;
    w->wb.len = 0;
    w->c = c;
    c->w = w;
    if (c->rb.spare == NULL && w->rspare != NULL) { /* for bytes a read leaves unparsed */
        c->rb.spare = w->rspare;
        c->rb.spare_cap = w->rspare_cap;
        w->rspare = NULL;
    }
    return 0;
}

/* c is idle: its parser goes back to the listener's pool (its buffers when of ordinary sizes). */
static void
work_put(sconn *c)
{
    work *w = c->w;
    listener *l = c->l;
    if (w == NULL || l == NULL) {
        return;
    }
    c->w = NULL;
    if (w->rspare == NULL) { /* an idle connection keeps no read memory */
        w->rspare = c->rb.spare;
        w->rspare_cap = c->rb.spare_cap;
    } else {
        free(c->rb.spare);
    }
    c->rb.spare = NULL;
    c->rb.spare_cap = 0;
    if (l->npool >= l->t->opts.max_calls || l->closing) { /* as many as the slots use */
        work_free(w);
        return;
    }
    cm__http_buf_trim(&w->in.strs, POOL_KEEP_BYTES);
    cm__http_buf_trim(&w->in.body, POOL_KEEP_BYTES);
    cm__http_buf_trim(&w->wb, POOL_KEEP_BYTES);
    if (w->in.hcap * sizeof(cm_hdr) > POOL_KEEP_BYTES) {
        free(w->in.hdrs);
        w->in.hdrs = NULL;
        w->in.hcap = 0;
    }
    w->next = l->pool;
    l->pool = w;
    l->npool++;
}

/* ---- call slots ---- */

/* c has a request to parse and every call slot is taken: it stops reading (what it sent waits in
 * the kernel's socket buffers) until a slot is freed. */
static void
wait_link(sconn *c)
{
    listener *l = c->l;
    if (c->waiting) {
        return;
    }
    idle_unlink(c);
    work_put(c);
    c->waiting = 1;
    ilist_append(&l->whead, &l->wtail, c);
    if (!c->read_stopped) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = 1;
    }
}

static void
wait_unlink(sconn *c)
{
    listener *l = c->l;
    if (c->waiting && l != NULL) {
        c->waiting = 0;
        ilist_remove(&l->whead, &l->wtail, c);
    }
}

/* c holds a call slot (one it was kept, or one more). */
static void
slot_hold(sconn *c)
{
    if (!c->counted) {
        c->counted = 1;
        c->l->calls++;
    }
}

/* c waited for a call slot: it takes one (kept for it: a connection that did not wait cannot
 * take it first) and its request is parsed one turn later. */
static void
slot_give(sconn *c)
{
    wait_unlink(c);
    slot_hold(c);
    if (c->rb.pos < c->rb.len) {
        enqueue(c);
    } else {
        /* It was readable: its request, or its end, is read on the next turn. */
        c->read_stopped = 0;
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
        }
    }
}

/* Whether a new request of l waits for a call slot: every slot is taken and l still accepts
 * (once it stops, its owner answers requests at once: a server refuses them while it drains).
 * A GET has GET_SLOTS more: health probes, metrics and the status page are answered while calls
 * saturate the server, as brpc's built-in services are. */
static int
slots_full(const listener *l, int get)
{
    return l->accepting && l->calls >= l->t->opts.max_calls + (get ? GET_SLOTS : 0);
}

/* Whether the n bytes at p start a GET request. */
static int
is_get(const char *p, size_t n)
{
    return n >= 4 && memcmp(p, "GET ", 4) == 0;
}

/* Whether c's socket holds a GET request first (its bytes unread: a look, no read). */
static int
peek_get(const sconn *c)
{
    uv_os_fd_t fd;
    char b[4];
    return uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0 &&
           recv(fd, b, sizeof b, MSG_PEEK | MSG_DONTWAIT) == (ssize_t)sizeof b &&
           is_get(b, sizeof b);
}

/* c's request is answered (or became a stream, or c closed): its slot goes to the connection
 * that has waited longest, whose bytes are parsed one turn later. */
static void
slot_release(sconn *c)
{
    listener *l = c->l;
    if (!c->counted || l == NULL) {
        return;
    }
    c->counted = 0;
    l->calls--;
    if (l->whead != NULL && !slots_full(l, 0)) { /* a GET's slot may have been one more */
        slot_give(l->whead);
    }
}

/* Parses what connections left buffered when their reply was sent, one turn later, so that a
 * request is never delivered from inside cm_tconn_reply(). */
static void
on_idle(uv_idle_t *h)
{
    listener *l = h->data;
    size_t budget = 0;
    for (sconn *c = l->qhead; c; c = c->qnext) {
        budget++;
    }
    while (budget-- && l->qhead) {
        sconn *c = l->qhead;
        dequeue(c);
        process(c);
        update_phase(c);
    }
}

/* ---- closing ---- */

static void
listener_maybe_done(listener *l)
{
    if (!l->closing || l->nhandles > 0 || l->conns) {
        return;
    }
    if (l->done) {
        l->done(l->done_arg);
    }
    cm__ipcount_close(l->ips);
    free(l->rbuf);
    while (l->pool != NULL) {
        work *w = l->pool;
        l->pool = w->next;
        work_free(w);
    }
    free(l);
}

static void
conn_free(sconn *c)
{
    cm__http_rbuf_free(&c->rb);
    work_free(c->w);
    if (c->peer != no_addr) {
        free(c->peer);
    }
    cm__tls_free(c->tls);
    free(c);
}

static void
on_conn_handle_closed(uv_handle_t *h)
{
    sconn *c = h->data;
    if (--c->nhandles > 0) {
        return;
    }
    listener *l = c->l;
    conn_unlink(l, c);
    bump(&l->st.active, 0);
    c->l = NULL;
    if (!c->in_request) {
        conn_free(c);
    }
    listener_maybe_done(l);
}

/* Keeps an early reply's writer off the socket from now on; waits while one writes (a single
 * non-blocking send). */
static void
close_guard(sconn *c)
{
    int expect = 0;
    while (!atomic_compare_exchange_weak_explicit(&c->wguard, &expect, 2, memory_order_acquire,
                                                  memory_order_relaxed)) {
        if (expect == 2) {
            return;
        }
        expect = 0;
        sched_yield();
    }
}

/* The peer's address without the port (the key of the per-address count). */
static void
peer_ip(const sconn *c, char *ip)
{
    snprintf(ip, ADDR_MAX, "%s", c->peer);
    char *colon = strrchr(ip, ':');
    if (colon != NULL) {
        *colon = '\0';
    }
}

/* Closes the socket now. A request with the callback keeps the struct alive until its reply. */
static void
conn_close(sconn *c)
{
    if (c->state == S_CLOSED) {
        return;
    }
    int was_stream =
        c->state == S_STREAM || (c->w != NULL && c->w->scbs != NULL && c->state == S_LINGER);
    c->state = S_CLOSED;
    dequeue(c);
    idle_unlink(c);
    wait_unlink(c);
    slot_release(c);
    if (c->ip_counted) {
        char ip[ADDR_MAX];
        peer_ip(c, ip);
        c->ip_counted = 0;
        cm__ipcount_del(c->l->ips, ip);
    }
    deadline_unlink(c);
    close_guard(c);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    if (was_stream && !c->sdone) {
        c->sdone = 1;
        c->w->scbs->on_end(c->w->suser, CM_ECLOSED);
    }
}

/* The TLS session to write through: NULL for plain HTTP, and before the handshake is done (the
 * plain-text answer to a plain HTTP request). */
static cm__tls *
wtls(const sconn *c)
{
    return c->tls != NULL && cm__tls_done(c->tls) ? c->tls : NULL;
}

static int
in_handshake(const sconn *c)
{
    return c->tls != NULL && !cm__tls_done(c->tls);
}

/* Counts a failed handshake; one warning per burst says so (each is logged at debug). */
static void
handshake_failed(sconn *c, const char *what)
{
    listener *l = c->l;
    bump(&l->st.tls_failed, 1);
    uint64_t now = cm_now_ms();
    if (l->tls_logged_ms == 0 || now - l->tls_logged_ms > 10000) {
        l->tls_logged_ms = now;
        cm_log(CM_LOG_WARN, "transport.http",
               "%s: TLS handshakes are failing (%llu so far; the last from %s: %s)", l->addr,
               (unsigned long long)get(&l->st.tls_failed), c->peer, what);
    }
}

/* A connection's deadline passed. */
static void
expired(sconn *c)
{
    if (c->tkind == T_HEADER && in_handshake(c) && c->l != NULL) {
        handshake_failed(c, "timed out");
    }
    if (c->tkind != T_LINGER && c->l != NULL) {
        bump(&c->l->st.timeouts, 1);
        cm_log(CM_LOG_DEBUG, "transport.http", "%s: %s timeout; closing", c->peer,
               c->tkind == T_IDLE     ? "idle"
               : c->tkind == T_HEADER ? "header"
                                      : "body");
    }
    conn_close(c);
}

static void on_timer(uv_timer_t *h);

/* Runs the listener's timer for the earliest deadline of its lists (stops it when none). */
static void
timer_update(listener *l)
{
    uint64_t due = UINT64_MAX;
    for (int k = T_IDLE; k < T_KINDS; k++) {
        if (l->dhead[k] != NULL && l->dhead[k]->deadline < due) {
            due = l->dhead[k]->deadline;
        }
    }
    if (due == UINT64_MAX) {
        uv_timer_stop(&l->timer);
        return;
    }
    if (uv_is_active((uv_handle_t *)&l->timer) && l->timer_due == due) {
        return;
    }
    uint64_t now = uv_now(l->timer.loop);
    l->timer_due = due;
    uv_timer_start(&l->timer, on_timer, due > now ? due - now : 0, 0);
}

/* Times out the connections whose deadline passed. */
static void
on_timer(uv_timer_t *h)
{
    listener *l = h->data;
    uint64_t now = uv_now(h->loop);
    for (int k = T_IDLE; k < T_KINDS; k++) {
        while (l->dhead[k] != NULL && l->dhead[k]->deadline <= now) {
            sconn *c = l->dhead[k];
            deadline_unlink(c);
            expired(c); /* closes it */
        }
    }
    timer_update(l);
}

/* Bounds what the connection waits for now. */
static void
arm(sconn *c, int kind)
{
    deadline_unlink(c);
    c->tkind = kind;
    if (kind == T_NONE || c->state == S_CLOSED) {
        return;
    }
    listener *l = c->l;
    const cm_transport_opts *o = &l->t->opts;
    uint64_t ms = kind == T_IDLE     ? o->idle_timeout_ms
                  : kind == T_HEADER ? o->header_timeout_ms
                  : kind == T_BODY   ? o->body_timeout_ms
                                     : LINGER_MS;
    if (ms == UINT64_MAX) {
        return;
    }
    uint64_t now = uv_now(l->timer.loop);
    c->deadline = now + ms;
    c->dnext = NULL;
    c->dprev = l->dtail[kind];
    if (l->dtail[kind]) {
        l->dtail[kind]->dnext = c;
    } else {
        l->dhead[kind] = c;
    }
    l->dtail[kind] = c;
    if (!uv_is_active((uv_handle_t *)&l->timer) || c->deadline < l->timer_due) {
        timer_update(l);
    }
}

/* After bytes were read or a reply went out, while reading: idle, in a header block (its
 * deadline runs from the first byte), or in a body (each read is progress). A peer that shut
 * down its writing side and has nothing more to parse is closed: its replies are written. */
static void
update_phase(sconn *c)
{
    if (c->state != S_READ) {
        return;
    }
    if (c->peer_eof && !c->queued) {
        if (c->tls != NULL) {
            start_linger(c); /* close_notify first, then the close */
        } else {
            conn_close(c);
        }
        return;
    }
    if (in_handshake(c)) {
        idle_unlink(c);
        if (c->tkind != T_HEADER) {
            arm(c, T_HEADER); /* the handshake is bounded as a header block is */
        }
        return;
    }
    if (c->waiting) {
        arm(c, T_NONE); /* the calls ahead of it are bounded by the layer above */
        return;
    }
    if ((c->w == NULL || !c->w->in.started) && c->rb.pos >= c->rb.len) {
        if (c->tkind != T_IDLE) {
            arm(c, T_IDLE);
        }
        work_put(c);
        idle_link(c);
        return;
    }
    idle_unlink(c);
    if (c->w == NULL || !c->w->in.in_body) {
        if (c->tkind != T_HEADER) {
            arm(c, T_HEADER);
        }
    } else {
        arm(c, T_BODY);
    }
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    sconn *c = req->data;
    free(req);
    /* The replies are written. A peer that already shut down its side has nothing more to
     * send: no need to drain until the linger deadline. */
    if (status < 0 || c->peer_eof) {
        conn_close(c);
    }
}

/* Sends FIN after the queued writes and drains the peer until it closes (or a deadline), so that
 * the peer reads a final reply rather than a reset caused by unread bytes. */
static void
start_linger(sconn *c)
{
    c->state = S_LINGER;
    c->rb.pos = c->rb.len = 0;
    if (c->tls != NULL) {
        cm__tls_close_notify(c->tls, (uv_stream_t *)&c->tcp);
    }
    uv_shutdown_t *req = malloc(sizeof(*req)); /* rare: no room kept for it in every sconn */
    if (req == NULL) {
        conn_close(c);
        return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(req);
        conn_close(c);
        return;
    }
    idle_unlink(c);
    arm(c, T_LINGER);
    if (c->read_stopped) {
        c->read_stopped = 0;
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
        }
    }
}

/* ---- writing ---- */

static void
on_write(uv_write_t *req, int status)
{
    sconn *c = req->data;
    free(req); /* cm__http_send() allocated it */
    if (c->state == S_CLOSED) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->state != S_WRITE) {
        return; /* a lingering connection's final reply */
    }
    cm__http_buf_trim(&c->w->wb, KEEP_WBUF_MAX);
    if (c->close_after) {
        start_linger(c);
        return;
    }
    c->state = S_READ;
    process(c);
    update_phase(c);
}

/* Writes the header block in c->w->wb and body; 0 (written or queued) or a libuv error / CM_ENOMEM
 * (the connection is closed). With final set the connection lingers and closes afterwards. */
static int
send_reply(sconn *c, const uint8_t *body, size_t blen, int final)
{
    size_t sent;
    int r = cm__http_send((uv_stream_t *)&c->tcp, wtls(c), NULL, &c->w->wb, c->w->wb.len, body,
                          blen, on_write, &sent);
    if (r < 0) {
        conn_close(c);
        return r;
    }
    if (final) {
        start_linger(c);
    } else {
        c->state = r == 1 ? S_READ : S_WRITE;
        arm(c, r == 1 ? T_NONE : T_BODY); /* a reply the peer does not read is bounded */
    }
    return 0;
}

static int
put_str(cm__http_buf *b, const char *s)
{
    return cm__http_buf_append(b, s, strlen(s));
}

static void deliver(sconn *c, int status);

/* A request the transport refuses by itself. Malformed HTTP gets a plain 400 here; a request over
 * a limit goes to the callback as a code (CM_EHDRTOOBIG, CM_ETOOBIG), so that the layer above
 * answers it in its own protocol. Either way the connection closes after that reply. */
static void
reject(sconn *c, int err)
{
    listener *l = c->l;
    cm__http_in *in = &c->w->in;
    bump(&l->st.rejected, 1);
    c->w->wb.len = 0;
    if (err == CM_ENOMEM) {
        conn_close(c);
        return;
    }
    if (in->limit) {
        c->w->in.keep_alive = 0;
        deliver(c, in->limit == 431 ? CM_EHDRTOOBIG : CM_ETOOBIG);
        return;
    }
    const char *desc = cm__http_in_error(in);
    const char *status =
        in->expect_failed ? "HTTP/1.1 417 Expectation Failed\r\n" : "HTTP/1.1 400 Bad Request\r\n";
    if (put_str(&c->w->wb, status) < 0 ||
        put_str(&c->w->wb, "Content-Type: text/plain\r\nConnection: close\r\nContent-Length: ") <
            0 ||
        cm__http_put_u64(&c->w->wb, strlen(desc)) < 0 || put_str(&c->w->wb, "\r\n\r\n") < 0) {
        conn_close(c);
        return;
    }
    send_reply(c, (const uint8_t *)desc, strlen(desc), 1);
}

/* The status line: 200, or the status of a reply whose first header is ":status". */
static int
put_status_line(cm__http_buf *b, const cm_msg *rsp)
{
    unsigned code = 200;
    if (rsp->nhdrs > 0 && strcmp(rsp->hdrs[0].key, ":status") == 0) {
        code = (unsigned)strtoul(rsp->hdrs[0].val, NULL, 10);
        if (code < 100 || code > 599) {
            code = 500;
        }
    }
    if (code == 200) {
        return put_str(b, "HTTP/1.1 200 OK\r\n");
    }
    char line[96];
    snprintf(line, sizeof(line), "HTTP/1.1 %u %s\r\n", code,
             http_status_str((enum http_status)code));
    return put_str(b, line);
}

/* The reply's header block, in b from its start. */
static int
put_head(cm__http_buf *b, const cm_msg *rsp)
{
    b->len = 0;
    if (put_status_line(b, rsp) < 0 || put_str(b, "Content-Length: ") < 0 ||
        cm__http_put_u64(b, rsp->body_len) < 0 || put_str(b, "\r\n") < 0 ||
        cm__http_put_headers(b, rsp,
                             CM__HTTP_SKIP_HOST | CM__HTTP_SKIP_CLEN | CM__HTTP_SKIP_TE |
                                 CM__HTTP_SKIP_CONN) < 0 ||
        put_str(b, "\r\n") < 0) {
        return CM_ENOMEM;
    }
    return 0;
}

/* Any thread, while the request is with the callback: the header block into wb, and as much of
 * the reply as the socket takes now. The loop's cm__http_reply() sends the rest. */
int
cm__http_reply_early(cm_tconn *base, const cm_msg *rsp)
{
    sconn *c = (sconn *)base;
    if (!c->early_ok || c->w->early) {
        return CM_ENOTSUP;
    }
    if (put_head(&c->w->wb, rsp) < 0) {
        return CM_ENOMEM;
    }
    c->w->early = 1;
    c->w->early_sent = 0;
    c->w->early_err = 0;
    c->w->early_blen = rsp->body_len;
    int expect = 0;
    if (!atomic_compare_exchange_strong_explicit(&c->wguard, &expect, 1, memory_order_acquire,
                                                 memory_order_relaxed)) {
        return 0; /* closed: the loop's reply learns it */
    }
    struct iovec iov[2] = {{c->w->wb.p, c->w->wb.len},
                           {(void *)(uintptr_t)rsp->body, rsp->body_len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = rsp->body_len > 0 ? 2 : 1};
    ssize_t n;
    do {
        n = sendmsg(c->early_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    atomic_store_explicit(&c->wguard, 0, memory_order_release);
    if (n >= 0) {
        c->w->early_sent = (size_t)n;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        c->w->early_err = uv_translate_sys_error(errno);
    }
    return 0;
}

/* On the loop: what an early reply left to write. */
static int
send_rest(sconn *c, const cm_msg *rsp)
{
    c->w->early = 0;
    if (c->w->early_err != 0 || rsp->body_len != c->w->early_blen) {
        conn_close(c); /* a failed write, or a body unlike the one announced */
        return c->w->early_err != 0 ? c->w->early_err : CM_EINVAL;
    }
    size_t hlen = c->w->wb.len, sent = c->w->early_sent;
    const uint8_t *body = rsp->body;
    size_t blen = rsp->body_len;
    if (sent >= hlen) {
        if (blen > 0) { /* an empty body may be NULL */
            body += sent - hlen;
            blen -= sent - hlen;
        }
        c->w->wb.len = 0;
    } else {
        memmove(c->w->wb.p, c->w->wb.p + sent, hlen - sent);
        c->w->wb.len = hlen - sent;
    }
    if (c->w->wb.len == 0 && blen == 0) {
        c->state = S_READ; /* as send_reply() after a whole write */
        arm(c, T_NONE);
        return 0;
    }
    return send_reply(c, body, blen, 0);
}

int
cm__http_reply(cm_tconn *base, const cm_msg *rsp, int close_after)
{
    sconn *c = (sconn *)base;
    if (!c->in_request || c->w->scbs != NULL) {
        return CM_ESTATE;
    }
    c->in_request = 0;
    slot_release(c);
    c->early_ok = 0; /* a late cm_tconn_reply_early() must not write into this reply */
    if (c->state == S_CLOSED) {
        if (!c->l) {
            conn_free(c);
        }
        return CM_ECLOSED;
    }
    static const cm_msg empty = {NULL, 0, NULL, 0};
    if (!rsp) {
        rsp = &empty;
    }
    c->close_after = c->close_after || close_after;
    int r;
    if (c->w->early) {
        r = send_rest(c, rsp);
    } else if (put_head(&c->w->wb, rsp) < 0) {
        conn_close(c);
        return CM_ENOMEM;
    } else {
        r = send_reply(c, rsp->body, rsp->body_len, 0);
    }
    /* rsp may point into the request (an echo): the request's buffers go only now. */
    cm__http_in_trim(&c->w->in);
    if (r < 0) {
        return CM_ECLOSED;
    }
    if (c->state == S_READ) {
        if (c->close_after) {
            start_linger(c);
        } else if (!c->parsing) {
            if (c->rb.pos < c->rb.len) {
                enqueue(c);
            } else if (c->read_stopped) {
                process(c);
            }
            update_phase(c);
        }
    }
    return 0;
}

/* ---- reading ---- */

static void
deliver(sconn *c, int status)
{
    listener *l = c->l;
    c->state = S_HANDLE;
    c->in_request = 1;
    slot_hold(c); /* a request parsed while the slots were taken goes over by one */
    c->continue_sent = 0;
    idle_unlink(c);
    arm(c, T_NONE); /* the handler's time is the RPC layer's to bound */
    c->close_after = !c->w->in.keep_alive;
    /* An early reply needs plain text and nothing else on its way out (a "100 Continue"). */
    uv_os_fd_t fd;
    c->w->early = 0;
    c->early_ok = status == 0 && c->tls == NULL &&
                  uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0 &&
                  uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0;
    c->early_fd = c->early_ok ? fd : -1;
    if (status == 0) {
        bump(&l->st.requests, 1);
    }
    l->cb(&c->base, status, status == 0 ? &c->w->in.msg : NULL, l->user);
}

static void
on_continue_written(uv_write_t *req, int status)
{
    sconn *c = req->data;
    free(req);
    if (status < 0 && c->state != S_CLOSED) {
        conn_close(c);
    }
}

/* The body of an "Expect: 100-continue" request is acceptable (within the limits, checked when
 * its header block completed): tell the client to send it. */
static void
send_continue(sconn *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    c->continue_sent = 1;
    if (c->tls != NULL) {
        if (cm__tls_write(c->tls, line, sizeof(line) - 1) < 0 ||
            cm__tls_flush(c->tls, (uv_stream_t *)&c->tcp) < 0) {
            conn_close(c);
        }
        return;
    }
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)line, sizeof(line) - 1);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)b.len) {
        return;
    }
    if (n > 0) {
        b.base += n;
        b.len -= (size_t)n;
    } else if (n != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    /* Rare (the socket's buffer is full): the request is allocated for this write alone. */
    uv_write_t *req = malloc(sizeof(*req));
    if (req == NULL) {
        conn_close(c);
        return;
    }
    req->data = c;
    if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written) < 0) {
        free(req);
        conn_close(c);
    }
}

/* Parses buffered bytes while the connection is between requests. */
static void
process(sconn *c)
{
    if (c->parsing) {
        return;
    }
    c->parsing = 1;
    while ((c->state == S_READ || (c->state == S_STREAM && !c->spaused)) && c->rb.pos < c->rb.len) {
        if (c->state == S_READ && (c->w == NULL || !c->w->in.started) && !c->counted &&
            slots_full(c->l, is_get(c->rb.p + c->rb.pos, c->rb.len - c->rb.pos))) {
            wait_link(c); /* a new request, and every call slot is taken */
            break;
        }
        if (work_get(c) < 0) {
            conn_close(c);
            break;
        }
        int complete;
        ptrdiff_t n = cm__http_in_execute(&c->w->in, c->rb.p + c->rb.pos, c->rb.len - c->rb.pos,
                                          &complete, 0);
        if (n < 0) {
            if (c->state == S_STREAM) {
                conn_close(c); /* the stream learns it from on_end */
            } else {
                reject(c, (int)n);
            }
            break;
        }
        c->rb.pos += (size_t)n;
        if (complete && c->state == S_STREAM) {
            bump(&c->l->st.requests, 1);
            c->w->scbs->on_msg(c->w->suser, &c->w->in.msg);
            cm__http_in_trim(&c->w->in);
        } else if (complete) {
            deliver(c, 0);
        } else if (c->w->in.expect_continue && c->w->in.in_body && !c->continue_sent) {
            send_continue(c);
        }
    }
    c->parsing = 0;
    if (c->counted && !c->in_request) {
        slot_release(c); /* kept for it while it waited, and no request came of it */
    }
    cm__http_rbuf_drained(&c->rb); /* when everything was parsed */
    if (c->state == S_STREAM && c->peer_eof) {
        if (c->rb.pos >= c->rb.len) {
            conn_close(c);
        }
        return;
    }
    if ((c->state == S_READ || (c->state == S_STREAM && !c->spaused)) && c->read_stopped &&
        !c->waiting) {
        c->read_stopped = 0;
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
        }
    }
}

/* What c would read next is a new request, and every call slot is taken: it is left in the
 * kernel's socket buffers for now, so that a connection waiting for a slot holds no memory for
 * it. A connection whose request is handled reads its next one early unless others wait: the
 * slot its reply frees would go to them. */
static int
next_waits(const sconn *c)
{
    const listener *l = c->l;
    if (c->rb.pos < c->rb.len || (c->w != NULL && c->w->in.started) || !slots_full(l, 0)) {
        return 0;
    }
    if (c->state == S_HANDLE || c->state == S_WRITE) {
        return l->whead != NULL;
    }
    return c->state == S_READ && !c->counted && (slots_full(l, 1) || !peek_get(c));
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    sconn *c = h->data;
    if (c->tls != NULL) {
        cm__tls_rbuf(cm__http_tls_ctx(c->l->t), buf);
        return;
    }
    listener *l = c->l;
    if (next_waits(c)) {
        *buf = uv_buf_init(NULL, 0); /* on_read() learns it as UV_ENOBUFS */
        return;
    }
    if (l->rbuf == NULL) {
        l->rbuf = malloc(LOAN_BYTES); /* NULL: the connection reads into a buffer of its own */
    }
    cm__http_rbuf_lend(&c->rb, l->rbuf, LOAN_BYTES, buf);
}

/* The peer's end of file, or a read error. */
static void
on_end(sconn *c, ssize_t nread)
{
    if (c->state == S_STREAM) {
        /* The requests still buffered are delivered first (process() closes after them). */
        c->peer_eof = nread == UV_EOF;
        if (c->peer_eof && c->rb.pos < c->rb.len) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->read_stopped = 0;
            return;
        }
        conn_close(c); /* the stream learns it from on_end */
        return;
    }
    if (nread == UV_EOF && (c->state == S_HANDLE || c->state == S_WRITE)) {
        /* A half-close after a request: its reply (and those of requests still buffered) is
         * written first; update_phase() closes afterwards. */
        c->peer_eof = 1;
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = 0;
        return;
    }
    if (in_handshake(c) && c->state == S_READ) {
        handshake_failed(c, "closed during the handshake");
    } else if (nread == UV_EOF && c->tls != NULL && c->state == S_READ) {
        c->peer_eof = 1; /* TLS: answer close_notify with close_notify, then close */
        start_linger(c);
        return;
    }
    /* EOF or an error: whatever was half-received is dropped; a request with the callback
     * learns it from cm_tconn_reply(). */
    conn_close(c);
}

/* n more bytes (plaintext) are in c->rb. */
static void
on_data(sconn *c, size_t n)
{
    switch (c->state) {
    case S_READ:
        process(c);
        update_phase(c);
        break;
    case S_STREAM:
        process(c);
        /* A paused stream keeps reading up to PENDING_MAX. */
        if (c->state == S_STREAM && c->rb.len - c->rb.pos > PENDING_MAX) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->read_stopped = 1;
        }
        break;
    case S_HANDLE:
    case S_WRITE:
        if (c->rb.len - c->rb.pos > PENDING_MAX) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->read_stopped = 1;
        }
        break;
    case S_LINGER:
        c->drained += n;
        c->rb.pos = c->rb.len = 0;
        if (c->drained > LINGER_BYTES) {
            conn_close(c);
        }
        break;
    default:
        break;
    }
}

/* A plain HTTP request on a TLS listener: Go's answer, in plain text, and the connection
 * closes. */
static void
refuse_plain(sconn *c)
{
    static const char rsp[] = "HTTP/1.0 400 Bad Request\r\n\r\n"
                              "Client sent an HTTP request to an HTTPS server.\n";
    handshake_failed(c, "plain HTTP on a TLS listener");
    if (work_get(c) < 0 || cm__http_buf_append(&c->w->wb, rsp, sizeof(rsp) - 1) < 0) {
        conn_close(c);
        return;
    }
    send_reply(c, NULL, 0, 1);
}

/* n bytes of TLS records: the handshake, then plaintext into c->rb. */
static void
on_tls_data(sconn *c, const char *data, size_t n)
{
    int handshaking = in_handshake(c);
    size_t plain;
    int r = cm__tls_input(c->tls, (uv_stream_t *)&c->tcp, data, n, &c->rb, &plain);
    if (r == CM_EPROTO && handshaking) {
        refuse_plain(c);
        return;
    }
    if (r < 0) {
        if (handshaking) {
            handshake_failed(c, cm__tls_why(c->tls));
        }
        conn_close(c);
        return;
    }
    if (plain > 0) {
        on_data(c, plain);
    } else if (handshaking && c->state == S_READ) {
        update_phase(c); /* done: now idle until the first request */
    }
    if (cm__tls_eof(c->tls) && c->state != S_CLOSED && c->state != S_LINGER) {
        on_end(c, UV_EOF);
    }
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sconn *c = s->data;
    if (nread == UV_ENOBUFS && c->state == S_READ) {
        wait_link(c); /* next_waits(): it waits for a slot, in turn */
        update_phase(c);
        return;
    }
    if (nread == UV_ENOBUFS && (c->state == S_HANDLE || c->state == S_WRITE)) {
        uv_read_stop(s); /* read again once its reply is out (process() restarts it) */
        c->read_stopped = 1;
        return;
    }
    if (nread < 0) {
        on_end(c, nread);
    } else if (nread > 0 && c->tls != NULL && c->state != S_LINGER) {
        on_tls_data(c, buf->base, (size_t)nread);
    } else if (nread > 0) {
        if (c->tls == NULL) {
            cm__http_rbuf_filled(&c->rb, (size_t)nread, buf->len);
        }
        on_data(c, (size_t)nread);
    }
    /* The listener's buffer goes back: what is left unparsed moves to the connection's own
     * (nothing when the connection is closing). */
    if (c->state == S_CLOSED) {
        c->rb.pos = c->rb.len;
    }
    if (cm__http_rbuf_settle(&c->rb) < 0) {
        conn_close(c);
    }
}

static void
on_spare_closed(uv_handle_t *h)
{
    listener *l = h->data;
    l->spare_busy = 0;
    l->nhandles--;
    listener_maybe_done(l);
}

static void
on_refused_closed(uv_handle_t *h)
{
    free(h);
}

/* Takes the pending connection and closes it at once (libuv stops accepting until one is
 * taken). */
static void
refuse(listener *l, uv_stream_t *server)
{
    bump(&l->st.refused, 1);
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t != NULL && uv_tcp_init(server->loop, t) == 0) {
        uv_accept(server, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, on_refused_closed);
        return;
    }
    free(t);
    if (!l->spare_busy && uv_tcp_init(server->loop, &l->spare) == 0) {
        l->spare_busy = 1;
        l->spare.data = l;
        l->nhandles++;
        uv_accept(server, (uv_stream_t *)&l->spare);
        uv_close((uv_handle_t *)&l->spare, on_spare_closed);
    }
}

/* At max_conns: closes the oldest idle connection to make room. 0, or -1 when none is idle. */
static int
make_room(listener *l)
{
    if (get(&l->st.active) < l->t->opts.max_conns) {
        return 0;
    }
    sconn *old = l->ihead;
    if (old == NULL) {
        return -1;
    }
    bump(&l->st.evicted, 1);
    conn_close(old);
    uint64_t now = cm_now_ms();
    if (l->evict_logged_ms == 0 || now - l->evict_logged_ms > 10000) {
        l->evict_logged_ms = now;
        cm_log(CM_LOG_WARN, "transport.http",
               "%s: at max_conns (%u): closing the oldest idle connections for new ones "
               "(%llu so far)",
               l->addr, l->t->opts.max_conns, (unsigned long long)get(&l->st.evicted));
    }
    return 0;
}

/* The peer's address without the port, counted against max_conns_per_ip. 0 or -1 (over). */
static int
count_peer(listener *l, sconn *c)
{
    char ip[ADDR_MAX];
    peer_ip(c, ip);
    int rc = cm__ipcount_add(l->ips, ip, l->t->opts.max_conns_per_ip);
    c->ip_counted = rc == 0;
    if (rc == CM_ESTATE) {
        bump(&l->st.refused, 1);
        cm_log(CM_LOG_DEBUG, "transport.http", "%s: %s is at max_conns_per_ip (%u)", l->addr, ip,
               l->t->opts.max_conns_per_ip);
    }
    return rc == 0 ? 0 : -1;
}

/* The connection's addresses, as text, in one allocation of their size. 0 or CM_ENOMEM. */
static int
name_addrs(sconn *c)
{
    char peer[ADDR_MAX] = "", local[ADDR_MAX] = "";
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0 ||
        cm__http_format_addr((struct sockaddr *)&ss, peer, sizeof(peer)) < 0) {
        peer[0] = '\0';
    }
    len = sizeof(ss);
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) < 0 ||
        cm__http_format_addr((struct sockaddr *)&ss, local, sizeof(local)) < 0) {
        local[0] = '\0';
    }
    size_t np = strlen(peer) + 1, nl = strlen(local) + 1;
    char *p = malloc(np + nl);
    if (p == NULL) {
        return CM_ENOMEM;
    }
    memcpy(p, peer, np);
    memcpy(p + np, local, nl);
    c->peer = p;
    c->local = p + np;
    return 0;
}

static void
on_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    if (status < 0 || l->closing) {
        return;
    }
    if (make_room(l) < 0) {
        refuse(l, server);
        return;
    }
    sconn *c = calloc(1, sizeof(*c));
    if (!c) {
        refuse(l, server); /* out of memory */
        return;
    }
    c->base.ops = &cm__transport_http;
    c->l = l;
    c->peer = c->local = no_addr;
    c->tcp.data = c;
    uv_tcp_init(server->loop, &c->tcp);
    c->nhandles = 1;
    conn_link(l, c);
    bump(&l->st.active, 1);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    bump(&l->st.accepted, 1);
    uv_tcp_nodelay(&c->tcp, 1);
    cm__tls_ctx *tls = cm__http_tls_ctx(l->t);
    if (name_addrs(c) < 0 || count_peer(l, c) < 0 ||
        (tls != NULL && cm__tls_new(tls, 1, NULL, NULL, c->peer, &c->tls) < 0) ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    update_phase(c);
}

/* ---- the listener ---- */

static void
on_listener_handle_closed(uv_handle_t *h)
{
    listener *l = h->data;
    l->nhandles--;
    listener_maybe_done(l);
}

static void
on_bind_failed_closed(uv_handle_t *h)
{
    free(h->data);
}

/* With reuse_port, SO_REUSEPORT on the listening socket (made by uv_tcp_init_ex, as libuv
 * makes it only at the bind otherwise): listeners of several loops then share the address and
 * the kernel spreads the connections among them. 0 or -errno. */
static int
set_reuse_port(uv_tcp_t *h)
{
    uv_os_fd_t fd;
    int on = 1;
    int r = uv_fileno((uv_handle_t *)h, &fd);
    if (r == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) {
        r = -errno;
    }
    return r;
}

int
cm__http_listen(cm_transport *t, const char *addr, cm_request_cb cb, void *user, cm_listener **out)
{
    char host[128];
    int port, bracketed;
    struct sockaddr_storage ss;
    if (cm__http_split_addr(addr, host, sizeof(host), &port, &bracketed) < 0) {
        return CM_EADDR;
    }
    if (!host[0]) {
        strcpy(host, "0.0.0.0");
    } else if (!bracketed && strcmp(host, "localhost") == 0) {
        strcpy(host, "127.0.0.1");
    }
    if (cm__http_ip_addr(host, port, &ss) < 0 || (bracketed != (ss.ss_family == AF_INET6))) {
        return CM_EADDR;
    }
    cm__tls_ctx *tls = cm__http_tls_ctx(t);
    if (tls != NULL && !cm__tls_ctx_can_serve(tls)) {
        cm_log(CM_LOG_ERROR, "transport.http",
               "%s: a TLS listener needs a certificate and its key (tls_cert_file, "
               "tls_key_file; MICRO_TRANSPORT_TLS_CERT, MICRO_TRANSPORT_TLS_KEY)",
               addr);
        return CM_EINVAL;
    }
    listener *l = calloc(1, sizeof(*l));
    if (!l) {
        return CM_ENOMEM;
    }
    l->base.ops = &cm__transport_http;
    l->t = t;
    l->cb = cb;
    l->user = user;
    l->server.data = l;
    int r = t->opts.reuse_port ? uv_tcp_init_ex(t->loop, &l->server, ss.ss_family)
                               : uv_tcp_init(t->loop, &l->server);
    if (r < 0) {
        free(l);
        return r;
    }
    if (t->opts.reuse_port) {
        r = set_reuse_port(&l->server);
    }
    if (r == 0) {
        r = uv_tcp_bind(&l->server, (struct sockaddr *)&ss, 0);
    }
    if (r == 0) {
        r = uv_listen((uv_stream_t *)&l->server, SOMAXCONN, on_connection);
    }
    int len = sizeof(ss);
    if (r == 0) {
        r = uv_tcp_getsockname(&l->server, (struct sockaddr *)&ss, &len);
    }
    if (r == 0) {
        r = cm__http_format_addr((struct sockaddr *)&ss, l->addr, sizeof(l->addr));
    }
    if (r == 0 && (l->ips = cm__ipcount_open(t->opts.reuse_port ? l->addr : NULL)) == NULL) {
        r = CM_ENOMEM;
    }
    if (r < 0) {
        uv_close((uv_handle_t *)&l->server, on_bind_failed_closed);
        return r;
    }
    uv_idle_init(t->loop, &l->idle);
    l->idle.data = l;
    uv_timer_init(t->loop, &l->timer);
    l->timer.data = l;
    l->nhandles = 3;
    l->accepting = 1;
    *out = &l->base;
    return 0;
}

int
cm__http_listener_addr(const cm_listener *base, char *buf, size_t len)
{
    const listener *l = (const listener *)base;
    size_t n = strlen(l->addr);
    if (n >= len) {
        return CM_EINVAL;
    }
    memcpy(buf, l->addr, n + 1);
    return 0;
}

void
cm__http_listener_stop_accepting(cm_listener *base)
{
    listener *l = (listener *)base;
    if (l->accepting) {
        l->accepting = 0;
        uv_close((uv_handle_t *)&l->server, on_listener_handle_closed);
    }
    while (l->whead != NULL) { /* requests no longer wait for a call slot */
        slot_give(l->whead);
    }
}

void
cm__http_listener_close(cm_listener *base, void (*done)(void *arg), void *arg)
{
    listener *l = (listener *)base;
    if (l->closing) {
        return;
    }
    cm__http_listener_stop_accepting(base);
    l->closing = 1;
    l->done = done;
    l->done_arg = arg;
    uv_close((uv_handle_t *)&l->idle, on_listener_handle_closed);
    uv_close((uv_handle_t *)&l->timer, on_listener_handle_closed);
    for (sconn *c = l->conns; c; c = c->next) {
        conn_close(c);
    }
}

void
cm__http_listener_stats(const cm_listener *base, cm_listener_stats *st)
{
    const lstats *s = &((const listener *)base)->st;
    st->accepted = get(&s->accepted);
    st->active = get(&s->active);
    st->requests = get(&s->requests);
    st->rejected = get(&s->rejected);
    st->timeouts = get(&s->timeouts);
    st->evicted = get(&s->evicted);
    st->refused = get(&s->refused);
    st->tls_failed = get(&s->tls_failed);
}

const char *
cm__http_peer(const cm_tconn *base)
{
    return ((const sconn *)base)->peer;
}

const char *
cm__http_local(const cm_tconn *base)
{
    return ((const sconn *)base)->local;
}

/* ---- streams ---- */

static void
on_stream_written(cm__http_wq *q, int status)
{
    sconn *c = CM__HTTP_CONTAINER(q, work, wq)->c;
    if (status == 0 && c->state == S_LINGER) {
        /* A closed stream's last messages: the linger starts once they are written; until then
         * each write is progress, bounded as a reply's. */
        arm(c, q->queued > 0 ? T_BODY : T_LINGER);
        return;
    }
    if (status < 0 || c->state != S_STREAM) {
        if (status < 0 && c->state == S_STREAM) {
            conn_close(c);
        }
        return;
    }
    if (c->w->scbs->on_written != NULL && !c->sdone) {
        c->w->scbs->on_written(c->w->suser);
    }
}

int
cm__http_tconn_stream(cm_tconn *base, const cm_tstream_cbs *cbs, void *user, cm_tstream **out)
{
    sconn *c = (sconn *)base;
    if (!c->in_request || c->w->scbs != NULL || c->w->early) {
        return CM_ESTATE; /* after an early reply the request is answered */
    }
    if (c->state == S_CLOSED) {
        c->in_request = 0;
        if (!c->l) {
            conn_free(c);
        }
        return CM_ECLOSED;
    }
    /* in_request stays set: it keeps the connection's memory until cm_tstream_close(). A stream
     * takes no call slot (cm_server_opts.max_streams bounds them). */
    slot_release(c);
    c->early_ok = 0;
    c->w->ts.base.ops = c->base.ops;
    c->w->ts.server = 1;
    c->w->scbs = cbs;
    c->w->suser = user;
    c->w->wq.on_written = on_stream_written;
    c->state = S_STREAM;
    c->close_after = 0;
    cm__http_in_trim(&c->w->in);
    idle_unlink(c);
    arm(c, T_NONE); /* the stream's deadline is the RPC layer's */
    if (c->rb.pos < c->rb.len) {
        enqueue(c); /* what followed the first request, one turn later */
    }
    if (c->read_stopped) {
        c->read_stopped = 0;
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            c->w->scbs = NULL;
            c->state = S_READ;
            conn_close(c);
            return CM_ECLOSED;
        }
    }
    *out = &c->w->ts.base;
    return 0;
}

int
cm__http_server_stream_send(cm_tstream *ts, const cm_msg *m)
{
    sconn *c = CM__HTTP_CONTAINER(ts, work, ts)->c;
    if (c->state != S_STREAM) {
        return CM_ECLOSED;
    }
    c->w->wb.len = 0;
    if (put_status_line(&c->w->wb, m) < 0 || put_str(&c->w->wb, "Content-Length: ") < 0 ||
        cm__http_put_u64(&c->w->wb, m->body_len) < 0 || put_str(&c->w->wb, "\r\n") < 0 ||
        cm__http_put_headers(&c->w->wb, m,
                             CM__HTTP_SKIP_HOST | CM__HTTP_SKIP_CLEN | CM__HTTP_SKIP_TE |
                                 CM__HTTP_SKIP_CONN) < 0 ||
        put_str(&c->w->wb, "\r\n") < 0) {
        return CM_ENOMEM;
    }
    int r = cm__http_wq_write(&c->w->wq, (uv_stream_t *)&c->tcp, wtls(c), c->w->wb.p, c->w->wb.len,
                              m->body, m->body_len);
    cm__http_buf_trim(&c->w->wb, KEEP_WBUF_MAX);
    if (r < 0) {
        conn_close(c);
        return r == CM_ENOMEM ? CM_ENOMEM : CM_ECLOSED;
    }
    return 0;
}

size_t
cm__http_server_stream_queued(const cm_tstream *ts)
{
    const sconn *c = CM__HTTP_CONTAINER(ts, const work, ts)->c;
    return cm__http_wq_pending(&c->w->wq);
}

int
cm__http_server_stream_cork(cm_tstream *ts, int on)
{
    sconn *c = CM__HTTP_CONTAINER(ts, work, ts)->c;
    int live = c->state == S_STREAM;
    int r = cm__http_wq_cork(&c->w->wq, live ? (uv_stream_t *)&c->tcp : NULL, wtls(c), on);
    if (r < 0) {
        conn_close(c);
        return CM_ECLOSED;
    }
    return 0;
}

void
cm__http_server_stream_pause(cm_tstream *ts, int on)
{
    sconn *c = CM__HTTP_CONTAINER(ts, work, ts)->c;
    if (c->state != S_STREAM || c->spaused == !!on) {
        return;
    }
    c->spaused = !!on;
    if (!on && c->rb.pos < c->rb.len) {
        enqueue(c); /* never from inside this call */
    } else if (!on && c->read_stopped) {
        c->read_stopped = 0;
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
        }
    }
}

void
cm__http_server_stream_close(cm_tstream *ts)
{
    sconn *c = CM__HTTP_CONTAINER(ts, work, ts)->c;
    c->sdone = 1;
    c->in_request = 0;
    if (c->w->wq.corked) {
        cm__http_server_stream_cork(ts, 0); /* what was gathered goes first */
    }
    if (c->state == S_STREAM) {
        start_linger(c); /* what is queued is written, then the close */
        if (c->state == S_LINGER && c->w->wq.queued > 0) {
            arm(c, T_BODY);
        }
        return;
    }
    if (c->state == S_CLOSED && !c->l) {
        conn_free(c);
    }
}
