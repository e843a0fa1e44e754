/* A service's configuration: the options set in code, then go-micro's environment variables for
 * what code left unset, then the defaults; validated last. Each step is its own function. */
#include "framework_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *
env(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

static int fail(char *why, size_t whylen, const char *fmt, ...) CM_PRINTF(3, 4);

static int
fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return CM_EINVAL;
}

int
cm__parse_duration_ms(const char *s, uint64_t *out)
{
    char *end;
    double total = 0;
    if (s == NULL || *s == '\0') {
        return CM_EINVAL;
    }
    unsigned long long plain = strtoull(s, &end, 10);
    if (*end == '\0' && s[0] >= '0' && s[0] <= '9') {
        *out = plain;
        return 0;
    }
    static const struct {
        const char *suffix;
        double ms;
    } units[] = {{"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"ms", 1},
                 {"s", 1000},  {"m", 60000}, {"h", 3600000}};
    const char *p = s;
    while (*p) {
        double v = strtod(p, &end);
        if (end == p) {
            return CM_EINVAL;
        }
        p = end;
        size_t i = 0, n = sizeof units / sizeof units[0];
        while (i < n && strncmp(p, units[i].suffix, strlen(units[i].suffix)) != 0) {
            i++;
        }
        if (i == n) {
            return CM_EINVAL;
        }
        p += strlen(units[i].suffix);
        total += v * units[i].ms;
    }
    if (total < 0 || total > 1e15) {
        return CM_EINVAL;
    }
    *out = (uint64_t)total;
    return 0;
}

/* A plain number of seconds (go-micro's MICRO_REGISTER_TTL) or a Go duration. */
static int
parse_seconds(const char *v, uint64_t *out_ms)
{
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end == '\0' && v[0] >= '0' && v[0] <= '9' && n < UINT64_MAX / 1000) {
        *out_ms = (uint64_t)n * 1000u;
        return 0;
    }
    return cm__parse_duration_ms(v, out_ms);
}

/* Says once at start that code overrides an environment variable, so that it is never silent. */
static void
note_override(const char *name, const char *code_val)
{
    const char *e = env(name);
    if (e != NULL && (code_val == NULL || strcmp(e, code_val) != 0)) {
        cm_log(CM_LOG_INFO, "service", "%s=%s ignored: the option is set in code", name, e);
    }
}

static const char *
pick_str(const char *code, const char *env_name)
{
    if (code != NULL) {
        note_override(env_name, code);
        return code;
    }
    return env(env_name);
}

/* The offset of a client transport option in the configuration. */
#define TOPT(f)                                                                                    \
    (offsetof(cm__svc_config, client) + offsetof(cm_client_opts, transport_opts) +                 \
     offsetof(cm_transport_opts, f))

/* The offset of a server transport option in the configuration. */
#define STOPT(f) (offsetof(cm__svc_config, server_transport) + offsetof(cm_transport_opts, f))

/* A count from the environment into *dst when code left it 0. 0 or CM_EINVAL. */
static int
env_count(const char *name, long max, unsigned *dst, char *why, size_t whylen)
{
    const char *v = env(name);
    if (*dst != 0) {
        note_override(name, NULL);
        return 0;
    }
    if (v == NULL) {
        return 0;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || v[0] < '0' || v[0] > '9' || n < 0 || n > max) {
        return fail(why, whylen, "%s=%s is not a count (0 to %ld)", name, v, max);
    }
    *dst = (unsigned)n;
    return 0;
}

/* A flag from the environment into *dst when code left it 0: 1/true/yes/on or 0/false/no/off.
 * 0 or CM_EINVAL. */
static int
env_flag(const char *name, int *dst, char *why, size_t whylen)
{
    const char *v = env(name);
    if (*dst != 0) {
        note_override(name, NULL);
        return 0;
    }
    if (v == NULL) {
        return 0;
    }
    static const char *const on[] = {"1", "true", "yes", "on"};
    static const char *const off[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
        if (strcasecmp(v, on[i]) == 0 || strcasecmp(v, off[i]) == 0) {
            *dst = strcasecmp(v, on[i]) == 0;
            return 0;
        }
    }
    return fail(why, whylen, "%s=%s: use true or false", name, v);
}

/* TLS of the server's and the client's transports (the server's options hold what code set). */
static int
tls_from_env(cm__svc_config *c, char *why, size_t whylen)
{
    cm_transport_opts *t = &c->server_transport;
    t->tls_cert_file = pick_str(t->tls_cert_file, "MICRO_TRANSPORT_TLS_CERT");
    t->tls_key_file = pick_str(t->tls_key_file, "MICRO_TRANSPORT_TLS_KEY");
    t->tls_ca_file = pick_str(t->tls_ca_file, "MICRO_TRANSPORT_TLS_CA");
    t->tls_server_name = pick_str(t->tls_server_name, "MICRO_TRANSPORT_TLS_SERVER_NAME");
    if (env_flag("MICRO_TRANSPORT_TLS", &t->tls, why, whylen) < 0 ||
        env_flag("MICRO_TRANSPORT_TLS_INSECURE", &t->tls_insecure, why, whylen) < 0) {
        return CM_EINVAL;
    }
    cm_transport_opts *ct = &c->client.transport_opts;
    ct->tls = t->tls;
    ct->tls_insecure = t->tls_insecure;
    ct->tls_cert_file = t->tls_cert_file;
    ct->tls_key_file = t->tls_key_file;
    ct->tls_ca_file = t->tls_ca_file;
    ct->tls_server_name = t->tls_server_name;
    return 0;
}

/* A switch: code (1 on, -1 off), else the env (as env_flag reads it), else on. *dst ends 1 or 0. */
static int
switch_from_env(const char *name, int *dst, char *why, size_t whylen)
{
    if (*dst != 0) {
        note_override(name, NULL);
        *dst = *dst > 0;
        return 0;
    }
    if (env(name) == NULL) {
        *dst = 1;
        return 0;
    }
    return env_flag(name, dst, why, whylen);
}

/* Fills what code left unset from the environment. 0 or CM_EINVAL (why says which). */
static int
from_env(cm__svc_config *c, char *why, size_t whylen)
{
    c->name = pick_str(c->name, "MICRO_SERVER_NAME");
    c->version = pick_str(c->version, "MICRO_SERVER_VERSION");
    c->id = pick_str(c->id, "MICRO_SERVER_ID");
    c->transport = pick_str(c->transport, "MICRO_TRANSPORT");
    c->env_metadata = env("MICRO_SERVER_METADATA");
    c->address = pick_str(c->address, "MICRO_SERVER_ADDRESS");
    c->advertise = pick_str(c->advertise, "MICRO_SERVER_ADVERTISE");
    c->reg_name = pick_str(c->reg_name, "MICRO_REGISTRY");
    c->reg_addr = pick_str(c->reg_addr, "MICRO_REGISTRY_ADDRESS");
    static const struct {
        const char *name;
        size_t off;
        int seconds;
    } durations[] = {
        {"MICRO_REGISTER_TTL", offsetof(cm__svc_config, ttl_ms), 1},
        {"MICRO_REGISTER_INTERVAL", offsetof(cm__svc_config, interval_ms), 1},
        {"MICRO_CLIENT_REQUEST_TIMEOUT",
         offsetof(cm__svc_config, client) + offsetof(cm_client_opts, request_timeout_ms), 0},
        {"MICRO_CLIENT_ATTEMPT_TIMEOUT",
         offsetof(cm__svc_config, client) + offsetof(cm_client_opts, attempt_timeout_ms), 0},
        {"MICRO_CLIENT_POOL_TTL", TOPT(pool_ttl_ms), 0},
        {"MICRO_CLIENT_DIAL_TIMEOUT", TOPT(dial_timeout_ms), 0},
        {"MICRO_SERVER_HEADER_TIMEOUT", STOPT(header_timeout_ms), 0},
        {"MICRO_SERVER_BODY_TIMEOUT", STOPT(body_timeout_ms), 0},
        {"MICRO_SERVER_IDLE_TIMEOUT", STOPT(idle_timeout_ms), 0},
        {"MICRO_REGISTRY_TIMEOUT", offsetof(cm__svc_config, reg_timeout_ms), 0},
        {"MICRO_SELECTOR_EJECT_BACKOFF",
         offsetof(cm__svc_config, selector) + offsetof(cm_selector_opts, eject_backoff_ms), 0},
    };
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        uint64_t *dst = (uint64_t *)(void *)((char *)c + durations[i].off);
        const char *v = env(durations[i].name);
        if (*dst != 0) {
            note_override(durations[i].name, NULL);
        } else if (v != NULL) {
            int rc = durations[i].seconds ? parse_seconds(v, dst) : cm__parse_duration_ms(v, dst);
            if (rc < 0) {
                return fail(why, whylen, "%s=%s is not a %s", durations[i].name, v,
                            durations[i].seconds ? "number of seconds" : "duration");
            }
        }
    }
    if (env_count("MICRO_CLIENT_POOL_SIZE", 100000, &c->client.transport_opts.pool_size, why,
                  whylen) < 0 ||
        env_count("MICRO_SERVER_MAX_CONNS", 1000000, &c->server_transport.max_conns, why, whylen) <
            0 ||
        env_count("MICRO_SERVER_MAX_CONNS_PER_IP", 1000000, &c->server_transport.max_conns_per_ip,
                  why, whylen) < 0 ||
        env_count("MICRO_SERVER_MAX_CALLS", 1000000, &c->server_transport.max_calls, why, whylen) <
            0 ||
        env_count("MICRO_SERVER_MAX_CONCURRENT", 1000000, &c->max_concurrent, why, whylen) < 0 ||
        env_count("MICRO_SERVER_LOOPS", 64, &c->loops, why, whylen) < 0 ||
        env_count("MICRO_SELECTOR_EJECT_FAILURES", 1000000, &c->selector.eject_failures, why,
                  whylen) < 0 ||
        env_count("MICRO_SELECTOR_EJECT_ERROR_PCT", 100, &c->selector.eject_error_pct, why,
                  whylen) < 0 ||
        env_count("MICRO_SERVER_RATE_LIMIT", 100000000, &c->rate_limit, why, whylen) < 0 ||
        env_count("MICRO_SERVER_RATE_BURST", 100000000, &c->rate_burst, why, whylen) < 0 ||
        env_count("MICRO_SERVER_MAX_STREAMS", 65536, &c->max_streams, why, whylen) < 0) {
        return CM_EINVAL;
    }
    const char *retries = env("MICRO_CLIENT_RETRIES");
    if (c->client.max_attempts > 0) {
        note_override("MICRO_CLIENT_RETRIES", NULL);
    } else if (retries != NULL) {
        char *end;
        long n = strtol(retries, &end, 10);
        if (*end != '\0' || n < 0 || n > 100) {
            return fail(why, whylen, "MICRO_CLIENT_RETRIES=%s is not a count (0 to 100)", retries);
        }
        c->client.max_attempts = (int)n + 1;
    }
    const char *sel = env("MICRO_SELECTOR");
    if (c->strategy_set) {
        note_override("MICRO_SELECTOR", NULL);
    } else if (sel != NULL) {
        if (strcmp(sel, "roundrobin") == 0 || strcmp(sel, "round_robin") == 0) {
            c->selector.strategy = CM_STRATEGY_ROUND_ROBIN;
        } else if (strcmp(sel, "random") == 0) {
            c->selector.strategy = CM_STRATEGY_RANDOM;
        } else {
            return fail(why, whylen, "MICRO_SELECTOR=%s: use random or roundrobin", sel);
        }
    }
    if (c->log_config < 0) {
        c->log_config = env("CMICRO_QUIET") == NULL;
    }
    if (switch_from_env("MICRO_METRICS", &c->metrics, why, whylen) < 0) {
        return CM_EINVAL;
    }
    if (c->trace_export == NULL) {
        c->trace_export = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    }
    if (c->trace_export == NULL && env("OTEL_EXPORTER_OTLP_ENDPOINT") != NULL) {
        /* The base URL: the traces path is appended, as OpenTelemetry's SDKs do. */
        static _Thread_local char url[512];
        const char *base = env("OTEL_EXPORTER_OTLP_ENDPOINT");
        size_t n = strlen(base);
        snprintf(url, sizeof url, "%.*s/v1/traces", (int)(n && base[n - 1] == '/' ? n - 1 : n),
                 base);
        c->trace_export = url;
    }
    if (switch_from_env("MICRO_TRACE", &c->tracing, why, whylen) < 0) {
        return CM_EINVAL;
    }
    return tls_from_env(c, why, whylen);
}

static void
defaults(cm__svc_config *c)
{
    c->name = c->name ? c->name : "go.micro.server";
    c->version = c->version ? c->version : "latest";
    c->address = c->address ? c->address : ":0";
    c->ttl_ms = c->ttl_ms ? c->ttl_ms : 90000;
    c->interval_ms = c->interval_ms ? c->interval_ms : c->ttl_ms / 3;
    c->dereg_wait_ms = c->dereg_wait_ms ? c->dereg_wait_ms : 1000;
    c->transport = c->transport ? c->transport : CM_TRANSPORT_DEFAULT;
    /* The client's own defaults for what neither code nor env set. */
    cm_client_opts d;
    cm_client_opts_init(&d);
    cm_client_opts *o = &c->client;
    o->max_attempts = o->max_attempts > 0 ? o->max_attempts : d.max_attempts;
    o->request_timeout_ms = o->request_timeout_ms ? o->request_timeout_ms : d.request_timeout_ms;
    o->attempt_timeout_ms = o->attempt_timeout_ms ? o->attempt_timeout_ms : d.attempt_timeout_ms;
    cm_transport_opts *t = &o->transport_opts;
    t->pool_size = t->pool_size ? t->pool_size : d.transport_opts.pool_size;
    t->pool_ttl_ms = t->pool_ttl_ms ? t->pool_ttl_ms : d.transport_opts.pool_ttl_ms;
    t->dial_timeout_ms = t->dial_timeout_ms ? t->dial_timeout_ms : d.transport_opts.dial_timeout_ms;
    /* The server's limits: what is still 0 takes the transport's default (cm_transport_new). */
    cm_transport_opts st = c->server_transport;
    cm_transport_opts_init(&c->server_transport);
    c->server_transport.header_timeout_ms = st.header_timeout_ms;
    c->server_transport.body_timeout_ms = st.body_timeout_ms;
    c->server_transport.idle_timeout_ms = st.idle_timeout_ms;
    c->server_transport.max_conns = st.max_conns;
    c->server_transport.max_conns_per_ip = st.max_conns_per_ip;
    c->server_transport.max_calls = st.max_calls;
    c->server_transport.tls = st.tls;
    c->server_transport.tls_insecure = st.tls_insecure;
    c->server_transport.tls_cert_file = st.tls_cert_file;
    c->server_transport.tls_key_file = st.tls_key_file;
    c->server_transport.tls_ca_file = st.tls_ca_file;
    c->server_transport.tls_server_name = st.tls_server_name;
}

static int
validate(const cm__svc_config *c, char *why, size_t whylen)
{
    if (c->interval_ms == 0 || c->interval_ms > c->ttl_ms / 2) {
        return fail(why, whylen,
                    "register interval %" PRIu64 " ms must be above 0 and at most half the "
                    "register TTL (%" PRIu64 " ms), or the registration flaps",
                    c->interval_ms, c->ttl_ms);
    }
    if (c->name[0] == '\0') {
        return fail(why, whylen, "the service name is empty");
    }
    const cm_transport_opts *t = &c->server_transport;
    const char *files[][2] = {{t->tls_cert_file, "TLS certificate (MICRO_TRANSPORT_TLS_CERT)"},
                              {t->tls_key_file, "TLS key (MICRO_TRANSPORT_TLS_KEY)"},
                              {t->tls_ca_file, "TLS CA file (MICRO_TRANSPORT_TLS_CA)"}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (files[i][0] != NULL && access(files[i][0], R_OK) != 0) {
            return fail(why, whylen, "%s %s: %s", files[i][1], files[i][0], strerror(errno));
        }
    }
    if (cm_transport_find(c->transport) == NULL) {
        return fail(why, whylen,
                    "transport %s (MICRO_TRANSPORT or the transport option) is not "
                    "registered",
                    c->transport);
    }
    return 0;
}

int
cm__service_config(const cm_service_opts *o, cm__svc_config *c, char *why, size_t whylen)
{
    memset(c, 0, sizeof(*c));
    c->name = o->name;
    c->version = o->version;
    c->id = o->id;
    c->transport = o->transport;
    c->address = o->address;
    c->advertise = o->advertise;
    c->reg_name = o->registry;
    c->reg_addr = o->registry_address;
    c->ttl_ms = o->register_ttl_ms;
    c->interval_ms = o->register_interval_ms;
    c->dereg_wait_ms = o->deregister_wait_ms;
    c->log_config = o->log_config;
    /* Client options start unset (0) so that env and defaults can tell what code set. */
    cm_client_opts_init(&c->client);
    c->client.max_attempts = o->max_attempts;
    c->client.request_timeout_ms = o->request_timeout_ms;
    c->client.attempt_timeout_ms = o->attempt_timeout_ms;
    c->client.transport_opts.pool_size = o->pool_size;
    c->client.transport_opts.pool_ttl_ms = o->pool_ttl_ms;
    c->client.transport_opts.dial_timeout_ms = o->dial_timeout_ms;
    if (o->content_type != NULL) {
        c->client.content_type = o->content_type;
    }
    c->server_transport.header_timeout_ms = o->header_timeout_ms;
    c->server_transport.body_timeout_ms = o->body_timeout_ms;
    c->server_transport.idle_timeout_ms = o->idle_timeout_ms;
    c->server_transport.max_conns = o->max_conns;
    c->server_transport.max_conns_per_ip = o->max_conns_per_ip;
    c->max_concurrent = o->max_concurrent;
    c->loops = o->loops;
    c->rate_limit = o->rate_limit;
    c->rate_burst = o->rate_burst;
    c->max_streams = o->max_streams;
    c->metrics = o->metrics;
    c->tracing = o->tracing;
    c->trace_export = o->trace_export_url;
    c->server_transport.tls = o->tls;
    c->server_transport.tls_insecure = o->tls_insecure;
    c->server_transport.tls_cert_file = o->tls_cert_file;
    c->server_transport.tls_key_file = o->tls_key_file;
    c->server_transport.tls_ca_file = o->tls_ca_file;
    c->server_transport.tls_server_name = o->tls_server_name;
    cm_selector_opts_init(&c->selector);
    c->selector.eject_failures = 0; /* unset, so that the env applies; 0 is the default */
    c->selector.eject_backoff_ms = 0;
    c->strategy_set = o->strategy_set;
    if (o->strategy_set) {
        c->selector.strategy = o->strategy;
    }
    int rc = from_env(c, why, whylen);
    if (rc == 0) {
        defaults(c);
        rc = validate(c, why, whylen);
    }
    return rc;
}

int
cm__service_metadata(const cm_md *code, const char *env_val, cm_md *out, char *why, size_t whylen)
{
    for (size_t i = 0; i < cm_md_count(code); i++) {
        const char *k, *v;
        cm_md_at(code, i, &k, &v);
        if (cm_md_set(out, k, v) < 0) {
            return CM_ENOMEM;
        }
    }
    for (const char *p = env_val; p != NULL && *p;) {
        size_t n = strcspn(p, ",");
        char entry[512];
        if (n >= sizeof entry) {
            return fail(why, whylen, "MICRO_SERVER_METADATA: an entry is over %zu bytes",
                        sizeof entry - 1);
        }
        memcpy(entry, p, n);
        entry[n] = '\0';
        p += n + (p[n] == ',');
        char *eq = strchr(entry, '=');
        if (n == 0) {
            continue;
        }
        if (eq == NULL || eq == entry) {
            return fail(why, whylen, "MICRO_SERVER_METADATA: \"%s\" is not key=value", entry);
        }
        *eq = '\0';
        if (cm_md_get(code, entry) != NULL) {
            cm_log(CM_LOG_INFO, "service",
                   "MICRO_SERVER_METADATA key %s ignored: the key is set in code", entry);
            continue;
        }
        int rc = cm_md_set(out, entry, eq + 1);
        if (rc == CM_EINVAL) {
            return fail(why, whylen, "MICRO_SERVER_METADATA: bad key or value in \"%s\"", entry);
        }
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}
