/* The registry object: options, the generic entry points that dispatch through a backend's ops,
 * and watcher bookkeeping. */
#include "registry_int.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* State the core keeps for each registry, stored in the same block just before struct
 * cm_registry so that the shared struct stays as registry_int.h defines it. */
typedef struct reg_state {
    int closing;         /* cm_registry_close was called */
    unsigned notifying;  /* depth of cm__registry_notify calls running on r */
    int free_pending;    /* cm_registry_closed ran while notifying */
} reg_state;

#define STATE_SIZE                                                                                 \
    ((sizeof(reg_state) + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t))

static reg_state *
state_of(const cm_registry *r)
{
    return (reg_state *)(void *)((char *)(uintptr_t)r - STATE_SIZE);
}

/* ---- registries ---- */

void
cm_registry_opts_init(cm_registry_opts *o)
{
    memset(o, 0, sizeof(*o));
}

int
cm_registry_opts_set(cm_registry_opts *o, const char *key, const char *val)
{
    if (o == NULL || key == NULL || key[0] == '\0' || val == NULL) {
        return CM_EINVAL;
    }
    size_t i = 0;
    while (i < o->noptions && strcmp(o->options[i].key, key) != 0) {
        i++;
    }
    if (i == CM_REGISTRY_OPTS_MAX) {
        return CM_ENOMEM;
    }
    o->options[i].key = key;
    o->options[i].val = val;
    o->noptions += i == o->noptions;
    return 0;
}

static int
known_key(const cm_registry_ops *ops, const char *key)
{
    for (size_t i = 0; ops->option_keys != NULL && ops->option_keys[i] != NULL; i++) {
        if (strcmp(ops->option_keys[i], key) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Copies the options into r. 0, CM_EINVAL (a key the backend does not know) or CM_ENOMEM. */
static int
opts_copy(cm_registry *r, const cm_registry_opts *o)
{
    r->timeout_ms = o->timeout_ms;
    if (o->addresses != NULL && (r->addresses = strdup(o->addresses)) == NULL) {
        return CM_ENOMEM;
    }
    if ((r->options = cm_md_new()) == NULL) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < o->noptions && i < CM_REGISTRY_OPTS_MAX; i++) {
        const cm_registry_opt *kv = &o->options[i];
        if (!known_key(r->ops, kv->key)) {
            cm_log(CM_LOG_DEBUG, "registry", "%s: unknown option \"%s\"", r->ops->name, kv->key);
            return CM_EINVAL;
        }
        int rc = cm_md_set(r->options, kv->key, kv->val);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static void
opts_fini(cm_registry *r)
{
    free(r->addresses);
    cm_md_free(r->options);
    r->addresses = NULL;
    r->options = NULL;
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
            name = CM_REGISTRY_DEFAULT;
        }
    }
    const cm_registry_ops *ops = cm_registry_find(name);
    if (ops == NULL) {
        return CM_ENOTFOUND;
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
    int rc = opts_copy(r, o != NULL ? o : &defaults);
    if (rc == 0 && ops->init != NULL) {
        rc = ops->init(r);
    }
    if (rc < 0) {
        opts_fini(r);
        free(block);
        return rc;
    }
    *out = r;
    return 0;
}

cm_loop *
cm_registry_loop(const cm_registry *r)
{
    return r->loop;
}

void *
cm_registry_priv(cm_registry *r)
{
    return r->priv;
}

const char *
cm_registry_addresses(const cm_registry *r)
{
    return r->addresses;
}

uint64_t
cm_registry_timeout_ms(const cm_registry *r)
{
    return r->timeout_ms;
}

const char *
cm_registry_option(const cm_registry *r, const char *key)
{
    return cm_md_get(r->options, key);
}

const char *
cm_watcher_name(const cm_watcher *w)
{
    return w->name;
}

void *
cm_watcher_priv(cm_watcher *w)
{
    return w->priv;
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
    opts_fini(r);
    free(state_of(r));
    if (done != NULL) {
        done(arg);
    }
}

void
cm_registry_closed(cm_registry *r)
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
    cm_registry_closed(arg);
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
        cm_registry_closed(r);
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
cm_registry_register_service(cm_registry *r, const cm_reg_service *svc, uint64_t ttl_ms,
                             cm_registry_cb cb, void *user)
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
cm_registry_deregister_service(cm_registry *r, const cm_reg_service *svc, cm_registry_cb cb,
                               void *user)
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
cm_registry_set_why(cm_registry *r, const char *name, const char *fmt, ...)
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
cm_registry_notify(cm_registry *r, cm_watch_action action, const cm_reg_service *svc)
{
    cm__registry_notify_if(r, action, svc, NULL, NULL);
}
