/* cmicro: pub/sub brokers, go-micro's broker.Broker. A broker connects to its transport (an HTTP
 * listener plus the registry for "http", a NATS server for "nats"), publishes messages on a topic
 * and delivers the messages of a topic to subscriptions, optionally in a queue group (each
 * message reaches one member of the group). A message is go-micro's broker.Message: a header map
 * and a body, carried on the wire as JSON {"Header":{...},"Body":"<base64>"} by both built-in
 * backends, byte for byte as go-micro v4 writes it. Backends sit behind one ops table and are
 * chosen by name; an application adds its own with cm_broker_register() (see "writing a backend"
 * at the end).
 *
 * Threads: a broker belongs to the loop it was created on. Every function here runs on that
 * loop's thread (or before the loop runs), except cm_broker_register and cm_broker_find (any
 * thread). Every callback, handlers included, runs on the loop thread, exactly once where it says
 * so, never from inside the call that started it; a function that returns < 0 never calls its
 * callback. A handler therefore must not block: the framework hands messages to its worker pool;
 * a program using the broker directly does the same or keeps its handlers short. The NATS backend
 * receives on libnats's own threads and hands each message to the loop through a bounded queue
 * (opts.queue_max); when the loop falls behind, messages beyond it are dropped, counted in
 * cm_broker_stats.dropped and logged (warn, once per burst).
 *
 * Ownership: strings and metadata passed in are borrowed during the call (the broker copies what
 * it keeps); a delivered message is borrowed during the handler.
 *
 * Errors: CM_EINVAL (bad argument, or an option key the backend does not list), CM_ENOTFOUND (no
 * such backend), CM_ESTATE (not connected, or connected already), CM_ECLOSED (the connection to
 * the server is down: NATS reconnecting), CM_ENOMEM, libuv errors (UV_ECONNREFUSED when the server
 * is unreachable, UV_EADDRINUSE for the HTTP listener) and backend errors. cm_broker_why() gives
 * the last failure in words. Out of memory returns CM_ENOMEM, never aborts.
 */
#ifndef CMICRO_BROKER_H
#define CMICRO_BROKER_H

#include <cmicro/buf.h>
#include <cmicro/loop.h>
#include <cmicro/md.h>
#include <cmicro/registry.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cm_broker cm_broker;
typedef struct cm_broker_sub cm_broker_sub;

/* The header keys go-micro's publisher sets (JSON map keys: not canonicalised). */
#define CM_BROKER_TOPIC_HEADER "Micro-Topic"
#define CM_BROKER_ID_HEADER "Micro-ID"

/* A message as a handler sees it (all borrowed during the handler). header holds go-micro's
 * Message.Header (keys compare case-insensitively here, unlike Go's map); body is never NULL. */
typedef struct cm_broker_msg {
    const char *topic; /* the subscription's topic */
    const cm_md *header;
    const uint8_t *body;
    size_t body_len;
} cm_broker_msg;

/* A subscription handler. Its return value is what go-micro's handler error is: < 0 is logged
 * (warn, with the topic) and counted in cm_broker_stats.handler_errors; the message is not
 * redelivered (neither go-micro broker acknowledges).
 *
 * Flow control: on a broker where cm_broker_can_pause() is true (NATS), a handler that cannot
 * take more now returns CM_EAGAIN. The message is not delivered then: the broker holds it, with
 * the later messages of that subscription (within opts.queue_max and the backend's bounds,
 * beyond which it drops and counts), delivers none of them until cm_broker_resume(), then starts
 * again with that message. Other subscriptions go on meanwhile. Elsewhere CM_EAGAIN is a handler
 * error like any other. */
typedef int (*cm_broker_handler)(const cm_broker_msg *m, void *arg);

/* One backend setting: both strings borrowed until cm_broker_new copies them. */
typedef struct cm_broker_opt {
    const char *key;
    const char *val;
} cm_broker_opt;

#define CM_BROKER_OPTS_MAX 16

/* Settings every backend reads, then the backend's own by key (cm_broker_opts_set). The keys of
 * the built-in backends:
 *   http  "advertise"          host (or host:port) put in the subscription nodes instead of the
 *                              listener's address (go-micro registers the listener's host, with
 *                              an unspecified host replaced by a private IP)
 *         "max_body_bytes"     largest message received or sent; default 4194304
 *         "register_ttl_ms"    TTL of the subscription nodes; default 60000 (go-micro's)
 *         "register_interval_ms"  re-registration period; default 30000 (go-micro's)
 *         "publish_cache_ms"   how long a publisher keeps its lookup of the subscription nodes at
 *                              most; default 60000 (go-micro's registry cache). A watch of the
 *                              registry, a change of this broker's subscriptions and a failed
 *                              POST each drop it sooner
 *         "max_node_posts"     POSTs on the wire to one subscriber address at most (each a
 *                              connection); the others wait in line; default 64
 *         "queue_bytes_max"    bytes of the publishes not finished (waiting for the registry, in
 *                              line or on the wire); beyond them, or beyond opts.queue_max
 *                              publishes, cm_broker_publish answers CM_EAGAIN; default 67108864
 *   nats  "name"               the connection name the server shows
 *         "reconnect_wait_ms"  first pause between reconnect rounds (doubled each round up to
 *                              reconnect_max_ms, with jitter); default 100
 *         "reconnect_max_ms"   longest pause; default 2000
 *         "max_reconnect"      reconnect rounds before giving up; default -1: forever. After
 *                              giving up (logged once as an error) publishes fail with
 *                              CM_ECLOSED, saying so, until cm_broker_disconnect and connect
 *         "pending_max"        messages libnats holds per subscription before it drops (a slow
 *                              consumer: counted as dropped and logged); default 65536
 *         "pending_bytes_max"  and their bytes, likewise; default 67108864 (64 MiB, as libnats
 *                              and nats.go)
 *         "queue_bytes_max"    bytes (received, and decoded bodies) of the messages waiting for
 *                              the loop, beside queue_max; beyond either, messages are dropped,
 *                              counted and logged; default 67108864 (64 MiB)
 *         "send_asap"          1: every publish is written to the socket at once (libnats's
 *                              SendAsap): publish-to-delivery p50 about 0.13 ms instead of about
 *                              0.7 ms (libnats otherwise gathers writes for 1 ms), at the cost of
 *                              a write per message under a flood; default 0
 * cm_broker_new refuses a key its backend does not list (CM_EINVAL). */
typedef struct cm_broker_opts {
    const char *addresses; /* comma separated. http: the listen address ("127.0.0.1:0", go-micro's
                              default; ":0" for every interface); nats: server URLs or host:port
                              ("nats://127.0.0.1:4222"). NULL: MICRO_BROKER_ADDRESS, else the
                              backend's default */
    uint64_t timeout_ms;   /* connect (nats) and one POST (http); 0: 5000 */
    size_t queue_max;      /* messages waiting for the loop (nats), publishes not finished
                              (http); 0: 65536 */
    /* http: the registry the subscriptions go to, borrowed for the broker's life (the service
     * passes its own). NULL: the broker creates one by name from MICRO_REGISTRY (cm_registry_new)
     * and closes it with itself. */
    cm_registry *registry;
    size_t noptions;
    cm_broker_opt options[CM_BROKER_OPTS_MAX];
} cm_broker_opts;

CM_EXTERN void cm_broker_opts_init(cm_broker_opts *o);
/* Sets a backend setting (replacing one of the same key); key and val are borrowed until
 * cm_broker_new. 0, CM_EINVAL (empty key, NULL val) or CM_ENOMEM (CM_BROKER_OPTS_MAX keys set). */
CM_EXTERN int cm_broker_opts_set(cm_broker_opts *o, const char *key, const char *val);

/* The backend a broker is made of when neither code nor MICRO_BROKER names one (go-micro's). */
#define CM_BROKER_DEFAULT "http"

/* Creates a broker by backend name: "http", "nats" or one the application registered; NULL or ""
 * means the env MICRO_BROKER, else CM_BROKER_DEFAULT. o may be NULL; it is copied. The broker is
 * not connected yet. Returns 0, CM_ENOTFOUND, CM_EINVAL, CM_ENOMEM or a backend error. */
CM_EXTERN int cm_broker_new(cm_loop *loop, const char *name, const cm_broker_opts *o,
                            cm_broker **out);
/* The backend's name ("nats"). */
CM_EXTERN const char *cm_broker_name(const cm_broker *b);
/* The address in use: http, the listener's ("127.0.0.1:43567") once connected; nats, the server
 * URL connected to. NULL when not connected. Borrowed until the next call on b. */
CM_EXTERN const char *cm_broker_address(cm_broker *b);
/* The last failure in words ("nats: no server available at nats://127.0.0.1:4222 (connection
 * refused)"), or "" when none. Borrowed until the next call on b. */
CM_EXTERN const char *cm_broker_why(const cm_broker *b);

typedef void (*cm_broker_cb)(int status, void *arg);

/* Connects: http listens and is ready at once; nats dials the servers (on a libuv worker thread,
 * never on the loop) and fails with UV_ECONNREFUSED (or UV_ETIMEDOUT) and a cm_broker_why() text
 * naming the addresses when none answers. Once connected, nats reconnects by itself with back-off
 * when the server goes away and restores its subscriptions; publishes fail with CM_ECLOSED
 * meanwhile. cb runs once with the status. Returns 0, CM_ESTATE (connected or connecting) or
 * CM_ENOMEM. */
CM_EXTERN int cm_broker_connect(cm_broker *b, cm_broker_cb cb, void *arg);
/* Unsubscribes everything (http: deregisters the nodes), closes the connection or listener; cb
 * (may be NULL) runs once when done. The broker can connect again afterwards. Returns 0 or
 * CM_ESTATE (not connected). */
CM_EXTERN int cm_broker_disconnect(cm_broker *b, cm_broker_cb cb, void *arg);
/* Disconnects if needed and frees the broker; done (may be NULL) runs on the loop when all is
 * closed. Subscriptions are freed with it; no handler runs after this returns. */
CM_EXTERN void cm_broker_close(cm_broker *b, void (*done)(void *arg), void *arg);

/* A node a publish could not reach (http), as the publish callback reports it. */
typedef struct cm_broker_node_err {
    const char *node_id; /* the subscription node ("events-<uuid>") */
    const char *address; /* "127.0.0.1:43567" */
    int status;          /* UV_ECONNREFUSED, CM_ETIMEDOUT, CM_EPROTO (not a 200 reply), ... */
} cm_broker_node_err;

/* status 0: delivered to every node (http) or handed to the server (nats); < 0: the first error,
 * with every node that failed in errs (borrowed during the callback; nerrs may be 0 when no node
 * was involved). */
typedef void (*cm_broker_publish_cb)(int status, const cm_broker_node_err *errs, size_t nerrs,
                                     void *arg);

/* Publishes body with header (may be NULL) on topic. The message is encoded at once; http adds
 * "Micro-Topic" to the header as go-micro's broker does, then POSTs to every subscription node of
 * the topic and to one random node per queue group (no POST when there is no subscriber: status 0,
 * as go-micro); nats publishes on the subject topic. cb (may be NULL) runs once with the outcome.
 * Returns 0, CM_EINVAL, CM_ESTATE (not connected), CM_ECLOSED (nats: reconnecting), CM_ETOOBIG
 * (http: over max_body_bytes) or CM_ENOMEM; nothing is sent then. */
CM_EXTERN int cm_broker_publish(cm_broker *b, const char *topic, const cm_md *header,
                                const uint8_t *body, size_t body_len, cm_broker_publish_cb cb,
                                void *arg);

/* Publishes as cm_broker_publish does, from any thread and without the loop, for a backend that
 * can (nats: libnats is thread-safe): the message is encoded on the caller's thread and this
 * returns once the backend took it (nats: in the connection's outgoing buffer), with no callback.
 * Returns 0, CM_ENOTSUP (the backend publishes only on its loop: http; checked first, so that a
 * call with a NULL topic asks whether the backend can), CM_ESTATE (not
 * connected, or disconnecting), CM_ECLOSED (nats: reconnecting), CM_ETOOBIG, CM_EINVAL or
 * CM_ENOMEM; nothing is sent then. Not while cm_broker_close runs. */
CM_EXTERN int cm_broker_publish_now(cm_broker *b, const char *topic, const cm_md *header,
                                    const uint8_t *body, size_t body_len);

typedef struct cm_broker_sub_opts {
    const char *queue; /* queue group; NULL or "": every subscription gets every message */
    /* Runs once when the subscription is live (http: its node registered; nats: the server was
     * asked) or failed; the subscription stays in place after a failed http registration and is
     * registered again every register interval. May be NULL. */
    cm_broker_cb ready;
    void *ready_arg;
} cm_broker_sub_opts;

CM_EXTERN void cm_broker_sub_opts_init(cm_broker_sub_opts *o);

/* Subscribes handler to topic; o may be NULL (no queue). *out is valid until
 * cm_broker_unsubscribe or the broker's close. Subscriber wrappers (logging, tracing) are the
 * framework's: it passes its own handler here. Returns 0, CM_EINVAL, CM_ESTATE (not connected),
 * CM_ENOMEM or a backend error. */
CM_EXTERN int cm_broker_subscribe(cm_broker *b, const char *topic, const cm_broker_sub_opts *o,
                                  cm_broker_handler handler, void *arg, cm_broker_sub **out);
/* Ends a subscription (http: deregisters its node); its handler never runs after this returns. */
CM_EXTERN void cm_broker_unsubscribe(cm_broker_sub *s);
/* Does b keep a message whose handler returned CM_EAGAIN (see cm_broker_handler)? */
CM_EXTERN int cm_broker_can_pause(const cm_broker *b);
/* Delivers again after handlers returned CM_EAGAIN: every paused subscription, from the message it
 * refused, on a later turn of the loop. Does nothing when nothing is paused. */
CM_EXTERN void cm_broker_resume(cm_broker *b);
CM_EXTERN const char *cm_broker_sub_topic(const cm_broker_sub *s);
CM_EXTERN const char *cm_broker_sub_queue(const cm_broker_sub *s); /* NULL: none */

typedef struct cm_broker_stats {
    uint64_t published;      /* publishes accepted */
    uint64_t delivered;      /* messages handed to handlers */
    uint64_t dropped;        /* messages dropped: a queue was full, or (nats) their
                                subscription ended while they waited */
    uint64_t malformed;      /* messages received that were not a go-micro broker message */
    uint64_t handler_errors; /* handlers that returned < 0 */
    uint64_t publish_errors; /* nodes a publish could not reach (http) */
} cm_broker_stats;
CM_EXTERN void cm_broker_get_stats(const cm_broker *b, cm_broker_stats *st);

/* ---- the message, as go-micro's JSON codec writes it ---- */

/* Appends {"Header":{...},"Body":"<base64>"} to out as Go's encoding/json does for
 * broker.Message: keys sorted bytewise, HTML characters and U+2028/9 escaped, invalid UTF-8 as
 * U+FFFD, a NULL header as null. 0 or CM_ENOMEM. */
CM_EXTERN int cm_broker_msg_encode(const cm_md *header, const uint8_t *body, size_t body_len,
                                   cm_buf *out);
/* Decodes such a message (as Go's json.Unmarshal into broker.Message: field names match
 * case-insensitively, unknown fields are ignored, JSON null leaves a field empty). On success
 * *header is owned (cm_md_free; never NULL) and *body points into *body_buf (owned, free(); NULL
 * when empty). Returns 0, CM_ECODEC (not such a message; a one-line reason in err, which may be
 * NULL) or CM_ENOMEM. */
CM_EXTERN int cm_broker_msg_decode(const uint8_t *data, size_t len, cm_md **header, uint8_t **body,
                                   size_t *body_len, char *err, size_t errlen);

/* ---- writing a backend ----
 *
 * A backend is a static const cm_broker_ops registered once with cm_broker_register(); the
 * built-in backends go through the same path. The framework allocates priv_size bytes of private
 * state with each broker (cm_broker_priv) and sub_priv_size bytes with each subscription
 * (cm_broker_sub_priv), zeroed and aligned for any type. Every slot runs on the loop thread. */

typedef struct cm_broker_ops {
    int abi_version; /* CM_ABI_VERSION */
    const char *name;
    size_t priv_size;
    size_t sub_priv_size;
    /* The option keys the backend reads (cm_broker_opts_set), NULL-terminated; NULL: none. */
    const char *const *option_keys;
    int (*init)(cm_broker *b);
    /* Frees what init made (the broker is disconnected by then). */
    void (*fini)(cm_broker *b);
    /* Starts connecting; the backend calls cm_broker_connected(b, status) once, later. */
    int (*connect)(cm_broker *b);
    /* Stops everything (subscriptions were unsubscribed before); the backend calls
     * cm_broker_disconnected(b) once, later. */
    void (*disconnect)(cm_broker *b);
    int (*publish)(cm_broker *b, const char *topic, const cm_md *header, const uint8_t *body,
                   size_t body_len, cm_broker_publish_cb cb, void *arg);
    /* s is allocated and linked by the framework; the backend starts it and calls
     * cm_broker_sub_ready(s, status) once, later (never from inside this slot, and never when
     * the slot returns < 0). */
    int (*subscribe)(cm_broker *b, cm_broker_sub *s);
    /* Stops s's backend state; the framework unlinks and frees s afterwards. */
    void (*unsubscribe)(cm_broker *b, cm_broker_sub *s);
    /* The address in use (cm_broker_address); may be NULL. */
    const char *(*address)(cm_broker *b);
    /* cm_broker_publish_now: any thread, so the backend guards its connection itself; returns
     * CM_ESTATE when it is not connected. May be NULL (CM_ENOTSUP). */
    int (*publish_now)(cm_broker *b, const char *topic, const cm_md *header, const uint8_t *body,
                       size_t body_len);
} cm_broker_ops;

/* Adds or replaces the backend of ops->name. ops is borrowed for the life of the process (a
 * static const table). Returns 0, CM_EINVAL (wrong abi_version, no name, or no connect,
 * disconnect, publish, subscribe or unsubscribe slot) or CM_ENOMEM (the table is full: 16
 * backends). Any thread; call it before brokers are created. */
CM_EXTERN int cm_broker_register(const cm_broker_ops *ops);
/* The backend of that name, or NULL. Any thread. */
CM_EXTERN const cm_broker_ops *cm_broker_find(const char *name);

/* For backends. All borrowed from b (or s), valid until the broker is freed. */
CM_EXTERN cm_loop *cm_broker_loop(const cm_broker *b);
CM_EXTERN void *cm_broker_priv(cm_broker *b);
CM_EXTERN const char *cm_broker_addresses(const cm_broker *b); /* NULL: the backend's default */
CM_EXTERN uint64_t cm_broker_timeout_ms(const cm_broker *b);   /* never 0 */
CM_EXTERN size_t cm_broker_queue_max(const cm_broker *b);      /* never 0 */
CM_EXTERN cm_registry *cm_broker_registry(const cm_broker *b); /* NULL: none given */
CM_EXTERN const char *cm_broker_option(const cm_broker *b, const char *key); /* NULL: unset */
/* Records the last failure (cm_broker_why). */
CM_EXTERN void cm_broker_set_why(cm_broker *b, const char *fmt, ...) CM_PRINTF(2, 3);
CM_EXTERN void cm_broker_connected(cm_broker *b, int status);
CM_EXTERN void cm_broker_disconnected(cm_broker *b);
CM_EXTERN void *cm_broker_sub_priv(cm_broker_sub *s);
CM_EXTERN cm_broker *cm_broker_sub_broker(const cm_broker_sub *s);
CM_EXTERN void cm_broker_sub_ready(cm_broker_sub *s, int status);
/* Runs s's handler with a message (loop thread); counts it and logs a handler error. Returns
 * CM_EAGAIN when the handler refused the message for now and the backend set a resume function
 * (cm_broker_set_resume): the backend keeps it and delivers nothing more of that subscription
 * until that function runs. Otherwise 0. */
CM_EXTERN int cm_broker_deliver(cm_broker_sub *s, const cm_md *header, const uint8_t *body,
                                size_t body_len);
/* Delivers a message to every subscription of topic (without a queue's choice: each), once,
 * with cm_broker_deliver: those there when it is called, whatever their handlers subscribe or
 * unsubscribe meanwhile. Returns how many there were. For backends that dispatch by topic; one
 * that pauses (cm_broker_set_resume) delivers per subscription instead. */
CM_EXTERN size_t cm_broker_deliver_topic(cm_broker *b, const char *topic, const cm_md *header,
                                         const uint8_t *body, size_t body_len);
/* Says that the backend keeps messages refused with CM_EAGAIN: cm_broker_resume calls fn(b) then
 * (loop thread), which must deliver again on a later turn. Call it once, in init. */
CM_EXTERN void cm_broker_set_resume(cm_broker *b, void (*fn)(cm_broker *b));
/* The subscriptions, for backends that dispatch by topic: the first, and the one after s. */
CM_EXTERN cm_broker_sub *cm_broker_subs(cm_broker *b);
CM_EXTERN cm_broker_sub *cm_broker_sub_next(const cm_broker_sub *s);
/* Counts for cm_broker_stats: what = "dropped", "malformed" or "publish_errors". Loop thread. */
CM_EXTERN void cm_broker_count(cm_broker *b, const char *what, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif
