/* The call context of a request in the server: its pool, response headers, and the accessors a
 * handler uses (metadata, deadline, arena, errors). */
#include "framework_int.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
cm__ctx_add_header(cm_ctx *c, const char *key, const char *val)
{
    for (size_t i = 0; i < c->nrsp_hdrs; i++) {
        if (strcasecmp(c->rsp_hdrs[i].key, key) == 0) {
            c->rsp_hdrs[i].val = val;
            return 0;
        }
    }
    if (c->nrsp_hdrs == CM__MAX_RSP_HDRS) {
        return CM_ENOMEM;
    }
    c->rsp_hdrs[c->nrsp_hdrs].key = key;
    c->rsp_hdrs[c->nrsp_hdrs].val = val;
    c->nrsp_hdrs++;
    return 0;
}

const char *
cm_ctx_get(const cm_ctx *ctx, const char *key)
{
    if (strcasecmp(key, "Remote") == 0) {
        return cm_ctx_peer(ctx);
    }
    if (strcasecmp(key, "Local") == 0) {
        return ctx->local ? ctx->local : cm_tconn_local(ctx->conn);
    }
    return cm_msg_header(ctx->req, key);
}

const cm_msg *
cm_ctx_headers(const cm_ctx *ctx)
{
    return ctx->req;
}

const char *
cm_ctx_endpoint(const cm_ctx *ctx)
{
    return ctx->endpoint;
}

const char *
cm_ctx_service(const cm_ctx *ctx)
{
    return ctx->service ? ctx->service : "";
}

const char *
cm_ctx_content_type(const cm_ctx *ctx)
{
    return ctx->content_type;
}

const char *
cm_ctx_peer(const cm_ctx *ctx)
{
    return ctx->peer ? ctx->peer : cm_tconn_peer(ctx->conn);
}

int
cm_ctx_is_stream(const cm_ctx *ctx)
{
    return ctx != NULL && ctx->rt != NULL && (ctx->rt->h.flags & CM_HANDLER_STREAM) != 0;
}

int64_t
cm_ctx_remaining_ms(const cm_ctx *ctx)
{
    if (ctx->deadline_ms < 0) {
        return -1;
    }
    int64_t left = ctx->deadline_ms - (int64_t)cm_now_ms();
    return left > 0 ? left : 0;
}

void *
cm_ctx_alloc(cm_ctx *ctx, size_t n)
{
    return cm__arena_alloc(&ctx->arena, n);
}

void *
cm_ctx_alloc_array(cm_ctx *ctx, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    size_t bytes = n * size;
    void *p = cm__arena_alloc(&ctx->arena, bytes ? bytes : 1);
    if (p != NULL) {
        memset(p, 0, bytes);
    }
    return p;
}

void *
cm_ctx_new_message(cm_ctx *ctx, const ProtobufCMessageDescriptor *desc)
{
    if (desc == NULL || desc->message_init == NULL) {
        return NULL;
    }
    void *m = cm__arena_alloc(&ctx->arena, desc->sizeof_message);
    if (m != NULL) {
        desc->message_init(m);
    }
    return m;
}

char *
cm_ctx_sprintf(cm_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    char *p = cm__arena_alloc(&ctx->arena, (size_t)n + 1);
    if (p != NULL) {
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return p;
}

char *
cm_ctx_strdup(cm_ctx *ctx, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cm__arena_alloc(&ctx->arena, n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

int
cm_ctx_set_header(cm_ctx *ctx, const char *key, const char *val)
{
    if (key == NULL || val == NULL || key[0] == '\0' || strpbrk(key, "\r\n:") != NULL ||
        cm__is_framework_header(key)) {
        return CM_EINVAL;
    }
    char *k = cm_ctx_strdup(ctx, key);
    char *v = cm_ctx_strdup(ctx, val);
    if (k == NULL || v == NULL) {
        return CM_ENOMEM;
    }
    for (char *p = v; *p; p++) {
        if (*p == '\r' || *p == '\n') {
            *p = ' ';
        }
    }
    return cm__ctx_add_header(ctx, k, v);
}

int
cm_ctx_error(cm_ctx *ctx, int32_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_error_free(ctx->error);
    ctx->error = cm_error_newv(cm__server_name(ctx->srv), code, fmt, ap);
    va_end(ap);
    return ctx->error ? CM_EREMOTE : CM_ENOMEM;
}

int
cm_ctx_set_error(cm_ctx *ctx, cm_error *e)
{
    cm_error_free(ctx->error);
    ctx->error = e;
    return e ? CM_EREMOTE : CM_ENOMEM;
}
