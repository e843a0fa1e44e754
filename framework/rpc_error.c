/* go-micro RPC errors. */
#include <cmicro/rpc_error.h>

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
cm_status_text(int code)
{
    switch (code) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Request Entity Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "";
    }
}

static char *
dupstr(const char *s)
{
    return strdup(s ? s : "");
}

static cm_error *
error_make(const char *id, int32_t code, const char *detail, const char *status)
{
    cm_error *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return NULL;
    }
    e->id = dupstr(id);
    e->code = code;
    e->detail = dupstr(detail);
    e->status = dupstr(status);
    if (e->id == NULL || e->detail == NULL || e->status == NULL) {
        cm_error_free(e);
        return NULL;
    }
    return e;
}

cm_error *
cm_error_newv(const char *id, int32_t code, const char *fmt, va_list ap)
{
    char small[256];
    char *detail = small;
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(small, sizeof(small), fmt ? fmt : "", cp);
    va_end(cp);
    if (n < 0) {
        n = 0;
        small[0] = '\0';
    } else if ((size_t)n >= sizeof(small)) {
        detail = malloc((size_t)n + 1);
        if (detail == NULL) {
            return NULL;
        }
        vsnprintf(detail, (size_t)n + 1, fmt, ap);
    }
    /* Header values are single-line: go-micro replaces CR/LF with spaces. */
    for (char *p = detail; *p; p++) {
        if (*p == '\r' || *p == '\n') {
            *p = ' ';
        }
    }
    cm_error *e = error_make(id, code, detail, cm_status_text(code));
    if (detail != small) {
        free(detail);
    }
    return e;
}

cm_error *
cm_error_new(const char *id, int32_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_error *e = cm_error_newv(id, code, fmt, ap);
    va_end(ap);
    return e;
}

#define CM__ERROR_CTOR(fn, code)                                                                   \
    cm_error *fn(const char *id, const char *fmt, ...)                                             \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        cm_error *e = cm_error_newv(id, code, fmt, ap);                                            \
        va_end(ap);                                                                                \
        return e;                                                                                  \
    }
CM__ERROR_CTOR(cm_error_bad_request, 400)
CM__ERROR_CTOR(cm_error_unauthorized, 401)
CM__ERROR_CTOR(cm_error_forbidden, 403)
CM__ERROR_CTOR(cm_error_not_found, 404)
CM__ERROR_CTOR(cm_error_method_not_allowed, 405)
CM__ERROR_CTOR(cm_error_timeout, 408)
CM__ERROR_CTOR(cm_error_conflict, 409)
CM__ERROR_CTOR(cm_error_internal, 500)
#undef CM__ERROR_CTOR

cm_error *
cm_error_dup(const cm_error *e)
{
    if (e == NULL) {
        return NULL;
    }
    return error_make(e->id, e->code, e->detail, e->status);
}

void
cm_error_free(cm_error *e)
{
    if (e == NULL) {
        return;
    }
    free(e->id);
    free(e->detail);
    free(e->status);
    free(e);
}

char *
cm_error_to_json(const cm_error *e)
{
    if (e == NULL) {
        return NULL;
    }
    /* Field order and omitempty as go-micro's errors.Error: id, code, detail, status. */
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }
    int ok = 1;
    if (e->id && e->id[0]) {
        ok &= cJSON_AddStringToObject(o, "id", e->id) != NULL;
    }
    if (e->code != 0) {
        ok &= cJSON_AddNumberToObject(o, "code", e->code) != NULL;
    }
    if (e->detail && e->detail[0]) {
        ok &= cJSON_AddStringToObject(o, "detail", e->detail) != NULL;
    }
    if (e->status && e->status[0]) {
        ok &= cJSON_AddStringToObject(o, "status", e->status) != NULL;
    }
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static const char *
json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

cm_error *
cm_error_parse(const char *s, size_t len)
{
    if (s == NULL) {
        s = "";
        len = 0;
    }
    cJSON *o = cJSON_ParseWithLength(s, len);
    if (cJSON_IsObject(o)) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "code");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
        const cJSON *detail = cJSON_GetObjectItemCaseSensitive(o, "detail");
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(o, "status");
        int valid = (id == NULL || cJSON_IsString(id) || cJSON_IsNull(id)) &&
                    (code == NULL || cJSON_IsNumber(code) || cJSON_IsNull(code)) &&
                    (detail == NULL || cJSON_IsString(detail) || cJSON_IsNull(detail)) &&
                    (status == NULL || cJSON_IsString(status) || cJSON_IsNull(status));
        if (valid) {
            double c = cJSON_IsNumber(code) ? code->valuedouble : 0;
            int32_t ci = (c >= -2147483648.0 && c <= 2147483647.0) ? (int32_t)c : 0;
            cm_error *e = error_make(json_str(o, "id"), ci, json_str(o, "detail"),
                                     json_str(o, "status"));
            cJSON_Delete(o);
            return e;
        }
    }
    cJSON_Delete(o);
    /* Not a go-micro error: the whole text is the detail (go-micro's Parse). */
    char *detail = malloc(len + 1);
    if (detail == NULL) {
        return NULL;
    }
    memcpy(detail, s, len);
    detail[len] = '\0';
    cm_error *e = error_make("", 0, detail, "");
    free(detail);
    return e;
}
