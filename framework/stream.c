/* cmicro: streams (<cmicro/stream.h>). A stream has two halves: the application's (the threads
 * that send and receive, under the stream's mutex) and the loop's (the transport stream, the
 * deadline timer). Sends are encoded on the caller's thread and queued; one post node (kick)
 * moves them to the transport on the loop. Received messages are queued as raw bodies and
 * decoded by the receiver. Both queues are bounded by the window (see the header). */
#include "stream_int.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
cm_stream_opts_init(cm_stream_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->window_bytes = CM__STREAM_WINDOW;
}

cm_stream *
cm__stream_new(cm_loop *loop, const cm_stream_opts *o)
{
    cm_stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->loop = loop;
    s->window = o && o->window_bytes ? o->window_bytes : CM__STREAM_WINDOW;
    s->deadline_ms = -1;
    s->head_cost = 96; /* the start line, Host, Content-Length, an echo of Micro-Error */
    uv_mutex_init(&s->mu);
    uv_cond_init(&s->cv);
    return s;
}

/* Keeps i in the pool while it holds at most the window's bytes (and at most
 * CM__STREAM_SPARE_MAX; always one item), or frees it (under mu). The items of one direction in
 * flight weigh at most the window (each costs its head on top of its bytes), so a steady stream
 * finds every item it needs in the pool. */
static void
item_done_locked(const cm_stream *s, item_pool *p, item *i)
{
    size_t max = s->window < CM__STREAM_SPARE_MAX ? s->window : CM__STREAM_SPARE_MAX;
    if (p->head == NULL || p->bytes + i->cap <= max) {
        i->next = p->head;
        p->head = i;
        p->bytes += i->cap;
    } else {
        free(i);
    }
}

/* The pool's first item, or NULL (under mu). */
static item *
item_take_locked(item_pool *p)
{
    item *i = p->head;
    if (i != NULL) {
        p->head = i->next;
        p->bytes -= i->cap;
    }
    return i;
}

/* The pool's first item when it holds len bytes and a NUL (under mu), else a new item; NULL: no
 * memory. */
static item *
item_get_locked(item_pool *p, size_t len)
{
    item *i = p->head;
    if (i != NULL && i->cap > len) {
        return item_take_locked(p);
    }
    i = malloc(offsetof(item, data) + len + 1);
    if (i != NULL) {
        i->cap = len + 1;
    }
    return i;
}

/* An item of len bytes from pool p (taken under mu), or NULL. */
static item *
item_get(cm_stream *s, item_pool *p, size_t len)
{
    uv_mutex_lock(&s->mu);
    item *i = item_get_locked(p, len);
    uv_mutex_unlock(&s->mu);
    return i;
}

static void
items_free(item *i)
{
    while (i != NULL) {
        item *n = i->next;
        free(i);
        i = n;
    }
}

void
cm__stream_destroy(cm_stream *s)
{
    items_free(s->in_head);
    items_free(s->out_head);
    items_free(s->in_spare.head);
    items_free(s->out_spare.head);
    cm_error_free(s->err);
    for (size_t i = 0; i < s->nowned; i++) {
        free(s->owned[i]);
    }
    free(s->service);
    free(s->endpoint);
    free(s->address);
    uv_cond_destroy(&s->cv);
    uv_mutex_destroy(&s->mu);
    free(s);
}

int
cm__stream_add_hdr(cm_stream *s, const char *key, const char *val, int copy)
{
    s->head_cost += strlen(key) + strlen(val) + 4;
    if (s->nhdrs >= CM__STREAM_MAX_HDRS || s->nowned + 2 > CM__STREAM_MAX_HDRS) {
        return CM_ENOMEM;
    }
    if (copy) {
        char *k = strdup(key), *v = strdup(val);
        if (k == NULL || v == NULL) {
            free(k);
            free(v);
            return CM_ENOMEM;
        }
        s->owned[s->nowned++] = k;
        s->owned[s->nowned++] = v;
        key = k;
        val = v;
    }
    s->hdrs[s->nhdrs].key = key;
    s->hdrs[s->nhdrs].val = val;
    s->nhdrs++;
    return 0;
}

/* ---- the loop's half ---- */

static void kick_on_loop(void *arg);

/* Asks the loop to look at the stream (under mu). */
static void
kick_locked(cm_stream *s)
{
    if (!s->posted) {
        s->posted = 1;
        cm__loop_post_node(s->loop, &s->post, kick_on_loop, s);
    }
}

static void
tell(cm_stream *s)
{
    uv_mutex_lock(&s->mu);
    void (*fn)(cm_stream *, void *) = s->notify;
    void *arg = s->notify_arg;
    s->telling += fn != NULL;
    uv_mutex_unlock(&s->mu);
    if (fn != NULL) {
        fn(s, arg);
        uv_mutex_lock(&s->mu);
        if (--s->telling == 0) {
            uv_cond_broadcast(&s->cv);
        }
        uv_mutex_unlock(&s->mu);
    }
}

void
cm__stream_notify_off(cm_stream *s)
{
    uv_mutex_lock(&s->mu);
    s->notify = NULL;
    s->notify_arg = NULL;
    /* A call under way ends before its arg may be freed (unless it is this thread's own). */
    while (s->telling > 0 && !cm_loop_on_loop_thread(s->loop)) {
        uv_cond_wait(&s->cv, &s->mu);
    }
    uv_mutex_unlock(&s->mu);
}

/* What a message of len body bytes weighs against the window: its body and its HTTP head (the
 * headers sent with every message, the start line, Content-Length), so that a stream of small
 * messages is bounded by what it holds, not by its bodies alone. */
static size_t
msg_cost(const cm_stream *s, size_t len)
{
    return len + s->head_cost;
}

/* Hands the queued messages to the transport (loop). */
void
cm__stream_flush(cm_stream *s)
{
    /* The bytes taken stay counted in out_bytes until the transport's count includes them, so
     * that a sender never sees room that is not there. */
    uv_mutex_lock(&s->mu);
    item *list = s->out_head;
    s->out_head = s->out_tail = NULL;
    uv_mutex_unlock(&s->mu);
    size_t taken = 0;
    item *done = NULL; /* the items sent, back to the spare or freed under mu */
    int cork = s->ts != NULL && list != NULL && list->next != NULL;
    if (cork) {
        cm_tstream_cork(s->ts, 1); /* one write for the lot, and bigger reads for the peer */
    }
    while (list != NULL) {
        item *n = list->next;
        taken += msg_cost(s, list->len);
        if (s->ts != NULL) {
            cm_hdr h[CM__STREAM_MAX_HDRS + 1];
            memcpy(h, s->hdrs, s->nhdrs * sizeof(cm_hdr));
            size_t nh = s->nhdrs;
            if (list->kind == I_EOS) {
                h[nh].key = "Micro-Error";
                h[nh++].val = "EOS";
            }
            cm_msg m = {h, nh, list->data, list->kind == I_EOS ? 0 : list->len};
            cm_tstream_send(s->ts, &m);
        }
        list->next = done;
        done = list;
        list = n;
    }
    if (cork && s->ts != NULL) {
        cm_tstream_cork(s->ts, 0);
    }
    size_t q = s->ts != NULL ? cm_tstream_queued(s->ts) : 0;
    uv_mutex_lock(&s->mu);
    while (done != NULL) {
        item *n = done->next;
        item_done_locked(s, &s->out_spare, done);
        done = n;
    }
    s->out_bytes -= taken;
    s->tq = q;
    if (s->out_bytes + s->tq > s->st.max_queued) {
        s->st.max_queued = s->out_bytes + s->tq;
    }
    uv_cond_broadcast(&s->cv);
    uv_mutex_unlock(&s->mu);
}

/* Frees the stream, or leaves that to the kick still posted (a handler's last send). */
static void
destroy_or_defer(cm_stream *s)
{
    uv_mutex_lock(&s->mu);
    int later = s->posted;
    s->destroy_on_kick = later;
    uv_mutex_unlock(&s->mu);
    if (!later) {
        cm__stream_destroy(s);
    }
}

static void
on_timer_closed(uv_handle_t *h)
{
    destroy_or_defer(h->data);
}

/* The loop lets go of the stream: the connection closes after what is queued. */
void
cm__stream_loop_release(cm_stream *s)
{
    if (s->ts != NULL) {
        cm_tstream_close(s->ts);
        s->ts = NULL;
    }
    if (s->timer_init) {
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    } else {
        destroy_or_defer(s);
    }
}

static void
kick_on_loop(void *arg)
{
    cm_stream *s = arg;
    uv_mutex_lock(&s->mu);
    s->posted = 0;
    if (s->destroy_on_kick) {
        uv_mutex_unlock(&s->mu);
        cm__stream_destroy(s);
        return;
    }
    int resume = s->want_resume && s->in_paused;
    if (resume) {
        s->want_resume = 0;
        s->in_paused = 0;
    }
    int canceled = s->canceled, released = s->released, send_eof = s->send_eof;
    int ended = s->ended, notify = s->notify_kick;
    s->notify_kick = 0;
    uv_mutex_unlock(&s->mu);
    cm__stream_flush(s);
    if (notify && !released) {
        tell(s); /* a new notify hook sees what arrived before it */
    }
    if (resume && s->ts != NULL) {
        cm_tstream_pause(s->ts, 0);
    }
    if (canceled && s->ts != NULL && !s->server) {
        cm_tstream_close(s->ts);
        s->ts = NULL;
    }
    if (released && !s->server) {
        if (s->ts != NULL && !send_eof && !ended) {
            cm_hdr h[CM__STREAM_MAX_HDRS + 1];
            memcpy(h, s->hdrs, s->nhdrs * sizeof(cm_hdr));
            h[s->nhdrs].key = "Micro-Error";
            h[s->nhdrs].val = "EOS";
            cm_msg m = {h, s->nhdrs + 1, (const uint8_t *)"", 0};
            cm_tstream_send(s->ts, &m);
        }
        cm__stream_loop_release(s);
    }
}

static void
on_deadline(uv_timer_t *t)
{
    cm_stream *s = t->data;
    uv_mutex_lock(&s->mu);
    s->timed_out = 1;
    uv_cond_broadcast(&s->cv);
    uv_mutex_unlock(&s->mu);
    if (!s->server && s->ts != NULL) {
        cm_tstream_close(s->ts);
        s->ts = NULL;
    }
    tell(s);
}

void
cm__stream_start_timer(cm_stream *s)
{
    uv_timer_init(cm_loop_uv(s->loop), &s->timer);
    s->timer.data = s;
    s->timer_init = 1;
    if (s->deadline_ms >= 0) {
        uint64_t now = cm_now_ms();
        uint64_t left = (uint64_t)s->deadline_ms > now ? (uint64_t)s->deadline_ms - now : 0;
        uv_timer_start(&s->timer, on_deadline, left, 0);
    }
}

/* A message of the peer (loop). */
static void
on_msg(void *user, const cm_msg *m)
{
    cm_stream *s = user;
    const char *err = cm_msg_header(m, "Micro-Error");
    const char *status = cm_msg_header(m, ":status");
    if (s->server) {
        /* go-micro's ServeConn: messages are routed by Micro-Stream; an EOS for a stream it
         * does not know is dropped. Other streams and unary calls on this connection are not
         * served (a go-micro client opens a connection per stream). */
        const char *sid = cm_msg_header(m, "Micro-Stream");
        if (sid == NULL || strcmp(sid, s->id) != 0) {
            if (err == NULL || strcmp(err, "EOS") != 0) {
                cm_log(CM_LOG_DEBUG, "server", "stream %s: a message for stream \"%s\" dropped",
                       s->id, sid ? sid : "");
            }
            return;
        }
    }
    int kind = I_MSG;
    const uint8_t *data = m->body;
    size_t len = m->body_len;
    char text[256];
    if (err != NULL && err[0] != '\0') {
        kind = strcmp(err, "EOS") == 0 ? I_EOS : I_ERR;
        data = (const uint8_t *)err;
        len = kind == I_ERR ? strlen(err) : 0;
    } else if (status != NULL) {
        kind = I_ERR;
        snprintf(text, sizeof text, "HTTP status %s: %.*s", status,
                 (int)(m->body_len > 200 ? 200 : m->body_len), (const char *)m->body);
        data = (const uint8_t *)text;
        len = strlen(text);
    }
    item *i = item_get(s, &s->in_spare, len);
    if (i == NULL) {
        return;
    }
    i->next = NULL;
    i->kind = kind;
    i->len = len;
    memcpy(i->data, data, len);
    i->data[len] = '\0';
    uv_mutex_lock(&s->mu);
    if (s->in_tail) {
        s->in_tail->next = i;
    } else {
        s->in_head = i;
    }
    s->in_tail = i;
    s->in_bytes += msg_cost(s, len);
    s->st.received += kind == I_MSG;
    int pause = !s->in_paused && s->in_bytes > s->window;
    if (pause) {
        s->in_paused = 1;
    }
    /* A waiting receiver is woken once for what this turn of the loop read (the kick runs
     * before the loop polls again), not for each message: woken for the first, it would take
     * the CPU from the loop and sleep again for every message that follows. */
    kick_locked(s);
    uv_mutex_unlock(&s->mu);
    if (pause && s->ts != NULL) {
        cm_tstream_pause(s->ts, 1);
    }
    tell(s);
}

static void
on_end(void *user, int status)
{
    cm_stream *s = user;
    uv_mutex_lock(&s->mu);
    s->ended = 1;
    s->end_status = status;
    uv_cond_broadcast(&s->cv);
    uv_mutex_unlock(&s->mu);
    tell(s);
}

static void
on_written(void *user)
{
    cm_stream *s = user;
    size_t q = s->ts != NULL ? cm_tstream_queued(s->ts) : 0;
    uv_mutex_lock(&s->mu);
    s->tq = q;
    uv_cond_broadcast(&s->cv);
    uv_mutex_unlock(&s->mu);
    tell(s);
}

const cm_tstream_cbs cm__stream_cbs = {on_msg, on_end, on_written};

/* ---- the application's half ---- */

/* What send and recv answer once the transport ended the stream: its reason when it is one of
 * cmicro's (CM_ECERT: the TLS handshake refused the peer; CM_ETIMEDOUT: the dial; CM_EPROTO),
 * else CM_ECLOSED (the connection went away). */
static int
end_code(const cm_stream *s)
{
    return s->end_status <= CM_EINVAL && s->end_status != CM_ECANCELED ? s->end_status : CM_ECLOSED;
}

/* Why a send cannot go on (under mu), or 0. */
static int
send_blocked_by(const cm_stream *s)
{
    if (s->canceled) {
        return CM_ECANCELED;
    }
    if (s->timed_out) {
        return CM_ETIMEDOUT;
    }
    if (s->send_eof) {
        return CM_EOF;
    }
    if (s->err != NULL) {
        return CM_EREMOTE;
    }
    if (s->ended) {
        return end_code(s);
    }
    return 0;
}

/* Queues item i (an I_MSG or I_EOS) for the loop, waiting for room in the window when wait is
 * set; the item is the stream's from then on, whatever the result. */
static int
enqueue_out(cm_stream *s, int kind, item *i, int wait)
{
    size_t len = i->len;
    i->next = NULL;
    i->kind = kind;
    uv_mutex_lock(&s->mu);
    int rc;
    for (;;) {
        rc = send_blocked_by(s);
        size_t held = s->out_bytes + s->tq;
        if (rc < 0 || held == 0 || held + msg_cost(s, len) <= s->window || kind == I_EOS) {
            break;
        }
        if (!wait) {
            rc = CM_EAGAIN;
            break;
        }
        uv_cond_wait(&s->cv, &s->mu);
    }
    if (rc == 0) {
        if (s->out_tail) {
            s->out_tail->next = i;
        } else {
            s->out_head = i;
        }
        s->out_tail = i;
        s->out_bytes += msg_cost(s, len);
        if (s->out_bytes + s->tq > s->st.max_queued) {
            s->st.max_queued = s->out_bytes + s->tq;
        }
        s->st.sent += kind == I_MSG;
        if (kind == I_EOS) {
            s->send_eof = 1;
        }
        kick_locked(s);
        i = NULL;
    }
    if (i != NULL) {
        item_done_locked(s, &s->out_spare, i);
    }
    uv_mutex_unlock(&s->mu);
    return rc;
}

/* msg encoded into an item: the codec appends to a buffer that starts with the item's head (the
 * spare's memory when there is one), so that the encoding is neither copied nor allocated twice. */
static int
encode_item(cm_stream *s, const void *msg, item **out)
{
    const size_t off = offsetof(item, data);
    uv_mutex_lock(&s->mu);
    item *sp = item_take_locked(&s->out_spare);
    size_t hint = s->out_hint; /* a new item is sized for the last message, not grown to it */
    uv_mutex_unlock(&s->mu);
    cm_buf b = {(uint8_t *)sp, off, sp ? off + sp->cap : off + hint + 64};
    if (sp == NULL && (b.data = malloc(b.cap)) == NULL) {
        return CM_ENOMEM;
    }
    int rc = s->codec->marshal(s->send_desc, msg, &b);
    rc = rc ? rc : cm_buf_append(&b, "", 1);
    if (rc < 0) {
        cm_buf_free(&b);
        return rc;
    }
    item *i = (item *)(void *)b.data;
    i->len = b.len - off - 1;
    i->cap = b.cap - off;
    uv_mutex_lock(&s->mu);
    s->out_hint = i->len;
    uv_mutex_unlock(&s->mu);
    *out = i;
    return 0;
}

static int
do_send(cm_stream *s, const void *msg, int wait)
{
    if (s == NULL || msg == NULL) {
        return CM_EINVAL;
    }
    if (wait && cm_loop_on_loop_thread(s->loop)) {
        return CM_ESTATE;
    }
    item *i;
    int rc = encode_item(s, msg, &i);
    return rc < 0 ? rc : enqueue_out(s, I_MSG, i, wait);
}

int
cm_stream_send(cm_stream *s, const void *msg)
{
    return do_send(s, msg, 1);
}

int
cm_stream_try_send(cm_stream *s, const void *msg)
{
    return do_send(s, msg, 0);
}

/* Takes the next received item (under mu), or says why there is none: CM_EAGAIN (none yet). */
static int
take_in(cm_stream *s, item **out)
{
    if (s->canceled) {
        return CM_ECANCELED;
    }
    if (s->recv_eof) {
        return CM_EOF;
    }
    if (s->err != NULL) {
        return CM_EREMOTE;
    }
    if (s->in_head != NULL) {
        item *i = s->in_head;
        s->in_head = i->next;
        if (s->in_head == NULL) {
            s->in_tail = NULL;
        }
        s->in_bytes -= msg_cost(s, i->len);
        if (s->in_paused && s->in_bytes <= s->window / 2 && !s->want_resume) {
            s->want_resume = 1;
            kick_locked(s);
        }
        *out = i;
        return 0;
    }
    if (s->timed_out) {
        return CM_ETIMEDOUT;
    }
    if (s->ended) {
        return end_code(s);
    }
    return CM_EAGAIN;
}

static int
do_recv(cm_stream *s, void **msg, int wait)
{
    if (s == NULL || msg == NULL) {
        return CM_EINVAL;
    }
    *msg = NULL;
    if (wait && cm_loop_on_loop_thread(s->loop)) {
        return CM_ESTATE;
    }
    item *i = NULL;
    uv_mutex_lock(&s->mu);
    int rc;
    while ((rc = take_in(s, &i)) == CM_EAGAIN && wait) {
        uv_cond_wait(&s->cv, &s->mu);
    }
    if (rc == 0 && i->kind == I_EOS) {
        s->recv_eof = 1;
        rc = CM_EOF;
    } else if (rc == 0 && i->kind == I_ERR) {
        s->err = cm_error_parse((const char *)i->data, i->len);
        rc = CM_EREMOTE;
        uv_cond_broadcast(&s->cv);
    }
    uv_mutex_unlock(&s->mu);
    if (rc == 0) {
        char why[160];
        rc = s->codec->unmarshal(s->recv_desc, i->data, i->len, NULL, msg, why, sizeof why);
        if (rc < 0) {
            cm_log(CM_LOG_DEBUG, "stream", "stream %s: cannot decode a message: %s", s->id, why);
        }
    }
    if (i != NULL) {
        uv_mutex_lock(&s->mu);
        item_done_locked(s, &s->in_spare, i);
        uv_mutex_unlock(&s->mu);
    }
    return rc;
}

int
cm_stream_recv(cm_stream *s, void **msg)
{
    return do_recv(s, msg, 1);
}

int
cm_stream_try_recv(cm_stream *s, void **msg)
{
    return do_recv(s, msg, 0);
}

void
cm_stream_set_notify(cm_stream *s, void (*fn)(cm_stream *s, void *arg), void *arg)
{
    if (fn == NULL) {
        cm__stream_notify_off(s);
        return;
    }
    uv_mutex_lock(&s->mu);
    s->notify = fn;
    s->notify_arg = arg;
    if (fn != NULL) {
        s->notify_kick = 1;
        kick_locked(s);
    }
    uv_mutex_unlock(&s->mu);
}

int
cm_stream_close_send(cm_stream *s)
{
    if (s == NULL) {
        return CM_EINVAL;
    }
    if (s->server) {
        return CM_ESTATE;
    }
    item *i = item_get(s, &s->out_spare, 0);
    if (i == NULL) {
        return CM_ENOMEM;
    }
    i->len = 0;
    i->data[0] = '\0';
    int rc = enqueue_out(s, I_EOS, i, 0);
    return rc == CM_EOF ? 0 : rc;
}

void
cm_stream_cancel(cm_stream *s)
{
    if (s == NULL) {
        return;
    }
    uv_mutex_lock(&s->mu);
    s->canceled = 1;
    uv_cond_broadcast(&s->cv);
    kick_locked(s);
    uv_mutex_unlock(&s->mu);
}

const cm_error *
cm_stream_error(const cm_stream *s)
{
    return s->err;
}

const ProtobufCMessageDescriptor *
cm_stream_recv_desc(const cm_stream *s)
{
    return s->recv_desc;
}

int64_t
cm_stream_remaining_ms(const cm_stream *s)
{
    if (s->deadline_ms < 0) {
        return -1;
    }
    uint64_t now = cm_now_ms();
    return (uint64_t)s->deadline_ms > now ? (int64_t)((uint64_t)s->deadline_ms - now) : 0;
}

void
cm_stream_get_stats(const cm_stream *s, cm_stream_stats *st)
{
    cm_stream *m = (cm_stream *)s;
    uv_mutex_lock(&m->mu);
    *st = s->st;
    st->queued = s->out_bytes + s->tq;
    uv_mutex_unlock(&m->mu);
}

void
cm_stream_free(cm_stream *s)
{
    if (s == NULL || s->server) {
        return;
    }
    cm__stream_notify_off(s); /* fn and arg are borrowed until here */
    uv_mutex_lock(&s->mu);
    s->released = 1;
    kick_locked(s);
    uv_mutex_unlock(&s->mu);
}
