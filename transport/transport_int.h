/* cmicro: the transport object the generic functions and the built-in backends share. Not
 * installed; external backends use the accessors of <cmicro/transport.h>. */
#ifndef CMICRO_TRANSPORT_INT_H
#define CMICRO_TRANSPORT_INT_H

#include "core_int.h"

#include <cmicro/transport.h>
#include <uv.h>

struct cm_transport {
    const struct cm_transport_ops *ops;
    cm_loop *cloop;
    uv_loop_t *loop; /* cm_loop_uv(cloop) */
    cm_transport_opts opts;
    void (*close_done)(void *arg);
    void *close_arg;
    /* the backend's private state (ops->priv_size bytes) follows, aligned */
    max_align_t priv[];
};

/* The built-in backends, registered by the table in transport.c. */
extern const cm_transport_ops cm__transport_http;

#endif
