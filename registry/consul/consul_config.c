/* The Consul backend's configuration, as the official clients take it: the agent address list
 * (opts.addresses, else MICRO_REGISTRY_ADDRESS, else CONSUL_HTTP_ADDR, else 127.0.0.1:8500;
 * http://, https:// and unix:// forms, port 8500 by default, a path as prefix), the ACL token
 * (opts.token, else CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN), TLS (CONSUL_HTTP_SSL,
 * CONSUL_HTTP_SSL_VERIFY, CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT/KEY), basic auth
 * (CONSUL_HTTP_AUTH), datacenter and consistency. Read once, when the registry is created. */
#include "consul_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_ADDRESS "127.0.0.1:8500"
#define DEFAULT_TIMEOUT_MS 10000
#define TOKEN_FILE_MAX 65536

/* ---- small helpers ---- */

int
cm__consul_buf_str(cm_buf *b, const char *s)
{
    return cm_buf_append(b, s, strlen(s));
}

int
cm__consul_escape(cm_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~' || *p == ':' ||
            *p == '@') {
            if (cm_buf_append(b, p, 1) < 0) {
                return CM_ENOMEM;
            }
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            if (cm_buf_append(b, e, 3) < 0) {
                return CM_ENOMEM;
            }
        }
    }
    return 0;
}

static char *
xstrdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* The value of an environment variable, NULL when unset or empty. */
static const char *
env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Go's strconv.ParseBool: 1 true, 0 false, -1 unparsable. */
static int
parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(s, yes[i]) == 0) {
            return 1;
        }
        if (strcmp(s, no[i]) == 0) {
            return 0;
        }
    }
    return -1;
}

/* An environment boolean; dflt when unset; a warning (as the Go client) when unparsable. */
static int
env_bool(const char *name, int dflt)
{
    const char *v = env(name);
    if (v == NULL) {
        return dflt;
    }
    int b = parse_bool(v);
    if (b < 0) {
        cm_log(CM_LOG_WARN, "registry.consul", "%s=%s is not a boolean; ignored", name, v);
        return dflt;
    }
    return b;
}

/* ---- configuration ---- */

/* Parses one address entry (trimmed, non-empty) into a. 0, CM_EINVAL or CM_ENOMEM. */
static int
parse_agent(const char *entry, int https, cm__consul_agent *a)
{
    cm_buf b = {0};
    const char *rest = entry;
    const char *scheme = https ? "https" : "http";
    if (strncmp(entry, "unix://", 7) == 0) {
        if (entry[7] == '\0') {
            return CM_EINVAL;
        }
        a->unix_path = strdup(entry + 7);
        a->base = strdup("http://localhost");
        return a->unix_path != NULL && a->base != NULL ? 0 : CM_ENOMEM;
    }
    if (strncmp(entry, "http://", 7) == 0) {
        scheme = "http";
        rest = entry + 7;
    } else if (strncmp(entry, "https://", 8) == 0) {
        scheme = "https";
        rest = entry + 8;
    } else if (strstr(entry, "://") != NULL) {
        return CM_EINVAL;
    }
    size_t hplen = strcspn(rest, "/");
    const char *prefix = rest + hplen;
    size_t plen = strlen(prefix);
    while (plen > 0 && prefix[plen - 1] == '/') {
        plen--;
    }
    if (hplen == 0) {
        return CM_EINVAL;
    }
    int rc = 0;
    rc |= cm__consul_buf_str(&b, scheme);
    rc |= cm__consul_buf_str(&b, "://");
    size_t colons = 0;
    for (size_t i = 0; i < hplen; i++) {
        colons += rest[i] == ':';
    }
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', hplen);
        if (close == NULL) {
            cm_buf_free(&b);
            return CM_EINVAL;
        }
        size_t after = hplen - (size_t)(close + 1 - rest);
        rc |= cm_buf_append(&b, rest, hplen);
        if (after == 0) {
            rc |= cm__consul_buf_str(&b, ":8500");
        } else if (close[1] != ':') {
            cm_buf_free(&b);
            return CM_EINVAL;
        } else if (after == 1) {
            rc |= cm__consul_buf_str(&b, "8500");
        }
    } else if (colons > 1) {
        /* A bare IPv6 literal without a port. */
        rc |= cm__consul_buf_str(&b, "[");
        rc |= cm_buf_append(&b, rest, hplen);
        rc |= cm__consul_buf_str(&b, "]:8500");
    } else {
        rc |= cm_buf_append(&b, rest, hplen);
        if (colons == 0) {
            rc |= cm__consul_buf_str(&b, ":8500");
        } else if (rest[hplen - 1] == ':') {
            rc |= cm__consul_buf_str(&b, "8500");
        }
    }
    rc |= cm_buf_append(&b, prefix, plen);
    rc |= cm_buf_append(&b, "", 1);
    if (rc != 0) {
        cm_buf_free(&b);
        return CM_ENOMEM;
    }
    a->base = (char *)b.data;
    return 0;
}

/* Fills c->agents from a comma separated list. */
static int
parse_agents(cm__consul *c, const char *list, int https)
{
    char *copy = strdup(list);
    if (copy == NULL) {
        return CM_ENOMEM;
    }
    size_t n = 1;
    for (const char *p = list; *p != '\0'; p++) {
        n += *p == ',';
    }
    c->agents = calloc(n, sizeof(cm__consul_agent));
    if (c->agents == NULL) {
        free(copy);
        return CM_ENOMEM;
    }
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok)) {
            tok++;
        }
        size_t len = strlen(tok);
        while (len > 0 && isspace((unsigned char)tok[len - 1])) {
            tok[--len] = '\0';
        }
        if (len == 0) {
            continue;
        }
        rc = parse_agent(tok, https, &c->agents[c->nagents]);
        if (rc < 0) {
            if (rc == CM_EINVAL) {
                cm_log(CM_LOG_DEBUG, "registry.consul", "bad agent address \"%s\"", tok);
            }
            break;
        }
        c->nagents++;
    }
    free(copy);
    if (rc == 0 && c->nagents == 0) {
        cm_log(CM_LOG_DEBUG, "registry.consul", "no agent address in \"%s\"", list);
        rc = CM_EINVAL;
    }
    return rc;
}

/* Reads the token file (once, at start), whitespace trimmed. */
static int
read_token_file(const char *path, char **out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        cm_log(CM_LOG_DEBUG, "registry.consul", "CONSUL_HTTP_TOKEN_FILE %s: %s", path,
               strerror(errno));
        return CM_EINVAL;
    }
    char *buf = malloc(TOKEN_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return CM_ENOMEM;
    }
    size_t n = fread(buf, 1, TOKEN_FILE_MAX, f);
    fclose(f);
    buf[n] = '\0';
    char *s = buf;
    while (isspace((unsigned char)*s)) {
        s++;
    }
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1])) {
        s[--len] = '\0';
    }
    *out = strdup(s);
    free(buf);
    return *out != NULL ? 0 : CM_ENOMEM;
}

/* Headers shared by every request; a header value may not carry CR or LF. */
static int
build_headers(cm__consul *c, const char *token)
{
    if (token != NULL && token[0] != '\0') {
        if (strpbrk(token, "\r\n") != NULL) {
            cm_log(CM_LOG_DEBUG, "registry.consul", "the ACL token holds a line break");
            return CM_EINVAL;
        }
        size_t n = strlen(token) + sizeof("X-Consul-Token: ");
        char *h = malloc(n);
        if (h == NULL) {
            return CM_ENOMEM;
        }
        snprintf(h, n, "X-Consul-Token: %s", token);
        struct curl_slist *g = curl_slist_append(NULL, h);
        struct curl_slist *p = curl_slist_append(NULL, h);
        free(h);
        c->hdr_get = g;
        c->hdr_put = p;
        if (g == NULL || p == NULL) {
            return CM_ENOMEM;
        }
    }
    struct curl_slist *p = curl_slist_append(c->hdr_put, "Content-Type: application/json");
    if (p == NULL) {
        return CM_ENOMEM;
    }
    c->hdr_put = p;
    p = curl_slist_append(c->hdr_put, "Expect:");
    if (p == NULL) {
        return CM_ENOMEM;
    }
    c->hdr_put = p;
    return 0;
}

/* "?stale&dc=x" and the like; reads always carry at least the consistency mode. */
static int
build_read_query(cm__consul *c, int consistent, const char *datacenter)
{
    cm_buf b = {0};
    int rc = cm__consul_buf_str(&b, consistent ? "?consistent" : "?stale");
    if (datacenter != NULL && datacenter[0] != '\0') {
        rc |= cm__consul_buf_str(&b, "&dc=");
        rc |= cm__consul_escape(&b, datacenter);
    }
    rc |= cm_buf_append(&b, "", 1);
    if (rc != 0) {
        cm_buf_free(&b);
        return CM_ENOMEM;
    }
    c->read_query = (char *)b.data;
    return 0;
}

/* Loopback never goes through a proxy; the user's NO_PROXY entries are kept. */
static int
build_noproxy(cm__consul *c)
{
    const char *user = env("NO_PROXY");
    if (user == NULL) {
        user = env("no_proxy");
    }
    cm_buf b = {0};
    int rc = cm__consul_buf_str(&b, "127.0.0.1,localhost,::1");
    if (user != NULL) {
        rc |= cm__consul_buf_str(&b, ",");
        rc |= cm__consul_buf_str(&b, user);
    }
    rc |= cm_buf_append(&b, "", 1);
    if (rc != 0) {
        cm_buf_free(&b);
        return CM_ENOMEM;
    }
    c->noproxy = (char *)b.data;
    return 0;
}

void
cm__consul_config_free(cm__consul *c)
{
    for (size_t i = 0; i < c->nagents; i++) {
        free(c->agents[i].base);
        free(c->agents[i].unix_path);
    }
    free(c->agents);
    c->agents = NULL;
    c->nagents = 0;
    curl_slist_free_all(c->hdr_get);
    curl_slist_free_all(c->hdr_put);
    c->hdr_get = c->hdr_put = NULL;
    free(c->noproxy);
    free(c->cacert);
    free(c->capath);
    free(c->cert);
    free(c->key);
    free(c->userpwd);
    free(c->read_query);
    c->noproxy = c->cacert = c->capath = c->cert = c->key = c->userpwd = c->read_query = NULL;
}

/* "true"/"false" (also 1/0, yes/no) into *out; absent keeps *out. 0 or CM_EINVAL. */
static int
opt_bool(const cm_registry *r, const char *key, int *out)
{
    const char *v = cm_registry_option(r, key);
    if (v == NULL) {
        return 0;
    }
    if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0) {
        *out = 1;
    } else if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0) {
        *out = 0;
    } else {
        cm_log(CM_LOG_DEBUG, "registry.consul", "option %s: \"%s\" is not a boolean", key, v);
        return CM_EINVAL;
    }
    return 0;
}

/* A number of milliseconds; absent keeps *out. 0 or CM_EINVAL. */
static int
opt_ms(const cm_registry *r, const char *key, uint64_t *out)
{
    const char *v = cm_registry_option(r, key);
    if (v == NULL) {
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 || n > UINT32_MAX) {
        cm_log(CM_LOG_DEBUG, "registry.consul", "option %s: \"%s\" is not milliseconds", key, v);
        return CM_EINVAL;
    }
    *out = n;
    return 0;
}

int
cm__consul_config_parse(cm__consul *c, const cm_registry *r)
{
    int consistent = 0;
    if (opt_bool(r, "consistent", &consistent) < 0 ||
        opt_ms(r, "tcp_check_interval_ms", &c->tcp_check_ms) < 0) {
        return CM_EINVAL;
    }
    int https = env_bool("CONSUL_HTTP_SSL", 0);
    const char *list = cm_registry_addresses(r);
    if (list == NULL || list[0] == '\0') {
        list = env("MICRO_REGISTRY_ADDRESS");
    }
    if (list == NULL) {
        list = env("CONSUL_HTTP_ADDR");
    }
    if (list == NULL) {
        list = DEFAULT_ADDRESS;
    }
    int rc = parse_agents(c, list, https);
    if (rc < 0) {
        return rc;
    }

    char *token = NULL;
    const char *opt_token = cm_registry_option(r, "token");
    if (opt_token != NULL && opt_token[0] != '\0') {
        token = strdup(opt_token);
    } else if (env("CONSUL_HTTP_TOKEN_FILE") != NULL) {
        rc = read_token_file(env("CONSUL_HTTP_TOKEN_FILE"), &token);
        if (rc < 0) {
            return rc;
        }
    } else if (env("CONSUL_HTTP_TOKEN") != NULL) {
        token = strdup(env("CONSUL_HTTP_TOKEN"));
    }
    rc = build_headers(c, token);
    free(token);
    if (rc < 0) {
        return rc;
    }

    c->insecure = !env_bool("CONSUL_HTTP_SSL_VERIFY", 1);
    const char *cert = env("CONSUL_CLIENT_CERT"), *key = env("CONSUL_CLIENT_KEY");
    if ((cert == NULL) != (key == NULL)) {
        cm_log(CM_LOG_DEBUG, "registry.consul",
               "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY go together");
        return CM_EINVAL;
    }
    c->cacert = xstrdup(env("CONSUL_CACERT"));
    c->capath = xstrdup(env("CONSUL_CAPATH"));
    c->cert = xstrdup(cert);
    c->key = xstrdup(key);
    c->userpwd = xstrdup(env("CONSUL_HTTP_AUTH"));
    if ((env("CONSUL_CACERT") && !c->cacert) || (env("CONSUL_CAPATH") && !c->capath) ||
        (cert && !c->cert) || (key && !c->key) || (env("CONSUL_HTTP_AUTH") && !c->userpwd)) {
        return CM_ENOMEM;
    }
    uint64_t timeout_ms = cm_registry_timeout_ms(r);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
    rc = build_read_query(c, consistent, cm_registry_option(r, "datacenter"));
    if (rc == 0) {
        rc = build_noproxy(c);
    }
    return rc;
}
