/* The registry data model: go-micro's Service, Node, Endpoint and Value, with deep copies. */
#include "registry_int.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char *
dup_str(const char *s)
{
    return strdup(s != NULL ? s : "");
}

/* A copy of md (NULL gives an empty md); NULL on out of memory. */
static cm_md *
md_copy(const cm_md *md)
{
    cm_md *out = cm_md_new();
    if (out == NULL) {
        return NULL;
    }
    size_t n = cm_md_count(md);
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        cm_md_at(md, i, &k, &v);
        if (cm_md_set(out, k, v) == CM_ENOMEM) {
            cm_md_free(out);
            return NULL;
        }
    }
    return out;
}

void
cm_value_fini(cm_value *v)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < v->nvalues; i++) {
        cm_value_fini(&v->values[i]);
    }
    free(v->values);
    free(v->name);
    free(v->type);
    memset(v, 0, sizeof(*v));
}

int
cm_value_copy(cm_value *dst, const cm_value *src)
{
    memset(dst, 0, sizeof(*dst));
    if (src == NULL) {
        return 0;
    }
    dst->name = dup_str(src->name);
    dst->type = dup_str(src->type);
    if (dst->name == NULL || dst->type == NULL) {
        goto oom;
    }
    if (src->nvalues > 0) {
        dst->values = calloc(src->nvalues, sizeof(cm_value));
        if (dst->values == NULL) {
            goto oom;
        }
        for (size_t i = 0; i < src->nvalues; i++) {
            if (cm_value_copy(&dst->values[i], &src->values[i]) < 0) {
                goto oom;
            }
            dst->nvalues = i + 1;
        }
    }
    return 0;
oom:
    cm_value_fini(dst);
    return CM_ENOMEM;
}

/* A heap copy of v, or NULL (v NULL, or out of memory: *err is set then). */
static cm_value *
value_dup(const cm_value *v, int *err)
{
    if (v == NULL) {
        return NULL;
    }
    cm_value *out = malloc(sizeof(*out));
    if (out == NULL || cm_value_copy(out, v) < 0) {
        free(out);
        *err = CM_ENOMEM;
        return NULL;
    }
    return out;
}

void
cm__endpoint_fini(cm_endpoint *e)
{
    if (e == NULL) {
        return;
    }
    free(e->name);
    cm_value_fini(e->request);
    free(e->request);
    cm_value_fini(e->response);
    free(e->response);
    cm_md_free(e->metadata);
    memset(e, 0, sizeof(*e));
}

static void
node_fini(cm_node *n)
{
    free(n->id);
    free(n->address);
    cm_md_free(n->metadata);
    memset(n, 0, sizeof(*n));
}

cm_reg_service *
cm_reg_service_new(const char *name, const char *version)
{
    cm_reg_service *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->name = dup_str(name);
    s->version = dup_str(version);
    if (s->name == NULL || s->version == NULL) {
        cm_reg_service_free(s);
        return NULL;
    }
    return s;
}

void
cm_reg_service_free(cm_reg_service *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->nendpoints; i++) {
        cm__endpoint_fini(&s->endpoints[i]);
    }
    free(s->endpoints);
    for (size_t i = 0; i < s->nnodes; i++) {
        node_fini(&s->nodes[i]);
    }
    free(s->nodes);
    cm_md_free(s->metadata);
    free(s->name);
    free(s->version);
    free(s);
}

void *
cm__grow_array(void *arr, size_t n, size_t elem)
{
    if (n >= SIZE_MAX / 2 / elem) {
        return NULL;
    }
    /* Whoever allocated arr (with exactly n or with room), the allocator knows its size. */
    if (arr != NULL && malloc_usable_size(arr) >= (n + 1) * elem) {
        return arr;
    }
    size_t cap = n < 4 ? 4 : n * 2;
    return realloc(arr, cap * elem);
}

cm_node *
cm_reg_service_add_node(cm_reg_service *s, const char *id, const char *address, const cm_md *md)
{
    if (s == NULL) {
        return NULL;
    }
    cm_node n = {dup_str(id), dup_str(address), md_copy(md)};
    cm_node *nodes = NULL;
    if (n.id != NULL && n.address != NULL && n.metadata != NULL) {
        nodes = cm__grow_array(s->nodes, s->nnodes, sizeof(cm_node));
    }
    if (nodes == NULL) {
        node_fini(&n);
        return NULL;
    }
    s->nodes = nodes;
    s->nodes[s->nnodes] = n;
    return &s->nodes[s->nnodes++];
}

cm_endpoint *
cm_reg_service_add_endpoint(cm_reg_service *s, const char *name, const cm_value *request,
                            const cm_value *response, const cm_md *md)
{
    if (s == NULL) {
        return NULL;
    }
    int err = 0;
    cm_endpoint e = {dup_str(name), value_dup(request, &err), value_dup(response, &err),
                     md_copy(md)};
    cm_endpoint *eps = NULL;
    if (err == 0 && e.name != NULL && e.metadata != NULL) {
        eps = cm__grow_array(s->endpoints, s->nendpoints, sizeof(cm_endpoint));
    }
    if (eps == NULL) {
        cm__endpoint_fini(&e);
        return NULL;
    }
    s->endpoints = eps;
    s->endpoints[s->nendpoints] = e;
    return &s->endpoints[s->nendpoints++];
}

cm_reg_service *
cm_reg_service_dup(const cm_reg_service *s)
{
    if (s == NULL) {
        return NULL;
    }
    cm_reg_service *d = cm_reg_service_new(s->name, s->version);
    if (d == NULL) {
        return NULL;
    }
    if (s->metadata != NULL && (d->metadata = md_copy(s->metadata)) == NULL) {
        goto oom;
    }
    for (size_t i = 0; i < s->nendpoints; i++) {
        const cm_endpoint *e = &s->endpoints[i];
        if (cm_reg_service_add_endpoint(d, e->name, e->request, e->response, e->metadata) == NULL) {
            goto oom;
        }
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        const cm_node *n = &s->nodes[i];
        if (cm_reg_service_add_node(d, n->id, n->address, n->metadata) == NULL) {
            goto oom;
        }
    }
    return d;
oom:
    cm_reg_service_free(d);
    return NULL;
}

cm_reg_service_list *
cm_reg_service_list_dup(const cm_reg_service_list *l)
{
    if (l == NULL) {
        return NULL;
    }
    cm_reg_service_list *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return NULL;
    }
    if (l->n > 0) {
        d->items = calloc(l->n, sizeof(cm_reg_service *));
        if (d->items == NULL) {
            free(d);
            return NULL;
        }
    }
    for (size_t i = 0; i < l->n; i++) {
        d->items[i] = cm_reg_service_dup(l->items[i]);
        if (d->items[i] == NULL) {
            cm_reg_service_list_free(d);
            return NULL;
        }
        d->n = i + 1;
    }
    return d;
}

void
cm_reg_service_list_free(cm_reg_service_list *l)
{
    if (l == NULL) {
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        cm_reg_service_free(l->items[i]);
    }
    free(l->items);
    free(l);
}

const char *
cm_watch_action_name(cm_watch_action a)
{
    switch (a) {
    case CM_WATCH_CREATE:
        return "create";
    case CM_WATCH_UPDATE:
        return "update";
    case CM_WATCH_DELETE:
        return "delete";
    }
    return "unknown";
}
