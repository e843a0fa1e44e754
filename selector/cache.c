/* The selector's cache of one service name: the services as last resolved (one per version),
 * the flattened node list with per-node state, and the changes watch events make to them.
 * Every change builds a complete new cache first and commits it only when nothing failed. */
#include "selector_int.h"

#include <stdlib.h>
#include <string.h>

/* Compares two strings of the data model, where NULL and "" are the same. */
static int
same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Frees the arrays of c but not its services, which may have moved to another cache. */
static void
free_arrays(cm__scache *c)
{
    free(c->svcs);
    free(c->ranges);
    free(c->nodes);
    free(c->scratch);
}

void
cm__scache_free(cm__scache *c)
{
    for (size_t i = 0; i < c->nsvcs; i++) {
        cm_reg_service_free(c->svcs[i]);
    }
    free_arrays(c);
    memset(c, 0, sizeof(*c));
}

/* The state of the node with that address in old, or NULL. The node is most likely at hint. */
static const cm__snode *
old_state(const cm__scache *old, const char *address, size_t hint)
{
    if (hint < old->nnodes && strcmp(old->nodes[hint].node->address, address) == 0) {
        return &old->nodes[hint];
    }
    for (size_t i = 0; i < old->nnodes; i++) {
        if (strcmp(old->nodes[i].node->address, address) == 0) {
            return &old->nodes[i];
        }
    }
    return NULL;
}

/* Builds the flattened node list of svcs (taken only on success) into *out, carrying over the
 * state of old's nodes by address. Nodes without an address are left out. 0 or CM_ENOMEM. */
static int
build(cm__scache *out, cm_reg_service **svcs, size_t nsvcs, const cm__scache *old)
{
    size_t total = 0;
    for (size_t i = 0; i < nsvcs; i++) {
        total += svcs[i]->nnodes;
    }
    if (total > UINT32_MAX) {
        return CM_ENOMEM;
    }
    cm__scache c = {.svcs = svcs, .nsvcs = nsvcs};
    c.ranges = calloc(nsvcs ? nsvcs : 1, sizeof(*c.ranges));
    c.nodes = calloc(total ? total : 1, sizeof(*c.nodes));
    c.scratch = calloc(total ? total : 1, sizeof(*c.scratch));
    if (c.ranges == NULL || c.nodes == NULL || c.scratch == NULL) {
        free(c.ranges);
        free(c.nodes);
        free(c.scratch);
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < nsvcs; i++) {
        c.ranges[i].first = c.nnodes;
        for (size_t j = 0; j < svcs[i]->nnodes; j++) {
            const cm_node *n = &svcs[i]->nodes[j];
            if (n->address == NULL || n->address[0] == '\0') {
                continue;
            }
            cm__snode *sn = &c.nodes[c.nnodes];
            sn->node = n;
            sn->svc = i;
            const cm__snode *prev = old ? old_state(old, n->address, c.nnodes) : NULL;
            if (prev != NULL) {
                sn->fails = prev->fails;
                sn->level = prev->level;
                sn->until = prev->until;
            }
            if (sn->until != 0) {
                c.nejected++;
            }
            c.nnodes++;
        }
        c.ranges[i].n = c.nnodes - c.ranges[i].first;
    }
    *out = c;
    return 0;
}

int
cm__scache_set(cm__scache *c, const cm_reg_service_list *l)
{
    cm_reg_service **svcs = calloc(l->n ? l->n : 1, sizeof(*svcs));
    if (svcs == NULL) {
        return CM_ENOMEM;
    }
    size_t n = 0;
    for (; n < l->n; n++) {
        svcs[n] = cm_reg_service_dup(l->items[n]);
        if (svcs[n] == NULL) {
            break;
        }
    }
    cm__scache next;
    if (n < l->n || build(&next, svcs, n, c) < 0) {
        for (size_t i = 0; i < n; i++) {
            cm_reg_service_free(svcs[i]);
        }
        free(svcs);
        return CM_ENOMEM;
    }
    cm__scache_free(c);
    *c = next;
    return 0;
}

/* Non-zero when svc lists a node with that id. */
static int
has_node(const cm_reg_service *svc, const char *id)
{
    for (size_t i = 0; i < svc->nnodes; i++) {
        if (same(svc->nodes[i].id, id)) {
            return 1;
        }
    }
    return 0;
}

/* Where node id sits in svc, or svc->nnodes when it is not there. */
static size_t
node_index(const cm_reg_service *svc, const char *id)
{
    size_t i = 0;
    while (i < svc->nnodes && !same(svc->nodes[i].id, id)) {
        i++;
    }
    return i;
}

/* The event's service merged with cur by node id (go-micro's merge: the event's endpoints,
 * metadata and node contents win; cur's other nodes stay). The nodes cur lists keep their
 * places and new ones follow in the event's order: a node announced again (mDNS announces
 * three times) must not move, or round robin, which turns across calls, skews. Returns owned,
 * NULL on out of memory. */
static cm_reg_service *
merged(const cm_reg_service *cur, const cm_reg_service *ev)
{
    cm_reg_service *ns = cm_reg_service_dup(ev);
    if (ns == NULL || cur == NULL) {
        return ns;
    }
    for (size_t i = 0; i < cur->nnodes; i++) {
        const cm_node *n = &cur->nodes[i];
        if (!has_node(ev, n->id) &&
            cm_reg_service_add_node(ns, n->id, n->address, n->metadata) == NULL) {
            cm_reg_service_free(ns);
            return NULL;
        }
    }
    /* A stable insertion sort by place in cur: new nodes share the last key, so they keep the
     * event's order. Events rarely move anything, and then little. */
    size_t *keys = malloc((ns->nnodes ? ns->nnodes : 1) * sizeof(*keys));
    if (keys == NULL) {
        cm_reg_service_free(ns);
        return NULL;
    }
    for (size_t i = 0; i < ns->nnodes; i++) {
        keys[i] = node_index(cur, ns->nodes[i].id);
    }
    for (size_t i = 1; i < ns->nnodes; i++) {
        cm_node n = ns->nodes[i];
        size_t key = keys[i], j = i;
        for (; j > 0 && keys[j - 1] > key; j--) {
            ns->nodes[j] = ns->nodes[j - 1];
            keys[j] = keys[j - 1];
        }
        ns->nodes[j] = n;
        keys[j] = key;
    }
    free(keys);
    return ns;
}

/* cur without the nodes del lists. Returns owned, NULL on out of memory. */
static cm_reg_service *
without(const cm_reg_service *cur, const cm_reg_service *del)
{
    cm_reg_service *ns = cm_reg_service_new(cur->name, cur->version);
    if (ns == NULL) {
        return NULL;
    }
    if (cur->metadata != NULL) {
        ns->metadata = cm_md_new();
        if (ns->metadata == NULL) {
            goto oom;
        }
        const char *k, *v;
        for (size_t i = 0; cm_md_at(cur->metadata, i, &k, &v) == 0; i++) {
            if (cm_md_set(ns->metadata, k, v) < 0) {
                goto oom;
            }
        }
    }
    for (size_t i = 0; i < cur->nendpoints; i++) {
        const cm_endpoint *e = &cur->endpoints[i];
        if (cm_reg_service_add_endpoint(ns, e->name, e->request, e->response, e->metadata) == NULL) {
            goto oom;
        }
    }
    for (size_t i = 0; i < cur->nnodes; i++) {
        const cm_node *n = &cur->nodes[i];
        if (!has_node(del, n->id) &&
            cm_reg_service_add_node(ns, n->id, n->address, n->metadata) == NULL) {
            goto oom;
        }
    }
    return ns;
oom:
    cm_reg_service_free(ns);
    return NULL;
}

/* Installs a new service list made of c's services where the one at index at is replaced by
 * ns (at == nsvcs: appended; ns NULL: removed). Takes ns on success. 0 or CM_ENOMEM. */
static int
commit(cm__scache *c, size_t at, cm_reg_service *ns)
{
    size_t n = c->nsvcs + (at == c->nsvcs ? 1 : 0) - (ns == NULL ? 1 : 0);
    cm_reg_service **svcs = calloc(n ? n : 1, sizeof(*svcs));
    if (svcs == NULL) {
        return CM_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < c->nsvcs; i++) {
        if (i != at) {
            svcs[k++] = c->svcs[i];
        } else if (ns != NULL) {
            svcs[k++] = ns;
        }
    }
    if (at == c->nsvcs) {
        svcs[k++] = ns;
    }
    cm__scache next;
    if (build(&next, svcs, k, c) < 0) {
        free(svcs);
        return CM_ENOMEM;
    }
    if (at < c->nsvcs) {
        cm_reg_service_free(c->svcs[at]);
    }
    free_arrays(c);
    *c = next;
    return 0;
}

int
cm__scache_apply(cm__scache *c, cm_watch_action action, const cm_reg_service *svc)
{
    size_t at = 0;
    while (at < c->nsvcs && !same(c->svcs[at]->version, svc->version)) {
        at++;
    }
    const cm_reg_service *cur = at < c->nsvcs ? c->svcs[at] : NULL;
    cm_reg_service *ns = NULL;
    if (action == CM_WATCH_CREATE || action == CM_WATCH_UPDATE) {
        ns = merged(cur, svc);
        if (ns == NULL) {
            return CM_ENOMEM;
        }
    } else if (action == CM_WATCH_DELETE) {
        if (svc->nnodes == 0) {
            return 1;
        }
        if (cur == NULL) {
            return 0;
        }
        size_t left = 0;
        for (size_t i = 0; i < cur->nnodes; i++) {
            left += !has_node(svc, cur->nodes[i].id);
        }
        if (left == cur->nnodes) {
            return 0;
        }
        if (left == 0 && c->nsvcs == 1) {
            return 1;
        }
        if (left > 0 && (ns = without(cur, svc)) == NULL) {
            return CM_ENOMEM;
        }
    } else {
        return 0;
    }
    int rc = commit(c, at, ns);
    if (rc < 0 && ns != NULL) {
        cm_reg_service_free(ns);
    }
    return rc;
}
