/* cmicro: the stream object shared by stream.c (the object, its two halves) and stream_rpc.c
 * (a client's opening, a server's serving). Not installed. */
#ifndef CMICRO_STREAM_INT_H
#define CMICRO_STREAM_INT_H

#include "framework_int.h"

#define CM__STREAM_WINDOW (64 * 1024)
#define CM__STREAM_MAX_HDRS 48

enum { I_MSG, I_EOS, I_ERR };

typedef struct item {
    struct item *next;
    int kind;
    size_t len;
    size_t cap;     /* bytes data[] has room for */
    uint8_t data[]; /* the body, or an error's text (NUL-terminated) */
} item;

/* Items done with are kept for the next messages that fit, up to the window's bytes per
 * direction (at most this many): a stream of like-sized messages allocates nothing per message. */
#define CM__STREAM_SPARE_MAX (256 * 1024)

typedef struct item_pool {
    item *head;
    size_t bytes;
} item_pool;

struct cm_stream {
    cm_loop *loop;
    int server;
    const cm_codec_ops *codec;
    const ProtobufCMessageDescriptor *send_desc, *recv_desc;
    size_t window;
    size_t head_cost;    /* the bytes of a message's HTTP head (msg_cost) */
    int64_t deadline_ms; /* absolute (cm_now_ms); -1: none */

    uv_mutex_t mu; /* guards what follows, up to the loop's part */
    uv_cond_t cv;
    item *in_head, *in_tail;
    item_pool in_spare, out_spare; /* under mu */
    size_t out_hint;               /* the last encoded length (under mu) */
    size_t in_bytes;
    int in_paused;   /* the transport was told to stop reading */
    int want_resume; /* the reader caught up: the loop resumes reading */
    item *out_head, *out_tail;
    size_t out_bytes; /* queued here, not handed to the transport yet */
    size_t tq;        /* the transport's queued bytes, as last seen on the loop */
    int recv_eof, send_eof, ended, canceled, timed_out, released, posted, destroy_on_kick;
    int notify_kick; /* a notify hook was set: call it once from the loop */
    int end_status;
    cm_error *err;
    cm_stream_stats st;
    unsigned telling; /* notify calls under way (loop): cm__stream_notify_off waits for them */
    void (*notify)(cm_stream *s, void *arg);
    void *notify_arg;
    cm__post post;

    /* The loop's part. */
    cm_tstream *ts;
    uv_timer_t timer;
    int timer_init;
    int open_done, open_status;       /* client: the opening, under mu */
    cm_hdr hdrs[CM__STREAM_MAX_HDRS]; /* sent with every message */
    size_t nhdrs;
    char *owned[CM__STREAM_MAX_HDRS];
    size_t nowned;
    char id[24];
    /* Client opening. */
    cm_client *client;
    char *service, *endpoint, *address;
    const cm_select_filter *filter;
    /* Server. */
    cm_ctx *ctx;
    cm__job job;
    int status;
    cm_server *srv;
    cm__sloop *sl; /* the server's loop it is served on */
    cm_stream *snext, *sprev;
};

/* A stream with its mutex and window (o NULL: defaults). NULL on out of memory. */
cm_stream *cm__stream_new(cm_loop *loop, const cm_stream_opts *o);
void cm__stream_destroy(cm_stream *s);
/* Adds a header sent with every message (copied when copy is set). 0 or CM_ENOMEM. */
int cm__stream_add_hdr(cm_stream *s, const char *key, const char *val, int copy);
/* Loop thread: arms the deadline timer; hands queued messages to the transport; lets go of
 * the stream (the connection closes after what is queued; the memory goes when nothing refers
 * to it). */
void cm__stream_start_timer(cm_stream *s);
void cm__stream_flush(cm_stream *s);
void cm__stream_loop_release(cm_stream *s);
/* The transport stream's callbacks (user: the cm_stream). */
extern const cm_tstream_cbs cm__stream_cbs;

/* Removes the notify hook; waits for a call of it under way on the loop (not from the loop). */
void cm__stream_notify_off(cm_stream *s);

#endif
