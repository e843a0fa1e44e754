/* cmicro: the broker object the generic functions and the built-in backends share. Not
 * installed; external backends use the accessors of <cmicro/broker.h>. */
#ifndef CMICRO_BROKER_INT_H
#define CMICRO_BROKER_INT_H

#include "core_int.h"

#include <cmicro/broker.h>
#include <stdalign.h>
#include <stdatomic.h>

enum { BROKER_IDLE, BROKER_CONNECTING, BROKER_CONNECTED, BROKER_DISCONNECTING };

struct cm_broker_sub {
    cm_broker *broker;
    struct cm_broker_sub *next;
    char *topic;
    char *queue; /* NULL: none */
    cm_broker_handler handler;
    void *arg;
    cm_broker_cb ready;
    void *ready_arg;
    unsigned holds; /* deliveries under way: an unsubscribe meanwhile frees it after them */
    int gone;       /* unsubscribed while held */
    /* the backend's private state (ops->sub_priv_size bytes) follows */
    max_align_t priv[];
};

struct cm_broker {
    const struct cm_broker_ops *ops;
    cm_loop *loop;
    char *addresses;
    uint64_t timeout_ms;
    size_t queue_max;
    cm_registry *registry;
    cm_md *options; /* never NULL */
    int state;
    int closing;
    unsigned pending; /* closures posted with cm__broker_defer that have not run */
    cm_broker_cb conn_cb;
    void *conn_arg;
    cm_broker_sub *subs;
    cm_broker_stats stats;
    atomic_uint_fast64_t published_now; /* cm_broker_publish_now's, any thread */
    void (*close_done)(void *arg);
    void *close_arg;
    void (*resume)(cm_broker *b); /* cm_broker_set_resume's; NULL: no flow control */
    int paused;                   /* a handler returned CM_EAGAIN; cm_broker_resume not yet run */
    char why[320];
    /* the backend's private state (ops->priv_size bytes) follows */
    max_align_t priv[];
};

/* Runs fn(arg) on b's loop at a later turn; the broker is not freed before it has run. 0 or
 * CM_ENOMEM. */
int cm__broker_defer(cm_broker *b, void (*fn)(void *arg), void *arg);

/* A message decoded into one allocation, block (owned: free()): first pre bytes for the caller,
 * zeroed and aligned for any type, then header (never NULL; read only, never cm_md_free'd) and
 * body (NULL when empty), which live as long as the block. */
typedef struct cm__broker_dmsg {
    void *block;
    const cm_md *header;
    const uint8_t *body;
    size_t body_len;
} cm__broker_dmsg;

/* cm_broker_msg_decode into one allocation, the same rules and errors: 0 (out->block owned),
 * CM_ECODEC (a reason in err, which may be NULL) or CM_ENOMEM; out is zeroed on failure. data
 * may be NULL when len is 0. */
int cm__broker_msg_decode_block(const uint8_t *data, size_t len, size_t pre, cm__broker_dmsg *out,
                                char *err, size_t errlen);

/* The built-in backends, registered by the table in broker.c. */
extern const cm_broker_ops cm__broker_http;
extern const cm_broker_ops cm__broker_nats;

#endif
