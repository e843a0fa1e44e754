/* cmicro: error codes and go-micro RPC errors.
 *
 * Two kinds of error live here and are never mixed:
 *  - library errors: negative ints (0 is success). CM_E* codes come from one X-macro table;
 *    OS and libuv errors pass through as libuv's negative codes (-errno). cm_strerror() and
 *    cm_err_name() name both.
 *  - RPC errors: go-micro's error value {id, code, detail, status} carried by a call
 *    (cm_error), encoded on the wire as JSON in the Micro-Error header.
 */
#ifndef CMICRO_ERROR_H
#define CMICRO_ERROR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CM_EXTERN __attribute__((visibility("default")))
#define CM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CM_EXTERN
#define CM_PRINTF(f, a)
#endif

/* The ABI version of the plugin tables (codec, transport, registry, selector) and of
 * generated code. Generated code checks it at compile time. */
#define CM_ABI_VERSION 1

/* X(name, value, message) */
#define CM_ERRNO_MAP(X)                                                                            \
    X(EINVAL, -30001, "invalid argument")                                                          \
    X(ENOMEM, -30002, "out of memory")                                                             \
    X(ENOTSUP, -30003, "operation not supported")                                                  \
    X(ETIMEDOUT, -30004, "timed out")                                                              \
    X(ECANCELED, -30005, "operation canceled")                                                     \
    X(ENOTFOUND, -30006, "not found")                                                              \
    X(ENONODE, -30007, "no node available")                                                        \
    X(EREMOTE, -30008, "the remote side returned an error")                                        \
    X(EPROTO, -30009, "protocol error: malformed message")                                         \
    X(ETOOBIG, -30010, "message too large")                                                        \
    X(ECODEC, -30011, "message could not be encoded or decoded")                                   \
    X(ECONTENTTYPE, -30012, "unsupported content type")                                            \
    X(ECLOSED, -30013, "connection closed")                                                        \
    X(EEXIST, -30014, "already exists")                                                            \
    X(ESTATE, -30015, "operation not valid in the current state")                                  \
    X(EREGISTRY, -30016, "registry error")                                                         \
    X(ESTOPPING, -30017, "shutting down")                                                          \
    X(EADDR, -30018, "invalid address")

typedef enum {
#define CM__ERR_ENUM(name, val, msg) CM_##name = val,
    CM_ERRNO_MAP(CM__ERR_ENUM)
#undef CM__ERR_ENUM
} cm_errno_t;

/* Message for a library error code, CM_E* or libuv/OS (-errno). Never NULL; static storage. */
CM_EXTERN const char *cm_strerror(int err);
/* Symbolic name ("CM_ETIMEDOUT", "ECONNREFUSED"). Never NULL; static storage. */
CM_EXTERN const char *cm_err_name(int err);

/* go-micro's error model (errors.proto): all strings NUL-terminated, owned by the value. */
typedef struct cm_error {
    char *id;     /* e.g. "helloworld" or "cmicro.client"; may be "" */
    int32_t code; /* HTTP-like status, 0 when unknown */
    char *detail; /* human text */
    char *status; /* http.StatusText(code), e.g. "Bad Request"; may be "" */
} cm_error;

/* Returns owned (cm_error_free), or NULL on out of memory. The detail is printf-formatted. */
CM_EXTERN cm_error *cm_error_new(const char *id, int32_t code, const char *fmt, ...) CM_PRINTF(3, 4);
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
