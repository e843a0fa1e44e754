/* go-micro's etcd plugin (github.com/go-micro/plugins/v4/registry/etcd v1.2.0) over etcd v3's
 * JSON gateway: keys /micro/registry/<service>/<node> (path.Join of the names with '/' turned
 * into '-'), each value json.Marshal of a registry.Service holding that one node; the gateway
 * carries keys and values in base64 and 64-bit integers as strings. */
#include "etcd_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- base64 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int
cm__etcd_b64_encode(cm_buf *b, const void *data, size_t n)
{
    const unsigned char *p = data;
    if (cm_buf_reserve(b, (n + 2) / 3 * 4) < 0) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        v |= i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0;
        v |= i + 2 < n ? p[i + 2] : 0;
        char out[4] = {b64[v >> 18], b64[(v >> 12) & 63], i + 1 < n ? b64[(v >> 6) & 63] : '=',
                       i + 2 < n ? b64[v & 63] : '='};
        cm_buf_append(b, out, 4);
    }
    return 0;
}

static int
b64_val(char ch)
{
    const char *p = ch != '\0' ? strchr(b64, ch) : NULL;
    return p != NULL ? (int)(p - b64) : -1;
}

char *
cm__etcd_b64_decode(const char *s, size_t *n)
{
    size_t len = strlen(s);
    if (len % 4 != 0) {
        return NULL;
    }
    char *out = malloc(len / 4 * 3 + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if ((v[k] = b64_val(s[i + k])) < 0 || pad > 0) {
                free(out);
                return NULL;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (char)(w >> 16);
        if (pad < 2) {
            out[o++] = (char)(w >> 8 & 255);
        }
        if (pad < 1) {
            out[o++] = (char)(w & 255);
        }
    }
    out[o] = '\0';
    *n = o;
    return out;
}

/* ---- keys ---- */

/* Appends name with '/' turned into '-' as a path element, as Go's path.Join then cleans it:
 * an empty element or "." adds nothing, ".." removes the last element. */
static int
push_element(cm_buf *b, const char *name, size_t root_len)
{
    if (name[0] == '\0' || strcmp(name, ".") == 0) {
        return 0;
    }
    if (strcmp(name, "..") == 0) {
        while (b->len > root_len && b->data[b->len - 1] != '/') {
            b->len--;
        }
        if (b->len > root_len) {
            b->len--;
        }
        return 0;
    }
    size_t at = b->len;
    if (cm_buf_append(b, "/", 1) < 0 || cm_buf_append(b, name, strlen(name)) < 0) {
        return CM_ENOMEM;
    }
    for (size_t i = at + 1; i < b->len; i++) {
        b->data[i] = b->data[i] == '/' ? '-' : b->data[i];
    }
    return 0;
}

static char *
join(const char *svc, const char *node)
{
    cm_buf b = {0};
    /* "/micro/registry" is the root below which names go; ".." can climb above it in Go, but
     * the plugin's names never do (a '/' in them is a '-'). */
    static const char root[] = "/micro/registry";
    int rc = cm_buf_append(&b, root, sizeof(root) - 1);
    rc |= push_element(&b, svc, 0);
    if (node != NULL) {
        rc |= push_element(&b, node, 0);
    }
    rc |= cm_buf_append(&b, "", 1);
    if (rc != 0) {
        cm_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

char *
cm__etcd_service_path(const char *svc)
{
    return join(svc, NULL);
}

char *
cm__etcd_node_path(const char *svc, const char *node)
{
    return join(svc, node);
}

char *
cm__etcd_prefix_end(const char *prefix)
{
    char *end = strdup(prefix);
    size_t n = end != NULL ? strlen(end) : 0;
    if (n > 0) {
        end[n - 1] = (char)(end[n - 1] + 1);
    }
    return end;
}

/* ---- values ---- */

static int
by_key(const void *a, const void *b)
{
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

/* Go writes map keys sorted: sorts the members of a metadata object by key. */
static void
sort_object(cJSON *o)
{
    int n = cJSON_IsObject(o) ? cJSON_GetArraySize(o) : 0;
    cJSON **v = n > 1 ? malloc((size_t)n * sizeof(*v)) : NULL;
    if (v == NULL) {
        return; /* nothing to sort, or no memory (the order is cosmetic) */
    }
    int i = 0;
    for (cJSON *c = o->child; c != NULL; c = c->next) {
        v[i++] = c;
    }
    qsort(v, (size_t)n, sizeof(*v), by_key);
    o->child = v[0];
    for (i = 0; i < n; i++) {
        v[i]->prev = v[i > 0 ? i - 1 : n - 1]; /* cJSON: the first item's prev is the last */
        v[i]->next = i + 1 < n ? v[i + 1] : NULL;
    }
    free(v);
}

static void
sort_metadata(cJSON *svc)
{
    sort_object(cJSON_GetObjectItemCaseSensitive(svc, "metadata"));
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(svc, "endpoints"))
    {
        sort_object(cJSON_GetObjectItemCaseSensitive(e, "metadata"));
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(svc, "nodes"))
    {
        sort_object(cJSON_GetObjectItemCaseSensitive(e, "metadata"));
    }
}

/* Go's encoding/json escapes <, >, & (HTML safety) and U+2028, U+2029; they can only occur
 * inside strings, so escaping them in the printed text is exact. */
static char *
go_escape(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p != '\0'; p++) {
        n += (*p == '<' || *p == '>' || *p == '&') ? 6 : 1;
    }
    char *out = malloc(n + 1);
    if (out == NULL) {
        return NULL;
    }
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '<' || *p == '>' || *p == '&') {
            static const char hex[] = "0123456789abcdef";
            memcpy(o, "\\u00", 4);
            o[4] = hex[*p >> 4];
            o[5] = hex[*p & 15];
            o += 6;
        } else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            /* 3 bytes become 6: the output was sized for 1 each, so grow on demand. */
            size_t at = (size_t)(o - out);
            char *g = realloc(out, n + 4);
            if (g == NULL) {
                free(out);
                return NULL;
            }
            n += 3;
            out = g;
            o = out + at;
            memcpy(o, p[2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
            o += 6;
            p += 2;
        } else {
            *o++ = (char)*p;
        }
    }
    *o = '\0';
    return out;
}

char *
cm__etcd_encode_node(const cm_reg_service *svc, size_t node)
{
    cm_reg_service one = *svc;
    one.nodes = &svc->nodes[node];
    one.nnodes = 1;
    cJSON *j = cm__service_to_json(&one);
    if (j == NULL) {
        return NULL;
    }
    sort_metadata(j);
    char *txt = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *out = txt != NULL ? go_escape(txt) : NULL;
    free(txt);
    return out;
}

cm_reg_service *
cm__etcd_decode_value(const char *b64s)
{
    size_t n = 0;
    char *raw = b64s != NULL ? cm__etcd_b64_decode(b64s, &n) : NULL;
    cJSON *j = raw != NULL ? cJSON_ParseWithLength(raw, n) : NULL;
    free(raw);
    cm_reg_service *s = NULL;
    if (j != NULL && cm__service_from_json(j, &s) < 0) {
        s = NULL;
    }
    cJSON_Delete(j);
    return s;
}

static int
add_b64(cJSON *o, const char *name, const char *s)
{
    cm_buf b = {0};
    int rc = cm__etcd_b64_encode(&b, s, strlen(s));
    rc |= cm_buf_append(&b, "", 1);
    if (rc == 0 && cJSON_AddStringToObject(o, name, (const char *)b.data) == NULL) {
        rc = CM_ENOMEM;
    }
    cm_buf_free(&b);
    return rc;
}

char *
cm__etcd_range_body(const char *key, const char *end, int serializable)
{
    cJSON *o = cJSON_CreateObject();
    int rc = o != NULL ? add_b64(o, "key", key) : CM_ENOMEM;
    if (rc == 0 && end != NULL) {
        rc = add_b64(o, "range_end", end);
    }
    if (rc == 0 && serializable && cJSON_AddTrueToObject(o, "serializable") == NULL) {
        rc = CM_ENOMEM;
    }
    char *txt = rc == 0 ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return txt;
}

int64_t
cm__etcd_int(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    int64_t n = 0;
    if (cJSON_IsString(v)) {
        n = strtoll(v->valuestring, NULL, 10); /* saturates */
    } else if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9.0e18) {
        n = (int64_t)v->valuedouble;
    }
    /* Revisions and lease ids are positive; a value that leaves no room for "+ 1" is none. */
    return n > 0 && n < INT64_MAX ? n : 0;
}

static int
same(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* Adds s (taken) to l, merged into the entry of the same name and version. */
static int
group_add(cm_reg_service_list *l, cm_reg_service *s)
{
    for (size_t i = 0; i < l->n; i++) {
        cm_reg_service *g = l->items[i];
        if (!same(g->name, s->name) || !same(g->version, s->version)) {
            continue;
        }
        for (size_t k = 0; k < s->nnodes; k++) {
            const cm_node *nd = &s->nodes[k];
            if (cm_reg_service_add_node(g, nd->id, nd->address, nd->metadata) == NULL) {
                cm_reg_service_free(s);
                return CM_ENOMEM;
            }
        }
        cm_reg_service_free(s);
        return 0;
    }
    cm_reg_service **items = cm__grow_array(l->items, l->n, sizeof(*items));
    if (items == NULL) {
        cm_reg_service_free(s);
        return CM_ENOMEM;
    }
    l->items = items;
    l->items[l->n++] = s;
    return 0;
}

int
cm__etcd_group(const cJSON *kvs, cm_reg_service_list **out)
{
    cm_reg_service_list *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return CM_ENOMEM;
    }
    if (kvs != NULL && !cJSON_IsArray(kvs)) {
        free(l);
        return CM_EPROTO;
    }
    const cJSON *kv;
    cJSON_ArrayForEach(kv, kvs)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(kv, "value");
        cm_reg_service *s = cm__etcd_decode_value(cJSON_IsString(v) ? v->valuestring : NULL);
        if (s == NULL) {
            continue; /* not a service: go-micro skips it */
        }
        if (group_add(l, s) < 0) {
            cm_reg_service_list_free(l);
            return CM_ENOMEM;
        }
    }
    *out = l;
    return 0;
}
