/* cmicro: go-micro's RPC error, {id, code, detail, status}, carried by a call and encoded on
 * the wire as JSON in the Micro-Error header. Library error codes (CM_E*) are in
 * <cmicro/error.h>; the two are never mixed. */
#ifndef CMICRO_RPC_ERROR_H
#define CMICRO_RPC_ERROR_H

#include <cmicro/error.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* go-micro's error model (errors.proto): all strings NUL-terminated, owned by the value. */
typedef struct cm_error {
    char *id;     /* e.g. "helloworld" or "cmicro.client"; may be "" */
    int32_t code; /* HTTP-like status, 0 when unknown */
    char *detail; /* human text */
    char *status; /* http.StatusText(code), e.g. "Bad Request"; may be "" */
} cm_error;

/* Returns owned (cm_error_free), or NULL on out of memory. The detail is printf-formatted. */
CM_EXTERN cm_error *cm_error_new(const char *id, int32_t code, const char *fmt, ...)
    CM_PRINTF(3, 4);
CM_EXTERN cm_error *cm_error_newv(const char *id, int32_t code, const char *fmt, va_list ap);
/* go-micro's constructors: 400, 401, 403, 404, 405, 408, 409, 500. */
CM_EXTERN cm_error *cm_error_bad_request(const char *id, const char *fmt, ...) CM_PRINTF(2, 3);
CM_EXTERN cm_error *cm_error_unauthorized(const char *id, const char *fmt, ...) CM_PRINTF(2, 3);
CM_EXTERN cm_error *cm_error_forbidden(const char *id, const char *fmt, ...) CM_PRINTF(2, 3);
CM_EXTERN cm_error *cm_error_not_found(const char *id, const char *fmt, ...) CM_PRINTF(2, 3);
CM_EXTERN cm_error *cm_error_method_not_allowed(const char *id, const char *fmt, ...)
    CM_PRINTF(2, 3);
CM_EXTERN cm_error *cm_error_timeout(const char *id, const char *fmt, ...) CM_PRINTF(2, 3);
CM_EXTERN cm_error *cm_error_conflict(const char *id, const char *fmt, ...) CM_PRINTF(2, 3);
CM_EXTERN cm_error *cm_error_internal(const char *id, const char *fmt, ...) CM_PRINTF(2, 3);

/* Deep copy. Returns owned, or NULL on out of memory (or when e is NULL). */
CM_EXTERN cm_error *cm_error_dup(const cm_error *e);
CM_EXTERN void cm_error_free(cm_error *e);

/* go-micro's Error(): {"id":..,"code":..,"detail":..,"status":..} with empty fields omitted,
 * on one line (safe for an HTTP header value). Returns owned (free()), NULL on out of memory. */
CM_EXTERN char *cm_error_to_json(const cm_error *e);
/* go-micro's Parse(): JSON when it parses as an error object, otherwise {detail: s}.
 * s need not be NUL-terminated. Returns owned, NULL on out of memory. */
CM_EXTERN cm_error *cm_error_parse(const char *s, size_t len);

/* http.StatusText for the codes go-micro uses ("" for unknown codes). Static storage. */
CM_EXTERN const char *cm_status_text(int code);

#ifdef __cplusplus
}
#endif
#endif
