/* cmicro core: library error codes, the export macro and the ABI version.
 *
 * Library errors are negative ints (0 is success). CM_E* codes come from one X-macro table;
 * OS and libuv errors pass through as libuv's negative codes (-errno). cm_strerror() and
 * cm_err_name() name both. go-micro's RPC error value (cm_error) is another thing: it lives in
 * <cmicro/rpc_error.h> and is never mixed into this space.
 */
#ifndef CMICRO_ERROR_H
#define CMICRO_ERROR_H

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

/* The ABI version of the plugin tables (codec, transport, registry, broker) and of generated
 * code. Generated code checks it at compile time; a table of another version is refused when
 * it is registered. 2: the layout of 0.2 (core layer, public backend registration, requests
 * refused by a transport passed up as codes). 3: the transport table's reply_early slot and the
 * broker table's publish_now slot, which the framework calls on its common paths. */
#define CM_ABI_VERSION 3

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
    X(EADDR, -30018, "invalid address")                                                            \
    X(EHDRTOOBIG, -30019, "header block too large")                                                \
    X(ETLS, -30020, "TLS handshake failed")                                                        \
    X(ECERT, -30021, "TLS peer certificate not trusted")                                           \
    X(EOF, -30022, "end of stream")                                                                \
    X(EAGAIN, -30023, "resource temporarily unavailable; try again")

typedef enum {
#define CM__ERR_ENUM(name, val, msg) CM_##name = val,
    CM_ERRNO_MAP(CM__ERR_ENUM)
#undef CM__ERR_ENUM
} cm_errno_t;

/* Message for a library error code, CM_E* or libuv/OS (-errno). Never NULL; static storage. */
CM_EXTERN const char *cm_strerror(int err);
/* Symbolic name ("CM_ETIMEDOUT", "ECONNREFUSED"). Never NULL; static storage. */
CM_EXTERN const char *cm_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
