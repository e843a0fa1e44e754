/* cmicro: the service object. It wires a server, a client, a registry, a selector and a
 * transport on one loop, registers the service's node, keeps the registration fresh and takes
 * it down on a graceful stop.
 *
 * Configuration, highest precedence first: a field set in the options struct, then go-micro's
 * environment variables, then the defaults. Nothing resets a value set earlier:
 *   name            MICRO_SERVER_NAME          "go.micro.server"
 *   version         MICRO_SERVER_VERSION       "latest"
 *   id              MICRO_SERVER_ID            a random UUID (the node id is "<name>-<id>")
 *   metadata        MICRO_SERVER_METADATA      none ("k=v,k2=v2"; keys set in code win)
 *   address         MICRO_SERVER_ADDRESS       ":0"
 *   advertise       MICRO_SERVER_ADVERTISE     the listen address with a usable IP
 *   registry        MICRO_REGISTRY             "mdns" (also "consul", "memory")
 *   registry addr   MICRO_REGISTRY_ADDRESS     the backend's default
 *   registry wait   MICRO_REGISTRY_TIMEOUT (duration) one request, or an mDNS query window;
 *                                              the backend's default (mDNS 100 ms)
 *   register TTL    MICRO_REGISTER_TTL (s)     90 s
 *   interval        MICRO_REGISTER_INTERVAL (s) TTL/3; an interval above TTL/2 is refused
 *   client retries  MICRO_CLIENT_RETRIES       5 (6 attempts)
 *   call timeout    MICRO_CLIENT_REQUEST_TIMEOUT (Go duration "30s" or ms) 30 s
 *   attempt timeout MICRO_CLIENT_ATTEMPT_TIMEOUT (duration) 5 s (see <cmicro/client.h>)
 *   dial timeout    MICRO_CLIENT_DIAL_TIMEOUT  (duration) 5 s
 *   pool size       MICRO_CLIENT_POOL_SIZE     100 idle connections per address
 *   pool TTL        MICRO_CLIENT_POOL_TTL      (duration) 60 s
 *   transport       MICRO_TRANSPORT            "http"
 *   broker          MICRO_BROKER               "http" (also "nats"; see <cmicro/event.h>)
 *   broker address  MICRO_BROKER_ADDRESS       the backend's default (http: 127.0.0.1:0)
 *   server limits   MICRO_SERVER_HEADER_TIMEOUT, _BODY_TIMEOUT, _IDLE_TIMEOUT (durations),
 *                   MICRO_SERVER_MAX_CONNS, MICRO_SERVER_MAX_CONNS_PER_IP (see the options)
 *   call limits     MICRO_SERVER_MAX_CONCURRENT (per endpoint), MICRO_SERVER_RATE_LIMIT (calls/s),
 *                   MICRO_SERVER_RATE_BURST; none by default; refusals answer 429
 *   server loops    MICRO_SERVER_LOOPS         1 on at most 2 CPUs, else CPUs/2 (at most 8)
 *   open streams    MICRO_SERVER_MAX_STREAMS   256 (a thread each; refusals answer 429)
 *   metrics         MICRO_METRICS              "on" ("off": no wrappers, no /metrics)
 *   trace context   MICRO_TRACE                "on" ("off": traceparent passes untouched)
 *   span export     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT   none
 *   selector        MICRO_SELECTOR             "random" ("roundrobin")
 *   node breaker    MICRO_SELECTOR_EJECT_FAILURES (1), MICRO_SELECTOR_EJECT_ERROR_PCT (off),
 *                   MICRO_SELECTOR_EJECT_BACKOFF (duration, 1 s; see <cmicro/selector.h>)
 *   TLS             MICRO_TRANSPORT_TLS (true/false), _TLS_CERT, _TLS_KEY, _TLS_CA,
 *                   _TLS_SERVER_NAME, _TLS_INSECURE (see the options and cm_transport_opts)
 *   deregister wait (option only)              1 s
 *
 * Threads: cm_service_run() runs the loop on the calling thread; cm_service_stop() may be called
 * from any thread. A client-only program never calls run: its first call starts the loop on a
 * thread of its own, joined by cm_service_free().
 */
#ifndef CMICRO_SERVICE_H
#define CMICRO_SERVICE_H

#include <cmicro/broker.h>
#include <cmicro/client.h>
#include <cmicro/metrics.h>
#include <cmicro/registry.h>
#include <cmicro/selector.h>
#include <cmicro/server.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cm_service cm_service;

/* A RegisterCheck: 0 when the service may stay registered. Runs on the loop thread before
 * each refresh; it must not block. */
typedef int (*cm_register_check_fn)(void *user);

typedef struct cm_service_opts {
    const char *name;
    const char *version;
    const char *address;   /* listen address */
    const char *advertise; /* address published in the registry */
    const cm_md *metadata; /* node metadata (copied) */
    const char *registry;  /* backend name */
    const char *registry_address;
    cm_registry *registry_instance; /* borrowed; wins over registry/registry_address */
    cm_strategy strategy;           /* selector strategy */
    int strategy_set;               /* strategy was set in code */
    uint64_t register_ttl_ms;
    uint64_t register_interval_ms;
    cm_register_check_fn register_check;
    void *register_check_user;
    unsigned workers;
    uint64_t drain_timeout_ms;      /* default 10 s */
    int max_attempts;               /* client, including the first */
    uint64_t request_timeout_ms;    /* client */
    const char *content_type;       /* client; default application/protobuf */
    int log_config;                 /* log the effective configuration once at start (info):
                                       1 on, 0 off, -1 (set by cm_service_opts_init) unset: on
                                       unless CMICRO_QUIET is set */
    uint64_t deregister_wait_ms;    /* on stop, how long to go on serving after deregistering, so
                                       that callers' watches drop the node before it stops
                                       accepting; default 1 s */
    uint64_t attempt_timeout_ms;    /* client: one attempt of a retryable call; default 5 s */
    const char *id;                 /* server id: the node id is "<name>-<id>"; default a UUID */
    const char *transport;          /* server and client transport backend; default "http" */
    unsigned pool_size;             /* client: idle connections kept per address; default 100 */
    uint64_t pool_ttl_ms;           /* client: a pooled connection's lifetime; default 60 s */
    uint64_t dial_timeout_ms;       /* client: connecting to a node; default 5 s */
    /* Server connections (see cm_transport_opts): 0 takes the env, then the default. */
    uint64_t header_timeout_ms; /* MICRO_SERVER_HEADER_TIMEOUT; default 10 s */
    uint64_t body_timeout_ms;   /* MICRO_SERVER_BODY_TIMEOUT; default 60 s */
    uint64_t idle_timeout_ms;   /* MICRO_SERVER_IDLE_TIMEOUT; default 75 s */
    unsigned max_conns;         /* MICRO_SERVER_MAX_CONNS; default the fd limit less 64 */
    unsigned max_conns_per_ip;  /* MICRO_SERVER_MAX_CONNS_PER_IP; default no cap */
    /* The server's built-in limits (see cm_server_opts): 0 takes the env, then none. */
    unsigned max_concurrent; /* MICRO_SERVER_MAX_CONCURRENT: per endpoint */
    unsigned rate_limit;     /* MICRO_SERVER_RATE_LIMIT: calls/s */
    unsigned rate_burst;     /* MICRO_SERVER_RATE_BURST; default the rate */
    int metrics; /* built-in metrics and GET /metrics: 1 on, -1 off, 0 MICRO_METRICS ("on",
                    "off"), default on */
    int tracing; /* W3C trace context across calls: 1 on, -1 off, 0 MICRO_TRACE, default on */
    const char *trace_export_url; /* OTLP/HTTP JSON collector URL for the spans of served calls
                                     ("http://127.0.0.1:4318/v1/traces"); NULL: the env
                                     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
                                     OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces", else none */
    /* TLS on the server's and the client's transport (see cm_transport_opts): on with tls, or
     * when a certificate or CA file is given. The strings are borrowed until cm_service_free()
     * (the client reads the files at its first call). A file that cannot be read makes
     * cm_service_new() fail with CM_EINVAL. */
    int tls;                     /* MICRO_TRANSPORT_TLS (true/false) */
    int tls_insecure;            /* MICRO_TRANSPORT_TLS_INSECURE: the client accepts any server
                                    certificate (a warning is logged); default false */
    const char *tls_cert_file;   /* MICRO_TRANSPORT_TLS_CERT: PEM chain, leaf first */
    const char *tls_key_file;    /* MICRO_TRANSPORT_TLS_KEY; default: in the certificate file */
    const char *tls_ca_file;     /* MICRO_TRANSPORT_TLS_CA; default the system's CA store */
    const char *tls_server_name; /* MICRO_TRANSPORT_TLS_SERVER_NAME: the name the client checks
                                    in certificates instead of the host dialled */
    /* The broker of cm_publish and the subscribers (<cmicro/event.h>). */
    const char *broker;         /* backend name; NULL: MICRO_BROKER, else "http" */
    const char *broker_address; /* NULL: MICRO_BROKER_ADDRESS, else the backend's default */
    /* The broker's settings (timeout_ms, queue_max and the backend's keys, such as nats's
     * "send_asap" or "pending_max": <cmicro/broker.h>); borrowed during cm_service_new. Its
     * addresses and registry are ignored: broker_address and the service's registry. NULL:
     * defaults. */
    const cm_broker_opts *broker_opts;
    /* The server's event loops (see cm_server_opts.loops), at most 64: 0 takes
     * MICRO_SERVER_LOOPS, else 1 on at most 2 CPUs and half the CPUs (at most 8) above. */
    unsigned loops;
    /* Streams served at once (see cm_server_opts); 0 takes MICRO_SERVER_MAX_STREAMS, then
     * CM_SERVER_MAX_STREAMS. */
    unsigned max_streams;
} cm_service_opts;

/* A health check: 0 when healthy; otherwise it may write why (whylen bytes with the NUL). It runs
 * on a worker thread of the server at each probe of /health or /health/ready, and may block,
 * but the probe waits for it: bound it (a probe's caller times out in seconds). */
typedef int (*cm_health_check_fn)(void *user, char *why, size_t whylen);

/* Every field unset, so env and defaults apply: zero, and log_config -1. */
CM_EXTERN void cm_service_opts_init(cm_service_opts *o);

/* Creates a service: loop, registry, selector, client and server (not yet listening).
 * o NULL: env and defaults. Returns 0, CM_EINVAL (a bad option or environment variable),
 * CM_ENOTFOUND (unknown registry backend), CM_ENOMEM or a libuv error; cm_service_why() then
 * says which option and why. An environment variable ignored because code set the option is
 * logged once (info). */
CM_EXTERN int cm_service_new(const cm_service_opts *o, cm_service **out);
/* Why the last cm_service_new on the calling thread failed, in one line ("MICRO_SELECTOR=x: use
 * random or roundrobin"); "" when it succeeded. Thread-local static storage. */
CM_EXTERN const char *cm_service_why(void);
CM_EXTERN cm_server *cm_service_server(cm_service *s);
/* The client, resolving service names through the selector. */
CM_EXTERN cm_client *cm_service_client(cm_service *s);
CM_EXTERN cm_registry *cm_service_registry(cm_service *s);
CM_EXTERN cm_loop *cm_service_loop(cm_service *s);
/* The effective name / node id / published address (address after run started, else NULL). */
CM_EXTERN const char *cm_service_name(const cm_service *s);
CM_EXTERN const char *cm_service_version(const cm_service *s);
CM_EXTERN const char *cm_service_node_id(const cm_service *s);
CM_EXTERN const char *cm_service_advertised(const cm_service *s);
CM_EXTERN uint64_t cm_service_register_ttl_ms(const cm_service *s);
CM_EXTERN uint64_t cm_service_register_interval_ms(const cm_service *s);

/* Serves until SIGINT/SIGTERM or cm_service_stop(): listens, registers (retrying with back-off
 * while the registry is down; the server serves meanwhile), refreshes every interval after the
 * RegisterCheck (a failing check deregisters, a passing one registers again), and on stop:
 * deregisters, goes on serving for the deregister wait (callers drop the node meanwhile), stops
 * accepting, drains calls in flight, closes. Returns 0 after a graceful stop, or the error that
 * prevented listening. A second signal during the wait or the drain forces the exit. */
CM_EXTERN int cm_service_run(cm_service *s);
/* Asks run() to stop gracefully. Any thread. */
CM_EXTERN void cm_service_stop(cm_service *s);
/* Frees the service (after run returned, or for a client-only service). */
CM_EXTERN void cm_service_free(cm_service *s);

/* Adds a check to the service's health answers (before cm_service_run): /health and
 * /health/ready answer 503 "down" while it fails. user is borrowed. 0, CM_EINVAL or CM_ENOMEM
 * (32 checks at most). See "Health" in the README for the endpoints and their JSON. */
/* The service's metrics registry (GET /metrics renders it), to add families of your own; NULL
 * when metrics are off (metrics = -1 or MICRO_METRICS=off). Borrowed for the service's life. */
CM_EXTERN cm_metrics *cm_service_metrics(cm_service *s);

CM_EXTERN int cm_service_add_health_check(cm_service *s, const char *name, cm_health_check_fn fn,
                                          void *user);

#ifdef __cplusplus
}
#endif
#endif
