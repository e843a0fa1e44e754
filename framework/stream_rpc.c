/* cmicro: a stream's two ends: the client's opening (a node picked as calls pick one, a
 * connection of the stream's own, go-micro's opening message) and the server's serving (the
 * request's connection taken over, the handler inside the handler wrappers on a thread of the
 * streams' pool, EOS or the error at its end). */
#include "stream_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- client: opening ---- */

static void
open_done(cm_stream *s, int status)
{
    uv_mutex_lock(&s->mu);
    s->open_done = 1;
    s->open_status = status;
    uv_cond_broadcast(&s->cv);
    uv_mutex_unlock(&s->mu);
}

/* Dials addr and queues go-micro's opening message (its body is discarded by the server). */
static void
open_to(cm_stream *s, cm_transport *t, const char *addr)
{
    int rc = cm_transport_dial_stream(t, addr, 0, &cm__stream_cbs, s, &s->ts);
    if (rc == 0) {
        cm_msg m = {s->hdrs, s->nhdrs, (const uint8_t *)"", 0};
        rc = cm_tstream_send(s->ts, &m);
    }
    if (rc < 0) {
        cm_error_free(s->err);
        s->err = cm_error_internal(CM__CLIENT_ERROR_ID, "connection error: %s: %s", addr,
                                   cm_strerror(rc));
    }
    open_done(s, rc);
}

static void open_pick(cm_stream *s, int resolved);

static void
on_open_resolved(int status, void *user)
{
    cm_stream *s = user;
    if (status < 0 && status != CM_ENOTFOUND) {
        s->err = cm_error_internal(CM__CLIENT_ERROR_ID, "service %s: %s", s->service,
                                   cm_strerror(status));
        open_done(s, status);
        return;
    }
    open_pick(s, 1);
}

static void
open_pick(cm_stream *s, int resolved)
{
    cm_transport *t;
    cm_selector *sel;
    int rc = cm__client_stream_parts(s->client, &t, &sel);
    if (rc < 0) {
        s->err = cm_error_internal(CM__CLIENT_ERROR_ID, "%s", cm_strerror(rc));
        open_done(s, rc);
        return;
    }
    if (s->address != NULL) {
        open_to(s, t, s->address);
        return;
    }
    if (sel == NULL) {
        s->err =
            cm_error_internal(CM__CLIENT_ERROR_ID, "no address for the stream to %s", s->service);
        open_done(s, CM_ENONODE);
        return;
    }
    const char *addr = NULL;
    rc = cm_selector_pick(sel, s->service, s->filter, &addr, NULL);
    if (rc == CM_ENOTFOUND && !resolved &&
        cm_selector_resolve(sel, s->service, on_open_resolved, s) == 0) {
        return;
    }
    if (rc < 0) {
        s->err = cm_error_internal(CM__CLIENT_ERROR_ID, "service %s: %s", s->service,
                                   rc == CM_ENOTFOUND ? "not found" : cm_strerror(rc));
        open_done(s, rc);
        return;
    }
    open_to(s, t, addr);
}

static void
open_on_loop(void *arg)
{
    cm_stream *s = arg;
    cm__stream_start_timer(s);
    open_pick(s, 0);
}

/* The headers of every message of a client stream. */
static int
client_headers(cm_stream *s, const char *ct, const cm_call_opts *o)
{
    snprintf(s->id, sizeof s->id, "%" PRIu64, cm__client_next_id(s->client));
    int rc = 0;
    if (o != NULL && o->md != NULL) {
        for (size_t i = 0; rc == 0 && i < cm_md_count(o->md); i++) {
            const char *k, *v;
            char key[128];
            if (cm_md_at(o->md, i, &k, &v) == 0 && cm__canonical_key(k, key, sizeof key) == 0 &&
                !cm__is_framework_header(key)) {
                rc = cm__stream_add_hdr(s, key, v, 1);
            }
        }
    }
    if (rc == 0 && s->deadline_ms >= 0) {
        char to[32];
        snprintf(to, sizeof to, "%" PRIu64,
                 (uint64_t)(s->deadline_ms - (int64_t)cm_now_ms()) * 1000000u);
        rc = cm__stream_add_hdr(s, "Timeout", to, 1);
    }
    if (rc == 0) {
        rc = cm__stream_add_hdr(s, "Content-Type", ct, 1);
    }
    if (rc == 0) {
        rc = cm__stream_add_hdr(s, "Accept", s->hdrs[s->nhdrs - 1].val, 0);
    }
    const char *keys[] = {"Micro-Service", "Micro-Endpoint", "Micro-Method"};
    const char *vals[] = {s->service, s->endpoint, s->endpoint};
    for (size_t i = 0; rc == 0 && i < 3; i++) {
        rc = cm__stream_add_hdr(s, keys[i], vals[i], 0);
    }
    if (rc == 0) {
        rc = cm__stream_add_hdr(s, "Micro-Id", s->id, 0);
    }
    if (rc == 0) {
        rc = cm__stream_add_hdr(s, "Micro-Stream", s->id, 0);
    }
    return rc;
}

static int
client_setup(cm_stream *s, cm_client *c, const char *service, const char *endpoint,
             const cm_call_opts *o)
{
    s->client = c;
    const char *ct = o && o->content_type ? o->content_type : cm__client_content_type(c);
    s->codec = cm_codec_find(ct);
    if (s->codec == NULL || s->codec->marshal_envelope != NULL) {
        return CM_ECONTENTTYPE;
    }
    s->service = strdup(service);
    s->endpoint = strdup(endpoint);
    if (s->service == NULL || s->endpoint == NULL) {
        return CM_ENOMEM;
    }
    if (o != NULL && o->address != NULL) {
        size_t n = strcspn(o->address, ",");
        s->address = strndup(o->address, n);
        if (s->address == NULL) {
            return CM_ENOMEM;
        }
    }
    s->filter = NULL; /* the caller's filter lives only during the call: not used */
    if (o != NULL && o->timeout_ms > 0) {
        s->deadline_ms = (int64_t)(cm_now_ms() + o->timeout_ms);
    }
    return client_headers(s, ct, o);
}

int
cm_client_stream(cm_client *c, const char *service, const char *endpoint,
                 const ProtobufCMessageDescriptor *req_desc,
                 const ProtobufCMessageDescriptor *rsp_desc, const cm_call_opts *opts,
                 const cm_stream_opts *sopts, cm_stream **out, cm_error **err)
{
    if (err != NULL) {
        *err = NULL;
    }
    if (c == NULL || service == NULL || endpoint == NULL || out == NULL) {
        return CM_EINVAL;
    }
    if (cm_loop_on_loop_thread(cm_client_loop(c))) {
        return CM_ESTATE;
    }
    cm_stream *s = cm__stream_new(cm_client_loop(c), sopts);
    if (s == NULL) {
        return CM_ENOMEM;
    }
    s->send_desc = req_desc;
    s->recv_desc = rsp_desc;
    int rc = client_setup(s, c, service, endpoint, opts);
    if (rc < 0) {
        cm__stream_destroy(s);
        return rc;
    }
    cm__client_post(c, &s->post, open_on_loop, s);
    uv_mutex_lock(&s->mu);
    while (!s->open_done) {
        uv_cond_wait(&s->cv, &s->mu);
    }
    rc = s->open_status;
    uv_mutex_unlock(&s->mu);
    if (rc < 0) {
        if (err != NULL) {
            *err = s->err;
            s->err = NULL;
        }
        cm_stream_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- server ---- */

static void
server_unlink(cm_stream *s)
{
    cm_stream **head = cm__sloop_streams_lock(s->sl);
    if (s->sprev) {
        s->sprev->snext = s->snext;
    } else if (*head == s) {
        *head = s->snext;
    }
    if (s->snext) {
        s->snext->sprev = s->sprev;
    }
    s->snext = s->sprev = NULL;
    cm__sloop_streams_unlock(s->sl);
}

/* The handler, called with req NULL and rsp the stream, inside the wrappers (a refusal of one
 * ends the stream with its error). */
static void
stream_job_work(cm__job *j)
{
    cm_stream *s = CM__CONTAINER(j, cm_stream, job);
    cm_ctx *c = s->ctx;
    c->req_msg = NULL;
    c->rsp_msg = s;
    cm__server_run_handler(c);
    s->status = c->status;
    cm__stream_notify_off(s); /* the handler's hook and its arg end with it */
}

/* The handler returned (loop): what is queued goes out, then EOS or the error, then the
 * connection closes once written. */
static void
stream_job_done(cm__job *j)
{
    cm_stream *s = CM__CONTAINER(j, cm_stream, job);
    cm_ctx *c = s->ctx;
    cm__stream_flush(s);
    uv_mutex_lock(&s->mu);
    int timed_out = s->timed_out, recv_eof = s->recv_eof;
    uv_mutex_unlock(&s->mu);
    cm_error *e = NULL;
    if (s->status == CM_EREMOTE && c->error != NULL) {
        e = c->error;
        c->error = NULL;
    } else if (s->status == CM_ETIMEDOUT || (s->status < 0 && timed_out)) {
        e = cm_error_timeout(cm__server_name(s->srv), "stream deadline exceeded");
    } else if (s->status < 0) {
        e = cm_error_internal(cm__server_name(s->srv), "%s", cm_strerror(s->status));
    }
    char *json = e ? cm_error_to_json(e) : NULL;
    if (s->ts != NULL && (e != NULL || !recv_eof)) {
        /* go-micro sends no EOS when the client already ended the stream. */
        cm_hdr h[CM__STREAM_MAX_HDRS + 1];
        memcpy(h, s->hdrs, s->nhdrs * sizeof(cm_hdr));
        h[s->nhdrs].key = "Micro-Error";
        h[s->nhdrs].val = e ? (json ? json : "internal error") : "EOS";
        cm_msg m = {h, s->nhdrs + 1, (const uint8_t *)"", 0};
        cm_tstream_send(s->ts, &m);
    }
    if (e != NULL) {
        cm__sloop_count_error(s->sl);
    }
    free(json);
    cm_error_free(e);
    server_unlink(s);
    s->ctx = NULL;
    cm__stream_loop_release(s);
    cm__server_finish(c);
}

/* Copies the headers a server stream sends with every message. */
static int
server_headers(cm_stream *s, cm_ctx *c)
{
    const char *sid = cm_ctx_get(c, "Micro-Stream");
    snprintf(s->id, sizeof s->id, "%s", sid ? sid : "");
    int rc = cm__stream_add_hdr(s, "Content-Type", c->content_type, 1);
    if (rc == 0 && c->service) {
        rc = cm__stream_add_hdr(s, "Micro-Service", c->service, 1);
    }
    if (rc == 0) {
        rc = cm__stream_add_hdr(s, "Micro-Endpoint", c->endpoint, 1);
    }
    if (rc == 0) {
        rc = cm__stream_add_hdr(s, "Micro-Method", s->hdrs[s->nhdrs - 1].val, 0);
    }
    if (rc == 0 && sid) {
        rc = cm__stream_add_hdr(s, "Micro-Stream", s->id, 0);
    }
    return rc;
}

int
cm__stream_serve(cm_ctx *c, const ProtobufCMessageDescriptor *req,
                 const ProtobufCMessageDescriptor *rsp)
{
    cm_stream *s = cm__stream_new(cm__sloop_loop(cm__ctx_sloop(c)), NULL);
    if (s == NULL) {
        return CM_ENOMEM;
    }
    s->server = 1;
    s->srv = c->srv;
    s->sl = cm__ctx_sloop(c);
    s->ctx = c;
    s->codec = c->codec;
    s->recv_desc = req;
    s->send_desc = rsp;
    s->deadline_ms = c->deadline_ms;
    int rc = server_headers(s, c);
    if (rc == 0) {
        rc = cm_tconn_stream(c->conn, &cm__stream_cbs, s, &s->ts);
    }
    if (rc < 0) {
        cm__stream_destroy(s);
        return rc;
    }
    cm__stream_start_timer(s);
    cm_stream **head = cm__sloop_streams_lock(s->sl);
    s->snext = *head;
    if (*head) {
        (*head)->sprev = s;
    }
    *head = s;
    cm__sloop_streams_unlock(s->sl);
    s->job.work = stream_job_work;
    s->job.done = stream_job_done;
    cm__sloop_submit_stream(s->sl, &s->job);
    return 0;
}

void
cm__streams_cancel(cm__sloop *sl)
{
    for (cm_stream *s = cm__sloop_streams(sl); s != NULL; s = s->snext) {
        cm_stream_cancel(s);
        if (s->ts != NULL) {
            cm_tstream_close(s->ts); /* the connection goes now; the handler ends on its own */
            s->ts = NULL;
        }
    }
}
