/* cmicro: streaming RPC, wire-compatible with go-micro v4's streams (server-stream,
 * client-stream, bidi) over the HTTP transport: one connection per stream, every message tied
 * to the stream by Micro-Stream, the end of a side told by a message with Micro-Error: EOS.
 *
 * One cm_stream serves both sides. A client opens it with cm_client_stream(); a server hands it
 * to a stream handler (CM_HANDLER_STREAM), which runs on a thread of its own. Messages are
 * encoded and decoded with the codec of the stream's Content-Type on the thread that sends or
 * receives them.
 *
 * Flow control: a send waits while the bytes sent and not yet written to the socket exceed the
 * stream's bound (cm_stream_opts.window_bytes, default 64 KiB; one message is always let
 * through), so a peer that does not read stops the writer instead of growing its memory.
 * Received messages are queued up to the same bound; past it the stream stops reading from the
 * connection until the reader catches up, and TCP pushes back on the peer.
 *
 * Threads: the blocking functions (cm_stream_send, cm_stream_recv) are for threads other than
 * the loop's (stream handlers, application threads); on the loop thread they answer
 * CM_ESTATE. The try functions never block and run on any thread; cm_stream_set_notify tells the
 * loop thread when to try again.
 */
#ifndef CMICRO_STREAM_H
#define CMICRO_STREAM_H

#include <cmicro/client.h>
#include <cmicro/rpc_error.h>
#include <cmicro/server.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cm_stream cm_stream;

typedef struct cm_stream_opts {
    size_t window_bytes; /* the flow-control bound of each direction; default 65536 */
} cm_stream_opts;
CM_EXTERN void cm_stream_opts_init(cm_stream_opts *o);

/* Opens a stream to endpoint ("Echo.Stream") of service: picks a node as calls do (or
 * opts->address), dials a connection of its own and sends go-micro's opening message. Messages
 * sent are of req_desc, received of rsp_desc (NULL: raw bytes, ProtobufCBinaryData).
 * opts->timeout_ms (default: none) is the stream's deadline: it is sent as Timeout and ends
 * both sides when it passes. opts->md is sent with every message. sopts NULL: defaults.
 * Blocks until the node is picked and the opening message is queued; any thread but the loop's.
 * 0 with *out (returns owned: cm_stream_free), or < 0 with *err (may be NULL; returns owned)
 * saying why: CM_ENOTFOUND, CM_ENONODE, CM_ECONTENTTYPE, CM_EADDR, CM_ESTATE (loop thread),
 * CM_ENOMEM, a libuv error. */
CM_EXTERN int cm_client_stream(cm_client *c, const char *service, const char *endpoint,
                               const ProtobufCMessageDescriptor *req_desc,
                               const ProtobufCMessageDescriptor *rsp_desc, const cm_call_opts *opts,
                               const cm_stream_opts *sopts, cm_stream **out, cm_error **err);

/* Sends msg (borrowed during the call). Waits while the window is full. 0, or: CM_EOF (this
 * side was closed with cm_stream_close_send), CM_EREMOTE (the peer ended the stream with a
 * go-micro error: cm_stream_error), CM_ECLOSED (the connection ended), CM_ETIMEDOUT (the
 * deadline passed), CM_ECANCELED, CM_ECODEC, CM_ENOMEM, CM_ESTATE (loop thread). */
CM_EXTERN int cm_stream_send(cm_stream *s, const void *msg);
/* Receives the next message into *msg (returns owned: cm_message_free with the stream's
 * receive descriptor). Waits for one. 0, or CM_EOF (the peer ended its side: go-micro's EOS),
 * CM_EREMOTE (the peer's go-micro error: cm_stream_error), and the errors of cm_stream_send. */
CM_EXTERN int cm_stream_recv(cm_stream *s, void **msg);
/* The non-blocking forms, any thread: CM_EAGAIN when the send would wait / nothing is queued. */
CM_EXTERN int cm_stream_try_send(cm_stream *s, const void *msg);
CM_EXTERN int cm_stream_try_recv(cm_stream *s, void **msg);
/* Runs fn(arg) on the loop thread whenever the stream may have changed: a message arrived,
 * the window opened, the stream ended; and once soon after it is set, for what happened before.
 * fn (NULL: none) borrowed until cm_stream_free or the next call. Any thread. */
CM_EXTERN void cm_stream_set_notify(cm_stream *s, void (*fn)(cm_stream *s, void *arg), void *arg);
/* Client: ends the sending side with go-micro's EOS message; receiving goes on. 0, CM_ESTATE
 * (on a server: the handler ends its side by returning), CM_ECLOSED. Any thread. */
CM_EXTERN int cm_stream_close_send(cm_stream *s);
/* Ends the stream now: blocked and later calls return CM_ECANCELED and the connection closes.
 * Any thread. */
CM_EXTERN void cm_stream_cancel(cm_stream *s);
/* The go-micro error that ended the stream (borrowed until cm_stream_free), or NULL. */
CM_EXTERN const cm_error *cm_stream_error(const cm_stream *s);
/* The descriptors of what the stream receives and sends (NULL: raw bytes). */
CM_EXTERN const ProtobufCMessageDescriptor *cm_stream_recv_desc(const cm_stream *s);
/* Milliseconds left before the stream's deadline; -1 when it has none. */
CM_EXTERN int64_t cm_stream_remaining_ms(const cm_stream *s);
/* Client: closes the connection (after an EOS when the sending side is still open) and frees
 * the stream. Not for a server's stream (the framework owns it). Any thread; before
 * cm_client_free. What was sent before the connection came up is not sent when the stream is
 * freed first: wait for an answer (cm_stream_recv) before freeing when it matters. */
CM_EXTERN void cm_stream_free(cm_stream *s);

/* The server's side, counters of its streams. */
typedef struct cm_stream_stats {
    uint64_t sent;     /* messages */
    uint64_t received; /* messages */
    size_t queued;     /* bytes waiting to be written now */
    size_t max_queued; /* the most ever waiting, sends and transport together */
} cm_stream_stats;
CM_EXTERN void cm_stream_get_stats(const cm_stream *s, cm_stream_stats *st);

#ifdef __cplusplus
}
#endif
#endif
