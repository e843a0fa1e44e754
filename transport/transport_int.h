/* cmicro: what a transport backend implements. Not installed. */
#ifndef CMICRO_TRANSPORT_INT_H
#define CMICRO_TRANSPORT_INT_H

#include <cmicro/transport.h>

/* Each backend's listener, connection and round trip structs begin with these, so the generic
 * functions find the ops. */
struct cm_listener {
    const struct cm_transport_ops *ops;
};
struct cm_tconn {
    const struct cm_transport_ops *ops;
};
struct cm_roundtrip {
    const struct cm_transport_ops *ops;
};

struct cm_transport {
    const struct cm_transport_ops *ops;
    uv_loop_t *loop;
    cm_transport_opts opts;
    void (*close_done)(void *arg);
    void *close_arg;
    /* the backend's private state (ops->priv_size bytes) follows, aligned */
    max_align_t priv[];
};

typedef struct cm_transport_ops {
    int abi_version; /* CM_ABI_VERSION */
    const char *name;
    size_t priv_size;
    int (*init)(cm_transport *t);
    /* Must call cm__transport_closed(t) once everything is closed. */
    void (*close)(cm_transport *t);
    int (*listen)(cm_transport *t, const char *addr, cm_request_cb cb, void *user,
                  cm_listener **out);
    int (*listener_addr)(const cm_listener *l, char *buf, size_t len);
    void (*listener_stop_accepting)(cm_listener *l);
    void (*listener_close)(cm_listener *l, void (*done)(void *arg), void *arg);
    void (*listener_stats)(const cm_listener *l, cm_listener_stats *st);
    int (*reply)(cm_tconn *c, const cm_msg *rsp, int close_after);
    const char *(*peer)(const cm_tconn *c);
    const char *(*local)(const cm_tconn *c);
    int (*roundtrip)(cm_transport *t, const char *addr, const cm_msg *req, uint64_t timeout_ms,
                     cm_roundtrip_cb cb, void *user, cm_roundtrip **handle);
    void (*cancel)(cm_roundtrip *rt);
    void (*pool_stats)(const cm_transport *t, cm_pool_stats *st);
} cm_transport_ops;

/* Called by a backend's close when all its handles are closed: frees t, runs done. */
void cm__transport_closed(cm_transport *t);

/* Backends, listed in transport.c's table. */
extern const cm_transport_ops cm__transport_http;

#endif
