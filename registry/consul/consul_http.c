/* The Consul backend's HTTP side: requests to the agents run by a libcurl multi handle driven
 * by the registry's libuv loop (curl_multi_socket_action on uv_poll and uv_timer), failover
 * along the address list, and the errors and log lines of failed requests. Nothing here blocks
 * the loop; every completion runs on a later loop turn. */
#include "consul_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RESPONSE ((size_t)64 << 20)

struct cm__consul_req {
    cm__consul_req *prev, *next;
    cm__consul *c;
    CURL *easy;
    char method[8];
    char *path;
    char *body;
    size_t body_len;
    int has_body;
    cm_buf resp;
    char errbuf[CURL_ERROR_SIZE];
    int has_index;
    uint64_t index;
    int too_big;
    size_t agent;
    size_t tried; /* agents tried so far */
    int pinned;
    int quiet;
    uint64_t timeout_ms;
    cm__consul_done_fn done;
    void *ctx;
};

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
    cm__consul_req *q = arg;
    size_t len = size * n;
    if (q->resp.len + len > MAX_RESPONSE) {
        q->too_big = 1;
        return 0;
    }
    return cm_buf_append(&q->resp, data, len) < 0 ? 0 : len;
}

static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
    cm__consul_req *q = arg;
    size_t len = size * n;
    static const char name[] = "x-consul-index:";
    if (len > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
        uint64_t v = 0;
        int digits = 0;
        for (size_t i = sizeof(name) - 1; i < len; i++) {
            char ch = data[i];
            if (ch >= '0' && ch <= '9') {
                if (v > (UINT64_MAX - 9) / 10) {
                    digits = -1;
                    break;
                }
                v = v * 10 + (uint64_t)(ch - '0');
                digits++;
            } else if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
                if (digits > 0 && ch != '\r' && ch != '\n') {
                    break;
                }
            } else {
                digits = -1;
                break;
            }
        }
        if (digits > 0) {
            q->has_index = 1;
            q->index = v;
        }
    }
    return len;
}

static void
link_req(cm__consul *c, cm__consul_req *q)
{
    q->prev = NULL;
    q->next = c->reqs;
    if (c->reqs != NULL) {
        c->reqs->prev = q;
    }
    c->reqs = q;
}

static void
unlink_req(cm__consul *c, cm__consul_req *q)
{
    if (q->prev != NULL) {
        q->prev->next = q->next;
    } else {
        c->reqs = q->next;
    }
    if (q->next != NULL) {
        q->next->prev = q->prev;
    }
    q->prev = q->next = NULL;
}

static void
free_req(cm__consul_req *q)
{
    curl_easy_cleanup(q->easy);
    cm_buf_free(&q->resp);
    free(q->path);
    free(q->body);
    free(q);
}

/* The last handle of a closing registry: deliver the cancellations, then free. */
static void
on_gone(void *owner)
{
    cm__consul *c = owner;
    while (c->canceled != NULL) {
        cm__consul_req *q = c->canceled;
        c->canceled = q->next;
        cm__consul_result res = {.err = CM_ECANCELED, .body = "", .agent = q->agent};
        q->done(q->ctx, &res);
        free_req(q);
    }
    cm__consul_config_free(c);
    cm_registry_closed(c->reg);
}

/* Points q's handle at agent a and hands it to the multi handle. */
static int
start_on(cm__consul *c, cm__consul_req *q, size_t a)
{
    CURL *e = q->easy;
    const cm__consul_agent *ag = &c->agents[a];
    size_t n = strlen(ag->base) + strlen(q->path) + 1;
    char *url = malloc(n);
    if (url == NULL) {
        return CM_ENOMEM;
    }
    snprintf(url, n, "%s%s", ag->base, q->path);
    CURLcode rc = curl_easy_setopt(e, CURLOPT_URL, url);
    free(url);
    if (rc != CURLE_OK) {
        return CM_ENOMEM;
    }
    curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, ag->unix_path);
    q->agent = a;
    q->resp.len = 0;
    q->has_index = 0;
    q->index = 0;
    q->too_big = 0;
    q->errbuf[0] = '\0';
    if (curl_multi_add_handle(c->http.multi, e) != CURLM_OK) {
        return CM_ENOMEM;
    }
    return 0;
}

static int
setup_easy(cm__consul *c, cm__consul_req *q)
{
    CURL *e = q->easy;
    uint64_t t = q->timeout_ms;
    uint64_t ct = t < c->timeout_ms ? t : c->timeout_ms;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)q) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)q) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)q) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ct) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOPROXY, c->noproxy) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "cmicro") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#endif
    if (strcmp(q->method, "GET") == 0) {
        bad |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdr_get) != CURLE_OK;
    } else {
        bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method) != CURLE_OK;
        bad |=
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->has_body ? q->body : "") != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->has_body ? c->hdr_put : c->hdr_get) !=
               CURLE_OK;
    }
    if (c->cacert != NULL) {
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO, c->cacert) != CURLE_OK;
    }
    if (c->capath != NULL) {
        bad |= curl_easy_setopt(e, CURLOPT_CAPATH, c->capath) != CURLE_OK;
    }
    if (c->cert != NULL) {
        bad |= curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_SSLKEY, c->key) != CURLE_OK;
    }
    if (c->insecure) {
        bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
    }
    if (c->userpwd != NULL) {
        bad |= curl_easy_setopt(e, CURLOPT_USERPWD, c->userpwd) != CURLE_OK;
    }
    return bad ? CM_ENOMEM : 0;
}

int
cm__consul_send(cm__consul *c, const cm__consul_call *call, cm__consul_req **out)
{
    if (c->http.closing) {
        return CM_ESTATE;
    }
    cm__consul_req *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return CM_ENOMEM;
    }
    q->c = c;
    snprintf(q->method, sizeof(q->method), "%s", call->method);
    q->path = strdup(call->path);
    q->has_body = call->body != NULL;
    q->body_len = q->has_body ? call->body_len : 0;
    q->body = malloc(q->body_len + 1);
    q->easy = curl_easy_init();
    q->pinned = call->agent >= 0;
    q->quiet = call->quiet;
    q->timeout_ms = call->timeout_ms > 0 ? call->timeout_ms : c->timeout_ms;
    q->done = call->done;
    q->ctx = call->ctx;
    size_t agent = q->pinned ? (size_t)call->agent : c->cur;
    int rc = CM_ENOMEM;
    if (q->path != NULL && q->body != NULL && q->easy != NULL && agent < c->nagents) {
        if (q->has_body) {
            memcpy(q->body, call->body, q->body_len);
        }
        q->body[q->body_len] = '\0';
        q->tried = 1;
        rc = setup_easy(c, q);
        if (rc == 0) {
            rc = start_on(c, q, agent);
        }
    } else if (agent >= c->nagents) {
        rc = CM_EINVAL;
    }
    if (rc < 0) {
        free_req(q);
        return rc;
    }
    link_req(c, q);
    if (out != NULL) {
        *out = q;
    }
    return 0;
}

void
cm__consul_cancel(cm__consul *c, cm__consul_req *q)
{
    if (q == NULL) {
        return;
    }
    curl_multi_remove_handle(c->http.multi, q->easy);
    unlink_req(c, q);
    free_req(q);
}

/* Prints "METHOD /path" (without the query) into buf. */
static void
what_of(char *buf, size_t len, const char *method, const char *path)
{
    int plen = (int)strcspn(path, "?");
    snprintf(buf, len, "%s %.*s", method, plen, path);
}

void
cm__consul_log_failure(const cm__consul *c, cm_log_level level, const char *method,
                       const char *path, const cm__consul_result *res)
{
    char what[256];
    what_of(what, sizeof(what), method, path);
    if (res->status > 0) {
        /* The agent's plain-text reason, on one line. */
        char body[320];
        size_t n = 0;
        for (size_t i = 0; i < res->len && n < sizeof(body) - 4; i++) {
            unsigned char ch = (unsigned char)res->body[i];
            body[n++] = (ch == '\r' || ch == '\n' || ch == '\t') ? ' ' : (ch < 32 ? '?' : ch);
        }
        while (n > 0 && body[n - 1] == ' ') {
            n--;
        }
        if (n < res->len && n == sizeof(body) - 4) {
            memcpy(body + n, "...", 3);
            n += 3;
        }
        body[n] = '\0';
        cm_log(level, "registry.consul", "%s: %ld %s", what, res->status, body);
        return;
    }
    const char *agent = res->agent < c->nagents ? c->agents[res->agent].base : "?";
    const char *detail = res->detail != NULL ? res->detail : "";
    cm_log(level, "registry.consul", "%s: %s: %s%s%s%s", what, agent, cm_strerror(res->err),
           detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
}

/* A finished transfer: fail over, or deliver. */
static void
finish(void *owner, CURL *easy, CURLcode rc)
{
    cm__consul *c = owner;
    char *priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    cm__consul_req *q = (cm__consul_req *)(void *)priv;
    curl_multi_remove_handle(c->http.multi, q->easy);
    if (rc != CURLE_OK && !q->pinned && q->tried < c->nagents &&
        cm__curl_unreachable(rc, q->easy)) {
        size_t next = (q->agent + 1) % c->nagents;
        cm_log(CM_LOG_WARN, "registry.consul", "agent %s unreachable (%s); trying %s",
               c->agents[q->agent].base, q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc),
               c->agents[next].base);
        q->tried++;
        if (start_on(c, q, next) == 0) {
            return;
        }
    }
    unlink_req(c, q);
    cm__consul_result res = {.body = "", .agent = q->agent, .detail = ""};
    if (rc == CURLE_OK) {
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &res.status);
        res.err = res.status == 200 ? 0 : CM_EREGISTRY;
        res.has_index = q->has_index;
        res.index = q->index;
    } else {
        res.err = cm__curl_error(rc, q->easy, q->too_big);
        res.detail = q->errbuf[0] != '\0' ? q->errbuf : curl_easy_strerror(rc);
    }
    if (cm_buf_append(&q->resp, "", 1) == 0) {
        res.body = (const char *)q->resp.data;
        res.len = q->resp.len - 1;
    }
    if (res.err != 0 && !q->quiet) {
        cm__consul_log_failure(c, CM_LOG_DEBUG, q->method, q->path, &res);
    }
    int moved = res.status > 0 && !q->pinned && q->agent != c->cur;
    if (moved) {
        cm_log(CM_LOG_INFO, "registry.consul", "now using agent %s", c->agents[q->agent].base);
        c->cur = q->agent;
    }
    q->done(q->ctx, &res);
    free_req(q);
    if (moved && !c->http.closing) {
        cm__consul_agent_changed(c);
    }
}

/* ---- life cycle ---- */

int
cm__consul_http_init(cm__consul *c, cm_registry *r)
{
    memset(c, 0, sizeof(*c));
    c->reg = r;
    int rc = cm__consul_config_parse(c, r);
    if (rc == 0) {
        rc = cm__curl_init(&c->http, cm_loop_uv(r->loop), c);
    }
    if (rc < 0) {
        cm__consul_config_free(c); /* what parse made before it failed, too */
    }
    c->http.done = finish;
    c->http.gone = on_gone;
    return rc;
}

void
cm__consul_http_close(cm__consul *c)
{
    c->http.closing = 1;
    cm__consul_watch_stop_all(c);
    while (c->reqs != NULL) {
        cm__consul_req *q = c->reqs;
        unlink_req(c, q);
        curl_multi_remove_handle(c->http.multi, q->easy);
        q->next = c->canceled;
        c->canceled = q;
    }
    cm__curl_close(&c->http);
}
