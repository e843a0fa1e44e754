/* go-micro's registry encodings: the JSON forms of Service, Endpoint, Node and Value (spec 1.1)
 * and the hex(zlib(...)) payload of Consul tags and mDNS TXT records (spec 2.3, 3.2). */
#include "registry_int.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- JSON encoding ---- */

/* Adds key: s (NULL as ""). 0 or CM_ENOMEM. */
static int
add_str(cJSON *obj, const char *key, const char *s)
{
    return cJSON_AddStringToObject(obj, key, s != NULL ? s : "") != NULL ? 0 : CM_ENOMEM;
}

/* Adds key: item, taking item (freed on failure; NULL item means out of memory). */
static int
add_item(cJSON *obj, const char *key, cJSON *item)
{
    if (item == NULL) {
        return CM_ENOMEM;
    }
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return CM_ENOMEM;
    }
    return 0;
}

/* Appends item to arr, taking it. 0 or CM_ENOMEM. */
static int
push_item(cJSON *arr, cJSON *item)
{
    if (item == NULL) {
        return CM_ENOMEM;
    }
    if (!cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return CM_ENOMEM;
    }
    return 0;
}

cJSON *
cm__md_to_json(const cm_md *md)
{
    if (md == NULL) {
        return cJSON_CreateNull();
    }
    cJSON *o = cJSON_CreateObject();
    size_t n = cm_md_count(md);
    for (size_t i = 0; o != NULL && i < n; i++) {
        const char *k, *v;
        cm_md_at(md, i, &k, &v);
        if (add_str(o, k, v) < 0) {
            cJSON_Delete(o);
            o = NULL;
        }
    }
    return o;
}

cJSON *
cm__value_to_json(const cm_value *v)
{
    if (v == NULL) {
        return cJSON_CreateNull();
    }
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || add_str(o, "name", v->name) < 0 || add_str(o, "type", v->type) < 0) {
        goto oom;
    }
    /* A leaf is Go's nil slice: null. */
    cJSON *vals = v->nvalues > 0 ? cJSON_CreateArray() : cJSON_CreateNull();
    if (add_item(o, "values", vals) < 0) {
        goto oom;
    }
    for (size_t i = 0; i < v->nvalues; i++) {
        if (push_item(vals, cm__value_to_json(&v->values[i])) < 0) {
            goto oom;
        }
    }
    return o;
oom:
    cJSON_Delete(o);
    return NULL;
}

cJSON *
cm__endpoint_to_json(const cm_endpoint *e)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || add_str(o, "name", e->name) < 0 ||
        add_item(o, "request", cm__value_to_json(e->request)) < 0 ||
        add_item(o, "response", cm__value_to_json(e->response)) < 0 ||
        add_item(o, "metadata", cm__md_to_json(e->metadata)) < 0) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *
node_to_json(const cm_node *n)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || add_str(o, "id", n->id) < 0 || add_str(o, "address", n->address) < 0 ||
        add_item(o, "metadata", cm__md_to_json(n->metadata)) < 0) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *
cm__service_to_json(const cm_reg_service *s)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || add_str(o, "name", s->name) < 0 || add_str(o, "version", s->version) < 0 ||
        add_item(o, "metadata", cm__md_to_json(s->metadata)) < 0) {
        goto oom;
    }
    /* Empty lists are Go's nil slices: null. */
    cJSON *eps = s->nendpoints > 0 ? cJSON_CreateArray() : cJSON_CreateNull();
    if (add_item(o, "endpoints", eps) < 0) {
        goto oom;
    }
    for (size_t i = 0; i < s->nendpoints; i++) {
        if (push_item(eps, cm__endpoint_to_json(&s->endpoints[i])) < 0) {
            goto oom;
        }
    }
    cJSON *nodes = s->nnodes > 0 ? cJSON_CreateArray() : cJSON_CreateNull();
    if (add_item(o, "nodes", nodes) < 0) {
        goto oom;
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        if (push_item(nodes, node_to_json(&s->nodes[i])) < 0) {
            goto oom;
        }
    }
    return o;
oom:
    cJSON_Delete(o);
    return NULL;
}

/* ---- JSON decoding ---- */

/* The member key of object j, or NULL when it is missing or JSON null (Go leaves the field at
 * its zero value in both cases). Keys match exactly, as Go's do for these lower-case tags. */
static const cJSON *
member(const cJSON *j, const char *key)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNull(m) ? NULL : m;
}

/* A copy of the string member key ("" when missing or null). 0, CM_EPROTO or CM_ENOMEM. */
static int
get_str(const cJSON *j, const char *key, char **out)
{
    const cJSON *m = member(j, key);
    if (m != NULL && !cJSON_IsString(m)) {
        return CM_EPROTO;
    }
    *out = strdup(m != NULL ? m->valuestring : "");
    return *out != NULL ? 0 : CM_ENOMEM;
}

/* The array member key (NULL when missing or null, *n = 0). 0 or CM_EPROTO. */
static int
get_array(const cJSON *j, const char *key, const cJSON **arr, size_t *n)
{
    *arr = member(j, key);
    *n = 0;
    if (*arr == NULL) {
        return 0;
    }
    if (!cJSON_IsArray(*arr)) {
        return CM_EPROTO;
    }
    *n = (size_t)cJSON_GetArraySize(*arr);
    return 0;
}

int
cm__md_from_json(const cJSON *j, cm_md **out)
{
    *out = NULL;
    if (j != NULL && !cJSON_IsNull(j) && !cJSON_IsObject(j)) {
        return CM_EPROTO;
    }
    cm_md *md = cm_md_new();
    if (md == NULL) {
        return CM_ENOMEM;
    }
    const cJSON *obj = cJSON_IsObject(j) ? j : NULL;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, obj)
    {
        if (!cJSON_IsString(kv)) {
            cm_md_free(md);
            return CM_EPROTO;
        }
        /* Keys cm_md cannot hold (empty, or with ':', CR or LF) are skipped, not fatal: one odd
         * metadata pair must not hide a whole node. */
        if (cm_md_set(md, kv->string, kv->valuestring) == CM_ENOMEM) {
            cm_md_free(md);
            return CM_ENOMEM;
        }
    }
    *out = md;
    return 0;
}

int
cm__value_from_json(const cJSON *j, cm_value *out)
{
    memset(out, 0, sizeof(*out));
    /* null inside a values array is Go's zero Value. */
    if (j != NULL && !cJSON_IsNull(j) && !cJSON_IsObject(j)) {
        return CM_EPROTO;
    }
    const cJSON *arr;
    size_t n;
    int rc = get_str(j, "name", &out->name);
    if (rc == 0) {
        rc = get_str(j, "type", &out->type);
    }
    if (rc == 0) {
        rc = get_array(j, "values", &arr, &n);
    }
    if (rc == 0 && n > 0) {
        out->values = calloc(n, sizeof(cm_value));
        rc = out->values != NULL ? 0 : CM_ENOMEM;
        const cJSON *c;
        const cJSON *each = rc == 0 ? arr : NULL;
        cJSON_ArrayForEach(c, each)
        {
            rc = cm__value_from_json(c, &out->values[out->nvalues]);
            if (rc < 0) {
                break;
            }
            out->nvalues++;
        }
    }
    if (rc < 0) {
        cm_value_fini(out);
    }
    return rc;
}

/* Decodes an optional *Value member (NULL for missing or null). */
static int
get_value(const cJSON *j, const char *key, cm_value **out)
{
    const cJSON *m = member(j, key);
    *out = NULL;
    if (m == NULL) {
        return 0;
    }
    if (!cJSON_IsObject(m)) {
        return CM_EPROTO;
    }
    cm_value *v = malloc(sizeof(*v));
    if (v == NULL) {
        return CM_ENOMEM;
    }
    int rc = cm__value_from_json(m, v);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    return 0;
}

int
cm__endpoint_from_json(const cJSON *j, cm_endpoint *out)
{
    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(j)) {
        return CM_EPROTO;
    }
    int rc = get_str(j, "name", &out->name);
    if (rc == 0) {
        rc = get_value(j, "request", &out->request);
    }
    if (rc == 0) {
        rc = get_value(j, "response", &out->response);
    }
    if (rc == 0) {
        rc = cm__md_from_json(member(j, "metadata"), &out->metadata);
    }
    if (rc < 0) {
        cm__endpoint_fini(out);
    }
    return rc;
}

static int
node_from_json(const cJSON *j, cm_reg_service *s)
{
    if (!cJSON_IsObject(j)) {
        return CM_EPROTO;
    }
    cm_node n = {0};
    int rc = get_str(j, "id", &n.id);
    if (rc == 0) {
        rc = get_str(j, "address", &n.address);
    }
    if (rc == 0) {
        rc = cm__md_from_json(member(j, "metadata"), &n.metadata);
    }
    if (rc == 0) {
        s->nodes[s->nnodes++] = n;
        return 0;
    }
    free(n.id);
    free(n.address);
    return rc;
}

int
cm__service_from_json(const cJSON *j, cm_reg_service **out)
{
    *out = NULL;
    if (!cJSON_IsObject(j)) {
        return CM_EPROTO;
    }
    cm_reg_service *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return CM_ENOMEM;
    }
    const cJSON *eps = NULL, *nodes = NULL, *c = NULL;
    size_t neps = 0, nnodes = 0;
    int rc = get_str(j, "name", &s->name);
    if (rc == 0) {
        rc = get_str(j, "version", &s->version);
    }
    /* Service metadata stays NULL when absent: go-micro never sets it. */
    if (rc == 0 && member(j, "metadata") != NULL) {
        rc = cm__md_from_json(member(j, "metadata"), &s->metadata);
    }
    if (rc == 0) {
        rc = get_array(j, "endpoints", &eps, &neps);
    }
    if (rc == 0) {
        rc = get_array(j, "nodes", &nodes, &nnodes);
    }
    if (rc == 0 && neps > 0 && (s->endpoints = calloc(neps, sizeof(cm_endpoint))) == NULL) {
        rc = CM_ENOMEM;
    }
    if (rc == 0 && nnodes > 0 && (s->nodes = calloc(nnodes, sizeof(cm_node))) == NULL) {
        rc = CM_ENOMEM;
    }
    if (rc < 0) {
        eps = nodes = NULL;
    }
    cJSON_ArrayForEach(c, eps)
    {
        /* A null element is Go's nil *Endpoint: nothing to keep. */
        if (cJSON_IsNull(c)) {
            continue;
        }
        rc = cm__endpoint_from_json(c, &s->endpoints[s->nendpoints]);
        if (rc < 0) {
            break;
        }
        s->nendpoints++;
    }
    if (rc < 0) {
        nodes = NULL;
    }
    cJSON_ArrayForEach(c, nodes)
    {
        if (cJSON_IsNull(c)) {
            continue;
        }
        rc = node_from_json(c, s);
        if (rc < 0) {
            break;
        }
    }
    if (rc < 0) {
        cm_reg_service_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- hex(zlib(...)) ---- */

#define HEXZLIB_DEFAULT_MAX ((size_t)4 << 20)

int
cm__hexzlib_encode(const void *data, size_t len, cm_buf *out)
{
    static const char digits[] = "0123456789abcdef";
    if (len > (size_t)UINT32_MAX) {
        return CM_ENOMEM;
    }
    uLong bound = compressBound((uLong)len);
    Bytef *z = malloc(bound > 0 ? bound : 1);
    if (z == NULL) {
        return CM_ENOMEM;
    }
    uLongf zlen = bound;
    if (compress2(z, &zlen, data, (uLong)len, Z_DEFAULT_COMPRESSION) != Z_OK ||
        cm_buf_reserve(out, 2 * (size_t)zlen) < 0) {
        free(z);
        return CM_ENOMEM;
    }
    for (uLongf i = 0; i < zlen; i++) {
        out->data[out->len++] = (uint8_t)digits[z[i] >> 4];
        out->data[out->len++] = (uint8_t)digits[z[i] & 15];
    }
    free(z);
    return 0;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Inflates a whole zlib stream of n bytes, appending at most max bytes to out. */
static int
inflate_capped(const uint8_t *in, size_t n, size_t max, cm_buf *out)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit(&zs) != Z_OK) {
        return CM_ENOMEM;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    size_t produced = 0;
    size_t step = n < 64 ? 256 : 4 * n;
    int rc = 0;
    for (;;) {
        /* Room for one byte past max: producing it proves the output is over the cap. A zip
         * bomb thus never costs more than max + 1 bytes. */
        size_t room = max + 1 - produced;
        if (step < room) {
            room = step;
        }
        if (room > (size_t)UINT32_MAX / 2) {
            room = (size_t)UINT32_MAX / 2;
        }
        if (cm_buf_reserve(out, room) < 0) {
            rc = CM_ENOMEM;
            break;
        }
        zs.next_out = out->data + out->len;
        zs.avail_out = (uInt)room;
        int z = inflate(&zs, Z_NO_FLUSH);
        size_t got = room - zs.avail_out;
        out->len += got;
        produced += got;
        if (produced > max) {
            rc = CM_EPROTO;
            break;
        }
        if (z == Z_STREAM_END) {
            /* Bytes after the Adler-32 are not part of any stream go-micro writes. */
            rc = zs.avail_in == 0 ? 0 : CM_EPROTO;
            break;
        }
        if (z == Z_MEM_ERROR) {
            rc = CM_ENOMEM;
            break;
        }
        /* Z_BUF_ERROR with output room left means the input ended before the stream did. */
        if (z != Z_OK || (zs.avail_out > 0 && zs.avail_in == 0)) {
            rc = CM_EPROTO;
            break;
        }
        if (step < (size_t)1 << 20) {
            step *= 2;
        }
    }
    inflateEnd(&zs);
    return rc;
}

int
cm__hexzlib_decode(const char *hex, size_t hexlen, size_t max, cm_buf *out)
{
    if (max == 0) {
        max = HEXZLIB_DEFAULT_MAX;
    }
    if (max == SIZE_MAX) {
        max = SIZE_MAX - 1;
    }
    if (hexlen == 0 || hexlen % 2 != 0 || hexlen / 2 > (size_t)UINT32_MAX) {
        return CM_EPROTO;
    }
    size_t n = hexlen / 2;
    uint8_t *bin = malloc(n);
    if (bin == NULL) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(bin);
            return CM_EPROTO;
        }
        bin[i] = (uint8_t)(hi << 4 | lo);
    }
    size_t start = out->len;
    int rc = inflate_capped(bin, n, max, out);
    free(bin);
    if (rc < 0) {
        out->len = start;
    }
    return rc;
}
