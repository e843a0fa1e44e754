/* The RPC client: encodes a call once, sends it to a node over the transport, retries what may
 * be retried, decodes the response or the go-micro error. */
#include "framework_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Content-Type, Accept, Micro-Id, Micro-Service, Micro-Method, Micro-Endpoint, Timeout. */
#define FIXED_HDRS 7
#define WRAP_HDRS 8 /* room for headers added by wrappers */

/* Finished calls are kept for reuse (the block, its body buffer and its arena), so that a steady
 * stream of calls allocates nothing: blocks with room for this many headers and bytes of names,
 * at most POOL_MAX of them, body buffers and arenas up to POOL_KEEP bytes each (at most 8 MiB in
 * all; far less for small calls). */
#define POOL_HDRS 24
#define POOL_NAMES 320
#define POOL_MAX 256
#define POOL_KEEP (16u * 1024u)

typedef struct call call;

struct cm_client {
    cm_loop *loop;
    int own_loop;
    char *content_type;
    uint64_t request_timeout_ms;
    uint64_t attempt_timeout_ms;
    int max_attempts;
    char *transport_name;
    cm_transport_opts topts;
    cm_transport *transport; /* made on the loop thread at first use */
    cm_selector *selector;
    int autostart; /* start the loop's thread at the first call if nobody runs it */
    atomic_uint_fast64_t seq;
    atomic_uint rr;
    call *calls; /* in flight, doubly linked */
    atomic_int closing;
    /* One reference for the owner and one per call block handed out: a call that ends after
     * cm_client_free (its callback freed the client, or it was still queued on the loop) still
     * finds the client's memory. The last release frees it. */
    atomic_int refs;
    uv_mutex_t mu; /* guards the pool: calls start on any thread */
    call *pool;
    size_t npool;
    cm__wraps wraps;      /* client wrappers, around a whole call */
    cm__wraps call_wraps; /* call wrappers, around each attempt */
    atomic_int called;    /* a call was made: the wrappers are fixed */
    cm__events *events;   /* a service's client: its broker, for cm_publish */
};

struct call {
    call *prev, *next;
    cm_client *client;
    cm__post post;
    int pooled;       /* a block of the pool's size */
    int borrow;       /* the response is decoded into arena: the callback borrows it */
    cm__arena arena;
    const cm_codec_ops *codec;
    const ProtobufCMessageDescriptor *rsp_desc;
    cm_call_cb cb;
    void *user;
    cm_buf body;
    cm_hdr *hdrs; /* in the call's own block, after the struct */
    size_t nhdrs;
    size_t hcap;
    char **owned; /* strings owned by the call (header keys and values) */
    size_t nowned;
    char *addrs;       /* copy of the address list, NUL-separated */
    const char **addr; /* pointers into addrs */
    size_t naddr;
    unsigned addr_start;
    int attempt;       /* attempts made so far */
    int max_attempts;
    int idempotent;
    uint64_t attempt_timeout_ms;
    uint64_t deadline_ms; /* absolute */
    uint64_t timeout_ms;  /* the whole call's timeout, as set (for errors) */
    uint64_t start_ms;
    int attempt_limited; /* this attempt ends at attempt_timeout_ms, before the deadline */
    char timeout_val[24];
    char id_val[24];
    uv_timer_t backoff;
    int backoff_active;
    cm_roundtrip *rt;
    const char *cur_addr;
    char *service; /* in the call's own block, after the headers */
    const cm_select_filter *filter; /* copied: the caller's filter lives only during the call */
    cm_select_filter filter_copy;
    char pick_addr[256]; /* the node picked by the selector for this attempt */
    int resolving;
    /* Wrappers: their per-call states (in the arena), how many befores returned 0, and a
     * client wrapper's short-circuit error. */
    void **cw_states, **aw_states;
    size_t cw_ran, aw_ran;
    cm_error *short_err;
    uint64_t start_ns;
};

void
cm_client_get_opts(const cm_client *c, cm_client_opts *out)
{
    memset(out, 0, sizeof(*out));
    out->content_type = c->content_type;
    out->request_timeout_ms = c->request_timeout_ms;
    out->attempt_timeout_ms = c->attempt_timeout_ms;
    out->max_attempts = c->max_attempts;
    out->transport = c->transport_name;
    out->transport_opts = c->topts;
    out->selector = c->selector;
}

void
cm_client_opts_init(cm_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->content_type = CM_CT_PROTOBUF;
    o->request_timeout_ms = 30000;
    o->attempt_timeout_ms = 5000;
    o->max_attempts = 6;
    o->transport = CM_TRANSPORT_DEFAULT;
    cm_transport_opts_init(&o->transport_opts);
}

void
cm_call_opts_init(cm_call_opts *o)
{
    memset(o, 0, sizeof(*o));
}

int
cm_client_new(cm_loop *loop, const cm_client_opts *o, cm_client **out)
{
    cm_client_opts def;
    if (o == NULL) {
        cm_client_opts_init(&def);
        o = &def;
    }
    if (out == NULL) {
        return CM_EINVAL;
    }
    cm_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return CM_ENOMEM;
    }
    uv_mutex_init(&c->mu);
    atomic_init(&c->refs, 1);
    c->content_type = strdup(o->content_type ? o->content_type : CM_CT_PROTOBUF);
    c->transport_name = strdup(o->transport ? o->transport : CM_TRANSPORT_DEFAULT);
    c->request_timeout_ms = o->request_timeout_ms ? o->request_timeout_ms : 30000;
    c->attempt_timeout_ms = o->attempt_timeout_ms ? o->attempt_timeout_ms : 5000;
    c->max_attempts = o->max_attempts > 0 ? o->max_attempts : 6;
    c->topts = o->transport_opts;
    c->selector = o->selector;
    if (c->topts.max_body_bytes == 0) {
        cm_transport_opts_init(&c->topts);
    }
    atomic_init(&c->rr, (unsigned)uv_hrtime());
    if (c->content_type == NULL || c->transport_name == NULL) {
        cm_client_free(c);
        return CM_ENOMEM;
    }
    if (loop == NULL) {
        int rc = cm_loop_new(&c->loop);
        if (rc == 0) {
            c->own_loop = 1;
            rc = cm_loop_start(c->loop);
        }
        if (rc < 0) {
            cm_client_free(c);
            return rc;
        }
    } else {
        c->loop = loop;
    }
    *out = c;
    return 0;
}

cm_loop *
cm_client_loop(cm_client *c)
{
    return c->loop;
}

/* ---- call state ---- */

/* A call block with room for cap headers and names bytes of strings: from the pool when it
 * fits a pool block. Zeroed but for its body buffer and arena, kept from the last use. */
static call *
call_alloc(cm_client *c, size_t cap, size_t names)
{
    call *k = NULL;
    int pooled = cap <= POOL_HDRS && names <= POOL_NAMES;
    if (pooled) {
        uv_mutex_lock(&c->mu);
        if ((k = c->pool) != NULL) {
            c->pool = k->next;
            c->npool--;
        }
        uv_mutex_unlock(&c->mu);
        cap = POOL_HDRS;
        names = POOL_NAMES;
    }
    if (k != NULL) {
        cm_buf body = k->body;
        cm__arena arena = k->arena;
        memset(k, 0, sizeof(*k));
        k->body = body;
        k->arena = arena;
        k->arena.pbc.allocator_data = &k->arena;
    } else {
        k = calloc(1, sizeof(*k) + cap * sizeof(cm_hdr) + names);
        if (k == NULL) {
            return NULL;
        }
        cm__arena_init(&k->arena);
    }
    k->pooled = pooled;
    k->client = c;
    atomic_fetch_add(&c->refs, 1);
    k->hdrs = (cm_hdr *)(void *)(k + 1);
    k->hcap = cap;
    k->service = (char *)(k->hdrs + cap);
    return k;
}

static void
block_free(call *k)
{
    cm_buf_free(&k->body);
    cm__arena_fini(&k->arena);
    free(k);
}

/* Drops a reference; the last one frees the client (after cm_client_free closed it). */
static void
client_release(cm_client *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) {
        return;
    }
    for (call *k = c->pool, *next; k != NULL; k = next) {
        next = k->next;
        block_free(k);
    }
    uv_mutex_destroy(&c->mu);
    cm__wraps_free(&c->wraps);
    cm__wraps_free(&c->call_wraps);
    free(c->content_type);
    free(c->transport_name);
    free(c);
}

static void
call_free(call *k)
{
    for (size_t i = 0; i < k->nowned; i++) {
        free(k->owned[i]);
    }
    free(k->owned);
    cm_error_free(k->short_err);
    free(k->addrs);
    free(k->addr);
    free((char *)k->filter_copy.version);
    free((char *)k->filter_copy.endpoint);
    cm_md_free((cm_md *)k->filter_copy.labels);
    cm_client *c = k->client;
    int kept = 0;
    if (k->pooled && !atomic_load(&c->closing)) {
        if (k->body.cap > POOL_KEEP) {
            cm_buf_free(&k->body);
        }
        k->body.len = 0;
        cm__arena_reset(&k->arena, POOL_KEEP);
        uv_mutex_lock(&c->mu);
        if (c->npool < POOL_MAX) {
            k->next = c->pool;
            c->pool = k;
            c->npool++;
            kept = 1;
        }
        uv_mutex_unlock(&c->mu);
    }
    if (!kept) {
        block_free(k);
    }
    client_release(c);
}

static void
unlink_call(call *k)
{
    cm_client *c = k->client;
    if (k->prev) {
        k->prev->next = k->next;
    } else if (c->calls == k) {
        c->calls = k->next;
    }
    if (k->next) {
        k->next->prev = k->prev;
    }
    k->prev = k->next = NULL;
}

static void
on_backoff_closed(uv_handle_t *h)
{
    call_free(h->data);
}

/* The wrapper view of call k. */
static void
wrap_info(call *k, cm_wrap_info *wi, cm_wrap_kind kind, cm_msg *md)
{
    memset(wi, 0, sizeof(*wi));
    wi->kind = kind;
    wi->service = k->service;
    wi->endpoint = k->service + strlen(k->service) + 1;
    wi->deadline_ms = (int64_t)k->deadline_ms;
    md->hdrs = k->hdrs;
    md->nhdrs = k->nhdrs;
    md->body = k->body.data;
    md->body_len = k->body.len;
    wi->md = md;
    wi->rsp_desc = k->rsp_desc;
    wi->start_ns = k->start_ns;
    wi->priv = k;
}

/* The afters of the call wrappers around the attempt that just ended. */
static void
attempt_after(call *k, int status, const void *rsp, const cm_error *err)
{
    if (k->aw_ran == 0) {
        return;
    }
    cm_wrap_info wi;
    cm_msg md;
    wrap_info(k, &wi, CM_WRAP_CALL, &md);
    wi.node = k->cur_addr;
    wi.attempt = k->attempt;
    wi.status = status;
    wi.rsp = rsp;
    wi.error = err;
    cm__wraps_after(&k->client->call_wraps, &wi, k->aw_states, k->aw_ran);
    k->aw_ran = 0;
}

static void
call_finish(call *k, int status, void *rsp, const cm_error *err)
{
    unlink_call(k);
    attempt_after(k, status, rsp, err);
    if (k->cw_ran > 0) {
        cm_wrap_info wi;
        cm_msg md;
        wrap_info(k, &wi, CM_WRAP_CLIENT, &md);
        wi.status = status;
        wi.rsp = rsp;
        wi.error = err;
        cm__wraps_after(&k->client->wraps, &wi, k->cw_states, k->cw_ran);
    }
    k->cb(status, rsp, err, k->user);
    if (k->backoff_active) {
        uv_close((uv_handle_t *)&k->backoff, on_backoff_closed);
    } else {
        call_free(k);
    }
}

static void
call_fail(call *k, int status, int32_t code, const char *fmt, ...) CM_PRINTF(4, 5);

static void
call_fail(call *k, int status, int32_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_error *e = cm_error_newv(CM__CLIENT_ERROR_ID, code, fmt, ap);
    va_end(ap);
    call_finish(k, status, NULL, e);
    cm_error_free(e);
}

static char *
own(call *k, char *s)
{
    if (s == NULL) {
        return NULL;
    }
    char **o = realloc(k->owned, (k->nowned + 1) * sizeof(char *));
    if (o == NULL) {
        free(s);
        return NULL;
    }
    k->owned = o;
    k->owned[k->nowned++] = s;
    return s;
}

static int
add_hdr(call *k, size_t cap, const char *key, const char *val)
{
    if (k->nhdrs == cap) {
        return CM_ENOMEM;
    }
    k->hdrs[k->nhdrs].key = key;
    k->hdrs[k->nhdrs].val = val;
    k->nhdrs++;
    return 0;
}

/* Metadata as request headers: canonical keys, framework keys dropped, later sources win. */
static int
add_md(call *k, size_t cap, const char *key, const char *val)
{
    char canon[256];
    if (cm__canonical_key(key, canon, sizeof(canon)) < 0 || cm__is_framework_header(canon)) {
        return 0;
    }
    for (size_t i = FIXED_HDRS; i < k->nhdrs; i++) {
        if (strcasecmp(k->hdrs[i].key, canon) == 0) {
            k->hdrs[i].val = val;
            return 0;
        }
    }
    char *ck = own(k, strdup(canon));
    if (ck == NULL) {
        return CM_ENOMEM;
    }
    return add_hdr(k, cap, ck, val);
}

static int
split_addrs(call *k, const char *list)
{
    k->addrs = strdup(list);
    if (k->addrs == NULL) {
        return CM_ENOMEM;
    }
    size_t n = 1;
    for (const char *p = list; *p; p++) {
        n += *p == ',';
    }
    k->addr = calloc(n, sizeof(char *));
    if (k->addr == NULL) {
        return CM_ENOMEM;
    }
    char *save = NULL;
    for (char *t = strtok_r(k->addrs, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        k->addr[k->naddr++] = t;
    }
    return k->naddr ? 0 : CM_EADDR;
}

/* ---- attempts ---- */

static void attempt(call *k);

static uint64_t
backoff_ms(int i)
{
    /* go-micro's exponential back-off: floor(i^e) x 100 ms. */
    return (uint64_t)floor(pow((double)i, M_E)) * 100u;
}

static void
on_backoff(uv_timer_t *t)
{
    call *k = t->data;
    attempt(k);
}

/* Retries after go-micro's back-off, or fails the call saying why no retry follows. */
static void
retry_or_fail(call *k, int status, int32_t code, const char *what)
{
    attempt_after(k, status, NULL, NULL);
    uint64_t now = cm_now_ms();
    const char *why;
    if (k->attempt >= k->max_attempts) {
        why = "attempts used up";
    } else if (atomic_load(&k->client->closing)) {
        why = "the client is closing";
    } else if (now + backoff_ms(k->attempt) >= k->deadline_ms) {
        why = "the call's timeout passes first";
    } else {
        if (!k->backoff_active) {
            uv_timer_init(cm_loop_uv(k->client->loop), &k->backoff);
            k->backoff.data = k;
            k->backoff_active = 1;
        }
        uv_timer_start(&k->backoff, on_backoff, backoff_ms(k->attempt), 0);
        return;
    }
    call_fail(k, status, code, "%s (attempt %d of %d to %s after %" PRIu64 " ms; no retry: %s)",
              what, k->attempt, k->max_attempts, k->cur_addr ? k->cur_addr : "?", now - k->start_ms,
              why);
}

/* A timed out attempt: names the limit that fired, and retries only an idempotent call (an
 * attempt of any other call ran to the call's own deadline, see attempt()). */
static void
on_timeout(call *k)
{
    char what[200];
    if (k->attempt_limited) {
        snprintf(what, sizeof(what),
                 "call timeout: no answer within the attempt timeout of %" PRIu64
                 " ms (attempt_timeout_ms, MICRO_CLIENT_ATTEMPT_TIMEOUT)",
                 k->attempt_timeout_ms);
        retry_or_fail(k, CM_ETIMEDOUT, 408, what);
        return;
    }
    call_fail(
        k, CM_ETIMEDOUT, 408,
        "call timeout: no answer within the call's timeout of %" PRIu64
        " ms (timeout_ms, MICRO_CLIENT_REQUEST_TIMEOUT) (attempt %d of %d to %s after %" PRIu64
        " ms; no retry)",
        k->timeout_ms, k->attempt, k->max_attempts, k->cur_addr ? k->cur_addr : "?",
        cm_now_ms() - k->start_ms);
}

static void
mark(call *k, int status)
{
    if (k->naddr == 0 && k->client->selector != NULL && status != CM_ECANCELED) {
        cm_selector_mark(k->client->selector, k->service, k->cur_addr, status);
    }
}

static void
on_response(int status, unsigned flags, const cm_msg *rsp, void *user)
{
    call *k = user;
    k->rt = NULL;
    mark(k, status);
    char what[256];
    if (status == CM_ECANCELED) {
        call_fail(k, CM_ECANCELED, 499, "call canceled");
        return;
    }
    if (status == CM_ETIMEDOUT) {
        on_timeout(k);
        return;
    }
    if (status < 0) {
        if (status == CM_EPROTO && rsp != NULL) {
            const char *code = cm_msg_header(rsp, ":status");
            snprintf(what, sizeof(what), "transport error: %s: %.*s", code ? code : "?",
                     (int)(rsp->body_len > 160 ? 160 : rsp->body_len), (const char *)rsp->body);
        } else {
            snprintf(what, sizeof(what), "connection error: %s", cm_strerror(status));
        }
        if (status == CM_ECERT) {
            /* Permanent: the same certificate fails the same way on the next attempt. */
            call_fail(k, status, 500,
                      "%s (attempt %d of %d to %s; no retry: a certificate "
                      "failure is permanent)",
                      what, k->attempt, k->max_attempts, k->cur_addr ? k->cur_addr : "?");
        } else if ((flags & CM_RT_UNSENT) || k->idempotent) {
            retry_or_fail(k, status, 500, what);
        } else {
            call_fail(k, status, 500,
                      "%s (attempt %d of %d to %s; no retry: the request may have "
                      "reached the server and the call is not idempotent)",
                      what, k->attempt, k->max_attempts, k->cur_addr);
        }
        return;
    }
    const char *merr = cm_msg_header(rsp, "Micro-Error");
    if (merr != NULL && merr[0] != '\0' && strcmp(merr, "EOS") != 0) {
        cm_error *e = cm_error_parse(merr, strlen(merr));
        if (e != NULL && e->code == 408 && k->attempt < k->max_attempts &&
            cm_now_ms() < k->deadline_ms) {
            cm_error_free(e);
            retry_or_fail(k, CM_EREMOTE, 408, merr);
            return;
        }
        call_finish(k, CM_EREMOTE, NULL, e);
        cm_error_free(e);
        return;
    }
    const char *rct = cm_msg_header(rsp, "Content-Type");
    if (rct != NULL && strcmp(rct, "text/plain") == 0 && rsp->body_len > 0) {
        /* A go-micro server's answer to a content type it has no codec for. */
        call_fail(k, CM_ECONTENTTYPE, 415, "%.*s",
                  (int)(rsp->body_len > 200 ? 200 : rsp->body_len), (const char *)rsp->body);
        return;
    }
    void *msg = NULL;
    char reason[160] = "";
    ProtobufCAllocator *alloc = k->borrow ? &k->arena.pbc : NULL;
    int rc;
    if (k->codec->unmarshal_envelope != NULL) {
        cm_codec_envelope env;
        rc = k->codec->unmarshal_envelope(1, k->rsp_desc, rsp->body, rsp->body_len, alloc, &env,
                                          &msg, reason, sizeof(reason));
        if (rc == 0 && env.error[0] != '\0') {
            /* The envelope's error, where go-micro's envelope codecs put it. */
            cm_error *e = cm_error_parse(env.error, strlen(env.error));
            call_finish(k, CM_EREMOTE, NULL, e);
            cm_error_free(e);
            return;
        }
    } else {
        rc = k->codec->unmarshal(k->rsp_desc, rsp->body, rsp->body_len, alloc, &msg, reason,
                                 sizeof(reason));
    }
    if (rc < 0) {
        call_fail(k, rc, 500, "unable to decode response as %s: %s", k->codec->content_type,
                  reason[0] ? reason : cm_strerror(rc));
        return;
    }
    call_finish(k, 0, msg, NULL);
}

static void
on_resolved(int status, void *user)
{
    call *k = user;
    if (status < 0 && status != CM_ENOTFOUND) {
        call_fail(k, status, 500, "service %s: registry lookup failed: %s", k->service,
                  cm_strerror(status));
        return;
    }
    /* Picks again: CM_ENOTFOUND now ends the call (resolving is set). */
    attempt(k);
}

/* The befores of the call wrappers, around one attempt. 0, or -1 when one ended the call. */
static int
attempt_before(call *k)
{
    if (k->aw_states == NULL) {
        k->aw_states = cm__arena_alloc(&k->arena, CM_WRAP_MAX * sizeof(void *));
        if (k->aw_states == NULL) {
            call_fail(k, CM_ENOMEM, 500, "out of memory");
            return -1;
        }
    }
    cm_wrap_info wi;
    cm_msg md;
    wrap_info(k, &wi, CM_WRAP_CALL, &md);
    wi.node = k->cur_addr;
    wi.attempt = k->attempt;
    cm_error *err;
    if (cm__wraps_before(&k->client->call_wraps, &wi, k->aw_states, &k->aw_ran, &err) == 0) {
        return 0;
    }
    call_finish(k, CM_EREMOTE, NULL, err);
    cm_error_free(err);
    return -1;
}

static void
attempt(call *k)
{
    cm_client *c = k->client;
    uint64_t now = cm_now_ms();
    if (now >= k->deadline_ms) {
        call_fail(k, CM_ETIMEDOUT, 408, "call timeout: deadline passed before attempt %d of %d",
                  k->attempt + 1, k->max_attempts);
        return;
    }
    if (k->naddr == 0) {
        if (c->selector == NULL) {
            call_fail(k, CM_ENONODE, 500,
                      "no address for the call to %s and no selector: set cm_call_opts.address",
                      k->service);
            return;
        }
        const char *addr = NULL;
        int rc = cm_selector_pick(c->selector, k->service, k->filter, &addr, NULL);
        if (rc == CM_ENOTFOUND && !k->resolving) {
            k->resolving = 1;
            rc = cm_selector_resolve(c->selector, k->service, on_resolved, k);
            if (rc == 0) {
                return;
            }
        }
        if (rc == CM_ENOTFOUND) {
            const char *why = cm_selector_why(c->selector, k->service);
            call_fail(k, CM_ENOTFOUND, 500, "service %s: not found%s%s%s", k->service,
                      why ? " (" : "", why ? why : "", why ? ")" : "");
            return;
        }
        if (rc < 0) {
            call_fail(k, rc == CM_ENONODE ? CM_ENONODE : rc, 500,
                      "error getting next %s node: %s", k->service,
                      rc == CM_ENONODE ? "none available" : cm_strerror(rc));
            return;
        }
        snprintf(k->pick_addr, sizeof(k->pick_addr), "%s", addr);
        k->cur_addr = k->pick_addr;
    } else {
        k->cur_addr = k->addr[(k->addr_start + (unsigned)k->attempt) % k->naddr];
    }
    /* An attempt ends at the attempt timeout only when a retry can follow its timeout (an
     * idempotent call with attempts left); otherwise it runs to the call's deadline, and the
     * Timeout header says so. */
    uint64_t left = k->deadline_ms - now;
    int retry_can_follow = k->idempotent && k->attempt + 1 < k->max_attempts;
    k->attempt_limited = retry_can_follow && k->attempt_timeout_ms < left;
    uint64_t to = k->attempt_limited ? k->attempt_timeout_ms : left;
    snprintf(k->timeout_val, sizeof(k->timeout_val), "%" PRIu64, to * 1000000u);
    snprintf(k->id_val, sizeof(k->id_val), "%" PRIu64, (uint64_t)atomic_fetch_add(&c->seq, 1));
    k->attempt++;
    if (c->call_wraps.n > 0 && attempt_before(k) < 0) {
        return;
    }
    cm_msg m = {k->hdrs, k->nhdrs, k->body.data, k->body.len};
    int rc = cm_transport_roundtrip(c->transport, k->cur_addr, &m, to, on_response, k, &k->rt);
    if (rc < 0) {
        call_fail(k, rc, 500, "cannot send to %s: %s", k->cur_addr, cm_strerror(rc));
    }
}

static void
start_on_loop(void *arg)
{
    call *k = arg;
    cm_client *c = k->client;
    if (atomic_load(&c->closing)) {
        call_fail(k, CM_ECANCELED, 499, "client closed");
        return;
    }
    if (c->transport == NULL) {
        int rc = cm_transport_new(c->loop, c->transport_name, &c->topts, &c->transport);
        if (rc < 0) {
            call_fail(k, rc, 500, "cannot create transport %s: %s", c->transport_name,
                      cm_strerror(rc));
            return;
        }
    }
    k->next = c->calls;
    if (c->calls) {
        c->calls->prev = k;
    }
    c->calls = k;
    k->start_ms = cm_now_ms();
    k->deadline_ms += k->start_ms;
    if (k->short_err != NULL) {
        call_finish(k, CM_EREMOTE, NULL, k->short_err);
        return;
    }
    attempt(k);
}

static int
copy_filter(call *k, const cm_select_filter *f)
{
    if (f == NULL) {
        return 0;
    }
    k->filter = &k->filter_copy;
    if (f->version && (k->filter_copy.version = strdup(f->version)) == NULL) {
        return CM_ENOMEM;
    }
    if (f->endpoint && (k->filter_copy.endpoint = strdup(f->endpoint)) == NULL) {
        return CM_ENOMEM;
    }
    if (f->labels != NULL) {
        cm_md *md = cm_md_new();
        k->filter_copy.labels = md;
        if (md == NULL) {
            return CM_ENOMEM;
        }
        for (size_t i = 0; i < cm_md_count(f->labels); i++) {
            const char *key, *val;
            cm_md_at(f->labels, i, &key, &val);
            if (cm_md_set(md, key, val) < 0) {
                return CM_ENOMEM;
            }
        }
    }
    return 0;
}

static uint64_t
pick(uint64_t call_val, uint64_t client_val)
{
    return call_val ? call_val : client_val;
}

/* A parent call's trace context: the span it is served in and its cleaned tracestate, in place
 * of the ones it received. */
static int
add_trace(call *k, size_t cap, const char *traceparent, const char *tracestate)
{
    char *tp = own(k, strdup(traceparent));
    int rc = tp ? add_md(k, cap, "Traceparent", tp) : CM_ENOMEM;
    if (rc == 0 && tracestate != NULL) {
        char *ts = own(k, strdup(tracestate));
        rc = ts ? add_md(k, cap, "Tracestate", ts) : CM_ENOMEM;
    }
    return rc;
}

/* The header set of a go-micro v4 client (spec 5.2), then the parent call's metadata and the
 * call's own. k's service, endpoint and content type strings are in place. 0 or CM_ENOMEM. */
static int
add_headers(call *k, size_t cap, const cm_ctx *parent, const cm_md *md)
{
    const cm_msg *pm = parent ? cm_ctx_headers(parent) : NULL;
    const char *tracestate = NULL;
    const char *span = parent ? cm__ctx_trace((cm_ctx *)parent, &tracestate) : NULL;
    int traced = span != NULL;
    const char *svc = k->service;
    const char *ep = svc + strlen(svc) + 1;
    const char *cts = ep + strlen(ep) + 1;
    add_hdr(k, cap, "Content-Type", cts);
    add_hdr(k, cap, "Accept", cts);
    add_hdr(k, cap, "Micro-Id", k->id_val);
    add_hdr(k, cap, "Micro-Service", svc);
    add_hdr(k, cap, "Micro-Method", ep);
    add_hdr(k, cap, "Micro-Endpoint", ep);
    add_hdr(k, cap, "Timeout", k->timeout_val);
    if (strncmp(cts, "application/grpc", 16) == 0) {
        /* go-micro's server closes the connection after every request of its gRPC codec (it
         * takes them for HTTP/2 streams): say so, so that the connection is not pooled. */
        add_hdr(k, cap, "Connection", "close");
    }
    int rc = 0;
    for (size_t i = 0; pm != NULL && i < pm->nhdrs && rc == 0; i++) {
        const char *key = pm->hdrs[i].key;
        if (traced && (strcasecmp(key, "Traceparent") == 0 || strcasecmp(key, "Tracestate") == 0)) {
            continue;
        }
        char *v = own(k, strdup(pm->hdrs[i].val));
        rc = v ? add_md(k, cap, key, v) : CM_ENOMEM;
    }
    if (rc == 0 && traced) {
        rc = add_trace(k, cap, span, tracestate);
    }
    for (size_t i = 0; i < cm_md_count(md) && rc == 0; i++) {
        const char *key, *val;
        cm_md_at(md, i, &key, &val);
        char *v = own(k, strdup(val));
        rc = v ? add_md(k, cap, key, v) : CM_ENOMEM;
    }
    return rc;
}

/* The befores of the client wrappers, on the caller's thread. A short-circuit is kept for the
 * loop, where the call ends with it. 0 or CM_ENOMEM. */
static int
client_before(call *k, const ProtobufCMessageDescriptor *req_desc, const void *req)
{
    k->cw_states = cm__arena_alloc(&k->arena, CM_WRAP_MAX * sizeof(void *));
    if (k->cw_states == NULL) {
        return CM_ENOMEM;
    }
    k->start_ns = uv_hrtime();
    cm_wrap_info wi;
    cm_msg md;
    wrap_info(k, &wi, CM_WRAP_CLIENT, &md);
    wi.deadline_ms = (int64_t)(cm_now_ms() + k->deadline_ms); /* relative until the start */
    wi.req_desc = req_desc;
    wi.req = req;
    cm__wraps_before(&k->client->wraps, &wi, k->cw_states, &k->cw_ran, &k->short_err);
    return 0;
}

int
cm_wrap_set_header(cm_wrap_info *w, const char *key, const char *val)
{
    if (w == NULL || key == NULL || val == NULL || key[0] == '\0') {
        return CM_EINVAL;
    }
    if (w->kind == CM_WRAP_HANDLER || w->kind == CM_WRAP_SUBSCRIBER) {
        return w->ctx ? cm_ctx_set_header(w->ctx, key, val) : CM_EINVAL;
    }
    call *k = w->priv;
    char *v = own(k, strdup(val));
    if (v == NULL) {
        return CM_ENOMEM;
    }
    return add_md(k, k->hcap, key, v);
}

int
cm_client_wrap(cm_client *c, const cm_wrapper *w)
{
    if (c == NULL) {
        return CM_EINVAL;
    }
    return atomic_load(&c->called) ? CM_ESTATE : cm__wraps_add(&c->wraps, w);
}

int
cm_client_wrap_call(cm_client *c, const cm_wrapper *w)
{
    if (c == NULL) {
        return CM_EINVAL;
    }
    return atomic_load(&c->called) ? CM_ESTATE : cm__wraps_add(&c->call_wraps, w);
}

int
cm_client_call_async(cm_client *c, const char *service, const char *endpoint,
                     const ProtobufCMessageDescriptor *req_desc, const void *req,
                     const ProtobufCMessageDescriptor *rsp_desc, const cm_call_opts *opts,
                     cm_call_cb cb, void *user)
{
    cm_call_opts none;
    if (opts == NULL) {
        cm_call_opts_init(&none);
        opts = &none;
    }
    if (c == NULL || service == NULL || endpoint == NULL || req == NULL || cb == NULL) {
        return CM_EINVAL;
    }
    const char *ct = opts->content_type ? opts->content_type : c->content_type;
    const cm_codec_ops *codec = cm_codec_find(ct);
    if (codec == NULL) {
        return CM_ECONTENTTYPE;
    }
    atomic_store(&c->called, 1);
    size_t cap = FIXED_HDRS + 1 + cm_md_count(opts->md); /* + Connection for gRPC */
    if (c->wraps.n + c->call_wraps.n > 0) {
        cap += WRAP_HDRS;
    }
    const cm_msg *pm = opts->parent ? cm_ctx_headers(opts->parent) : NULL;
    if (pm != NULL) {
        cap += pm->nhdrs + 2; /* + the parent's Traceparent and Tracestate */
    }
    /* One block: the call, its header table, then service, endpoint and content type. */
    size_t sn = strlen(service) + 1, en = strlen(endpoint) + 1, cn = strlen(ct) + 1;
    call *k = call_alloc(c, cap, sn + en + cn);
    if (k == NULL) {
        return CM_ENOMEM;
    }
    char *svc = k->service;
    char *ep = svc + sn;
    char *cts = ep + en;
    memcpy(svc, service, sn);
    memcpy(ep, endpoint, en);
    memcpy(cts, ct, cn);
    k->codec = codec;
    k->rsp_desc = rsp_desc;
    k->cb = cb;
    k->user = user;
    k->idempotent = opts->idempotent;
    k->borrow = opts->borrow_response;
    if (copy_filter(k, opts->filter) < 0) {
        call_free(k);
        return CM_ENOMEM;
    }
    k->max_attempts = opts->max_attempts > 0 ? opts->max_attempts : c->max_attempts;
    k->attempt_timeout_ms = pick(opts->attempt_timeout_ms, c->attempt_timeout_ms);
    k->deadline_ms = pick(opts->timeout_ms, c->request_timeout_ms); /* relative until start */
    if (opts->parent != NULL) {
        int64_t left = cm_ctx_remaining_ms(opts->parent);
        if (left >= 0 && (uint64_t)left < k->deadline_ms) {
            k->deadline_ms = (uint64_t)left;
        }
    }
    k->timeout_ms = k->deadline_ms;
    int rc;
    if (codec->marshal_envelope != NULL) {
        /* go-micro's envelope codecs: the method and a sequence number around the request. */
        cm_codec_envelope env;
        memset(&env, 0, sizeof env);
        snprintf(env.method, sizeof env.method, "%s", endpoint);
        snprintf(env.id, sizeof env.id, "%" PRIu64, (uint64_t)atomic_fetch_add(&c->seq, 1));
        rc = codec->marshal_envelope(0, &env, req_desc, req, &k->body);
    } else {
        rc = codec->marshal(req_desc, req, &k->body);
    }
    if (rc < 0) {
        call_free(k);
        return rc;
    }
    rc = add_headers(k, cap, opts->parent, opts->md);
    if (rc == 0 && opts->address != NULL) {
        rc = split_addrs(k, opts->address);
        k->addr_start = atomic_fetch_add(&c->rr, 1);
    }
    if (rc == 0 && c->wraps.n > 0) {
        rc = client_before(k, req_desc, req);
    }
    if (rc < 0) {
        call_free(k);
        return rc;
    }
    /* Posted even on the loop thread, so that the callback never runs inside this call. */
    cm__loop_post_node(c->loop, &k->post, start_on_loop, k);
    cm__client_autostart_loop(c);
    return 0;
}

void
cm__client_autostart_loop(cm_client *c)
{
    if (c->autostart && !cm__loop_running(c->loop)) {
        /* A client-only program: the loop gets a thread of its own at the first call. A
         * concurrent start by another caller answers CM_ESTATE, which is fine. */
        cm_loop_start(c->loop);
    }
}

/* ---- sync calls ---- */

typedef struct waiter {
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
    int status;
    void *rsp;
    cm_error *err;
} waiter;

static void
on_sync_done(int status, void *rsp, const cm_error *err, void *user)
{
    waiter *w = user;
    cm_error *e = err ? cm_error_dup(err) : NULL;
    uv_mutex_lock(&w->mu);
    w->status = status;
    w->rsp = rsp;
    w->err = e;
    w->done = 1;
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu);
}

int
cm_client_call(cm_client *c, const char *service, const char *endpoint,
               const ProtobufCMessageDescriptor *req_desc, const void *req,
               const ProtobufCMessageDescriptor *rsp_desc, void **rsp, const cm_call_opts *opts,
               cm_error **err)
{
    if (rsp == NULL) {
        return CM_EINVAL;
    }
    *rsp = NULL;
    if (err != NULL) {
        *err = NULL;
    }
    if (c != NULL && cm_loop_on_loop_thread(c->loop)) {
        return CM_ESTATE;
    }
    cm_call_opts owned;
    if (opts != NULL && opts->borrow_response) {
        owned = *opts;
        owned.borrow_response = 0;
        opts = &owned;
    }
    waiter w;
    memset(&w, 0, sizeof(w));
    uv_mutex_init(&w.mu);
    uv_cond_init(&w.cv);
    int rc = cm_client_call_async(c, service, endpoint, req_desc, req, rsp_desc, opts,
                                  on_sync_done, &w);
    if (rc == 0) {
        uv_mutex_lock(&w.mu);
        while (!w.done) {
            uv_cond_wait(&w.cv, &w.mu);
        }
        uv_mutex_unlock(&w.mu);
        rc = w.status;
        *rsp = w.rsp;
        if (err != NULL) {
            *err = w.err;
        } else {
            cm_error_free(w.err);
        }
    }
    uv_cond_destroy(&w.cv);
    uv_mutex_destroy(&w.mu);
    return rc;
}

/* ---- shutdown ---- */

typedef struct closer {
    cm__post post;
    cm_client *c;
    int wait; /* a thread waits for the transport to close */
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
} closer;

static void
on_transport_closed(void *arg)
{
    closer *z = arg;
    uv_mutex_lock(&z->mu);
    z->done = 1;
    uv_cond_signal(&z->cv);
    uv_mutex_unlock(&z->mu);
}

static void
close_on_loop(void *arg)
{
    closer *z = arg;
    cm_client *c = z->c;
    /* Calls still queued on the loop end canceled when their turn comes. */
    atomic_store(&c->closing, 1);
    /* Calls waiting in back-off end now; calls on the wire end through the transport's
     * cancellation. */
    call *k = c->calls;
    while (k != NULL) {
        call *next = k->next;
        if (k->rt == NULL) {
            if (k->backoff_active) {
                uv_timer_stop(&k->backoff);
            }
            call_fail(k, CM_ECANCELED, 499, "client closed");
        }
        k = next;
    }
    if (c->transport != NULL) {
        cm_transport_close(c->transport, z->wait ? on_transport_closed : NULL, z);
        c->transport = NULL;
    } else {
        on_transport_closed(z);
    }
}

void
cm_client_free(cm_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->loop != NULL) {
        closer z;
        memset(&z, 0, sizeof(z));
        z.c = c;
        uv_mutex_init(&z.mu);
        uv_cond_init(&z.cv);
        if (cm_loop_on_loop_thread(c->loop) || !cm__loop_running(c->loop)) {
            /* The transport finishes closing on later turns of the loop (or in cm_loop_free). */
            close_on_loop(&z);
        } else {
            z.wait = 1;
            cm__loop_post_node(c->loop, &z.post, close_on_loop, &z);
            uv_mutex_lock(&z.mu);
            while (!z.done) {
                uv_cond_wait(&z.cv, &z.mu);
            }
            uv_mutex_unlock(&z.mu);
        }
        uv_cond_destroy(&z.cv);
        uv_mutex_destroy(&z.mu);
    }
    if (c->own_loop) {
        cm_loop_free(c->loop);
    }
    client_release(c);
}

void
cm__client_set_autostart(cm_client *c, int on)
{
    c->autostart = on;
}

void
cm__client_set_events(cm_client *c, cm__events *ev)
{
    c->events = ev;
}

cm__events *
cm__client_events(cm_client *c)
{
    return c->events;
}
