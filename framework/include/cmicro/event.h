/* cmicro: events, go-micro's publish and subscribe on the service's broker.
 *
 *   go-micro                                        cmicro
 *   micro.NewEvent(topic, c).Publish(ctx, msg)      cm_publish(client, topic, desc, msg, opts,
 * &err) micro.RegisterSubscriber(topic, srv, fn,        cm_service_subscribe(svc, &sub, user) with
 *       server.SubscriberQueue(q))                      sub.topic, sub.queue, sub.fn
 *
 * protoc-gen-cmicro writes typed forms of both for each message marked "@event" in its leading
 * comment (<message>_publish, <message>_subscribe).
 *
 * The broker is the service's: "http" (go-micro's default, its subscriptions in the service's
 * registry) unless cm_service_opts.broker or MICRO_BROKER names another ("nats"), at
 * cm_service_opts.broker_address or MICRO_BROKER_ADDRESS. A service with subscribers connects it
 * when it runs (cm_service_run fails with the broker's error when it cannot connect: a NATS server
 * down at start), subscribes once connected, and unsubscribes at the start of a graceful stop; the
 * handlers in flight finish within the drain. A publisher connects it at its first publish.
 *
 * On the wire a message is what go-micro's client publishes: the body is the message encoded
 * with the codec of the content type (the client's, default application/protobuf), and the
 * header holds Content-Type, Micro-Topic (the topic), Micro-ID (a UUID) and the metadata. A
 * subscriber's message is decoded with the codec its Content-Type names (none: protobuf, as the
 * go-micro server assumes).
 *
 * Subscriber handlers run as RPC handlers do: on the server's worker pool (they may block; two
 * messages of one topic may run at once, in any order), or on the loop thread with
 * CM_HANDLER_INLINE. They get a cm_ctx whose metadata is the message's header (cm_ctx_get), whose
 * endpoint is the topic, and whose memory functions work as in a call; they run inside the
 * server's subscriber wrappers (cm_server_wrap_subscriber). A handler's error is logged (warn)
 * and counted; the message is not redelivered (neither go-micro broker acknowledges). A body
 * that does not decode is logged and counted, and the handler does not run. Messages waiting for
 * a worker are bounded (65536 per service): beyond it a message is dropped, counted and logged.
 *
 * Threads: cm_publish_async and cm_service_subscribe from any thread (subscribe: before the
 * service runs); cm_publish from any thread but the loop's.
 */
#ifndef CMICRO_EVENT_H
#define CMICRO_EVENT_H

#include <cmicro/broker.h>
#include <cmicro/client.h>
#include <cmicro/server.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cm_service cm_service;

typedef struct cm_publish_opts {
    const char *content_type; /* NULL: the client's content type */
    const cm_md *md;          /* metadata, sent in the message header; borrowed during the call */
    const cm_ctx *parent;     /* a call or message being served: its metadata (not Micro-*
                                 framework headers) and trace context go with the message */
    const char *exchange;     /* the broker topic to publish on instead of topic (go-micro's
                                 client.PublishExchange); Micro-Topic still says topic */
} cm_publish_opts;

/* The outcome of a publish, on the client's loop thread, exactly once (also when the message
 * was published on the caller's thread: nats once connected). status 0: the broker took
 * the message (http: every subscriber node answered 200; nats: handed to the server); otherwise
 * CM_ECLOSED (nats reconnecting), UV_ECONNREFUSED (broker unreachable), CM_ETIMEDOUT, CM_ETOOBIG,
 * ... and err (borrowed during the callback) says which nodes failed and why. */
typedef void (*cm_publish_cb)(int status, const cm_error *err, void *user);

/* Publishes msg (of type desc; NULL desc: a ProtobufCBinaryData sent as is) on topic. msg is
 * encoded before this returns. Any thread. Returns 0 (cb, which may be NULL, will run) or
 * CM_EINVAL, CM_ECONTENTTYPE (no codec), CM_ECODEC, CM_ESTATE (the client has no broker: it is
 * not a service's) or CM_ENOMEM (cb will not run). */
CM_EXTERN int cm_publish_async(cm_client *c, const char *topic,
                               const ProtobufCMessageDescriptor *desc, const void *msg,
                               const cm_publish_opts *o, cm_publish_cb cb, void *user);
/* The same, waiting for the outcome (not on the loop thread: CM_ESTATE), which the broker's
 * timeouts bound (connect, and one POST for http: cm_broker_opts.timeout_ms, 5 s). On a connected
 * NATS broker it returns once libnats took the message, as go-micro's Publish. On failure
 * *err (may be NULL; returns owned: cm_error_free) says why. */
CM_EXTERN int cm_publish(cm_client *c, const char *topic, const ProtobufCMessageDescriptor *desc,
                         const void *msg, const cm_publish_opts *o, cm_error **err);

/* A subscriber handler: msg is the decoded message (borrowed; a ProtobufCBinaryData with a NULL
 * descriptor). Returns 0, or an error (cm_ctx_error() for a go-micro error), which is logged. */
typedef int (*cm_subscriber_fn)(cm_ctx *ctx, const void *msg, void *user);

typedef struct cm_subscriber {
    const char *topic;
    const char *queue; /* queue group: each message reaches one member; NULL: every message */
    const ProtobufCMessageDescriptor *message; /* NULL: raw bytes */
    cm_subscriber_fn fn;
    unsigned flags; /* CM_HANDLER_INLINE; CM_HANDLER_INTERNAL: not published in the registry */
    /* As go-micro publishes a subscriber in the service's registry entry: an endpoint (name
     * NULL: "Func", go-micro's for a function) with metadata {"subscriber":"true","topic":T} and
     * the message's shape as its request. */
    const char *endpoint;
    const cm_value_desc *message_value; /* may be NULL */
} cm_subscriber;

/* Adds a subscriber to the service (copied; user borrowed while the service lives). Before
 * cm_service_run. 0, CM_EINVAL (no topic or fn), CM_ESTATE (running) or CM_ENOMEM. */
CM_EXTERN int cm_service_subscribe(cm_service *s, const cm_subscriber *sub, void *user);
/* The service's broker, for its stats or direct use; borrowed for the service's life. */
CM_EXTERN cm_broker *cm_service_broker(cm_service *s);

typedef struct cm_event_stats {
    uint64_t published;      /* publishes the broker took */
    uint64_t publish_errors; /* publishes that failed */
    uint64_t received;       /* messages handed to a subscriber */
    uint64_t handled;        /* handlers that returned 0 */
    uint64_t handler_errors; /* handlers that returned an error */
    uint64_t decode_errors;  /* bodies that did not decode (or named no codec) */
    uint64_t dropped;        /* messages dropped: too many waiting for a worker */
} cm_event_stats;
/* Loop thread, or any thread once it no longer runs. */
CM_EXTERN void cm_service_event_stats(cm_service *s, cm_event_stats *st);

#ifdef __cplusplus
}
#endif
#endif
