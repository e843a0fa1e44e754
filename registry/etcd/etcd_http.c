/* The etcd backend's HTTP side: POSTs to etcd v3's JSON gateway (/v3/...) run by a libcurl
 * multi handle driven by the registry's libuv loop (curl_multi_socket_action on uv_poll and
 * uv_timer), streaming replies split into JSON lines (watch), failover along the endpoint list,
 * and authentication: with credentials, requests wait for a token from /v3/auth/authenticate
 * and carry it in Authorization; a reply that says the token is no longer valid gets a new one
 * and the request is sent again, once. No password or token is ever logged. Nothing here blocks
 * the loop; every completion runs on a later loop turn. */
#include "etcd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RESPONSE ((size_t)64 << 20) /* a whole reply (a range of every node) */
#define MAX_LINE ((size_t)16 << 20)     /* one message of a stream */
#define GRPC_UNAUTHENTICATED 16

struct cm__etcd_req {
    cm__etcd_req *prev, *next;
    cm__etcd *c;
    CURL *easy;
    struct curl_slist *hdrs;
    char *path;
    char *body;
    cm_buf resp;
    char errbuf[CURL_ERROR_SIZE];
    int too_big;
    int is_auth;  /* the authenticate request itself */
    int reauthed; /* already sent again after a new token */
    int stopped;  /* the line callback asked to end the stream */
    int lines;    /* resp holds at least one complete line */
    int dead;     /* canceled while its lines were being delivered */
    size_t endpoint;
    size_t tried;
    int quiet;
    uint64_t timeout_ms;
    cm__etcd_line_fn on_line;
    cm__etcd_done_fn done;
    void *ctx;
};

static void
free_req(cm__etcd_req *q)
{
    curl_easy_cleanup(q->easy);
    curl_slist_free_all(q->hdrs);
    cm_buf_free(&q->resp);
    free(q->path);
    free(q->body);
    free(q);
}

/* The last handle of a closing registry: deliver the cancellations, then free. */
static void
on_gone(void *owner)
{
    cm__etcd *c = owner;
    while (c->canceled != NULL) {
        cm__etcd_req *q = c->canceled;
        c->canceled = q->next;
        cm__etcd_result res = {.err = CM_ECANCELED, .body = "", .detail = ""};
        if (!q->is_auth) {
            q->done(q->ctx, &res);
        }
        free_req(q);
    }
    cm__etcd_config_free(c);
    cm_registry_closed(c->reg);
}

static void stop_stream(cm__etcd *c, cm__etcd_req *q);

/* Delivers the complete lines of q; 0, or 1 when q was canceled or stopped meanwhile. */
static int
flush_one(cm__etcd *c, cm__etcd_req *q)
{
    size_t start = 0;
    int gone = 0;
    c->flushing = q;
    for (size_t i = 0; i < q->resp.len && !gone; i++) {
        if (q->resp.data[i] != '\n') {
            continue;
        }
        q->resp.data[i] = '\0';
        int stop = i > start && q->on_line(q->ctx, (char *)q->resp.data + start, i - start);
        start = i + 1;
        gone = q->dead || c->http.closing;
        if (stop && !gone) {
            q->stopped = 1;
            gone = 1;
        }
    }
    c->flushing = NULL;
    if (q->dead) {
        free_req(q);
        return 1;
    }
    if (!c->http.closing) {
        memmove(q->resp.data, q->resp.data + start, q->resp.len - start);
        q->resp.len -= start;
        q->lines = 0;
    }
    if (q->stopped && !c->http.closing) {
        stop_stream(c, q);
    }
    return gone;
}

/* The lines streams received in this turn, delivered outside libcurl's callbacks. */
static void
flush_lines(void *owner)
{
    cm__etcd *c = owner;
    int again = 1;
    while (again && !c->http.closing) {
        again = 0;
        for (cm__etcd_req *q = c->reqs; q != NULL; q = q->next) {
            if (q->lines && q->on_line != NULL) {
                again = 1;
                if (flush_one(c, q)) {
                    break; /* the list may have changed */
                }
            }
        }
    }
}

/* A stream's bytes wait in resp until the loop is out of libcurl's processing (flush_lines):
 * a line callback may stop any request or close the registry, which libcurl forbids from
 * inside its own callbacks. */
static size_t
stream_bytes(cm__etcd_req *q, const char *data, size_t len)
{
    if (q->stopped) {
        return 0;
    }
    if (cm_buf_append(&q->resp, data, len) < 0) {
        return 0;
    }
    if (memchr(data, '\n', len) != NULL) {
        q->lines = 1;
    } else if (q->resp.len > MAX_LINE && !q->lines) {
        q->too_big = 1;
        return 0;
    }
    return len;
}

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
    cm__etcd_req *q = arg;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    if (q->on_line != NULL && status == 200) {
        return stream_bytes(q, data, len);
    }
    if (q->resp.len + len > MAX_RESPONSE) {
        q->too_big = 1;
        return 0;
    }
    return cm_buf_append(&q->resp, data, len) < 0 ? 0 : len;
}

static void
link_req(cm__etcd_req **head, cm__etcd_req *q)
{
    q->prev = NULL;
    q->next = *head;
    if (*head != NULL) {
        (*head)->prev = q;
    }
    *head = q;
}

static void
unlink_req(cm__etcd_req **head, cm__etcd_req *q)
{
    if (q->prev != NULL) {
        q->prev->next = q->next;
    } else {
        *head = q->next;
    }
    if (q->next != NULL) {
        q->next->prev = q->prev;
    }
    q->prev = q->next = NULL;
}

/* The request's headers: JSON, and the current token unless it is the authenticate call. */
static int
set_headers(cm__etcd *c, cm__etcd_req *q)
{
    curl_slist_free_all(q->hdrs);
    q->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *l = q->hdrs != NULL ? curl_slist_append(q->hdrs, "Expect:") : NULL;
    if (l != NULL && !q->is_auth && c->token != NULL) {
        size_t n = strlen(c->token) + 32;
        char *h = malloc(n);
        if (h != NULL) {
            snprintf(h, n, "Authorization: %s", c->token);
            l = curl_slist_append(l, h);
            free(h);
        } else {
            l = NULL;
        }
    }
    if (l == NULL) {
        return CM_ENOMEM;
    }
    return curl_easy_setopt(q->easy, CURLOPT_HTTPHEADER, q->hdrs) == CURLE_OK ? 0 : CM_ENOMEM;
}

/* Points q's handle at endpoint e and hands it to the multi handle. */
static int
start_on(cm__etcd *c, cm__etcd_req *q, size_t e)
{
    size_t n = strlen(c->endpoints[e]) + strlen(q->path) + 1;
    char *url = malloc(n);
    if (url == NULL) {
        return CM_ENOMEM;
    }
    snprintf(url, n, "%s%s", c->endpoints[e], q->path);
    CURLcode rc = curl_easy_setopt(q->easy, CURLOPT_URL, url);
    free(url);
    if (rc != CURLE_OK || set_headers(c, q) < 0) {
        return CM_ENOMEM;
    }
    q->endpoint = e;
    q->resp.len = 0;
    q->too_big = 0;
    q->stopped = 0;
    q->lines = 0;
    q->errbuf[0] = '\0';
    return curl_multi_add_handle(c->http.multi, q->easy) == CURLM_OK ? 0 : CM_ENOMEM;
}

static int
setup_easy(cm__etcd *c, cm__etcd_req *q)
{
    CURL *e = q->easy;
    uint64_t t = q->timeout_ms;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)q) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)q) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf) != CURLE_OK;
    /* A stream has no total timeout; dead peers are found by TCP keepalive. */
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, q->on_line != NULL ? 0L : (long)t) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)t) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOPROXY, "*") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "cmicro") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 5L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 2L) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#endif
    bad |= curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK;
    bad |=
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(q->body)) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body) != CURLE_OK;
    if (c->cacert != NULL) {
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO, c->cacert) != CURLE_OK;
    }
    if (c->cert != NULL) {
        bad |= curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_SSLKEY, c->key) != CURLE_OK;
    }
    if (c->insecure) {
        bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
    }
    return bad ? CM_ENOMEM : 0;
}

static cm__etcd_req *
new_req(cm__etcd *c, const cm__etcd_call *call)
{
    cm__etcd_req *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return NULL;
    }
    q->c = c;
    q->path = strdup(call->path);
    q->body = strdup(call->body != NULL ? call->body : "{}");
    q->easy = curl_easy_init();
    q->quiet = call->quiet;
    q->timeout_ms = call->timeout_ms > 0 ? call->timeout_ms : c->timeout_ms;
    q->on_line = call->on_line;
    q->done = call->done;
    q->ctx = call->ctx;
    if (q->path == NULL || q->body == NULL || q->easy == NULL || setup_easy(c, q) < 0) {
        free_req(q);
        return NULL;
    }
    return q;
}

/* ---- authentication ---- */

static void auth_done(void *ctx, const cm__etcd_result *res);

/* Starts /v3/auth/authenticate unless one is in flight. */
static int
start_auth(cm__etcd *c)
{
    if (c->auth_busy) {
        return 0;
    }
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || cJSON_AddStringToObject(o, "name", c->username) == NULL ||
        cJSON_AddStringToObject(o, "password", c->password) == NULL) {
        cJSON_Delete(o);
        return CM_ENOMEM;
    }
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (body == NULL) {
        return CM_ENOMEM;
    }
    cm__etcd_call call = {
        .path = "/v3/auth/authenticate", .body = body, .quiet = 1, .done = auth_done, .ctx = c};
    cm__etcd_req *q = new_req(c, &call);
    /* The password lives in the request only as long as it runs. */
    memset(body, 0, strlen(body));
    free(body);
    if (q == NULL) {
        return CM_ENOMEM;
    }
    q->is_auth = 1;
    q->tried = 1;
    if (start_on(c, q, c->cur) < 0) {
        free_req(q);
        return CM_ENOMEM;
    }
    link_req(&c->reqs, q);
    c->auth_busy = 1;
    return 0;
}

static void deliver(cm__etcd *c, cm__etcd_req *q, cm__etcd_result *res);

static void
auth_done(void *ctx, const cm__etcd_result *res)
{
    cm__etcd *c = ctx;
    c->auth_busy = 0;
    char *token = NULL;
    if (res->err == 0) {
        cJSON *j = cJSON_ParseWithLength(res->body, res->len);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "token");
        if (cJSON_IsString(t) && t->valuestring[0] != '\0') {
            token = strdup(t->valuestring);
        }
        cJSON_Delete(j);
    }
    if (token != NULL) {
        free(c->token);
        c->token = token;
        if (c->auth_failed) {
            cm_log(CM_LOG_INFO, "registry.etcd", "authenticated as %s", c->username);
        }
        c->auth_failed = 0;
    } else if (!c->auth_failed) {
        c->auth_failed = 1;
        cm_log(CM_LOG_ERROR, "registry.etcd", "authentication as user %s failed: %s%s", c->username,
               res->detail[0] ? res->detail : cm_strerror(res->err),
               res->err == 0 ? " (no token in the reply)" : "");
    }
    while (c->auth_wait != NULL) {
        cm__etcd_req *q = c->auth_wait;
        unlink_req(&c->auth_wait, q);
        if (token != NULL && start_on(c, q, c->cur) == 0) {
            link_req(&c->reqs, q);
            continue;
        }
        cm__etcd_result r = {.err = res->err < 0 ? res->err : CM_EREGISTRY,
                             .status = res->status,
                             .grpc_code = res->grpc_code,
                             .body = "",
                             .endpoint = res->endpoint,
                             .detail = res->detail[0] ? res->detail : "authentication failed"};
        if (token != NULL) {
            r.err = CM_ENOMEM;
            r.detail = "";
        }
        deliver(c, q, &r);
    }
}

/* ---- requests ---- */

int
cm__etcd_send(cm__etcd *c, const cm__etcd_call *call, cm__etcd_req **out)
{
    if (c->http.closing) {
        return CM_ESTATE;
    }
    cm__etcd_req *q = new_req(c, call);
    if (q == NULL) {
        return CM_ENOMEM;
    }
    q->tried = 1;
    int rc = 0;
    if (c->username != NULL && c->token == NULL) {
        rc = start_auth(c);
        if (rc == 0) {
            link_req(&c->auth_wait, q);
        }
    } else {
        rc = start_on(c, q, c->cur);
        if (rc == 0) {
            link_req(&c->reqs, q);
        }
    }
    if (rc < 0) {
        free_req(q);
        return rc;
    }
    if (out != NULL) {
        *out = q;
    }
    return 0;
}

void
cm__etcd_cancel(cm__etcd *c, cm__etcd_req *q)
{
    if (q == NULL) {
        return;
    }
    if (q == c->flushing) {
        /* Its line callback is on the stack: flush_one frees it. */
        curl_multi_remove_handle(c->http.multi, q->easy);
        unlink_req(&c->reqs, q);
        q->dead = 1;
        return;
    }
    int waiting = 0;
    for (cm__etcd_req *w = c->auth_wait; w != NULL; w = w->next) {
        waiting |= w == q;
    }
    if (waiting) {
        unlink_req(&c->auth_wait, q);
    } else {
        curl_multi_remove_handle(c->http.multi, q->easy);
        unlink_req(&c->reqs, q);
    }
    free_req(q);
}

void
cm__etcd_log_failure(const cm__etcd *c, cm_log_level level, const char *path,
                     const cm__etcd_result *res)
{
    const char *ep = res->endpoint < c->nendpoints ? c->endpoints[res->endpoint] : "?";
    if (res->status > 0) {
        cm_log(level, "registry.etcd", "POST %s: %s: %ld %s", path, ep, res->status,
               res->detail[0] ? res->detail : cm_strerror(res->err));
        return;
    }
    cm_log(level, "registry.etcd", "POST %s: %s: %s%s%s%s", path, ep, cm_strerror(res->err),
           res->detail[0] ? " (" : "", res->detail, res->detail[0] ? ")" : "");
}

/* The gateway's error reply: {"error": "...", "message": "...", "code": N} (a stream wraps it
 * in {"error": {...}}). Fills res->detail (into buf) and res->grpc_code. */
static void
parse_error(cm__etcd_result *res, char *buf, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(res->body, res->len);
    const cJSON *e = j;
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (cJSON_IsObject(inner)) {
        e = inner;
    }
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    if (!cJSON_IsNumber(code)) {
        code = cJSON_GetObjectItemCaseSensitive(e, "grpc_code");
    }
    if (cJSON_IsString(msg)) {
        snprintf(buf, len, "%s", msg->valuestring);
        res->detail = buf;
    } else if (cJSON_IsObject(j) && cJSON_IsString(inner)) {
        snprintf(buf, len, "%s", inner->valuestring);
        res->detail = buf;
    }
    res->grpc_code = cJSON_IsNumber(code) ? code->valueint : 0;
    cJSON_Delete(j);
}

static void
deliver(cm__etcd *c, cm__etcd_req *q, cm__etcd_result *res)
{
    if (res->err != 0 && !q->quiet) {
        cm__etcd_log_failure(c, CM_LOG_DEBUG, q->path, res);
    }
    q->done(q->ctx, res);
    free_req(q);
}

/* An answer that says the token expired or was never valid: get another, send q again. */
static int
retry_with_new_token(cm__etcd *c, cm__etcd_req *q, const cm__etcd_result *res)
{
    if (q->is_auth || q->reauthed || c->username == NULL ||
        res->grpc_code != GRPC_UNAUTHENTICATED) {
        return 0;
    }
    q->reauthed = 1;
    free(c->token);
    c->token = NULL;
    if (start_auth(c) < 0) {
        return 0;
    }
    cm_log(CM_LOG_DEBUG, "registry.etcd", "auth token refused (%s); authenticating again",
           res->detail);
    link_req(&c->auth_wait, q);
    return 1;
}

/* A finished transfer: fail over, or deliver. */
static void
finish(void *owner, CURL *easy, CURLcode rc)
{
    cm__etcd *c = owner;
    char *priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    cm__etcd_req *q = (cm__etcd_req *)(void *)priv;
    curl_multi_remove_handle(c->http.multi, q->easy);
    if (rc != CURLE_OK && q->tried < c->nendpoints && cm__curl_unreachable(rc, q->easy)) {
        size_t next = (q->endpoint + 1) % c->nendpoints;
        cm_log(CM_LOG_DEBUG, "registry.etcd", "endpoint %s unreachable (%s); trying %s",
               c->endpoints[q->endpoint], q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc),
               c->endpoints[next]);
        q->tried++;
        if (start_on(c, q, next) == 0) {
            return;
        }
    }
    unlink_req(&c->reqs, q);
    char detail[256];
    cm__etcd_result res = {.body = "", .endpoint = q->endpoint, .detail = ""};
    if (rc == CURLE_OK) {
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &res.status);
    }
    if (cm_buf_append(&q->resp, "", 1) == 0) {
        res.body = (const char *)q->resp.data;
        res.len = q->resp.len - 1;
    }
    if (rc == CURLE_OK) {
        res.err = res.status == 200 ? 0 : CM_EREGISTRY;
        if (res.status != 200 || (q->on_line == NULL && strstr(res.body, "\"error\"") != NULL)) {
            parse_error(&res, detail, sizeof(detail));
            res.err = CM_EREGISTRY;
        }
        if (q->on_line != NULL && res.err == 0) {
            res.err = CM_ECLOSED; /* a stream that ended */
        }
    } else {
        res.err = cm__curl_error(rc, q->easy, q->too_big);
        res.detail = q->errbuf[0] != '\0' ? q->errbuf : curl_easy_strerror(rc);
    }
    if (res.err == CM_EREGISTRY && retry_with_new_token(c, q, &res)) {
        return;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT && q->on_line == NULL && q->endpoint == c->cur &&
        c->nendpoints > 1) {
        /* It took the request and said nothing (stalled, overloaded): the request fails (it may
         * have been applied), the next ones go to the next member. */
        c->cur = (q->endpoint + 1) % c->nendpoints;
        cm_log(CM_LOG_WARN, "registry.etcd", "endpoint %s did not answer in time; using %s",
               c->endpoints[q->endpoint], c->endpoints[c->cur]);
    }
    if (res.status > 0 && q->endpoint != c->cur) {
        cm_log(CM_LOG_INFO, "registry.etcd", "now using endpoint %s", c->endpoints[q->endpoint]);
        c->cur = q->endpoint;
    }
    if (q->is_auth) {
        q->done(q->ctx, &res);
        free_req(q);
        return;
    }
    deliver(c, q, &res);
}

/* A stream its line callback ended: done runs with CM_ECANCELED. */
static void
stop_stream(cm__etcd *c, cm__etcd_req *q)
{
    curl_multi_remove_handle(c->http.multi, q->easy);
    unlink_req(&c->reqs, q);
    cm__etcd_result res = {.err = CM_ECANCELED, .body = "", .endpoint = q->endpoint, .detail = ""};
    q->done(q->ctx, &res);
    free_req(q);
}

/* ---- life cycle ---- */

int
cm__etcd_http_init(cm__etcd *c, cm_registry *r)
{
    memset(c, 0, sizeof(*c));
    c->reg = r;
    int rc = cm__etcd_config_parse(c, r);
    if (rc == 0) {
        rc = cm__curl_init(&c->http, cm_loop_uv(r->loop), c);
    }
    if (rc < 0) {
        cm__etcd_config_free(c); /* what parse made before it failed, too */
    }
    c->http.done = finish;
    c->http.after = flush_lines;
    c->http.gone = on_gone;
    return rc;
}

static void
cancel_list(cm__etcd *c, cm__etcd_req **head)
{
    while (*head != NULL) {
        cm__etcd_req *q = *head;
        unlink_req(head, q);
        curl_multi_remove_handle(c->http.multi, q->easy);
        q->next = c->canceled;
        c->canceled = q;
    }
}

void
cm__etcd_http_close(cm__etcd *c)
{
    c->http.closing = 1;
    cm__etcd_watch_stop_all(c);
    cancel_list(c, &c->reqs);
    cancel_list(c, &c->auth_wait);
    cm__curl_close(&c->http);
}
