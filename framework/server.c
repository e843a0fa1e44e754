/* The RPC server: routing, decoding, dispatch to handlers (worker pool, inline, or a stream's
 * thread), replies and graceful stop. */
#include "server_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void
cm_server_opts_init(cm_server_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->name = "go.micro.server";
    o->address = ":0";
    o->transport = CM_TRANSPORT_DEFAULT;
    cm_transport_opts_init(&o->transport_opts);
    o->workers = 8;
    o->drain_timeout_ms = 10000;
    o->loops = 0;
    o->max_streams = CM_SERVER_MAX_STREAMS;
}

int
cm_server_new(cm_loop *loop, const cm_server_opts *o, cm_server **out)
{
    cm_server_opts def;
    if (o == NULL) {
        cm_server_opts_init(&def);
        o = &def;
    }
    if (loop == NULL || out == NULL || o->loops > CM__MAX_LOOPS) {
        return CM_EINVAL;
    }
    cm_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return CM_ENOMEM;
    }
    s->loop = loop;
    s->nloops = o->loops ? o->loops : cm__server_default_loops();
    s->loops = calloc(s->nloops, sizeof(cm__sloop));
    if (s->loops == NULL) {
        free(s);
        return CM_ENOMEM;
    }
    for (unsigned i = 0; i < s->nloops; i++) {
        s->loops[i].s = s;
        s->loops[i].idx = i;
        s->loops[i].loop = i == 0 ? loop : NULL;
        uv_mutex_init(&s->loops[i].mu);
    }
    s->name = strdup(o->name ? o->name : "go.micro.server");
    s->address = strdup(o->address ? o->address : ":0");
    s->transport_name = strdup(o->transport ? o->transport : CM_TRANSPORT_DEFAULT);
    s->topts = o->transport_opts;
    s->nworkers = o->workers ? o->workers : 8;
    s->max_streams = o->max_streams ? o->max_streams : CM_SERVER_MAX_STREAMS;
    if (s->topts.max_calls == 0) { /* calls beyond the workers wait in their queue anyway */
        unsigned twice = s->nworkers * 2;
        s->topts.max_calls = twice > CM_TRANSPORT_MAX_CALLS ? twice : CM_TRANSPORT_MAX_CALLS;
    }
    s->drain_timeout_ms = o->drain_timeout_ms;
    if (s->name == NULL || s->address == NULL || s->transport_name == NULL ||
        cm__limits_new(s, o->max_concurrent, o->rate_limit, o->rate_burst, &s->limits) < 0) {
        cm_server_free(s);
        return CM_ENOMEM;
    }
    *out = s;
    return 0;
}

static int
route_cmp(const void *a, const void *b)
{
    return strcmp(((const cm__route *)a)->endpoint, ((const cm__route *)b)->endpoint);
}

int
cm_server_handle(cm_server *s, const cm_handler *h, void *user)
{
    if (s == NULL || h == NULL || h->fn == NULL || h->endpoint == NULL) {
        return CM_EINVAL;
    }
    const char *dot = strchr(h->endpoint, '.');
    if (dot == NULL || dot == h->endpoint || dot[1] == '\0' || strchr(dot + 1, '.') != NULL) {
        return CM_EINVAL;
    }
    for (size_t i = 0; i < s->nroutes; i++) {
        if (strcmp(s->routes[i].endpoint, h->endpoint) == 0) {
            return CM_EEXIST;
        }
    }
    cm__route *r = realloc(s->routes, (s->nroutes + 1) * sizeof(cm__route));
    if (r == NULL) {
        return CM_ENOMEM;
    }
    s->routes = r;
    cm__route *nr = &r[s->nroutes];
    nr->endpoint = strdup(h->endpoint);
    if (nr->endpoint == NULL) {
        return CM_ENOMEM;
    }
    atomic_init(&nr->inflight, 0);
    atomic_init(&nr->ok_series[0], NULL);
    atomic_init(&nr->ok_series[1], NULL);
    atomic_init(&nr->ok_series[2], NULL);
    nr->service_len = (size_t)(dot - h->endpoint);
    nr->h = *h;
    nr->h.endpoint = nr->endpoint;
    nr->user = user;
    s->nroutes++;
    qsort(s->routes, s->nroutes, sizeof(cm__route), route_cmp);
    return 0;
}

static const cm__route *
find_route(const cm_server *s, const char *endpoint)
{
    size_t lo = 0, hi = s->nroutes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->routes[mid].endpoint, endpoint);
        if (c == 0) {
            return &s->routes[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static int
has_service(const cm_server *s, const char *service, size_t len)
{
    for (size_t i = 0; i < s->nroutes; i++) {
        if (s->routes[i].service_len == len && strncmp(s->routes[i].endpoint, service, len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- the context pool ---- */

static cm_ctx *
ctx_get(cm__sloop *sl)
{
    cm_ctx *c = sl->free_ctx;
    if (c != NULL) {
        sl->free_ctx = c->next_free;
        sl->nfree--;
    } else {
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            return NULL;
        }
        cm__arena_init(&c->arena);
    }
    c->srv = sl->s;
    c->sl = sl;
    return c;
}

cm_ctx *
cm__ctx_get(cm_server *s)
{
    return ctx_get(&s->loops[0]);
}

void
cm__ctx_put(cm_ctx *c)
{
    cm__sloop *sl = c->sl;
    if (sl->nfree >= CM__CTX_KEEP) {
        cm__ctx_destroy(c);
        return;
    }
    cm_error_free(c->error);
    c->error = NULL;
    c->status = 0;
    c->req_msg = c->rsp_msg = NULL;
    c->nrsp_hdrs = 0;
    c->close_after = 0;
    c->out.len = 0;
    c->codec = NULL;
    c->rt = NULL;
    c->env_id[0] = '\0';
    c->env_id_str = 0;
    c->http_method = NULL;
    c->get_state = NULL;
    atomic_store_explicit(&c->trace_state, 0, memory_order_relaxed);
    c->tracestate = NULL;
    c->wait_next = NULL;
    c->event_sub = NULL;
    c->hopped = 0;
    c->encoded = 0;
    c->peer = c->local = NULL;
    /* Keep a large request's arena or response buffer from pinning memory. */
    cm__arena_reset(&c->arena, 256 * 1024);
    if (c->out.cap > 256 * 1024) {
        cm_buf_free(&c->out);
    }
    c->next_free = sl->free_ctx;
    sl->free_ctx = c;
    sl->nfree++;
}

void
cm__ctx_destroy(cm_ctx *c)
{
    cm_error_free(c->error);
    cm__arena_fini(&c->arena);
    cm_buf_free(&c->out);
    free(c);
}

unsigned
cm__server_workers(const cm_server *s)
{
    return s->nworkers;
}

const char *
cm__server_name(const cm_server *s)
{
    return s->name;
}

const char *
cm__server_transport_name(const cm_server *s)
{
    cm_transport *t = s->loops[0].transport;
    return t ? cm_transport_name(t) : s->transport_name;
}

/* ---- replies ---- */

static void
send_reply(cm_ctx *c, const uint8_t *body, size_t len)
{
    cm_msg m = {c->rsp_hdrs, c->nrsp_hdrs, body, len};
    cm_tconn_reply(c->conn, &m, c->close_after);
}

static void
release(cm__sloop *sl)
{
    cm__count(&sl->inflight, 0);
    if (atomic_load_explicit(&sl->s->stopping, memory_order_relaxed) &&
        cm__counted(&sl->inflight) == 0) {
        cm__server_loop_drained(sl);
    }
}

void
cm__server_hold(cm_server *s)
{
    cm__count(&s->loops[0].inflight, 1);
}

void
cm__server_release(cm_server *s)
{
    release(&s->loops[0]);
}

static void
finish(cm_ctx *c)
{
    cm__sloop *sl = c->sl;
    cm__ctx_put(c);
    release(sl);
}

/* Encodes the reply body into c->out: the message, or for an envelope codec the response
 * envelope around it (error: the envelope's error text, msg NULL). */
static int
encode_reply(cm_ctx *c, const ProtobufCMessageDescriptor *desc, const void *msg, const char *error)
{
    if (c->codec->marshal_envelope == NULL) {
        return c->codec->marshal(desc, msg, &c->out);
    }
    cm_codec_envelope env;
    memset(&env, 0, sizeof env);
    snprintf(env.method, sizeof env.method, "%s", c->endpoint ? c->endpoint : "");
    snprintf(env.id, sizeof env.id, "%s", c->env_id[0] ? c->env_id : "0");
    env.id_is_string = c->env_id_str;
    snprintf(env.error, sizeof env.error, "%s", error ? error : "");
    return c->codec->marshal_envelope(1, &env, desc, msg, &c->out);
}

/* Answers with c->error, or with text as go-micro's bare (non-JSON) error. */
static void
reply_error(cm_ctx *c, const char *text)
{
    char *json = NULL;
    if (text == NULL) {
        json = cm_error_to_json(c->error);
        text = json ? json : "internal error";
    }
    cm__count(&c->sl->errors, 1);
    c->nrsp_hdrs = 0;
    if (c->content_type) {
        cm__ctx_add_header(c, "Content-Type", c->content_type);
    }
    cm__ctx_add_header(c, "Micro-Error", text);
    /* An envelope codec's client reads the error from the body: go-micro's answers there too. */
    c->out.len = 0;
    if (c->codec != NULL && c->codec->marshal_envelope != NULL &&
        encode_reply(c, NULL, NULL, text) < 0) {
        c->out.len = 0;
    }
    send_reply(c, c->out.data, c->out.len);
    free(json);
    finish(c);
}

static void
reply_errorf(cm_ctx *c, int32_t code, const char *fmt, ...) CM_PRINTF(3, 4);

static void
reply_errorf(cm_ctx *c, int32_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_error_free(c->error);
    c->error = cm_error_newv(c->srv->name, code, fmt, ap);
    va_end(ap);
    reply_error(c, c->error ? NULL : "internal error: out of memory");
}

/* A handler's successful reply: the response message encoded, with its Content-Type. */
static int
encode_ok(cm_ctx *c)
{
    int rc = encode_reply(c, c->rt->h.response, c->rsp_msg, NULL);
    if (rc == 0 && c->out.len > 0) {
        cm__ctx_add_header(c, "Content-Type", c->content_type);
    }
    return rc;
}

static void
complete(cm_ctx *c)
{
    if (c->status != 0) {
        if (c->error == NULL) {
            c->error = cm_error_internal(c->srv->name, "%s", cm_strerror(c->status));
        }
        reply_error(c, c->error ? NULL : "internal error: out of memory");
        return;
    }
    int rc = c->encoded ? c->encode_rc : encode_ok(c);
    if (rc < 0) {
        cm_error_free(c->error);
        c->error = NULL;
        char text[160];
        snprintf(text, sizeof(text), "Unable to encode body: %s", cm_strerror(rc));
        reply_error(c, text);
        return;
    }
    send_reply(c, c->out.data, c->out.len);
    finish(c);
}

static void
call_handler(cm_ctx *c)
{
    c->status = c->rt->h.fn(c, c->req_msg, c->rsp_msg, c->rt->user);
    if (c->status == CM_EREMOTE && c->error == NULL) {
        c->status = CM_EINVAL;
    }
}

/* The handler inside the server's handler wrappers. */
static void
run_wrapped(cm_ctx *c)
{
    const cm__wraps *ws = &c->srv->wraps;
    cm_wrap_info wi;
    memset(&wi, 0, sizeof wi);
    wi.kind = CM_WRAP_HANDLER;
    wi.service = c->srv->name;
    wi.endpoint = c->endpoint;
    wi.node = cm_ctx_peer(c);
    wi.deadline_ms = c->deadline_ms;
    wi.stream = (c->rt->h.flags & CM_HANDLER_STREAM) != 0;
    wi.md = c->req;
    wi.req_desc = c->rt->h.request;
    wi.req = c->req_msg;
    wi.rsp_desc = c->rt->h.response;
    wi.start_ns = c->start_ns;
    wi.ctx = c;
    void *states[CM_WRAP_MAX];
    size_t ran;
    cm_error *err;
    if (cm__wraps_before(ws, &wi, states, &ran, &err) == 0) {
        call_handler(c);
    } else {
        cm_error_free(c->error);
        c->error = err;
        c->status = CM_EREMOTE;
    }
    wi.status = c->status;
    wi.error = c->error;
    wi.rsp = c->status == 0 && !wi.stream ? c->rsp_msg : NULL;
    cm__wraps_after(ws, &wi, states, ran);
}

void
cm__server_run_handler(cm_ctx *c)
{
    if (c->srv->wraps.n == 0) {
        call_handler(c);
    } else {
        run_wrapped(c);
    }
}

/* On a worker: the handler, then its successful reply encoded and written from here when the
 * connection allows it, so that the reply does not wait for the loop to wake up (the loop
 * finishes the call in job_done). */
static void
job_work(cm__job *j)
{
    cm_ctx *c = (cm_ctx *)j;
    cm__server_run_handler(c);
    if (c->status != 0) {
        return;
    }
    c->encode_rc = encode_ok(c);
    c->encoded = 1;
    if (c->encode_rc == 0) {
        cm_msg m = {c->rsp_hdrs, c->nrsp_hdrs, c->out.data, c->out.len};
        cm_tconn_reply_early(c->conn, &m);
    }
}

static void
job_done(cm__job *j)
{
    complete((cm_ctx *)j);
}

/* ---- dispatch ---- */

/* The request headers the dispatcher reads, found in one pass (first occurrence of each, as
 * cm_msg_header() gives). */
typedef struct req_hdrs {
    const char *connection, *content_type, *timeout;
    const char *pmethod, *ppath;                      /* :method, :path (not POST) */
    const char *service, *endpoint, *method;          /* Micro-* */
    const char *x_service, *x_endpoint, *x_method;    /* X-Micro-* */
} req_hdrs;

/* Keeps v in *slot when it is the first value of key name (case-insensitive). */
static void
take(const char **slot, const char *key, const char *name, const char *v)
{
    if (*slot == NULL && strcasecmp(key, name) == 0) {
        *slot = v;
    }
}

static void
scan_headers(const cm_msg *m, req_hdrs *h)
{
    memset(h, 0, sizeof(*h));
    for (size_t i = 0; i < m->nhdrs; i++) {
        const char *k = m->hdrs[i].key;
        const char *v = m->hdrs[i].val;
        /* By length, so that each key is compared with at most two names. */
        switch (strlen(k)) {
        case 5:
            take(&h->ppath, k, ":path", v);
            break;
        case 7:
            if (k[0] == ':') {
                take(&h->pmethod, k, ":method", v);
            } else {
                take(&h->timeout, k, "Timeout", v);
            }
            break;
        case 10:
            take(&h->connection, k, "Connection", v);
            break;
        case 12:
            if ((k[0] | 0x20) == 'c') {
                take(&h->content_type, k, "Content-Type", v);
            } else {
                take(&h->method, k, "Micro-Method", v);
            }
            break;
        case 13:
            take(&h->service, k, "Micro-Service", v);
            break;
        case 14:
            if ((k[0] | 0x20) == 'm') {
                take(&h->endpoint, k, "Micro-Endpoint", v);
            } else {
                take(&h->x_method, k, "X-Micro-Method", v);
            }
            break;
        case 15:
            take(&h->x_service, k, "X-Micro-Service", v);
            break;
        case 16:
            take(&h->x_endpoint, k, "X-Micro-Endpoint", v);
            break;
        default:
            break;
        }
    }
}

/* a when it is set and not empty, else b (go-micro's Micro-X, then X-Micro-X). */
static const char *
either(const char *a, const char *b)
{
    return a && a[0] ? a : b;
}

/* Parses the Timeout header: unsigned decimal nanoseconds. 0 or -1 (not a number). */
static int
parse_timeout_ns(const char *s, uint64_t *ns)
{
    uint64_t v = 0;
    if (*s == '\0') {
        return -1;
    }
    for (; *s; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (d >= 10u) {
            return -1;
        }
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d; /* saturates */
    }
    *ns = v;
    return 0;
}

/* Reads the headers every reply depends on into c. */
static void
read_request(cm_ctx *c, const cm_msg *req)
{
    c->req = req;
    c->deadline_ms = -1;
    req_hdrs rh;
    scan_headers(req, &rh);
    c->close_after = rh.connection != NULL && strcasecmp(rh.connection, "close") == 0;
    const char *ct = rh.content_type;
    c->content_type = ct && ct[0] ? ct : CM_CT_PROTOBUF;
    c->service = either(rh.service, rh.x_service);
    const char *ep = either(rh.endpoint, rh.x_endpoint);
    if (ep == NULL || ep[0] == '\0') {
        ep = either(rh.method, rh.x_method);
    }
    c->endpoint = ep ? ep : "";
    c->http_method = rh.pmethod;
    c->http_path = rh.ppath ? rh.ppath : "/";
    uint64_t ns;
    if (rh.timeout != NULL && parse_timeout_ns(rh.timeout, &ns) == 0) {
        c->deadline_ms = (int64_t)(cm_now_ms() + ns / 1000000u);
    }
}

/* The reply of a GET served on loop 0 for another loop, back on the connection's loop. */
static void
reply_on_owner(void *arg)
{
    cm_ctx *c = arg;
    send_reply(c, c->out.data, c->out.len);
    finish(c);
}

void
cm__ctx_reply_http(cm_ctx *c, int status, const char *content_type, const char *body, size_t len)
{
    c->nrsp_hdrs = 0;
    if (status != 200) {
        char *v = cm_ctx_sprintf(c, "%d", status);
        cm__ctx_add_header(c, ":status", v ? v : "500");
    }
    cm__ctx_add_header(c, "Content-Type", content_type);
    cm__ctx_add_header(c, "Cache-Control", "no-store");
    c->out.len = 0;
    if (len > 0 && cm_buf_append(&c->out, body, len) < 0) {
        c->out.len = 0;
    }
    if (c->hopped) {
        cm__loop_post_node(c->sl->loop, &c->hop, reply_on_owner, c);
        return;
    }
    send_reply(c, c->out.data, c->out.len);
    finish(c);
}

void
cm__server_on_get(cm_server *s, cm__get_fn fn, void *arg)
{
    s->get_fn = fn;
    s->get_arg = arg;
}

int
cm_server_wrap(cm_server *s, const cm_wrapper *w)
{
    if (s == NULL) {
        return CM_EINVAL;
    }
    return s->started ? CM_ESTATE : cm__wraps_add(&s->wraps, w);
}

int
cm_server_wrap_subscriber(cm_server *s, const cm_wrapper *w)
{
    if (s == NULL) {
        return CM_EINVAL;
    }
    return s->started ? CM_ESTATE : cm__wraps_add(&s->sub_wraps, w);
}

int
cm__server_wrap_first(cm_server *s, const cm_wrapper *w)
{
    return s->started ? CM_ESTATE : cm__wraps_add_first(&s->wraps, w);
}

void
cm__server_limits_refused(const cm_server *s, uint64_t *concurrency, uint64_t *rate,
                          uint64_t *streams)
{
    cm__limits_refused(s->limits, concurrency, rate);
    *streams = atomic_load_explicit(&s->streams_refused, memory_order_relaxed);
}

const cm__wraps *
cm__server_sub_wraps(const cm_server *s)
{
    return &s->sub_wraps;
}

_Atomic(void *) *
cm__ctx_route_series(cm_ctx *c)
{
    return ((cm__route *)c->rt)->ok_series;
}

atomic_int *
cm__ctx_route_inflight(cm_ctx *c)
{
    return &((cm__route *)c->rt)->inflight;
}

uint64_t
cm__server_started_unix(const cm_server *s)
{
    return s->started_unix;
}

void
cm__server_submit(cm_server *s, cm__job *job)
{
    cm__workers_post(s->workers, job);
}

int
cm__server_busy(const cm_server *s)
{
    return cm__workers_busy(s->workers) || cm__workers_busy(s->stream_workers);
}

uint64_t
cm__server_drain_timeout_ms(const cm_server *s)
{
    return s->drain_timeout_ms;
}

int
cm__server_stopping(const cm_server *s)
{
    return atomic_load_explicit(&((cm_server *)s)->stopping, memory_order_relaxed);
}

/* A request the transport refused over a limit: go-micro's error, then the connection closes. */
static void
reply_refused(cm_ctx *c, int status)
{
    static const cm_msg none = {NULL, 0, (const uint8_t *)"", 0};
    c->req = &none;
    c->content_type = NULL;
    c->endpoint = "";
    c->close_after = 1;
    const cm_transport_opts *o = &c->srv->topts;
    cm_error_free(c->error);
    if (status == CM_EHDRTOOBIG) {
        c->error = cm_error_new("cmicro.transport", 431,
                                "request header block exceeds %zu bytes (max_header_bytes)",
                                o->max_header_bytes);
    } else if (status == CM_ETOOBIG) {
        c->error =
            cm_error_new("cmicro.transport", 413, "request body exceeds %zu bytes (max_body_bytes)",
                         o->max_body_bytes);
    } else {
        c->error =
            cm_error_new("cmicro.transport", 400, "request refused: %s", cm_strerror(status));
    }
    reply_error(c, c->error ? NULL : "internal error: out of memory");
}

/* go-micro's answer to a content type no codec serves: a text body and no Micro-Error. */
static void
reply_unsupported_type(cm_ctx *c)
{
    const char *prefix = "unsupported Content-Type: ";
    size_t n = strlen(prefix) + strlen(c->content_type);
    char *body = cm__arena_alloc(&c->arena, n + 1);
    if (body != NULL) {
        snprintf(body, n + 1, "%s%s", prefix, c->content_type);
        cm__ctx_add_header(c, "Content-Type", "text/plain");
        send_reply(c, (const uint8_t *)body, n);
    } else {
        send_reply(c, NULL, 0);
    }
    cm__count(&c->sl->errors, 1);
    finish(c);
}

/* Finds c's route, or answers with go-micro's routing error. go-micro v4 sends these as bare text
 * (code 0, no id); cmicro keeps the wording and adds the server's name as id and the code (400
 * for an ill-formed endpoint, 404 for an unknown service or method), which go-micro clients
 * parse as well. 0 when routed. */
static int
route_request(cm_ctx *c)
{
    const char *dot = strchr(c->endpoint, '.');
    if (dot == NULL || dot == c->endpoint || strchr(dot + 1, '.') != NULL) {
        reply_errorf(c, 400, "rpc: service/endpoint request ill-formed: %s", c->endpoint);
        return -1;
    }
    c->rt = find_route(c->srv, c->endpoint);
    if (c->rt != NULL) {
        return 0;
    }
    if (has_service(c->srv, c->endpoint, (size_t)(dot - c->endpoint))) {
        reply_errorf(c, 404, "rpc: can't find method %s", dot + 1);
    } else {
        reply_errorf(c, 404, "rpc: can't find service %.*s", (int)(dot - c->endpoint),
                     c->endpoint);
    }
    return -1;
}

/* Decodes the request, makes the response and runs the handler, inline or on a worker. */
static void
dispatch(cm_ctx *c)
{
    char reason[160] = "";
    int rc;
    if (c->codec->unmarshal_envelope != NULL) {
        cm_codec_envelope env;
        rc = c->codec->unmarshal_envelope(0, c->rt->h.request, c->req->body, c->req->body_len,
                                          &c->arena.pbc, &env, &c->req_msg, reason, sizeof(reason));
        snprintf(c->env_id, sizeof c->env_id, "%s", env.id);
        c->env_id_str = env.id_is_string;
    } else {
        rc = c->codec->unmarshal(c->rt->h.request, c->req->body, c->req->body_len, &c->arena.pbc,
                                 &c->req_msg, reason, sizeof(reason));
    }
    if (rc < 0) {
        reply_errorf(c, 400, "unable to decode request body as %s: %s", c->content_type,
                     reason[0] ? reason : cm_strerror(rc));
        return;
    }
    const ProtobufCMessageDescriptor *rd = c->rt->h.response;
    c->rsp_msg = cm__arena_alloc(&c->arena, rd ? rd->sizeof_message : sizeof(ProtobufCBinaryData));
    if (c->rsp_msg == NULL) {
        reply_errorf(c, 500, "out of memory");
        return;
    }
    if (rd != NULL) {
        rd->message_init(c->rsp_msg);
    } else {
        memset(c->rsp_msg, 0, sizeof(ProtobufCBinaryData));
    }
    cm__count(&c->sl->calls, 1);
    if (c->rt->h.flags & CM_HANDLER_INLINE) {
        cm__server_run_handler(c);
        complete(c);
        return;
    }
    c->job.work = job_work;
    c->job.done = job_done;
    cm__workers_port_post(c->sl->port, &c->job);
}

/* A stream endpoint (stream.c): the first request's headers are copied into the call's memory
 * (the connection reads the stream's next messages into its own buffers), then the stream takes
 * the connection. Past max_streams, go-micro's 429 error and the connection closes. */
static int open_stream(cm_ctx *c);

static void
serve_stream(cm_ctx *c)
{
    if (c->codec->marshal_envelope != NULL) {
        reply_errorf(c, 400, "streams are not served with %s", c->content_type);
        return;
    }
    /* counted at once, so that the loops together stay within the cap */
    if (atomic_fetch_add(&c->srv->nstreams, 1) >= c->srv->max_streams) {
        atomic_fetch_sub(&c->srv->nstreams, 1);
        c->close_after = 1; /* the caller's next messages are not new calls */
        atomic_fetch_add_explicit(&c->srv->streams_refused, 1, memory_order_relaxed);
        reply_errorf(c, 429, "too many streams open (limit %u, MICRO_SERVER_MAX_STREAMS)",
                     c->srv->max_streams);
        return;
    }
    if (open_stream(c) < 0) {
        atomic_fetch_sub(&c->srv->nstreams, 1);
    }
}

/* serve_stream's part once the stream is counted. 0, or < 0 after replying the error. */
static int
open_stream(cm_ctx *c)
{
    const cm_msg *req = c->req;
    cm_msg *copy = cm__arena_alloc(&c->arena, sizeof(*copy));
    cm_hdr *h = cm__arena_alloc(&c->arena, (req->nhdrs + 1) * sizeof(cm_hdr));
    if (copy == NULL || h == NULL) {
        reply_errorf(c, 500, "out of memory");
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < req->nhdrs; i++) {
        h[i].key = cm_ctx_strdup(c, req->hdrs[i].key);
        h[i].val = cm_ctx_strdup(c, req->hdrs[i].val);
        if (h[i].key == NULL || h[i].val == NULL) {
            reply_errorf(c, 500, "out of memory");
            return CM_ENOMEM;
        }
    }
    *copy = (cm_msg){h, req->nhdrs, (const uint8_t *)"", 0};
    read_request(c, copy);
    c->peer = cm_ctx_strdup(c, cm_tconn_peer(c->conn));
    c->local = cm_ctx_strdup(c, cm_tconn_local(c->conn));
    cm__count(&c->sl->calls, 1);
    c->req_msg = NULL;
    int rc = cm__stream_serve(c, c->rt->h.request, c->rt->h.response);
    if (rc < 0) {
        reply_errorf(c, 500, "cannot serve the stream: %s", cm_strerror(rc));
    }
    return rc;
}

static void
run_get(void *arg)
{
    cm_ctx *c = arg;
    c->srv->get_fn(c, c->http_path, c->srv->get_arg);
}

/* A GET (health, metrics, status) reads the service's state, which belongs to loop 0: one that
 * another loop accepted hops there, and its reply hops back (cm__ctx_reply_http). */
static void
serve_get(cm_ctx *c)
{
    cm_server *s = c->srv;
    if (s->get_fn == NULL) {
        cm__ctx_reply_http(c, 404, "text/plain; charset=utf-8", "404 page not found\n", 19);
    } else if (c->sl->idx != 0) {
        c->hopped = 1;
        cm__loop_post_node(s->loop, &c->hop, run_get, c);
    } else {
        s->get_fn(c, c->http_path, s->get_arg);
    }
}

void
cm__server_on_request(cm_tconn *conn, int status, const cm_msg *req, void *user)
{
    cm__sloop *sl = user;
    cm_ctx *c = ctx_get(sl);
    if (c == NULL) {
        static const cm_hdr h[] = {{"Micro-Error", "internal error: out of memory"}};
        cm_msg m = {h, 1, NULL, 0};
        cm_tconn_reply(conn, &m, 1);
        return;
    }
    cm__count(&sl->inflight, 1);
    c->conn = conn;
    if (sl->s->wraps.n > 0) {
        c->start_ns = uv_hrtime();
    }
    if (status < 0) {
        reply_refused(c, status);
        return;
    }
    read_request(c, req);
    if (c->http_method != NULL && strcmp(c->http_method, "GET") == 0) {
        serve_get(c);
        return;
    }
    if (atomic_load_explicit(&sl->s->stopping, memory_order_relaxed)) {
        c->close_after = 1;
        reply_errorf(c, 503, "server is stopping");
        return;
    }
    c->codec = cm_codec_find(c->content_type);
    if (c->codec == NULL) {
        reply_unsupported_type(c);
        return;
    }
    if (route_request(c) == 0) {
        if (c->rt->h.flags & CM_HANDLER_STREAM) {
            serve_stream(c);
        } else {
            dispatch(c);
        }
    }
}

/* ---- lifecycle ---- */

int
cm_server_start(cm_server *s)
{
    if (s == NULL) {
        return CM_EINVAL;
    }
    if (s->started) {
        return CM_ESTATE;
    }
    int rc = cm__server_listen_all(s);
    if (rc < 0) {
        return rc;
    }
    s->started = 1;
    s->started_unix = (uint64_t)time(NULL);
    return 0;
}

const char *
cm_server_address(const cm_server *s)
{
    return s && s->started ? s->bound : NULL;
}

static void
on_drain_timeout(uv_timer_t *t)
{
    cm__server_close_all(t->data, 1);
}

static uint64_t
inflight_total(const cm_server *s)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < s->nloops; i++) {
        n += cm__counted(&s->loops[i].inflight);
    }
    return n;
}

int
cm_server_stop(cm_server *s, void (*done)(void *arg), void *arg)
{
    if (s == NULL || !s->started || atomic_load(&s->stopping)) {
        return CM_ESTATE;
    }
    s->stop_done = done;
    s->stop_arg = arg;
    atomic_store(&s->stopping, 1);
    cm__server_stop_accepting(s);
    uv_timer_init(cm_loop_uv(s->loop), &s->drain_timer);
    s->drain_timer.data = s;
    if (inflight_total(s) == 0) {
        on_drain_timeout(&s->drain_timer);
    } else {
        uv_timer_start(&s->drain_timer, on_drain_timeout, s->drain_timeout_ms, 0);
    }
    return 0;
}

void
cm__server_check_drained(cm_server *s)
{
    if (!atomic_load(&s->stopped) && inflight_total(s) == 0) {
        cm__server_close_all(s, 0);
    }
}

void
cm_server_free(cm_server *s)
{
    if (s == NULL) {
        return;
    }
    if (s->loops != NULL) {
        cm__server_free_loops(s);
        for (unsigned i = 0; i < s->nloops; i++) {
            uv_mutex_destroy(&s->loops[i].mu);
        }
    }
    free(s->loops);
    for (size_t i = 0; i < s->nroutes; i++) {
        free(s->routes[i].endpoint);
    }
    free(s->routes);
    cm__wraps_free(&s->wraps);
    cm__wraps_free(&s->sub_wraps);
    cm__limits_free(s->limits);
    free(s->name);
    free(s->address);
    free(s->transport_name);
    free(s);
}

size_t
cm__server_handlers(const cm_server *s, const cm_handler **out, size_t max)
{
    for (size_t i = 0; i < s->nroutes && i < max; i++) {
        out[i] = &s->routes[i].h;
    }
    return s->nroutes;
}

/* ---- for streams (stream_rpc.c) ---- */

cm__sloop *
cm__ctx_sloop(const cm_ctx *c)
{
    return c->sl;
}

cm_loop *
cm__sloop_loop(const cm__sloop *sl)
{
    return sl->loop;
}

cm_stream **
cm__sloop_streams_lock(cm__sloop *sl)
{
    uv_mutex_lock(&sl->mu);
    return &sl->streams;
}

void
cm__sloop_streams_unlock(cm__sloop *sl)
{
    uv_mutex_unlock(&sl->mu);
}

cm_stream *
cm__sloop_streams(const cm__sloop *sl)
{
    return sl->streams;
}

void
cm__sloop_submit(cm__sloop *sl, cm__job *job)
{
    cm__workers_port_post(sl->port, job);
}

void
cm__sloop_submit_stream(cm__sloop *sl, cm__job *job)
{
    cm__workers_port_post(sl->stream_port, job);
}

void
cm__sloop_count_error(cm__sloop *sl)
{
    cm__count(&sl->errors, 1);
}

unsigned
cm__server_nloops(const cm_server *s)
{
    return s->nloops;
}

cm__sloop *
cm__server_sloop(cm_server *s, unsigned i)
{
    return &s->loops[i];
}

void
cm__server_finish(cm_ctx *c)
{
    atomic_fetch_sub(&c->srv->nstreams, 1);
    finish(c);
}

cm_handler_fn
cm__ctx_route_fn(const cm_ctx *c)
{
    return c->rt->h.fn;
}

void *
cm__ctx_route_user(const cm_ctx *c)
{
    return c->rt->user;
}
