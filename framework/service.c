/* The service object: configuration, registration loop, signals and the ordered shutdown. */
#include "framework_int.h"

#include <cmicro/service.h>
#include <ctype.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

struct cm_service {
    cm_loop *loop;
    char *name;
    char *version;
    char *address;
    char *advertise;
    char *node_id;
    cm_md *metadata;
    cm_registry *reg;
    int own_reg;
    cm_selector *sel;
    cm_client *client;
    cm_server *server;
    uint64_t ttl_ms;
    uint64_t interval_ms;
    cm_register_check_fn check;
    void *check_user;
    int log_config;
    uint64_t dereg_wait_ms;

    char advertised[160];
    cm_reg_service *svc; /* what is registered */
    uv_timer_t reg_timer;
    uv_timer_t retry_timer;
    uv_signal_t sigint, sigterm;
    int registered;       /* the registry holds our node */
    int reg_inflight;     /* a register or deregister is pending */
    unsigned reg_failures;
    char reg_error[160]; /* the last register failure ("" none), for GET /status */
    uint64_t reg_error_unix;
    int stopping;
    int stop_dereg;       /* the stop deregistered (or tried to): wait before stopping */
    int stop_waiting;     /* the deregister wait runs */
    int run_rc;
    int handles_open;
    cm__health *health;
    cm__observe *observe; /* the built-in metrics; NULL when off */
    cm__otlp *otlp;       /* span export; NULL when off */
    cm__events *events;   /* the broker and the subscribers */
    int events_closed;    /* the broker is closed (cm_service_free) */
    uv_timer_t close_guard;
};

void
cm_service_opts_init(cm_service_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->log_config = -1;
}

/* ---- configuration ---- */

/* Why the last cm_service_new on this thread failed ("" when it did not). */
static _Thread_local char last_why[256];

const char *
cm_service_why(void)
{
    return last_why;
}

/* Copies the resolved configuration into s. 0 or CM_ENOMEM. */
static int
adopt(cm_service *s, const cm__svc_config *c, const cm_md *md)
{
    s->name = strdup(c->name);
    s->version = strdup(c->version);
    s->address = strdup(c->address);
    s->advertise = c->advertise ? strdup(c->advertise) : NULL;
    if (s->name == NULL || s->version == NULL || s->address == NULL ||
        (c->advertise && !s->advertise)) {
        return CM_ENOMEM;
    }
    s->ttl_ms = c->ttl_ms;
    s->interval_ms = c->interval_ms;
    s->dereg_wait_ms = c->dereg_wait_ms;
    s->log_config = c->log_config;

    char us[37];
    const char *id = c->id;
    if (id == NULL) {
        uuid_t u;
        uuid_generate_random(u);
        uuid_unparse_lower(u, us);
        id = us;
    }
    size_t n = strlen(s->name) + strlen(id) + 2;
    s->node_id = malloc(n);
    if (s->node_id == NULL) {
        return CM_ENOMEM;
    }
    snprintf(s->node_id, n, "%s-%s", s->name, id);

    s->metadata = cm_md_new();
    if (s->metadata == NULL) {
        return CM_ENOMEM;
    }
    return cm__service_metadata(md, c->env_metadata, s->metadata, last_why, sizeof last_why);
}

static int
open_registry(cm_service *s, const cm_service_opts *o, const cm__svc_config *c)
{
    if (o->registry_instance != NULL) {
        s->reg = o->registry_instance;
        return 0;
    }
    cm_registry_opts ro;
    cm_registry_opts_init(&ro);
    ro.addresses = c->reg_addr;
    ro.timeout_ms = c->reg_timeout_ms;
    int rc = cm_registry_new(s->loop, c->reg_name, &ro, &s->reg);
    s->own_reg = rc == 0;
    if (rc < 0) {
        snprintf(last_why, sizeof last_why, "registry %s: %s",
                 c->reg_name ? c->reg_name : CM_REGISTRY_DEFAULT, cm_strerror(rc));
    }
    return rc;
}

static int
open_events(cm_service *s, const cm_service_opts *o)
{
    int rc = cm__events_new(s->loop, s->server, s->reg, o->broker, o->broker_address,
                            o->broker_opts, &s->events);
    if (rc < 0) {
        const char *name = o->broker ? o->broker : getenv("MICRO_BROKER");
        snprintf(last_why, sizeof last_why, "broker %s: %s",
                 name && name[0] ? name : CM_BROKER_DEFAULT, cm_strerror(rc));
        return rc;
    }
    cm__client_set_events(s->client, s->events);
    return 0;
}

static int
open_server(cm_service *s, const cm_service_opts *o, const cm__svc_config *c)
{
    cm_server_opts sv;
    cm_server_opts_init(&sv);
    sv.name = s->name;
    sv.address = s->address;
    sv.transport = c->transport;
    sv.transport_opts = c->server_transport;
    if (o->workers) {
        sv.workers = o->workers;
    }
    if (o->drain_timeout_ms) {
        sv.drain_timeout_ms = o->drain_timeout_ms;
    }
    sv.max_concurrent = c->max_concurrent;
    sv.loops = c->loops;
    sv.rate_limit = c->rate_limit;
    sv.rate_burst = c->rate_burst;
    if (c->max_streams) {
        sv.max_streams = c->max_streams;
    }
    return cm_server_new(s->loop, &sv, &s->server);
}

int
cm_service_new(const cm_service_opts *o, cm_service **out)
{
    cm_service_opts none;
    if (o == NULL) {
        cm_service_opts_init(&none);
        o = &none;
    }
    last_why[0] = '\0';
    if (out == NULL) {
        return CM_EINVAL;
    }
    cm_service *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return CM_ENOMEM;
    }
    s->check = o->register_check;
    s->check_user = o->register_check_user;
    cm__svc_config cfg;
    int rc = cm__service_config(o, &cfg, last_why, sizeof last_why);
    if (rc == 0) {
        rc = adopt(s, &cfg, o->metadata);
    }
    if (rc == 0) {
        rc = cm_loop_new(&s->loop);
    }
    if (rc == 0) {
        rc = open_registry(s, o, &cfg);
    }
    if (rc == 0) {
        rc = cm_selector_new(s->loop, s->reg, &cfg.selector, &s->sel);
    }
    if (rc == 0) {
        cfg.client.selector = s->sel;
        cfg.client.transport = cfg.transport;
        rc = cm_client_new(s->loop, &cfg.client, &s->client);
    }
    if (rc == 0) {
        cm__client_set_autostart(s->client, 1);
        rc = open_server(s, o, &cfg);
    }
    if (rc == 0) {
        rc = open_events(s, o);
    }
    if (rc == 0) {
        rc = cm__health_new(s, &s->health);
    }
    if (rc == 0) {
        cm__server_on_get(s->server, cm__health_on_get, s->health);
        rc = cm__debug_handle(s->server);
    }
    if (rc == 0 && cfg.tracing) {
        rc = cm__tracing_install(s->server, s->client);
    }
    if (rc == 0 && cfg.tracing && cfg.trace_export != NULL && cfg.trace_export[0] != '\0') {
        rc = cm__otlp_new(s->server, cfg.trace_export, s->name, &s->otlp);
    }
    if (rc == 0 && cfg.metrics) {
        rc = cm__observe_new(s, &s->observe);
        cm__health_set_metrics(s->health, cm__observe_metrics(s->observe));
    }
    if (rc < 0) {
        if (last_why[0] == '\0') {
            snprintf(last_why, sizeof last_why, "%s", cm_strerror(rc));
        }
        cm_log(CM_LOG_DEBUG, "service", "cannot create the service: %s", last_why);
        cm_service_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

cm_server *
cm_service_server(cm_service *s)
{
    return s->server;
}

cm_client *
cm_service_client(cm_service *s)
{
    return s->client;
}

cm_registry *
cm_service_registry(cm_service *s)
{
    return s->reg;
}

cm_loop *
cm_service_loop(cm_service *s)
{
    return s->loop;
}

const char *
cm_service_name(const cm_service *s)
{
    return s->name;
}

const char *
cm_service_version(const cm_service *s)
{
    return s->version;
}

const char *
cm_service_node_id(const cm_service *s)
{
    return s->node_id;
}

const char *
cm_service_advertised(const cm_service *s)
{
    return s->advertised[0] ? s->advertised : NULL;
}

uint64_t
cm_service_register_ttl_ms(const cm_service *s)
{
    return s->ttl_ms;
}

uint64_t
cm_service_register_interval_ms(const cm_service *s)
{
    return s->interval_ms;
}

/* ---- the published node ---- */

/* Splits "host:port" / "[v6]:port" / ":port". 0 or CM_EADDR. */
static int
split_hostport(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
    const char *colon;
    const char *h = addr;
    size_t n;
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (rb == NULL || rb[1] != ':') {
            return CM_EADDR;
        }
        h = addr + 1;
        n = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            return CM_EADDR;
        }
        n = (size_t)(colon - addr);
    }
    if (n >= hlen || strlen(colon + 1) >= plen) {
        return CM_EADDR;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, plen, "%s", colon + 1);
    return 0;
}

static int
is_private4(const struct sockaddr_in *a)
{
    uint32_t ip = ntohl(a->sin_addr.s_addr);
    return (ip >> 24) == 10 || (ip >> 20) == (172u << 4 | 1) || (ip >> 16) == (192u << 8 | 168);
}

/* go-micro's addr.Extract: a private IP of a non-loopback interface, else a public one, else
 * loopback (with a warning). */
static int
extract_ip(char *out, size_t len)
{
    uv_interface_address_t *ifs;
    int n;
    if (uv_interface_addresses(&ifs, &n) < 0) {
        n = 0;
        ifs = NULL;
    }
    const char *kinds[] = {"private", "public"};
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            if (ifs[i].is_internal || ifs[i].address.address4.sin_family != AF_INET) {
                continue;
            }
            if (is_private4(&ifs[i].address.address4) == (pass == 0)) {
                uv_ip4_name(&ifs[i].address.address4, out, len);
                uv_free_interface_addresses(ifs, n);
                (void)kinds;
                return 0;
            }
        }
    }
    uv_free_interface_addresses(ifs, n);
    snprintf(out, len, "127.0.0.1");
    cm_log(CM_LOG_WARN, "service",
           "no non-loopback interface address; advertising 127.0.0.1 (set "
           "MICRO_SERVER_ADVERTISE to choose one)");
    return 0;
}

static int
compute_advertised(cm_service *s)
{
    char host[128], port[16], bhost[128], bport[16];
    const char *bound = cm_server_address(s->server);
    if (split_hostport(bound, bhost, sizeof(bhost), bport, sizeof(bport)) < 0) {
        return CM_EADDR;
    }
    if (s->advertise != NULL) {
        if (split_hostport(s->advertise, host, sizeof(host), port, sizeof(port)) < 0) {
            /* An advertise address without a port takes the listener's. */
            snprintf(host, sizeof(host), "%s", s->advertise);
            snprintf(port, sizeof(port), "%s", bport);
        }
    } else {
        snprintf(host, sizeof(host), "%s", bhost);
        snprintf(port, sizeof(port), "%s", bport);
    }
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
        extract_ip(host, sizeof(host));
    }
    if (strchr(host, ':') != NULL) {
        snprintf(s->advertised, sizeof(s->advertised), "[%s]:%s", host, port);
    } else {
        snprintf(s->advertised, sizeof(s->advertised), "%s:%s", host, port);
    }
    return 0;
}

static int
value_from_desc(cm_value *dst, const cm_value_desc *d)
{
    memset(dst, 0, sizeof(*dst));
    dst->name = strdup(d->name ? d->name : "");
    dst->type = strdup(d->type ? d->type : "");
    if (dst->name == NULL || dst->type == NULL) {
        return CM_ENOMEM;
    }
    if (d->nvalues > 0) {
        dst->values = calloc(d->nvalues, sizeof(cm_value));
        if (dst->values == NULL) {
            return CM_ENOMEM;
        }
        dst->nvalues = d->nvalues;
        for (size_t i = 0; i < d->nvalues; i++) {
            if (value_from_desc(&dst->values[i], &d->values[i]) < 0) {
                return CM_ENOMEM;
            }
        }
    }
    return 0;
}

/* A handler's endpoint metadata (NULL on out of memory; a value the registry cannot carry, with
 * a line break, is left out). */
static cm_md *
endpoint_md(const cm_handler *h)
{
    cm_md *md = cm_md_new();
    for (size_t i = 0;
         md != NULL && h->metadata != NULL && h->metadata[i] != NULL && h->metadata[i + 1] != NULL;
         i += 2) {
        if (cm_md_set(md, h->metadata[i], h->metadata[i + 1]) == CM_ENOMEM) {
            cm_md_free(md);
            return NULL;
        }
    }
    return md;
}

/* Adds an endpoint with its shapes (each may be NULL) and metadata. 0 or CM_ENOMEM. */
static int
add_endpoint(cm_reg_service *svc, const char *name, const cm_value_desc *reqd,
             const cm_value_desc *rspd, const cm_md *emd)
{
    cm_value req, rsp;
    memset(&req, 0, sizeof req);
    memset(&rsp, 0, sizeof rsp);
    int have_req = reqd != NULL, have_rsp = rspd != NULL;
    int rc = 0;
    if (emd == NULL || (have_req && value_from_desc(&req, reqd) < 0) ||
        (have_rsp && value_from_desc(&rsp, rspd) < 0)) {
        rc = CM_ENOMEM;
    } else if (cm_reg_service_add_endpoint(svc, name, have_req ? &req : NULL,
                                           have_rsp ? &rsp : NULL, emd) == NULL) {
        rc = CM_ENOMEM;
    }
    cm_value_fini(&req); /* a value value_from_desc failed on is freeable too */
    cm_value_fini(&rsp);
    return rc;
}

/* The handlers, then the subscribers as go-micro publishes them ({"subscriber":"true",
 * "topic":T}, the message as the request). 0 or CM_ENOMEM. */
static int
add_endpoints(cm_service *s, cm_reg_service *svc)
{
    const cm_handler *hs[256];
    size_t n = cm__server_handlers(s->server, hs, 256);
    if (n > 256) {
        n = 256;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (hs[i]->flags & CM_HANDLER_INTERNAL) {
            continue;
        }
        cm_md *emd = endpoint_md(hs[i]);
        rc = add_endpoint(svc, hs[i]->endpoint, hs[i]->request_value, hs[i]->response_value, emd);
        cm_md_free(emd);
    }
    for (size_t i = 0; i < cm__events_count(s->events) && rc == 0; i++) {
        const cm_subscriber *sub = cm__events_sub(s->events, i);
        if (sub->flags & CM_HANDLER_INTERNAL) {
            continue;
        }
        cm_md *emd = cm_md_new();
        if (emd == NULL || cm_md_set(emd, "subscriber", "true") < 0 ||
            cm_md_set(emd, "topic", sub->topic) < 0) {
            rc = CM_ENOMEM;
        } else {
            rc = add_endpoint(svc, sub->endpoint, sub->message_value, NULL, emd);
        }
        cm_md_free(emd);
    }
    return rc;
}

static int
build_registration(cm_service *s)
{
    cm_reg_service *svc = cm_reg_service_new(s->name, s->version);
    if (svc == NULL) {
        return CM_ENOMEM;
    }
    int rc = add_endpoints(s, svc);
    cm_md *md = cm_md_new();
    for (size_t i = 0; md && rc == 0 && i < cm_md_count(s->metadata); i++) {
        const char *k, *v;
        cm_md_at(s->metadata, i, &k, &v);
        rc = cm_md_set(md, k, v);
    }
    /* The keys every go-micro node carries (spec 1.2); protocol=mucp keeps Go clients on the
     * plain codecs. */
    if (md == NULL || rc < 0 ||
        cm_md_set(md, "transport", cm__server_transport_name(s->server)) < 0 ||
        cm_md_set(md, "broker", cm_broker_name(cm__events_broker(s->events))) < 0 ||
        cm_md_set(md, "server", "mucp") < 0 ||
        cm_md_set(md, "registry", cm_registry_name(s->reg)) < 0 ||
        cm_md_set(md, "protocol", "mucp") < 0 ||
        cm_reg_service_add_node(svc, s->node_id, s->advertised, md) == NULL) {
        rc = CM_ENOMEM;
    }
    cm_md_free(md);
    if (rc < 0) {
        cm_reg_service_free(svc);
        return rc;
    }
    s->svc = svc;
    return 0;
}

/* ---- registration ---- */

static void do_register(cm_service *s);
static void finish_stop(cm_service *s);

static uint64_t
retry_delay_ms(unsigned failures)
{
    /* 100 ms, 600 ms, 1.9 s, 4.3 s, then every 10 s at most. */
    static const uint64_t steps[] = {100, 600, 1900, 4300, 7900};
    return failures <= 5 ? steps[failures - 1] : 10000;
}

static void
on_retry(uv_timer_t *t)
{
    cm_service *s = t->data;
    /* Armed only after a failed register or refresh. A failed refresh leaves registered set (the
     * registry may still hold the node) and is retried all the same; a failing RegisterCheck is
     * left to the next interval. */
    if (s->stopping || (s->check != NULL && s->check(s->check_user) != 0)) {
        return;
    }
    do_register(s);
}

/* Keeps the last register failure for the status page. */
static void
note_reg_error(cm_service *s, int status)
{
    snprintf(s->reg_error, sizeof s->reg_error, "register with %s failed: %s",
             cm_registry_name(s->reg), cm_strerror(status));
    s->reg_error_unix = (uint64_t)time(NULL);
}

static void
on_registered(int status, void *user)
{
    cm_service *s = user;
    s->reg_inflight = 0;
    if (s->stopping) {
        s->registered = status == 0;
        finish_stop(s);
        return;
    }
    if (status < 0) {
        s->reg_failures++;
        note_reg_error(s, status);
        uint64_t d = retry_delay_ms(s->reg_failures);
        /* Once per change of state: the first failure at warn, the retries at debug. */
        cm_log(s->reg_failures == 1 ? CM_LOG_WARN : CM_LOG_DEBUG, "service",
               "register %s with %s failed: %s; retrying in %" PRIu64 " ms", s->node_id,
               cm_registry_name(s->reg), cm_strerror(status), d);
        uv_timer_start(&s->retry_timer, on_retry, d, 0);
        return;
    }
    if (!s->registered || s->reg_failures > 0) {
        cm_log(CM_LOG_INFO, "service", "registered %s at %s with %s", s->node_id, s->advertised,
               cm_registry_name(s->reg));
    }
    s->registered = 1;
    s->reg_failures = 0;
}

static void
do_register(cm_service *s)
{
    if (s->reg_inflight) {
        return;
    }
    s->reg_inflight = 1;
    int rc = cm_registry_register_service(s->reg, s->svc, s->ttl_ms, on_registered, s);
    if (rc < 0) {
        s->reg_inflight = 0;
        s->reg_failures++;
        note_reg_error(s, rc);
        cm_log(CM_LOG_WARN, "service", "register failed: %s", cm_strerror(rc));
        uv_timer_start(&s->retry_timer, on_retry, retry_delay_ms(s->reg_failures), 0);
    }
}

static void
on_deregistered_by_check(int status, void *user)
{
    cm_service *s = user;
    s->reg_inflight = 0;
    if (status == 0) {
        s->registered = 0;
    }
    if (s->stopping) {
        finish_stop(s);
    }
}

static void
on_interval(uv_timer_t *t)
{
    cm_service *s = t->data;
    if (s->stopping || s->reg_inflight) {
        return;
    }
    if (s->check != NULL) {
        int rc = s->check(s->check_user);
        if (rc != 0) {
            cm_log(CM_LOG_WARN, "service", "register check failed (%d): deregistering %s", rc,
                   s->node_id);
            if (s->registered) {
                s->reg_inflight = 1;
                if (cm_registry_deregister_service(s->reg, s->svc, on_deregistered_by_check, s) <
                    0) {
                    s->reg_inflight = 0;
                }
            }
            uv_timer_stop(&s->retry_timer);
            return;
        }
    }
    do_register(s);
}

/* ---- stop ---- */

static void
on_handle_closed(uv_handle_t *h)
{
    cm_service *s = h->data;
    if (--s->handles_open == 0) {
        cm_loop_stop(s->loop);
    }
}

static void
close_handle(cm_service *s, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        s->handles_open++;
        uv_close(h, on_handle_closed);
    }
}

static void
on_server_stopped(void *arg)
{
    cm_service *s = arg;
    s->handles_open++; /* held until the handles below are closed */
    close_handle(s, (uv_handle_t *)&s->reg_timer);
    close_handle(s, (uv_handle_t *)&s->retry_timer);
    close_handle(s, (uv_handle_t *)&s->sigint);
    close_handle(s, (uv_handle_t *)&s->sigterm);
    if (--s->handles_open == 0) {
        cm_loop_stop(s->loop);
    }
}

static void
stop_server(cm_service *s)
{
    if (cm_server_stop(s->server, on_server_stopped, s) < 0) {
        on_server_stopped(s);
    }
}

static void
on_dereg_waited(uv_timer_t *t)
{
    stop_server(t->data);
}

static void
finish_stop(cm_service *s)
{
    if (s->reg_inflight || s->stop_waiting) {
        return; /* its callback (or the wait) comes back here */
    }
    if (s->registered) {
        s->reg_inflight = 1;
        s->stop_dereg = 1;
        if (cm_registry_deregister_service(s->reg, s->svc, on_deregistered_by_check, s) == 0) {
            s->registered = 0;
            return;
        }
        s->reg_inflight = 0;
    }
    s->registered = 0;
    if (s->stop_dereg) {
        /* Callers learn of the deregistration through their watches: serve them meanwhile
         * rather than have their calls refused or cut. */
        s->stop_waiting = 1;
        uv_timer_start(&s->reg_timer, on_dereg_waited, s->dereg_wait_ms, 0);
        return;
    }
    stop_server(s);
}

static void
begin_stop(void *arg)
{
    cm_service *s = arg;
    if (s->stopping) {
        return;
    }
    s->stopping = 1;
    uv_timer_stop(&s->reg_timer);
    uv_timer_stop(&s->retry_timer);
    /* As go-micro's Deregister: the subscriptions end with the registration. */
    cm__events_stop(s->events);
    /* Deregister first, so callers stop choosing this node, then drain. */
    finish_stop(s);
}

static void
on_signal(uv_signal_t *h, int signum)
{
    cm_service *s = h->data;
    if (s->stopping) {
        cm_log(CM_LOG_WARN, "service", "second signal %d: exiting now", signum);
        s->run_rc = CM_ECANCELED;
        cm_loop_stop(s->loop);
        return;
    }
    cm_log(CM_LOG_INFO, "service", "signal %d: deregistering, then draining", signum);
    begin_stop(s);
}

void
cm_service_stop(cm_service *s)
{
    cm_loop_post(s->loop, begin_stop, s);
}

/* The broker could not connect or subscribe at start: the service stops with its error. */
static void
on_events_started(int status, void *arg)
{
    cm_service *s = arg;
    if (status >= 0) {
        return;
    }
    cm__events *ev = s->events;
    cm_log(CM_LOG_ERROR, "service", "cannot subscribe on broker %s: %s (%s); stopping",
           cm_broker_name(cm__events_broker(ev)), cm_strerror(status),
           cm_broker_why(cm__events_broker(ev)));
    if (s->run_rc == 0) {
        s->run_rc = status;
    }
    begin_stop(s);
}

static void
start_on_loop(cm_service *s)
{
    uv_loop_t *uv = cm_loop_uv(s->loop);
    uv_timer_init(uv, &s->reg_timer);
    uv_timer_init(uv, &s->retry_timer);
    uv_signal_init(uv, &s->sigint);
    uv_signal_init(uv, &s->sigterm);
    s->reg_timer.data = s->retry_timer.data = s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_timer_start(&s->reg_timer, on_interval, s->interval_ms, s->interval_ms);
    if (s->check == NULL || s->check(s->check_user) == 0) {
        do_register(s);
    } else {
        cm_log(CM_LOG_WARN, "service", "register check failed at start: not registering yet");
    }
    if (cm__events_count(s->events) > 0) {
        int rc = cm__events_start(s->events, on_events_started, s);
        if (rc < 0) {
            on_events_started(rc, s);
        }
    }
}

int
cm_service_run(cm_service *s)
{
    /* A client call made before run() may have started the loop on a thread of its own: stop
     * it, and claim the loop before touching it, so that a client call made meanwhile posts to
     * the loop this thread runs instead of starting another. */
    if (cm__loop_claim(s->loop) < 0) {
        return CM_ESTATE; /* run twice */
    }
    int rc = cm_server_start(s->server);
    if (rc < 0) {
        cm_log(CM_LOG_DEBUG, "service", "cannot listen on %s: %s", s->address, cm_strerror(rc));
        cm__loop_unclaim(s->loop);
        return rc;
    }
    rc = compute_advertised(s);
    if (rc == 0) {
        rc = build_registration(s);
    }
    if (rc < 0) {
        cm__loop_unclaim(s->loop);
        return rc;
    }
    if (s->log_config) {
        cm_log(CM_LOG_INFO, "service",
               "%s version %s listening on %s, advertising %s; registry %s, register ttl %" PRIu64
               " ms, interval %" PRIu64 " ms; node %s; %u loop(s)",
               s->name, s->version, cm_server_address(s->server), s->advertised,
               cm_registry_name(s->reg), s->ttl_ms, s->interval_ms, s->node_id,
               cm_server_loops(s->server));
    }
    s->run_rc = 0;
    start_on_loop(s);
    cm_loop_run(s->loop);
    return s->run_rc;
}

int
cm_service_add_health_check(cm_service *s, const char *name, cm_health_check_fn fn, void *user)
{
    return s == NULL ? CM_EINVAL : cm__health_add(s->health, name, fn, user);
}

cm__otlp *
cm__service_otlp(cm_service *s)
{
    return s->otlp;
}

cm_selector *
cm__service_selector(cm_service *s)
{
    return s->sel;
}

cm_metrics *
cm_service_metrics(cm_service *s)
{
    return s ? cm__observe_metrics(s->observe) : NULL;
}

int
cm__service_registered(const cm_service *s)
{
    return s->registered;
}

const char *
cm__service_register_error(const cm_service *s, unsigned *failures, uint64_t *when_unix)
{
    *failures = s->reg_failures;
    *when_unix = s->reg_error_unix;
    return s->reg_error;
}

cm__observe *
cm__service_observe(cm_service *s)
{
    return s->observe;
}

static void
close_registry(void *arg)
{
    cm_service *s = arg;
    if (s->own_reg && s->reg != NULL) {
        cm_registry_close(s->reg, NULL, NULL);
    }
    s->reg = NULL;
    s->events_closed = 1;
    cm_loop_stop(s->loop);
}

static void
on_close_guard(uv_timer_t *t)
{
    cm_log(CM_LOG_WARN, "service", "the broker did not close within 10 s");
    cm_loop_stop(((cm_service *)t->data)->loop);
}

/* Runs the loop until the broker has closed (its listener, its deregistrations), bounded, so that
 * cm_loop_free does not close its handles under it. */
static void
wait_events_closed(cm_service *s)
{
    if (s->events_closed) {
        return;
    }
    uv_timer_init(cm_loop_uv(s->loop), &s->close_guard);
    s->close_guard.data = s;
    uv_timer_start(&s->close_guard, on_close_guard, 10000, 0);
    cm_loop_run(s->loop);
    uv_close((uv_handle_t *)&s->close_guard, NULL);
}

/* Handlers still running past the drain (or messages still queued for subscribers) may call the
 * client or publish, which needs the loop: with the subscriptions ended, it turns here, on the
 * freeing thread, until the worker pools are idle (their join would wait for them all the same).
 * Only then does the client go. */
static void
settle_workers(cm_service *s)
{
    if (s->server == NULL) {
        return;
    }
    if (s->events != NULL) {
        cm__events_stop(s->events);
    }
    uint64_t warn_at = cm_now_ms() + cm__server_drain_timeout_ms(s->server);
    while (cm__server_busy(s->server)) {
        uv_run(cm_loop_uv(s->loop), UV_RUN_NOWAIT);
        uv_sleep(1);
        if (warn_at != 0 && cm_now_ms() >= warn_at) {
            cm_log(CM_LOG_WARN, "service", "%s: freeing waits for handlers still running", s->name);
            warn_at = 0;
        }
    }
}

static void
free_on_loop(void *arg)
{
    cm_service *s = arg;
    cm__health_close(s->health);
    settle_workers(s);
    cm_client_free(s->client);
    s->client = NULL;
    /* Runs the completions of subscriber handlers still on a worker: before the events. */
    cm_server_free(s->server);
    s->server = NULL;
    cm_selector_free(s->sel);
    s->sel = NULL;
    /* The http broker's subscriptions are in the registry: close it after the broker. */
    cm__events *ev = s->events;
    s->events = NULL;
    cm__events_close(ev, close_registry, s);
}

void
cm_service_free(cm_service *s)
{
    if (s == NULL) {
        return;
    }
    if (s->loop != NULL) {
        cm__loop_stop_join(s->loop);
        /* The loop runs no more: free the parts as if on its thread; cm_loop_free then runs
         * the loop until every handle is closed. */
        free_on_loop(s);
        wait_events_closed(s);
        cm_loop_free(s->loop);
    }
    cm__health_free(s->health);
    cm__observe_free(s->observe);
    cm__otlp_free(s->otlp);
    cm_reg_service_free(s->svc);
    cm_md_free(s->metadata);
    free(s->name);
    free(s->version);
    free(s->address);
    free(s->advertise);
    free(s->node_id);
    free(s);
}

int
cm_service_subscribe(cm_service *s, const cm_subscriber *sub, void *user)
{
    return s == NULL ? CM_EINVAL : cm__events_add(s->events, sub, user);
}

cm_broker *
cm_service_broker(cm_service *s)
{
    return s ? cm__events_broker(s->events) : NULL;
}

void
cm_service_event_stats(cm_service *s, cm_event_stats *st)
{
    cm__events_stats(s->events, st);
}
