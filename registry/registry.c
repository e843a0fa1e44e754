/* The registry core: go-micro's data model, the backend table lookup, the generic entry points
 * that dispatch through a backend's ops, and watcher bookkeeping. */
#include "registry_int.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* State the core keeps for each registry, stored in the same block just before struct
 * cm_registry so that the shared struct stays as registry_int.h defines it. */
typedef struct reg_state {
    int closing;         /* cm_registry_close was called */
    unsigned notifying;  /* depth of cm__registry_notify calls running on r */
    int free_pending;    /* cm__registry_closed ran while notifying */
} reg_state;

#define STATE_SIZE                                                                                 \
    ((sizeof(reg_state) + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t))

static reg_state *
state_of(const cm_registry *r)
{
    return (reg_state *)(void *)((char *)(uintptr_t)r - STATE_SIZE);
}

/* ---- data model ---- */

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

cm_node *
cm_reg_service_add_node(cm_reg_service *s, const char *id, const char *address, const cm_md *md)
{
    if (s == NULL) {
        return NULL;
    }
    cm_node n = {dup_str(id), dup_str(address), md_copy(md)};
    cm_node *nodes = NULL;
    if (n.id != NULL && n.address != NULL && n.metadata != NULL) {
        nodes = realloc(s->nodes, (s->nnodes + 1) * sizeof(cm_node));
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
        eps = realloc(s->endpoints, (s->nendpoints + 1) * sizeof(cm_endpoint));
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

/* ---- registries ---- */

void
cm_registry_opts_init(cm_registry_opts *o)
{
    memset(o, 0, sizeof(*o));
}

static void
opts_fini(cm_registry_opts *o)
{
    free((char *)(uintptr_t)o->addresses);
    free((char *)(uintptr_t)o->interface);
    free((char *)(uintptr_t)o->token);
    free((char *)(uintptr_t)o->datacenter);
    free((char *)(uintptr_t)o->namespace_);
    memset(o, 0, sizeof(*o));
}

/* Copies *src into *dst with every string duplicated. 0 or CM_ENOMEM (dst is empty then). */
static int
opts_copy(cm_registry_opts *dst, const cm_registry_opts *src)
{
    *dst = *src;
    const char **strs[] = {&dst->addresses, &dst->interface, &dst->token, &dst->datacenter,
                           &dst->namespace_};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if (*strs[i] != NULL && (*strs[i] = strdup(*strs[i])) == NULL) {
            /* The strings after i still point at the caller's: clear them before freeing. */
            for (size_t j = i; j < sizeof(strs) / sizeof(strs[0]); j++) {
                *strs[j] = NULL;
            }
            opts_fini(dst);
            return CM_ENOMEM;
        }
    }
    return 0;
}

static const cm_registry_ops *
find_backend(const char *name)
{
    for (size_t i = 0; cm__registry_backends[i] != NULL; i++) {
        if (strcmp(cm__registry_backends[i]->name, name) == 0) {
            return cm__registry_backends[i];
        }
    }
    return NULL;
}

int
cm_registry_new(cm_loop *loop, const char *name, const cm_registry_opts *o, cm_registry **out)
{
    if (loop == NULL || out == NULL) {
        return CM_EINVAL;
    }
    if (name == NULL || name[0] == '\0') {
        name = getenv("MICRO_REGISTRY");
        if (name == NULL || name[0] == '\0') {
            name = "mdns";
        }
    }
    const cm_registry_ops *ops = find_backend(name);
    if (ops == NULL) {
        return CM_ENOTFOUND;
    }
    if (ops->abi_version != CM_ABI_VERSION) {
        return CM_EINVAL;
    }
    if (ops->priv_size > SIZE_MAX / 2) {
        return CM_ENOMEM;
    }
    char *block = calloc(1, STATE_SIZE + sizeof(cm_registry) + ops->priv_size);
    if (block == NULL) {
        return CM_ENOMEM;
    }
    cm_registry *r = (cm_registry *)(void *)(block + STATE_SIZE);
    r->ops = ops;
    r->loop = loop;
    cm_registry_opts defaults;
    cm_registry_opts_init(&defaults);
    if (opts_copy(&r->opts, o != NULL ? o : &defaults) < 0) {
        free(block);
        return CM_ENOMEM;
    }
    if (ops->init != NULL) {
        int rc = ops->init(r);
        if (rc < 0) {
            opts_fini(&r->opts);
            free(block);
            return rc;
        }
    }
    *out = r;
    return 0;
}

const char *
cm_registry_name(const cm_registry *r)
{
    return r->ops->name;
}

static void
watcher_free(cm_watcher *w)
{
    free(w->name);
    free(w);
}

/* Frees the watchers that were stopped while callbacks ran. */
static void
sweep_stopped(cm_registry *r)
{
    cm_watcher **pp = &r->watchers;
    while (*pp != NULL) {
        cm_watcher *w = *pp;
        if (w->cb == NULL) {
            *pp = w->next;
            watcher_free(w);
        } else {
            pp = &w->next;
        }
    }
}

static void
registry_free(cm_registry *r)
{
    while (r->watchers != NULL) {
        cm_watcher *w = r->watchers;
        r->watchers = w->next;
        watcher_free(w);
    }
    void (*done)(void *) = r->close_done;
    void *arg = r->close_arg;
    opts_fini(&r->opts);
    free(state_of(r));
    if (done != NULL) {
        done(arg);
    }
}

void
cm__registry_closed(cm_registry *r)
{
    reg_state *st = state_of(r);
    if (st->notifying > 0) {
        /* A watch callback is still on the stack; the outermost notify frees r. */
        st->free_pending = 1;
        return;
    }
    registry_free(r);
}

static void
closed_later(void *arg)
{
    cm__registry_closed(arg);
}

/* A watcher's "stopped" mark is a NULL callback; stopped watchers stay linked (and are skipped)
 * while a notify runs, so that the loop over the list never touches freed memory. */
static void
stop_one(cm_registry *r, cm_watcher *w)
{
    if (r->ops->watch_stop != NULL) {
        r->ops->watch_stop(r, w);
    }
    w->cb = NULL;
}

void
cm_registry_close(cm_registry *r, void (*done)(void *arg), void *arg)
{
    if (r == NULL) {
        return;
    }
    reg_state *st = state_of(r);
    if (st->closing) {
        return;
    }
    st->closing = 1;
    r->close_done = done;
    r->close_arg = arg;
    for (cm_watcher *w = r->watchers; w != NULL; w = w->next) {
        if (w->cb != NULL) {
            stop_one(r, w);
        }
    }
    if (st->notifying == 0) {
        sweep_stopped(r);
    }
    if (r->ops->close != NULL) {
        r->ops->close(r);
    } else if (cm_loop_post(r->loop, closed_later, r) < 0) {
        /* No memory to defer: finish now rather than never. */
        cm__registry_closed(r);
    }
}

/* The check shared by the entry points: 0, or the error to return. */
static int
usable(const cm_registry *r)
{
    if (r == NULL) {
        return CM_EINVAL;
    }
    return state_of(r)->closing ? CM_ESTATE : 0;
}

int
cm_registry_register(cm_registry *r, const cm_reg_service *svc, uint64_t ttl_ms, cm_registry_cb cb,
                     void *user)
{
    int rc = usable(r);
    if (rc < 0) {
        return rc;
    }
    if (r->ops->reg == NULL) {
        return CM_ENOTSUP;
    }
    if (svc == NULL || svc->name == NULL || svc->name[0] == '\0') {
        return CM_EINVAL;
    }
    return r->ops->reg(r, svc, ttl_ms, cb, user);
}

int
cm_registry_deregister(cm_registry *r, const cm_reg_service *svc, cm_registry_cb cb, void *user)
{
    int rc = usable(r);
    if (rc < 0) {
        return rc;
    }
    if (r->ops->dereg == NULL) {
        return CM_ENOTSUP;
    }
    if (svc == NULL || svc->name == NULL || svc->name[0] == '\0') {
        return CM_EINVAL;
    }
    return r->ops->dereg(r, svc, cb, user);
}

int
cm_registry_get_service(cm_registry *r, const char *name, cm_registry_list_cb cb, void *user)
{
    int rc = usable(r);
    if (rc < 0) {
        return rc;
    }
    if (r->ops->get_service == NULL) {
        return CM_ENOTSUP;
    }
    if (name == NULL || cb == NULL) {
        return CM_EINVAL;
    }
    if (strcmp(r->why_name, name) == 0) {
        r->why_name[0] = '\0';
    }
    return r->ops->get_service(r, name, cb, user);
}

void
cm__registry_why(cm_registry *r, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
    size_t n = strlen(name);
    if (n >= sizeof(r->why_name)) { /* not kept: a prefix would match another name */
        r->why_name[0] = '\0';
        return;
    }
    memcpy(r->why_name, name, n + 1);
}

const char *
cm_registry_why(const cm_registry *r, const char *name)
{
    if (r == NULL || name == NULL || r->why_name[0] == '\0' || strcmp(r->why_name, name) != 0) {
        return NULL;
    }
    return r->why;
}

int
cm_registry_list_services(cm_registry *r, cm_registry_list_cb cb, void *user)
{
    int rc = usable(r);
    if (rc < 0) {
        return rc;
    }
    if (r->ops->list_services == NULL) {
        return CM_ENOTSUP;
    }
    if (cb == NULL) {
        return CM_EINVAL;
    }
    return r->ops->list_services(r, cb, user);
}

int
cm_registry_watch(cm_registry *r, const char *name, cm_watch_cb cb, void *user, cm_watcher **out)
{
    int rc = usable(r);
    if (rc < 0) {
        return rc;
    }
    if (r->ops->watch == NULL) {
        return CM_ENOTSUP;
    }
    if (cb == NULL || out == NULL || r->ops->watcher_priv_size > SIZE_MAX / 2) {
        return CM_EINVAL;
    }
    cm_watcher *w = calloc(1, sizeof(*w) + r->ops->watcher_priv_size);
    if (w == NULL) {
        return CM_ENOMEM;
    }
    if (name != NULL && name[0] != '\0' && (w->name = strdup(name)) == NULL) {
        free(w);
        return CM_ENOMEM;
    }
    w->reg = r;
    w->cb = cb;
    w->user = user;
    /* At the head: a notify running now does not reach a watcher started by its callback. */
    w->next = r->watchers;
    r->watchers = w;
    rc = r->ops->watch(r, w);
    if (rc < 0) {
        r->watchers = w->next;
        watcher_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void
cm_watcher_stop(cm_watcher *w)
{
    if (w == NULL || w->cb == NULL) {
        return;
    }
    cm_registry *r = w->reg;
    stop_one(r, w);
    if (state_of(r)->notifying == 0) {
        sweep_stopped(r);
    }
}

/* Runs the callbacks of r's watchers that watch svc->name (or everything) and that want accepts
 * (want NULL: all). Callbacks may stop any watcher, start new ones (they get later events
 * only) or close r. */
void
cm__registry_notify_if(cm_registry *r, cm_watch_action action, const cm_reg_service *svc,
                       int (*want)(const cm_watcher *w, void *arg), void *arg)
{
    reg_state *st = state_of(r);
    st->notifying++;
    for (cm_watcher *w = r->watchers; w != NULL; w = w->next) {
        if (w->cb == NULL) {
            continue;
        }
        if (w->name != NULL && (svc->name == NULL || strcmp(w->name, svc->name) != 0)) {
            continue;
        }
        if (want != NULL && !want(w, arg)) {
            continue;
        }
        w->cb(action, svc, w->user);
    }
    if (--st->notifying == 0) {
        sweep_stopped(r);
        if (st->free_pending) {
            registry_free(r);
        }
    }
}

void
cm__registry_notify(cm_registry *r, cm_watch_action action, const cm_reg_service *svc)
{
    cm__registry_notify_if(r, action, svc, NULL, NULL);
}
