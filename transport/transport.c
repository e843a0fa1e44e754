/* cmicro: the generic transport functions; each dispatches to the backend's ops table. */
#include "transport_int.h"

#include <uv.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

/* Every backend, found by name: the built-ins, then those registered by the application. */
static cm__backends backends = {.names = {"http"}, .ops = {&cm__transport_http}, .n = 1};

int
cm_transport_register(const cm_transport_ops *ops)
{
    if (!ops || ops->abi_version != CM_ABI_VERSION || !ops->name || !*ops->name || !ops->init ||
        !ops->close || !ops->listen || !ops->reply || !ops->roundtrip) {
        return CM_EINVAL;
    }
    return cm__backends_add(&backends, ops->name, ops);
}

const cm_transport_ops *
cm_transport_find(const char *name)
{
    return cm__backends_find(&backends, name);
}

const char *
cm_msg_header(const cm_msg *m, const char *key)
{
    if (!m || !key) {
        return NULL;
    }
    for (size_t i = 0; i < m->nhdrs; i++) {
        const char *k = m->hdrs[i].key;
        if (k && strcasecmp(k, key) == 0) {
            return m->hdrs[i].val;
        }
    }
    return NULL;
}

/* The open-file limit less room for everything else, at most 65536. */
static unsigned
default_max_conns(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > 65536 + 64) {
        return 65536;
    }
    return rl.rlim_cur > 128 ? (unsigned)(rl.rlim_cur - 64) : 64;
}

void
cm_transport_opts_init(cm_transport_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->max_header_bytes = 64 * 1024;
    o->max_body_bytes = 4 * 1024 * 1024;
    o->pool_size = 100;
    o->pool_ttl_ms = 60000;
    o->dial_timeout_ms = 5000;
    o->header_timeout_ms = 10000;
    o->body_timeout_ms = 60000;
    o->idle_timeout_ms = 75000;
    o->max_conns = default_max_conns();
    o->max_conns_per_ip = 0;
}

int
cm_transport_new(cm_loop *loop, const char *name, const cm_transport_opts *opts, cm_transport **out)
{
    if (!loop || !out) {
        return CM_EINVAL;
    }
    const cm_transport_ops *ops = cm_transport_find(name ? name : CM_TRANSPORT_DEFAULT);
    if (!ops) {
        return CM_ENOTFOUND;
    }
    cm_transport_opts o;
    if (opts) {
        o = *opts;
    } else {
        cm_transport_opts_init(&o);
    }
    if (o.max_header_bytes == 0 || o.max_header_bytes > UINT32_MAX / 2) {
        return CM_EINVAL;
    }
    /* Zero server limits (options filled before they existed) take the defaults. */
    cm_transport_opts d;
    cm_transport_opts_init(&d);
    o.header_timeout_ms = o.header_timeout_ms ? o.header_timeout_ms : d.header_timeout_ms;
    o.body_timeout_ms = o.body_timeout_ms ? o.body_timeout_ms : d.body_timeout_ms;
    o.idle_timeout_ms = o.idle_timeout_ms ? o.idle_timeout_ms : d.idle_timeout_ms;
    o.max_conns = o.max_conns ? o.max_conns : d.max_conns;
    o.max_calls = o.max_calls ? o.max_calls : CM_TRANSPORT_MAX_CALLS;
    cm_transport *t = calloc(1, sizeof(*t) + ops->priv_size);
    if (!t) {
        return CM_ENOMEM;
    }
    t->ops = ops;
    t->cloop = loop;
    t->loop = cm_loop_uv(loop);
    t->opts = o;
    if (ops->init) {
        int r = ops->init(t);
        if (r < 0) {
            free(t);
            return r;
        }
    }
    *out = t;
    return 0;
}

cm_loop *
cm_transport_loop(const cm_transport *t)
{
    return t->cloop;
}

const cm_transport_opts *
cm_transport_get_opts(const cm_transport *t)
{
    return &t->opts;
}

void *
cm_transport_priv(cm_transport *t)
{
    return t->priv;
}

void
cm_transport_closed(cm_transport *t)
{
    void (*done)(void *arg) = t->close_done;
    void *arg = t->close_arg;
    free(t);
    if (done) {
        done(arg);
    }
}

void
cm_transport_close(cm_transport *t, void (*done)(void *arg), void *arg)
{
    if (!t) {
        return;
    }
    t->close_done = done;
    t->close_arg = arg;
    t->ops->close(t);
}

const char *
cm_transport_name(const cm_transport *t)
{
    return t->ops->name;
}

int
cm_transport_listen(cm_transport *t, const char *addr, cm_request_cb cb, void *user,
                    cm_listener **out)
{
    if (!t || !cb || !out) {
        return CM_EINVAL;
    }
    if (!addr) {
        return CM_EADDR;
    }
    if (!t->ops->listen) {
        return CM_ENOTSUP;
    }
    return t->ops->listen(t, addr, cb, user, out);
}

int
cm_listener_addr(const cm_listener *l, char *buf, size_t len)
{
    if (!l || !buf || !l->ops->listener_addr) {
        return CM_EINVAL;
    }
    return l->ops->listener_addr(l, buf, len);
}

void
cm_listener_stop_accepting(cm_listener *l)
{
    if (l && l->ops->listener_stop_accepting) {
        l->ops->listener_stop_accepting(l);
    }
}

void
cm_listener_close(cm_listener *l, void (*done)(void *arg), void *arg)
{
    if (l) {
        l->ops->listener_close(l, done, arg);
    }
}

void
cm_listener_get_stats(const cm_listener *l, cm_listener_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (l && l->ops->listener_stats) {
        l->ops->listener_stats(l, st);
    }
}

int
cm_tconn_reply(cm_tconn *conn, const cm_msg *rsp, int close_after)
{
    if (!conn) {
        return CM_EINVAL;
    }
    if (!conn->ops->reply) {
        return CM_ENOTSUP;
    }
    return conn->ops->reply(conn, rsp, close_after);
}

int
cm_tconn_reply_early(cm_tconn *conn, const cm_msg *rsp)
{
    if (!conn || !rsp) {
        return CM_EINVAL;
    }
    if (!conn->ops->reply_early) {
        return CM_ENOTSUP;
    }
    return conn->ops->reply_early(conn, rsp);
}

const char *
cm_tconn_peer(const cm_tconn *conn)
{
    const char *s = conn && conn->ops->peer ? conn->ops->peer(conn) : NULL;
    return s ? s : "";
}

const char *
cm_tconn_local(const cm_tconn *conn)
{
    const char *s = conn && conn->ops->local ? conn->ops->local(conn) : NULL;
    return s ? s : "";
}

int
cm_transport_roundtrip(cm_transport *t, const char *addr, const cm_msg *req, uint64_t timeout_ms,
                       cm_roundtrip_cb cb, void *user, cm_roundtrip **handle)
{
    if (!t || !req || !cb || (req->nhdrs && !req->hdrs) || (req->body_len && !req->body)) {
        return CM_EINVAL;
    }
    if (!addr) {
        return CM_EADDR;
    }
    if (!t->ops->roundtrip) {
        return CM_ENOTSUP;
    }
    return t->ops->roundtrip(t, addr, req, timeout_ms, cb, user, handle);
}

void
cm_roundtrip_cancel(cm_roundtrip *rt)
{
    if (rt && rt->ops->cancel) {
        rt->ops->cancel(rt);
    }
}

void
cm_transport_get_pool_stats(const cm_transport *t, cm_pool_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (t && t->ops->pool_stats) {
        t->ops->pool_stats(t, st);
    }
}

/* ---- streams ---- */

int
cm_tconn_stream(cm_tconn *conn, const cm_tstream_cbs *cbs, void *user, cm_tstream **out)
{
    if (!conn || !cbs || !cbs->on_msg || !cbs->on_end || !out) {
        return CM_EINVAL;
    }
    if (!conn->ops->tconn_stream) {
        return CM_ENOTSUP;
    }
    return conn->ops->tconn_stream(conn, cbs, user, out);
}

int
cm_transport_dial_stream(cm_transport *t, const char *addr, uint64_t dial_timeout_ms,
                         const cm_tstream_cbs *cbs, void *user, cm_tstream **out)
{
    if (!t || !addr || !cbs || !cbs->on_msg || !cbs->on_end || !out) {
        return CM_EINVAL;
    }
    if (!t->ops->dial_stream) {
        return CM_ENOTSUP;
    }
    return t->ops->dial_stream(t, addr, dial_timeout_ms, cbs, user, out);
}

int
cm_tstream_send(cm_tstream *s, const cm_msg *m)
{
    if (!s || !m) {
        return CM_EINVAL;
    }
    return s->ops->stream_send ? s->ops->stream_send(s, m) : CM_ENOTSUP;
}

size_t
cm_tstream_queued(const cm_tstream *s)
{
    return s && s->ops->stream_queued ? s->ops->stream_queued(s) : 0;
}

void
cm_tstream_pause(cm_tstream *s, int on)
{
    if (s && s->ops->stream_pause) {
        s->ops->stream_pause(s, on);
    }
}

int
cm_tstream_cork(cm_tstream *s, int on)
{
    return s && s->ops->stream_cork ? s->ops->stream_cork(s, on) : 0;
}

void
cm_tstream_close(cm_tstream *s)
{
    if (s && s->ops->stream_close) {
        s->ops->stream_close(s);
    }
}
