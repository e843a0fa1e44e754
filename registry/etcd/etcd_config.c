/* The etcd backend's configuration, read once when the registry is created:
 *   endpoints  opts.addresses, else MICRO_REGISTRY_ADDRESS, else 127.0.0.1:2379; comma
 *              separated; "host:port", "host" (port 2379), "http://..." or "https://...";
 *              a bare host:port is https when a CA or client certificate is set
 *   auth       options "username"/"password", else ETCD_USERNAME/ETCD_PASSWORD (as go-micro's
 *              plugin reads them)
 *   TLS        options "ca_file", "cert_file", "key_file" (else ETCD_CACERT, ETCD_CERT,
 *              ETCD_KEY); the server certificate is verified unless "insecure_skip_verify" is
 *              "true" (a warning says so)
 *   timeout    opts.timeout_ms, else 5 s (go-micro's plugin's), for every request */
#include "etcd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ENDPOINT "127.0.0.1:2379"
#define DEFAULT_TIMEOUT_MS 5000
#define MAX_ENDPOINTS 64

static const char *
setting(const cm_registry *r, const char *key, const char *env_name)
{
    const char *v = cm_registry_option(r, key);
    if (v == NULL && env_name != NULL) {
        v = getenv(env_name);
    }
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static char *
xstrdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* One endpoint entry (trimmed, non-empty) as a base URL. 0, CM_EINVAL or CM_ENOMEM. */
static int
parse_endpoint(const char *entry, size_t len, int tls, char **out)
{
    const char *scheme = tls ? "https://" : "http://";
    if (len > 7 && strncmp(entry, "http://", 7) == 0) {
        scheme = "http://";
        entry += 7;
        len -= 7;
    } else if (len > 8 && strncmp(entry, "https://", 8) == 0) {
        scheme = "https://";
        entry += 8;
        len -= 8;
    } else if (memmem(entry, len, "://", 3) != NULL) {
        return CM_EINVAL;
    }
    while (len > 0 && entry[len - 1] == '/') {
        len--;
    }
    if (len == 0 || memchr(entry, '/', len) != NULL) {
        return CM_EINVAL;
    }
    /* A port is there when the last ':' follows a ']' or the host is not a bare IPv6. */
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++) {
        colon = entry[i] == ':' ? entry + i : colon;
    }
    const char *rb = memchr(entry, ']', len);
    int has_port = colon != NULL && (rb == NULL ? memchr(entry, ':', len) == colon : colon > rb);
    size_t n = strlen(scheme) + len + 8;
    char *url = malloc(n);
    if (url == NULL) {
        return CM_ENOMEM;
    }
    snprintf(url, n, "%s%.*s%s", scheme, (int)len, entry, has_port ? "" : ":2379");
    *out = url;
    return 0;
}

static int
parse_endpoints(cm__etcd *c, const char *list, int tls)
{
    c->endpoints = calloc(MAX_ENDPOINTS, sizeof(char *));
    if (c->endpoints == NULL) {
        return CM_ENOMEM;
    }
    const char *p = list;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        const char *s = p;
        size_t len = n;
        while (len > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
            len--;
        }
        if (len > 0) {
            if (c->nendpoints == MAX_ENDPOINTS) {
                return CM_EINVAL;
            }
            int rc = parse_endpoint(s, len, tls, &c->endpoints[c->nendpoints]);
            if (rc < 0) {
                cm_log(CM_LOG_ERROR, "registry.etcd", "bad endpoint \"%.*s\"", (int)len, s);
                return rc;
            }
            c->nendpoints++;
        }
        p += n + (p[n] == ',');
    }
    if (c->nendpoints == 0) {
        cm_log(CM_LOG_ERROR, "registry.etcd", "no endpoint in \"%s\"", list);
        return CM_EINVAL;
    }
    return 0;
}

int
cm__etcd_config_parse(cm__etcd *c, const cm_registry *r)
{
    const char *user = setting(r, "username", "ETCD_USERNAME");
    const char *pass = setting(r, "password", "ETCD_PASSWORD");
    if ((user == NULL) != (pass == NULL)) {
        cm_log(CM_LOG_ERROR, "registry.etcd", "a username needs a password and the reverse");
        return CM_EINVAL;
    }
    c->username = xstrdup(user);
    c->password = xstrdup(pass);
    c->cacert = xstrdup(setting(r, "ca_file", "ETCD_CACERT"));
    c->cert = xstrdup(setting(r, "cert_file", "ETCD_CERT"));
    c->key = xstrdup(setting(r, "key_file", "ETCD_KEY"));
    const char *insecure = setting(r, "insecure_skip_verify", NULL);
    if (insecure != NULL && strcmp(insecure, "true") != 0 && strcmp(insecure, "false") != 0) {
        cm_log(CM_LOG_ERROR, "registry.etcd", "insecure_skip_verify must be true or false");
        return CM_EINVAL;
    }
    c->insecure = insecure != NULL && strcmp(insecure, "true") == 0;
    if (c->insecure) {
        cm_log(CM_LOG_WARN, "registry.etcd", "TLS certificates of etcd are not verified");
    }
    if ((c->cert == NULL) != (c->key == NULL)) {
        cm_log(CM_LOG_ERROR, "registry.etcd", "a client certificate needs its key");
        return CM_EINVAL;
    }
    if ((user != NULL && c->username == NULL) || (pass != NULL && c->password == NULL)) {
        return CM_ENOMEM;
    }
    const char *list = cm_registry_addresses(r);
    if (list == NULL || list[0] == '\0') {
        list = getenv("MICRO_REGISTRY_ADDRESS");
    }
    int rc = parse_endpoints(c, list != NULL ? list : DEFAULT_ENDPOINT,
                             c->cacert != NULL || c->cert != NULL);
    if (rc < 0) {
        return rc;
    }
    uint64_t t = cm_registry_timeout_ms(r);
    c->timeout_ms = t > 0 ? t : DEFAULT_TIMEOUT_MS;
    return 0;
}

static void
free_secret(char *s)
{
    if (s != NULL) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

void
cm__etcd_config_free(cm__etcd *c)
{
    for (size_t i = 0; i < c->nendpoints; i++) {
        free(c->endpoints[i]);
    }
    free(c->endpoints);
    free(c->username);
    free_secret(c->password);
    free_secret(c->token);
    free(c->cacert);
    free(c->cert);
    free(c->key);
    c->endpoints = NULL;
    c->nendpoints = 0;
    c->username = c->password = c->token = c->cacert = c->cert = c->key = NULL;
}
