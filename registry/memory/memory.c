/* The "memory" registry backend: a process-wide store, one per namespace, shared by every memory
 * registry of that namespace whatever loop or thread it runs on (go-micro's memory registry,
 * made visible across loops).
 *
 * One mutex guards the store and every registry's mailbox. A registry's results and watch events
 * are queued in its mailbox and run by one closure posted to its own loop (cm_loop_post), so
 * callbacks always run on the registry's loop, in order, never inside the initiating call, and
 * never under the lock. Node TTLs are checked lazily on every call and by one timer per registry,
 * armed at the earliest deadline of the namespace. A namespace lives while a registry uses it. */
#include "registry_int.h"

#include <stdlib.h>
#include <string.h>


typedef enum { MAIL_DONE, MAIL_LIST, MAIL_EVENT } mail_kind;

/* One queued callback: an operation's result or a watch event. */
typedef struct mail {
    struct mail *next;
    mail_kind kind;
    int status;
    cm_registry_cb done_cb;
    cm_registry_list_cb list_cb;
    void *user;
    cm_reg_service_list *list;
    cm_watch_action action;
    cm_reg_service *svc;
    uint64_t seq; /* events: the registry's event number */
} mail;

/* The nodes of one service name and version. */
typedef struct record {
    struct record *next;
    cm_reg_service *svc;     /* owned; svc->nodes are the live nodes */
    uint64_t *deadlines; /* per node: cm_now_ms() time of expiry, 0 for none */
} record;

typedef struct mem mem;

typedef struct space {
    struct space *next;
    char *name;
    record *records; /* in registration order */
    mem *regs;       /* the registries attached */
    uint64_t next_deadline; /* the earliest node deadline; 0: none */
} space;

struct mem {
    cm_registry *r;
    uv_timer_t timer;
    /* Under the store lock. */
    space *sp; /* NULL once closing */
    mem *next; /* in sp->regs */
    mail *head, *tail;
    int posted;     /* a drain is posted to the loop */
    int rearm;      /* the namespace's earliest deadline moved earlier */
    unsigned nwatch; /* watchers running */
    uint64_t seq;   /* events queued so far */
    /* On the loop thread only. */
    int closing, draining, timer_closed;
};

typedef struct mem_watcher {
    uint64_t since; /* the registry's event number when the watch started */
} mem_watcher;

static uv_once_t store_once = UV_ONCE_INIT;
static uv_mutex_t store_lock;
static space *spaces;

static void
store_lock_init(void)
{
    if (uv_mutex_init(&store_lock) != 0) {
        abort();
    }
}

static mem *
mem_of(cm_registry *r)
{
    return (mem *)(void *)r->priv;
}

static const char *
str_or_empty(const char *s)
{
    return s != NULL ? s : "";
}

/* ---- comparisons, for telling an update from a refresh ---- */

static int
md_equal(const cm_md *a, const cm_md *b)
{
    size_t n = cm_md_count(a);
    if (n != cm_md_count(b)) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const char *k, *v, *w;
        cm_md_at(a, i, &k, &v);
        w = cm_md_get(b, k);
        if (w == NULL || strcmp(v, w) != 0) {
            return 0;
        }
    }
    return 1;
}

static int
value_equal(const cm_value *a, const cm_value *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    if (strcmp(str_or_empty(a->name), str_or_empty(b->name)) != 0 ||
        strcmp(str_or_empty(a->type), str_or_empty(b->type)) != 0 || a->nvalues != b->nvalues) {
        return 0;
    }
    for (size_t i = 0; i < a->nvalues; i++) {
        if (!value_equal(&a->values[i], &b->values[i])) {
            return 0;
        }
    }
    return 1;
}

static int
endpoints_equal(const cm_reg_service *a, const cm_reg_service *b)
{
    if (a->nendpoints != b->nendpoints) {
        return 0;
    }
    for (size_t i = 0; i < a->nendpoints; i++) {
        const cm_endpoint *x = &a->endpoints[i], *y = &b->endpoints[i];
        if (strcmp(str_or_empty(x->name), str_or_empty(y->name)) != 0 ||
            !value_equal(x->request, y->request) || !value_equal(x->response, y->response) ||
            !md_equal(x->metadata, y->metadata)) {
            return 0;
        }
    }
    return 1;
}

static int
node_equal(const cm_node *a, const cm_node *b)
{
    return strcmp(str_or_empty(a->address), str_or_empty(b->address)) == 0 &&
           md_equal(a->metadata, b->metadata);
}

/* ---- the store (all under store_lock) ---- */

static void
node_clear(cm_node *n)
{
    free(n->id);
    free(n->address);
    cm_md_free(n->metadata);
    memset(n, 0, sizeof(*n));
}

static void
record_free(record *rec)
{
    cm_reg_service_free(rec->svc);
    free(rec->deadlines);
    free(rec);
}

static record *
record_find(space *sp, const char *name, const char *version, record ***link)
{
    record **pp = &sp->records;
    for (; *pp != NULL; pp = &(*pp)->next) {
        const cm_reg_service *s = (*pp)->svc;
        if (strcmp(s->name, name) == 0 && strcmp(s->version, str_or_empty(version)) == 0) {
            break;
        }
    }
    if (link != NULL) {
        *link = pp;
    }
    return *pp;
}

static ptrdiff_t
node_find(const cm_reg_service *s, const char *id)
{
    for (size_t i = 0; i < s->nnodes; i++) {
        if (strcmp(s->nodes[i].id, id) == 0) {
            return (ptrdiff_t)i;
        }
    }
    return -1;
}

static void drain(void *arg);

/* Makes sure a drain of m's mailbox is posted. 0 or CM_ENOMEM. */
static int
ensure_posted(mem *m)
{
    if (!m->posted) {
        if (cm_loop_post(m->r->loop, drain, m) < 0) {
            return CM_ENOMEM;
        }
        m->posted = 1;
    }
    return 0;
}

/* Queues x in m's mailbox. Should posting fail, x waits for the next post (or the close). */
static void
enqueue(mem *m, mail *x)
{
    x->next = NULL;
    if (m->tail != NULL) {
        m->tail->next = x;
    } else {
        m->head = x;
    }
    m->tail = x;
    (void)ensure_posted(m);
}

/* Queues a copy of svc as an event for every registry of sp that has watchers. An event that
 * cannot be copied for lack of memory is lost. */
static void
broadcast(space *sp, cm_watch_action action, const cm_reg_service *svc)
{
    for (mem *m = sp->regs; m != NULL; m = m->next) {
        if (m->nwatch == 0) {
            continue;
        }
        mail *x = calloc(1, sizeof(*x));
        if (x == NULL || (x->svc = cm_reg_service_dup(svc)) == NULL) {
            free(x);
            continue;
        }
        x->kind = MAIL_EVENT;
        x->action = action;
        x->seq = ++m->seq;
        enqueue(m, x);
    }
}

/* Recomputes sp's earliest deadline; when it moved earlier, every timer is re-armed. */
static void
update_deadline(space *sp)
{
    uint64_t dl = 0;
    for (record *rec = sp->records; rec != NULL; rec = rec->next) {
        for (size_t i = 0; i < rec->svc->nnodes; i++) {
            uint64_t d = rec->deadlines[i];
            if (d != 0 && (dl == 0 || d < dl)) {
                dl = d;
            }
        }
    }
    /* A later deadline needs nothing: a timer armed earlier fires, finds nothing, re-arms. */
    if (dl != 0 && (sp->next_deadline == 0 || dl < sp->next_deadline)) {
        for (mem *m = sp->regs; m != NULL; m = m->next) {
            m->rearm = 1;
            (void)ensure_posted(m);
        }
    }
    sp->next_deadline = dl;
}

/* Moves node i of rec out into *out, closing the gap. */
static void
take_node(record *rec, size_t i, cm_node *out)
{
    cm_reg_service *s = rec->svc;
    *out = s->nodes[i];
    memmove(&s->nodes[i], &s->nodes[i + 1], (s->nnodes - i - 1) * sizeof(cm_node));
    memmove(&rec->deadlines[i], &rec->deadlines[i + 1], (s->nnodes - i - 1) * sizeof(uint64_t));
    s->nnodes--;
}

/* Announces the nodes taken out of rec (a delete event with rec's name, version, metadata and
 * endpoints), frees them, and drops rec (at *link) when it has no node left. */
static void
removed(space *sp, record **link, cm_node *gone, size_t ngone)
{
    record *rec = *link;
    if (ngone > 0) {
        cm_reg_service view = *rec->svc;
        view.nodes = gone;
        view.nnodes = ngone;
        broadcast(sp, CM_WATCH_DELETE, &view);
    }
    for (size_t i = 0; i < ngone; i++) {
        node_clear(&gone[i]);
    }
    if (rec->svc->nnodes == 0) {
        *link = rec->next;
        record_free(rec);
    }
}

/* Drops the nodes whose TTL lapsed, announcing each service's losses. */
static void
sweep(space *sp, uint64_t now)
{
    record **link = &sp->records;
    while (*link != NULL) {
        record *rec = *link;
        size_t ngone = 0;
        cm_node gone[16];
        for (size_t i = 0; i < rec->svc->nnodes;) {
            if (rec->deadlines[i] != 0 && rec->deadlines[i] <= now && ngone < 16) {
                take_node(rec, i, &gone[ngone++]);
            } else {
                i++;
            }
        }
        size_t left = rec->svc->nnodes;
        removed(sp, link, gone, ngone);
        /* With no node left rec is gone and *link is the next record; with 16 taken there may
         * be more: this record runs again. */
        if (left > 0 && ngone < 16) {
            link = &rec->next;
        }
    }
    update_deadline(sp);
}

/* Merges in (taken; freed here) into sp: nodes by id, while the service metadata and endpoints
 * of the latest registration win. 0 or CM_ENOMEM (the store unchanged). */
static int
store_register(space *sp, cm_reg_service *in, uint64_t ttl_ms, uint64_t now)
{
    record **link;
    record *rec = record_find(sp, in->name, in->version, &link);
    int created = rec == NULL;
    if (created) {
        rec = calloc(1, sizeof(*rec));
        if (rec == NULL || (rec->svc = cm_reg_service_new(in->name, in->version)) == NULL) {
            free(rec);
            cm_reg_service_free(in);
            return CM_ENOMEM;
        }
    }
    cm_reg_service *s = rec->svc;
    size_t cap = s->nnodes + in->nnodes;
    cm_node *nodes = realloc(s->nodes, cap * sizeof(cm_node));
    if (nodes != NULL) {
        s->nodes = nodes;
    }
    uint64_t *dls = nodes != NULL ? realloc(rec->deadlines, cap * sizeof(uint64_t)) : NULL;
    if (dls == NULL) {
        if (created) {
            record_free(rec);
        }
        cm_reg_service_free(in);
        return CM_ENOMEM;
    }
    rec->deadlines = dls;
    int changed = created || !endpoints_equal(s, in) || !md_equal(s->metadata, in->metadata);
    /* Swap service-level parts: in (freed below) takes the old ones away. */
    cm_md *md = s->metadata;
    s->metadata = in->metadata;
    in->metadata = md;
    cm_endpoint *eps = s->endpoints;
    size_t neps = s->nendpoints;
    s->endpoints = in->endpoints;
    s->nendpoints = in->nendpoints;
    in->endpoints = eps;
    in->nendpoints = neps;
    uint64_t dl = ttl_ms > 0 ? now + ttl_ms : 0;
    for (size_t i = 0; i < in->nnodes; i++) {
        cm_node *n = &in->nodes[i];
        ptrdiff_t j = node_find(s, n->id);
        if (j < 0) {
            j = (ptrdiff_t)s->nnodes++;
            s->nodes[j] = *n;
            memset(n, 0, sizeof(*n));
            changed = 1;
        } else if (!node_equal(&s->nodes[j], n)) {
            cm_node old = s->nodes[j];
            s->nodes[j] = *n;
            *n = old;
            changed = 1;
        }
        rec->deadlines[j] = dl;
    }
    cm_reg_service_free(in);
    if (created) {
        *link = rec;
    }
    if (changed) {
        broadcast(sp, created ? CM_WATCH_CREATE : CM_WATCH_UPDATE, s);
    }
    update_deadline(sp);
    return 0;
}

/* Removes the nodes of svc (by id) from its name and version, into gone (svc->nnodes long). */
static void
store_deregister(space *sp, const cm_reg_service *svc, cm_node *gone)
{
    record **link;
    record *rec = record_find(sp, svc->name, svc->version, &link);
    if (rec == NULL) {
        return;
    }
    size_t ngone = 0;
    for (size_t i = 0; i < svc->nnodes && rec->svc->nnodes > 0; i++) {
        ptrdiff_t j = node_find(rec->svc, str_or_empty(svc->nodes[i].id));
        if (j >= 0) {
            take_node(rec, (size_t)j, &gone[ngone++]);
        }
    }
    removed(sp, link, gone, ngone);
    update_deadline(sp);
}

static void
space_free(space *sp)
{
    while (sp->records != NULL) {
        record *rec = sp->records;
        sp->records = rec->next;
        record_free(rec);
    }
    free(sp->name);
    free(sp);
}

/* ---- delivery on the registry's loop ---- */

static void on_timer(uv_timer_t *t);

static void
arm(mem *m, uint64_t deadline)
{
    if (deadline == 0) {
        uv_timer_stop(&m->timer);
        return;
    }
    uint64_t now = cm_now_ms();
    uint64_t delay = deadline > now ? deadline - now : 0;
    /* One extra millisecond: the loop's clock may lag cm_now_ms(). */
    uv_timer_start(&m->timer, on_timer, delay + 1, 0);
}

static int
after_start(const cm_watcher *w, void *arg)
{
    const mem_watcher *mw = (const mem_watcher *)(const void *)w->priv;
    return *(const uint64_t *)arg > mw->since;
}

/* Runs one mail's callback (with CM_ECANCELED when cancel) and frees it. */
static void
deliver(mem *m, mail *x, int cancel)
{
    switch (x->kind) {
    case MAIL_DONE:
        if (x->done_cb != NULL) {
            x->done_cb(cancel ? CM_ECANCELED : x->status, x->user);
        }
        break;
    case MAIL_LIST:
        if (cancel || x->status < 0) {
            x->list_cb(cancel ? CM_ECANCELED : x->status, NULL, x->user);
        } else {
            x->list_cb(0, x->list, x->user);
        }
        break;
    case MAIL_EVENT:
        if (!cancel) {
            cm__registry_notify_if(m->r, x->action, x->svc, after_start, &x->seq);
        }
        break;
    }
    cm_reg_service_list_free(x->list);
    cm_reg_service_free(x->svc);
    free(x);
}

/* The last step of a close: once the timer is closed and no drain is pending or running, the
 * mail left is cancelled and the registry freed. */
static void
try_finish(mem *m)
{
    if (!m->timer_closed || m->draining) {
        return;
    }
    uv_mutex_lock(&store_lock);
    int posted = m->posted;
    mail *q = posted ? NULL : m->head;
    if (!posted) {
        m->head = m->tail = NULL;
    }
    uv_mutex_unlock(&store_lock);
    if (posted) {
        return; /* that drain finishes the close */
    }
    while (q != NULL) {
        mail *next = q->next;
        deliver(m, q, 1);
        q = next;
    }
    cm_registry_closed(m->r);
}

static void
drain(void *arg)
{
    mem *m = arg;
    uv_mutex_lock(&store_lock);
    m->posted = 0;
    mail *q = m->head;
    m->head = m->tail = NULL;
    int rearm = m->rearm;
    m->rearm = 0;
    uint64_t deadline = m->sp != NULL ? m->sp->next_deadline : 0;
    uv_mutex_unlock(&store_lock);
    if (rearm && !m->closing) {
        arm(m, deadline);
    }
    m->draining = 1;
    while (q != NULL) {
        mail *next = q->next;
        /* A callback may close the registry: what follows is cancelled then. */
        deliver(m, q, m->closing);
        q = next;
    }
    m->draining = 0;
    if (m->closing) {
        try_finish(m);
    }
}

static void
on_timer(uv_timer_t *t)
{
    mem *m = t->data;
    uv_mutex_lock(&store_lock);
    sweep(m->sp, cm_now_ms());
    uint64_t deadline = m->sp->next_deadline;
    uv_mutex_unlock(&store_lock);
    arm(m, deadline);
}

static void
on_timer_closed(uv_handle_t *h)
{
    mem *m = h->data;
    m->timer_closed = 1;
    try_finish(m);
}

/* ---- the ops ---- */

static int
mem_init(cm_registry *r)
{
    mem *m = mem_of(r);
    m->r = r;
    uv_once(&store_once, store_lock_init);
    const char *name = cm_registry_option(r, "namespace");
    if (name == NULL) {
        name = "default";
    }
    space *fresh = calloc(1, sizeof(*fresh));
    if (fresh == NULL || (fresh->name = strdup(name)) == NULL) {
        free(fresh);
        return CM_ENOMEM;
    }
    int rc = uv_timer_init(cm_loop_uv(r->loop), &m->timer);
    if (rc < 0) {
        space_free(fresh);
        return rc;
    }
    m->timer.data = m;
    uv_unref((uv_handle_t *)&m->timer);
    uv_mutex_lock(&store_lock);
    space *sp = spaces;
    while (sp != NULL && strcmp(sp->name, name) != 0) {
        sp = sp->next;
    }
    if (sp == NULL) {
        sp = fresh;
        fresh = NULL;
        sp->next = spaces;
        spaces = sp;
    }
    m->sp = sp;
    m->next = sp->regs;
    sp->regs = m;
    uint64_t deadline = sp->next_deadline;
    uv_mutex_unlock(&store_lock);
    if (fresh != NULL) {
        space_free(fresh);
    }
    arm(m, deadline);
    return 0;
}

static void
mem_close(cm_registry *r)
{
    mem *m = mem_of(r);
    m->closing = 1;
    uv_mutex_lock(&store_lock);
    space *sp = m->sp;
    mem **pm = &sp->regs;
    while (*pm != m) {
        pm = &(*pm)->next;
    }
    *pm = m->next;
    m->sp = NULL;
    if (sp->regs == NULL) {
        space **ps = &spaces;
        while (*ps != sp) {
            ps = &(*ps)->next;
        }
        *ps = sp->next;
    } else {
        sp = NULL;
    }
    uv_mutex_unlock(&store_lock);
    if (sp != NULL) {
        space_free(sp);
    }
    /* The mail still queued is cancelled once the timer is closed (try_finish). */
    uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}

static int
valid_service(const cm_reg_service *svc)
{
    for (size_t i = 0; i < svc->nnodes; i++) {
        if (svc->nodes[i].id == NULL || svc->nodes[i].id[0] == '\0') {
            return 0;
        }
    }
    return 1;
}

static int
mem_register(cm_registry *r, const cm_reg_service *svc, uint64_t ttl_ms, cm_registry_cb cb,
             void *user)
{
    mem *m = mem_of(r);
    if (svc->nnodes == 0 || !valid_service(svc)) {
        return CM_EINVAL;
    }
    mail *x = calloc(1, sizeof(*x));
    cm_reg_service *copy = x != NULL ? cm_reg_service_dup(svc) : NULL;
    if (copy == NULL) {
        free(x);
        return CM_ENOMEM;
    }
    x->kind = MAIL_DONE;
    x->done_cb = cb;
    x->user = user;
    uv_mutex_lock(&store_lock);
    if (ensure_posted(m) < 0) {
        uv_mutex_unlock(&store_lock);
        cm_reg_service_free(copy);
        free(x);
        return CM_ENOMEM;
    }
    uint64_t now = cm_now_ms();
    sweep(m->sp, now);
    x->status = store_register(m->sp, copy, ttl_ms, now);
    enqueue(m, x);
    uv_mutex_unlock(&store_lock);
    return 0;
}

static int
mem_deregister(cm_registry *r, const cm_reg_service *svc, cm_registry_cb cb, void *user)
{
    mem *m = mem_of(r);
    if (!valid_service(svc)) {
        return CM_EINVAL;
    }
    mail *x = calloc(1, sizeof(*x));
    cm_node *gone = x != NULL ? calloc(svc->nnodes + 1, sizeof(cm_node)) : NULL;
    if (gone == NULL) {
        free(x);
        return CM_ENOMEM;
    }
    x->kind = MAIL_DONE;
    x->done_cb = cb;
    x->user = user;
    uv_mutex_lock(&store_lock);
    if (ensure_posted(m) < 0) {
        uv_mutex_unlock(&store_lock);
        free(gone);
        free(x);
        return CM_ENOMEM;
    }
    sweep(m->sp, cm_now_ms());
    store_deregister(m->sp, svc, gone);
    enqueue(m, x);
    uv_mutex_unlock(&store_lock);
    free(gone);
    return 0;
}

/* Queues a list of copies of the services named name (NULL: all). */
static int
query(cm_registry *r, const char *name, cm_registry_list_cb cb, void *user)
{
    mem *m = mem_of(r);
    mail *x = calloc(1, sizeof(*x));
    cm_reg_service_list *l = x != NULL ? calloc(1, sizeof(*l)) : NULL;
    if (l == NULL) {
        free(x);
        return CM_ENOMEM;
    }
    x->kind = MAIL_LIST;
    x->list_cb = cb;
    x->user = user;
    x->list = l;
    uv_mutex_lock(&store_lock);
    if (ensure_posted(m) < 0) {
        uv_mutex_unlock(&store_lock);
        free(l);
        free(x);
        return CM_ENOMEM;
    }
    sweep(m->sp, cm_now_ms());
    size_t n = 0;
    for (record *rec = m->sp->records; rec != NULL; rec = rec->next) {
        n += name == NULL || strcmp(rec->svc->name, name) == 0;
    }
    if (n > 0 && (l->items = calloc(n, sizeof(cm_reg_service *))) == NULL) {
        x->status = CM_ENOMEM;
    }
    for (record *rec = m->sp->records; rec != NULL && x->status == 0; rec = rec->next) {
        if (name != NULL && strcmp(rec->svc->name, name) != 0) {
            continue;
        }
        if ((l->items[l->n] = cm_reg_service_dup(rec->svc)) == NULL) {
            x->status = CM_ENOMEM;
            break;
        }
        l->n++;
    }
    enqueue(m, x);
    uv_mutex_unlock(&store_lock);
    return 0;
}

static int
mem_get_service(cm_registry *r, const char *name, cm_registry_list_cb cb, void *user)
{
    return query(r, name, cb, user);
}

static int
mem_list_services(cm_registry *r, cm_registry_list_cb cb, void *user)
{
    return query(r, NULL, cb, user);
}

static int
mem_watch(cm_registry *r, cm_watcher *w)
{
    mem *m = mem_of(r);
    mem_watcher *mw = (mem_watcher *)(void *)w->priv;
    uv_mutex_lock(&store_lock);
    m->nwatch++;
    /* Events queued before now are not this watcher's. */
    mw->since = m->seq;
    uv_mutex_unlock(&store_lock);
    return 0;
}

static void
mem_watch_stop(cm_registry *r, cm_watcher *w)
{
    (void)w;
    mem *m = mem_of(r);
    uv_mutex_lock(&store_lock);
    m->nwatch--;
    uv_mutex_unlock(&store_lock);
}

const cm_registry_ops cm__registry_memory = {
    .abi_version = CM_ABI_VERSION,
    .name = "memory",
    .option_keys = (const char *const[]){"namespace", NULL},
    .priv_size = sizeof(mem),
    .watcher_priv_size = sizeof(mem_watcher),
    .init = mem_init,
    .close = mem_close,
    .reg = mem_register,
    .dereg = mem_deregister,
    .get_service = mem_get_service,
    .list_services = mem_list_services,
    .watch = mem_watch,
    .watch_stop = mem_watch_stop,
};
