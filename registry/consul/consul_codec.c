/* The Consul backend's encodings of go-micro's registry data (spec gomicro-wire.md 2.2, 2.3,
 * 2.5): Go duration text, host:port, Consul's Meta rules, the register body with its
 * hex(zlib) t-/e-/v- tags, go-micro's tag decoders with their quirks, and health replies turned
 * into services. Pure functions: no I/O. */
#include "consul_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- go-micro's encodings ---- */

void
cm__consul_go_duration(uint64_t ms, char *buf, size_t len)
{
    if (ms == 0) {
        snprintf(buf, len, "0s");
        return;
    }
    if (ms < 1000) {
        snprintf(buf, len, "%llums", (unsigned long long)ms);
        return;
    }
    unsigned long long h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60;
    unsigned long long frac = ms % 1000;
    char sec[32];
    if (frac == 0) {
        snprintf(sec, sizeof(sec), "%llu", s);
    } else {
        snprintf(sec, sizeof(sec), "%llu.%03llu", s, frac);
        size_t n = strlen(sec);
        while (sec[n - 1] == '0') {
            sec[--n] = '\0';
        }
    }
    if (h > 0) {
        snprintf(buf, len, "%lluh%llum%ss", h, m, sec);
    } else if (m > 0) {
        snprintf(buf, len, "%llum%ss", m, sec);
    } else {
        snprintf(buf, len, "%ss", sec);
    }
}

uint64_t
cm__consul_dereg_ms(uint64_t t_ms)
{
    return t_ms < 60000 ? 65000 : t_ms + 5000;
}

static int
parse_port(const char *s, int *port)
{
    long v = 0;
    if (*s == '\0') {
        *port = 0;
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || (v = v * 10 + (*s - '0')) > 65535) {
            return CM_EADDR;
        }
    }
    *port = (int)v;
    return 0;
}

int
cm__consul_split_hostport(const char *addr, char *host, size_t len, int *port)
{
    const char *h = addr, *p = "";
    size_t hlen = strlen(addr);
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
            return CM_EADDR;
        }
        h = addr + 1;
        hlen = (size_t)(close - h);
        p = close[1] == ':' ? close + 2 : "";
    } else {
        const char *colon = strchr(addr, ':');
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            hlen = (size_t)(colon - addr);
            p = colon + 1;
        }
        /* More than one colon without brackets: a bare IPv6 address, no port. */
    }
    if (hlen >= len) {
        return CM_EADDR;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    return parse_port(p, port);
}

int
cm__consul_meta_ok(const char *key, const char *val)
{
    size_t n = strlen(key);
    if (n == 0 || n > 128 || strncmp(key, "consul-", 7) == 0) {
        return 0;
    }
    for (const char *p = key; *p != '\0'; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-')) {
            return 0;
        }
    }
    return strlen(val) <= 512;
}

/* Appends "<prefix>-<hex(zlib(data))>" to the tag array. */
static int
add_tag(cJSON *tags, char prefix, const void *data, size_t len)
{
    cm_buf b = {0};
    char head[2] = {prefix, '-'};
    int rc = cm_buf_append(&b, head, 2);
    if (rc == 0) {
        rc = cm__hexzlib_encode(data, len, &b);
    }
    if (rc == 0) {
        rc = cm_buf_append(&b, "", 1);
    }
    cJSON *s = rc == 0 ? cJSON_CreateString((const char *)b.data) : NULL;
    cm_buf_free(&b);
    if (s == NULL || !cJSON_AddItemToArray(tags, s)) {
        cJSON_Delete(s);
        return CM_ENOMEM;
    }
    return 0;
}

/* Adds a JSON value's compact text as a tag; takes j. */
static int
add_json_tag(cJSON *tags, char prefix, cJSON *j)
{
    char *txt = j != NULL ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (txt == NULL) {
        return CM_ENOMEM;
    }
    int rc = add_tag(tags, prefix, txt, strlen(txt));
    free(txt);
    return rc;
}

static cJSON *
build_tags(const cm_reg_service *svc, const cm_node *node)
{
    cJSON *tags = cJSON_CreateArray();
    int rc = tags != NULL ? 0 : CM_ENOMEM;
    size_t n = cm_md_count(node->metadata);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *k, *v;
        cm_md_at(node->metadata, i, &k, &v);
        cJSON *pair = cJSON_CreateObject();
        if (pair != NULL && cJSON_AddStringToObject(pair, k, v) == NULL) {
            cJSON_Delete(pair);
            pair = NULL;
        }
        rc = add_json_tag(tags, 't', pair);
    }
    for (size_t i = 0; rc == 0 && i < svc->nendpoints; i++) {
        rc = add_json_tag(tags, 'e', cm__endpoint_to_json(&svc->endpoints[i]));
    }
    if (rc == 0) {
        const char *v = svc->version != NULL ? svc->version : "";
        rc = add_tag(tags, 'v', v, strlen(v));
    }
    if (rc < 0) {
        cJSON_Delete(tags);
        return NULL;
    }
    return tags;
}

/* Node metadata Consul accepts as Meta (at most 64 pairs); NULL when none (left out). */
static int
build_meta(const cm_node *node, cJSON **out)
{
    *out = NULL;
    size_t n = cm_md_count(node->metadata), kept = 0;
    for (size_t i = 0; i < n && kept < 64; i++) {
        const char *k, *v;
        cm_md_at(node->metadata, i, &k, &v);
        if (!cm__consul_meta_ok(k, v)) {
            continue;
        }
        if (*out == NULL && (*out = cJSON_CreateObject()) == NULL) {
            return CM_ENOMEM;
        }
        if (cJSON_AddStringToObject(*out, k, v) == NULL) {
            return CM_ENOMEM;
        }
        kept++;
    }
    return 0;
}

/* The Check object (key order as the Go client's struct), or JSON null. */
static cJSON *
build_check(const cm_node *node, uint64_t ttl_ms, uint64_t tcp_ms)
{
    char d1[32], d2[32];
    if (tcp_ms == 0 && ttl_ms == 0) {
        return cJSON_CreateNull();
    }
    cJSON *chk = cJSON_CreateObject();
    if (chk == NULL) {
        return NULL;
    }
    int ok;
    if (tcp_ms > 0) {
        cm__consul_go_duration(tcp_ms, d1, sizeof(d1));
        cm__consul_go_duration(cm__consul_dereg_ms(tcp_ms), d2, sizeof(d2));
        ok = cJSON_AddStringToObject(chk, "Interval", d1) != NULL &&
             cJSON_AddStringToObject(chk, "TCP", node->address) != NULL;
    } else {
        cm__consul_go_duration(ttl_ms, d1, sizeof(d1));
        cm__consul_go_duration(cm__consul_dereg_ms(ttl_ms), d2, sizeof(d2));
        ok = cJSON_AddStringToObject(chk, "TTL", d1) != NULL;
    }
    if (!ok || cJSON_AddStringToObject(chk, "DeregisterCriticalServiceAfter", d2) == NULL) {
        cJSON_Delete(chk);
        return NULL;
    }
    return chk;
}

int
cm__consul_register_body(const cm_reg_service *svc, uint64_t ttl_ms, uint64_t tcp_ms, char **out)
{
    if (svc->nnodes == 0 || svc->nodes[0].id == NULL || svc->nodes[0].id[0] == '\0') {
        return CM_EINVAL;
    }
    const cm_node *node = &svc->nodes[0];
    const char *address = node->address != NULL ? node->address : "";
    size_t hlen = strlen(address) + 1;
    char *host = malloc(hlen);
    int port = 0;
    if (host == NULL) {
        return CM_ENOMEM;
    }
    int rc = cm__consul_split_hostport(address, host, hlen, &port);
    if (rc < 0) {
        free(host);
        return rc;
    }
    cJSON *body = cJSON_CreateObject();
    cJSON *meta = NULL;
    rc = body != NULL ? 0 : CM_ENOMEM;
    if (rc == 0 && (!cJSON_AddStringToObject(body, "ID", node->id) ||
                    !cJSON_AddStringToObject(body, "Name", svc->name))) {
        rc = CM_ENOMEM;
    }
    if (rc == 0) {
        cJSON *tags = build_tags(svc, node);
        rc = tags != NULL && cJSON_AddItemToObject(body, "Tags", tags) ? 0 : CM_ENOMEM;
        if (rc < 0) {
            cJSON_Delete(tags);
        }
    }
    /* The Go client's omitempty: no Port 0, no empty Address, no empty Meta. */
    if (rc == 0 && port != 0 && !cJSON_AddNumberToObject(body, "Port", port)) {
        rc = CM_ENOMEM;
    }
    if (rc == 0 && host[0] != '\0' && !cJSON_AddStringToObject(body, "Address", host)) {
        rc = CM_ENOMEM;
    }
    if (rc == 0) {
        rc = build_meta(node, &meta);
    }
    if (rc == 0 && meta != NULL) {
        rc = cJSON_AddItemToObject(body, "Meta", meta) ? 0 : CM_ENOMEM;
        if (rc == 0) {
            meta = NULL;
        }
    }
    if (rc == 0) {
        cJSON *chk = build_check(node, ttl_ms, tcp_ms);
        rc = chk != NULL && cJSON_AddItemToObject(body, "Check", chk) ? 0 : CM_ENOMEM;
        if (rc < 0) {
            cJSON_Delete(chk);
        }
    }
    if (rc == 0 && !cJSON_AddNullToObject(body, "Checks")) {
        rc = CM_ENOMEM;
    }
    char *txt = rc == 0 ? cJSON_PrintUnformatted(body) : NULL;
    if (rc == 0 && txt == NULL) {
        rc = CM_ENOMEM;
    }
    cJSON_Delete(meta);
    cJSON_Delete(body);
    free(host);
    *out = txt;
    return rc;
}

/* ---- go-micro's tag decoders (spec 2.3) ---- */

/* The JSON a t/e tag carries (legacy "x=" plain, or "x-" hex(zlib)); NULL when none. */
static cJSON *
tag_json(const char *tag)
{
    if (tag[1] == '=') {
        return cJSON_Parse(tag + 2);
    }
    if (tag[1] != '-') {
        return NULL;
    }
    cm_buf b = {0};
    cJSON *j = NULL;
    if (cm__hexzlib_decode(tag + 2, strlen(tag + 2), 0, &b) == 0) {
        j = cJSON_ParseWithLength((const char *)b.data, b.len);
    }
    cm_buf_free(&b);
    return j;
}

char *
cm__consul_decode_version(const cJSON *tags)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, tags)
    {
        const char *s = cJSON_GetStringValue(t);
        if (s == NULL || strlen(s) < 2 || s[0] != 'v') {
            continue;
        }
        if (s[1] == '=') {
            return strdup(s + 2);
        }
        if (s[1] == '-') {
            cm_buf b = {0};
            char *v = NULL;
            if (cm__hexzlib_decode(s + 2, strlen(s + 2), 0, &b) == 0 &&
                cm_buf_append(&b, "", 1) == 0) {
                v = strdup((const char *)b.data);
            } else {
                v = strdup("");
            }
            cm_buf_free(&b);
            return v;
        }
    }
    return strdup("");
}

/* Walks the tags starting with letter as go-micro does: the second character of the first
 * such tag fixes the format, later tags with another one are skipped. A tag of one character
 * (which panics in Go) is skipped. fn gets each decoded JSON value (borrowed). */
static int
walk_tags(const cJSON *tags, char letter, int (*fn)(const cJSON *j, void *arg), void *arg)
{
    char ver = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tags)
    {
        const char *s = cJSON_GetStringValue(t);
        if (s == NULL || s[0] != letter || s[1] == '\0') {
            continue;
        }
        if (ver != 0 && s[1] != ver) {
            continue;
        }
        cJSON *j = tag_json(s);
        int rc = j != NULL ? fn(j, arg) : 0;
        cJSON_Delete(j);
        if (rc < 0) {
            return rc;
        }
        ver = s[1];
    }
    return 0;
}

/* A JSON object of strings only, as Go's map[string]string accepts; null gives nothing. */
static int
merge_md(const cJSON *j, void *arg)
{
    cm_md *md = arg;
    if (cJSON_IsNull(j)) {
        return 0;
    }
    if (!cJSON_IsObject(j)) {
        return 0;
    }
    const cJSON *kv;
    cJSON_ArrayForEach(kv, j)
    {
        if (!cJSON_IsString(kv)) {
            return 0;
        }
    }
    cJSON_ArrayForEach(kv, j)
    {
        if (cm_md_set(md, kv->string, kv->valuestring) == CM_ENOMEM) {
            return CM_ENOMEM;
        }
    }
    return 0;
}

int
cm__consul_decode_metadata(const cJSON *tags, cm_md **out)
{
    cm_md *md = cm_md_new();
    if (md == NULL) {
        return CM_ENOMEM;
    }
    int rc = walk_tags(tags, 't', merge_md, md);
    if (rc < 0) {
        cm_md_free(md);
        return rc;
    }
    *out = md;
    return 0;
}

static int
add_endpoint(const cJSON *j, void *arg)
{
    cm_reg_service *s = arg;
    cm_endpoint e;
    if (!cJSON_IsObject(j) || cm__endpoint_from_json(j, &e) < 0) {
        return 0;
    }
    cm_endpoint *added = cm_reg_service_add_endpoint(s, e.name, e.request, e.response, e.metadata);
    cm__endpoint_fini(&e);
    return added != NULL ? 0 : CM_ENOMEM;
}

int
cm__consul_decode_endpoints(const cJSON *tags, cm_reg_service *s)
{
    return walk_tags(tags, 'e', add_endpoint, s);
}

/* ---- health entries → services ---- */

static const char *
str_at(const cJSON *obj, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
    return s != NULL ? s : "";
}

static int
any_critical(const cJSON *entry)
{
    const cJSON *chk;
    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(entry, "Checks");
    cJSON_ArrayForEach(chk, checks)
    {
        if (strcmp(str_at(chk, "Status"), "critical") == 0) {
            return 1;
        }
    }
    return 0;
}

int
cm__consul_list_push(cm_reg_service_list *l, cm_reg_service *s)
{
    cm_reg_service **items = cm__grow_array(l->items, l->n, sizeof(*items));
    if (items == NULL) {
        return CM_ENOMEM;
    }
    l->items = items;
    l->items[l->n++] = s;
    return 0;
}

/* The service of that version in l, created (with the entry's endpoints) when missing. */
static int
service_for(cm_reg_service_list *l, const char *name, const char *version, const cJSON *tags,
            cm_reg_service **out)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i]->version, version) == 0) {
            *out = l->items[i];
            return 0;
        }
    }
    cm_reg_service *s = cm_reg_service_new(name, version);
    if (s == NULL || cm__consul_decode_endpoints(tags, s) < 0 || cm__consul_list_push(l, s) < 0) {
        cm_reg_service_free(s);
        return CM_ENOMEM;
    }
    *out = s;
    return 0;
}

static int
add_entry(cm_reg_service_list *l, const char *name, const cJSON *entry)
{
    const cJSON *svc = cJSON_GetObjectItemCaseSensitive(entry, "Service");
    if (!cJSON_IsObject(svc) || strcmp(str_at(svc, "Service"), name) != 0) {
        return 0;
    }
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(svc, "Tags");
    char *version = cm__consul_decode_version(tags);
    cm_reg_service *s = NULL;
    int rc = version != NULL ? service_for(l, name, version, tags, &s) : CM_ENOMEM;
    free(version);
    if (rc < 0 || any_critical(entry)) {
        return rc;
    }
    const char *addr = str_at(svc, "Address");
    if (addr[0] == '\0') {
        addr = str_at(cJSON_GetObjectItemCaseSensitive(entry, "Node"), "Address");
    }
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(svc, "Port");
    /* Out of range (1e999 is inf to cJSON) or NaN: 0, as when it is missing (found by
     * test/fuzz consul-json: the cast was undefined). */
    double pd = cJSON_IsNumber(pj) ? pj->valuedouble : 0;
    long port = pd >= 0 && pd <= 65535 ? (long)pd : 0;
    size_t n = strlen(addr) + 32;
    char *hp = malloc(n);
    cm_md *md = NULL;
    if (hp == NULL || cm__consul_decode_metadata(tags, &md) < 0) {
        free(hp);
        return CM_ENOMEM;
    }
    if (strchr(addr, ':') != NULL && addr[0] != '[') {
        snprintf(hp, n, "[%s]:%ld", addr, port);
    } else {
        snprintf(hp, n, "%s:%ld", addr, port);
    }
    rc = cm_reg_service_add_node(s, str_at(svc, "ID"), hp, md) != NULL ? 0 : CM_ENOMEM;
    free(hp);
    cm_md_free(md);
    return rc;
}

int
cm__consul_parse_health(const char *name, const char *json, size_t len, cm_reg_service_list **out)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (root == NULL || !(cJSON_IsArray(root) || cJSON_IsNull(root))) {
        cJSON_Delete(root);
        return CM_EPROTO;
    }
    cm_reg_service_list *l = calloc(1, sizeof(*l));
    int rc = l != NULL ? 0 : CM_ENOMEM;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, root)
    {
        if (rc == 0 && cJSON_IsObject(entry)) {
            rc = add_entry(l, name, entry);
        }
    }
    cJSON_Delete(root);
    if (rc < 0) {
        cm_reg_service_list_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

int
cm__consul_parse_catalog(const char *json, size_t len, cm_reg_service_list **out)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return CM_EPROTO;
    }
    cm_reg_service_list *l = calloc(1, sizeof(*l));
    int rc = l != NULL ? 0 : CM_ENOMEM;
    const cJSON *kv;
    const cJSON *names = rc == 0 ? root : NULL;
    cJSON_ArrayForEach(kv, names)
    {
        cm_reg_service *s = cm_reg_service_new(kv->string, "");
        if (s == NULL || cm__consul_list_push(l, s) < 0) {
            cm_reg_service_free(s);
            rc = CM_ENOMEM;
            break;
        }
    }
    cJSON_Delete(root);
    if (rc < 0) {
        cm_reg_service_list_free(l);
        return rc;
    }
    *out = l;
    return 0;
}
