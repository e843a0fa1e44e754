/* go-micro's default HTTP broker (broker/http.go), on the wire and in the registry.
 *
 * Subscribing registers a node of the registry service "micro.http.broker", version
 * "ff.http.broadcast" or the queue name, node id "<topic>-<broker uuid>", the listener's address
 * and metadata {secure, broker: "http", topic}; the node is registered again every 30 s with a
 * TTL of 1 min, and deregistered on unsubscribe. Publishing looks the service up, keeps the nodes
 * of the topic, and POSTs the JSON message to "/?id=<node id>" of every node of the broadcast
 * version and of one random node of each queue version. As go-micro's broker (its registry
 * cache), the lookup is kept: for publish_cache_ms, until a watch of the service reports a change,
 * a subscription of this broker changes, or a POST fails; one lookup at a time serves every publish
 * that waits for it, and a failed lookup falls back on the last answer. Receiving: a POST whose
 * id parameter is this broker's node of its Micro-Topic is answered 200 and its body handed to the
 * subscriptions of the topic; anything else is answered with an error status (see refuse) and
 * counted. Subscriptions of one topic and queue share their node: deregistered with the last.
 *
 * Everything runs on the loop: the HTTP transport listens and sends, the registry calls back. */
#include "broker_int.h"

#include <cJSON.h>
#include <cmicro/transport.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>
#include <uv.h>

#define MODULE "broker"
#define SERVICE "micro.http.broker"
#define BROADCAST "ff.http.broadcast"
/* The longest topic a subscription takes: "/?id=<topic>-<uuid>", percent-encoded, stays within
 * the 2048 bytes of a request target the HTTP transport keeps. */
#define TOPIC_MAX 400

typedef struct pub pub;

typedef struct http_priv {
    cm_broker *b;
    char id[40]; /* the broker's uuid */
    cm_transport *t;
    cm_registry *reg;
    int own_reg; /* reg was made here from MICRO_REGISTRY */
    cm_listener *l;
    char addr[128];      /* the listener's address */
    char node_addr[128]; /* what the nodes carry */
    uv_timer_t *timer;   /* its own allocation: it closes after the broker is freed */
    uint64_t ttl_ms, interval_ms;
    size_t max_body;
    unsigned inflight; /* registry requests and publishes whose callbacks have not run */
    int busy;          /* disconnect steps still to finish */
    int disconnecting;
    /* The nodes of SERVICE, as the last lookup found them (NULL: none yet). */
    cm_reg_service_list *cache;
    uint64_t cache_at; /* cm_now_ms() of that lookup; 0: to be looked up again */
    uint64_t cache_ms; /* how long it is kept at most (publish_cache_ms) */
    int lookup_err;    /* the last lookup's error, when there is no cache to fall back on */
    int looking;       /* a lookup is in flight */
    int flush_posted;  /* a flush of the waiting publishes is deferred */
    pub *wait_head, *wait_tail; /* publishes waiting for a lookup or the flush */
    size_t npubs, pub_bytes;    /* publishes not finished, and their bodies' bytes */
    uint64_t pub_bytes_max;     /* queue_bytes_max */
    uint64_t node_posts;        /* max_node_posts */
    struct node_line *lines;    /* the POSTs of each address */
    cm_watcher *watch;          /* changes of SERVICE: the cache is stale */
} http_priv;

typedef struct http_sub {
    cm_reg_service *svc; /* the registration */
} http_sub;

/* ---- receiving ---- */

/* Answers a POST that delivers nothing as go-micro's broker does (its status, and a go-micro error
 * as the body), and counts it as malformed; logged at powers of two. */
static void
refuse(http_priv *p, cm_tconn *conn, int code, const char *status, const char *detail, int close)
{
    char body[320], num[8];
    int n = snprintf(body, sizeof(body),
                     "{\"id\":\"go.micro.broker\",\"code\":%d,\"detail\":\"%s\",\"status\":\"%s\"}",
                     code == 405 ? 400 : code, detail, status);
    snprintf(num, sizeof(num), "%d", code);
    cm_hdr h[] = {{":status", num}, {"Content-Type", "application/json"}};
    cm_msg m = {h, 2, (const uint8_t *)body, n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0};
    uint64_t k = ++p->b->stats.malformed;
    if ((k & (k - 1)) == 0) {
        cm_log(CM_LOG_WARN, MODULE, "http: message from %s refused (%d): %s (%llu so far)",
               cm_tconn_peer(conn), code, detail, (unsigned long long)k);
    }
    cm_tconn_reply(conn, &m, close);
}

/* The id parameter of a request's target ("/?id=<node id>", percent-encoded) is node_id. */
static int
id_matches(const cm_msg *req, const char *node_id)
{
    const char *path = cm_msg_header(req, ":path");
    const char *q = path != NULL ? strstr(path, "?id=") : NULL;
    if (q == NULL) {
        q = path != NULL ? strstr(path, "&id=") : NULL;
    }
    if (q == NULL) {
        return 0;
    }
    const char *v = q + 4, *want = node_id;
    while (*v != '\0' && *v != '&') {
        int c = (unsigned char)*v++;
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && isxdigit((unsigned char)v[0]) && isxdigit((unsigned char)v[1])) {
            char hex[3] = {v[0], v[1], '\0'};
            c = (int)strtol(hex, NULL, 16);
            v += 2;
        }
        if (*want == '\0' || (unsigned char)*want++ != c) {
            return 0;
        }
    }
    return *want == '\0';
}

static void
on_request(cm_tconn *conn, int status, const cm_msg *req, void *user)
{
    http_priv *p = user;
    cm_broker *b = p->b;
    const char *method = req != NULL ? cm_msg_header(req, ":method") : NULL;
    if (status < 0 || req == NULL) {
        refuse(p, conn, status == CM_ETOOBIG ? 413 : 431,
               status == CM_ETOOBIG ? "Request Entity Too Large"
                                    : "Request Header Fields Too Large",
               status == CM_ETOOBIG ? "message over max_body_bytes" : "header block too large", 1);
        return;
    }
    if (method != NULL && strcmp(method, "POST") != 0) {
        refuse(p, conn, 405, "Method Not Allowed", "Method not allowed", 0);
        return;
    }
    cm_md *header = NULL;
    uint8_t *body = NULL;
    size_t len = 0;
    char why[128], node_id[512];
    int rc = cm_broker_msg_decode(req->body, req->body_len, &header, &body, &len, why, sizeof(why));
    const char *topic = rc == 0 ? cm_md_get(header, CM_BROKER_TOPIC_HEADER) : NULL;
    if (topic != NULL) {
        snprintf(node_id, sizeof(node_id), "%s-%s", topic, p->id);
    }
    if (rc < 0) {
        refuse(p, conn, 500, "Internal Server Error", why, 0);
    } else if (topic == NULL || topic[0] == '\0') {
        refuse(p, conn, 500, "Internal Server Error", "Topic not found", 0);
    } else if (!id_matches(req, node_id)) {
        /* Not a node of this broker (one that was at this address before): go-micro delivers
         * nothing either. The publisher hears it, and looks the nodes up again. */
        refuse(p, conn, 404, "Not Found", "no subscriber with this id here", 0);
    } else {
        /* Replied first: the request (and conn) are borrowed until then, and handlers may take
         * long. */
        cm_tconn_reply(conn, NULL, 0);
        cm_broker_deliver_topic(b, topic, header, body, len);
    }
    cm_md_free(header);
    free(body);
}

/* ---- registration ---- */

typedef struct reg_req {
    http_priv *p;
    cm_broker_sub *s; /* NULL: a refresh or a deregistration */
    char node_id[160];
} reg_req;

static int
sub_alive(cm_broker *b, const cm_broker_sub *s)
{
    for (cm_broker_sub *x = cm_broker_subs(b); x != NULL; x = x->next) {
        if (x == s) {
            return 1;
        }
    }
    return 0;
}

static void maybe_disconnected(http_priv *p);

static void
on_registry(int status, void *arg)
{
    reg_req *r = arg;
    http_priv *p = r->p;
    p->inflight--;
    p->cache_at = 0; /* a subscription of ours came or went */
    if (status < 0) {
        cm_log(CM_LOG_WARN, MODULE, "http: registering subscription %s failed: %s", r->node_id,
               cm_strerror(status));
    }
    if (r->s != NULL && sub_alive(p->b, r->s)) {
        cm_broker_sub_ready(r->s, status);
    }
    free(r);
    maybe_disconnected(p);
}

/* Registers (dereg 0) or deregisters s's node. */
static int
reg_call(http_priv *p, cm_broker_sub *s, int dereg, int report)
{
    http_sub *hs = cm_broker_sub_priv(s);
    reg_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return CM_ENOMEM;
    }
    r->p = p;
    r->s = report ? s : NULL;
    snprintf(r->node_id, sizeof(r->node_id), "%s", hs->svc->nodes[0].id);
    int rc = dereg ? cm_registry_deregister_service(p->reg, hs->svc, on_registry, r)
                   : cm_registry_register_service(p->reg, hs->svc, p->ttl_ms, on_registry, r);
    if (rc < 0) {
        free(r);
        return rc;
    }
    p->inflight++;
    return 0;
}

static void
on_refresh(uv_timer_t *t)
{
    http_priv *p = t->data;
    for (cm_broker_sub *s = cm_broker_subs(p->b); s != NULL; s = s->next) {
        int rc = reg_call(p, s, 0, 0);
        if (rc < 0) {
            cm_log(CM_LOG_WARN, MODULE, "http: refreshing %s: %s", s->topic, cm_strerror(rc));
        }
    }
}

static int
http_subscribe(cm_broker *b, cm_broker_sub *s)
{
    http_priv *p = cm_broker_priv(b);
    http_sub *hs = cm_broker_sub_priv(s);
    if (strlen(s->topic) > TOPIC_MAX) {
        cm_broker_set_why(b, "http: a topic of %zu bytes (at most %d: its node id goes in URLs)",
                          strlen(s->topic), TOPIC_MAX);
        return CM_EINVAL;
    }
    char node_id[512];
    snprintf(node_id, sizeof(node_id), "%s-%s", s->topic, p->id);
    hs->svc = cm_reg_service_new(SERVICE, s->queue != NULL ? s->queue : BROADCAST);
    cm_md *md = cm_md_new();
    int rc = hs->svc != NULL && md != NULL ? 0 : CM_ENOMEM;
    if (rc == 0 && ((rc = cm_md_set(md, "secure", "false")) < 0 ||
                    (rc = cm_md_set(md, "broker", "http")) < 0 ||
                    (rc = cm_md_set(md, "topic", s->topic)) < 0)) {
        cm_broker_set_why(b, "http: topic \"%s\" cannot be node metadata", s->topic);
    }
    if (rc == 0 && cm_reg_service_add_node(hs->svc, node_id, p->node_addr, md) == NULL) {
        rc = CM_ENOMEM;
    }
    cm_md_free(md);
    if (rc == 0) {
        rc = reg_call(p, s, 0, 1);
    }
    if (rc < 0) {
        cm_reg_service_free(hs->svc);
        hs->svc = NULL;
    }
    return rc;
}

/* Whether another subscription of b than s shares s's node (its topic and queue). */
static int
node_shared(cm_broker *b, const cm_broker_sub *s)
{
    for (const cm_broker_sub *x = cm_broker_subs(b); x != NULL; x = x->next) {
        if (x != s && strcmp(x->topic, s->topic) == 0 &&
            (x->queue == NULL ? s->queue == NULL
                              : s->queue != NULL && strcmp(x->queue, s->queue) == 0)) {
            return 1;
        }
    }
    return 0;
}

static void
http_unsubscribe(cm_broker *b, cm_broker_sub *s)
{
    http_priv *p = cm_broker_priv(b);
    http_sub *hs = cm_broker_sub_priv(s);
    if (hs->svc == NULL) {
        return;
    }
    int rc = node_shared(b, s) ? 0 : reg_call(p, s, 1, 0); /* the node stays for the others */
    if (rc < 0) {
        cm_log(CM_LOG_WARN, MODULE, "http: deregistering %s: %s", s->topic, cm_strerror(rc));
    }
    cm_reg_service_free(hs->svc);
    hs->svc = NULL;
}

/* ---- publishing ---- */

struct pub {
    pub *next; /* waiting for the lookup */
    cm_broker *b;
    cm_broker_publish_cb cb;
    void *arg;
    char *topic;
    cm_buf body;
    unsigned outstanding;
    int status;
    cm_broker_node_err *errs;
    size_t nerrs;
};

typedef struct pub_node pub_node;

/* The POSTs to one address: at most max_node_posts on the wire, the others waiting in line,
 * oldest first; so a slow or hung subscriber holds that many connections of this process and
 * delays only its own messages. */
typedef struct node_line {
    struct node_line *next;
    unsigned active;
    pub_node *head, *tail; /* waiting */
    char addr[];
} node_line;

struct pub_node {
    pub_node *next; /* in its line, waiting */
    pub *pb;
    node_line *line;
    char *id;
    char *addr;
    char *path;
};

static void
pub_free(pub *pb)
{
    for (size_t i = 0; i < pb->nerrs; i++) {
        free((char *)pb->errs[i].node_id);
        free((char *)pb->errs[i].address);
    }
    free(pb->errs);
    free(pb->topic);
    cm_buf_free(&pb->body);
    free(pb);
}

static void
pub_finish(pub *pb)
{
    http_priv *p = cm_broker_priv(pb->b);
    p->npubs--;
    p->pub_bytes -= pb->body.len;
    if (pb->cb != NULL) {
        pb->cb(pb->status, pb->errs, pb->nerrs, pb->arg);
    }
    pub_free(pb);
    p->inflight--;
    maybe_disconnected(p);
}

/* Records a node the message did not reach (taking id and addr); detail NULL: status says it. */
static void
pub_fail(pub *pb, char *id, char *addr, int status, const char *detail)
{
    cm_broker *b = pb->b;
    b->stats.publish_errors++;
    ((http_priv *)cm_broker_priv(b))->cache_at = 0; /* the node may be gone: look again */
    detail = detail != NULL ? detail : cm_strerror(status);
    cm_log(CM_LOG_DEBUG, MODULE, "http: publish on \"%s\" to %s (%s) failed: %s", pb->topic, id,
           addr, detail);
    if (pb->status == 0) {
        pb->status = status;
        cm_broker_set_why(b, "http: publish on \"%s\" to node %s at %s: %s", pb->topic, id, addr,
                          detail);
    }
    cm_broker_node_err *e = realloc(pb->errs, (pb->nerrs + 1) * sizeof(*e));
    if (e == NULL) {
        free(id);
        free(addr);
        return;
    }
    pb->errs = e;
    e[pb->nerrs++] = (cm_broker_node_err){.node_id = id, .address = addr, .status = status};
}

/* n is done (status 0, or its failure): freed; its publish finishes with its last node. */
static void
post_done(pub_node *n, int status, const char *detail)
{
    pub *pb = n->pb;
    if (status < 0) {
        pub_fail(pb, n->id, n->addr, status, detail);
    } else {
        free(n->id);
        free(n->addr);
    }
    free(n->path);
    free(n);
    if (--pb->outstanding == 0) {
        pub_finish(pb);
    }
}

/* l has nothing on the wire and nothing waiting: it goes. */
static void
line_drop_idle(http_priv *p, node_line *l)
{
    if (l->active > 0 || l->head != NULL) {
        return;
    }
    for (node_line **pp = &p->lines; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    free(l);
}

static void on_posted(int status, unsigned flags, const cm_msg *rsp, void *user);

/* Sends n now (it counts in its line's POSTs on the wire), or fails it. */
static void
post_send(pub_node *n)
{
    http_priv *p = cm_broker_priv(n->pb->b);
    cm_hdr hdrs[2] = {{"Content-Type", "application/json"}, {":path", n->path}};
    cm_msg req = {hdrs, 2, n->pb->body.data, n->pb->body.len};
    int rc = cm_transport_roundtrip(p->t, n->addr, &req, cm_broker_timeout_ms(n->pb->b), on_posted,
                                    n, NULL);
    if (rc == 0) {
        n->line->active++;
        return;
    }
    line_drop_idle(p, n->line); /* first: post_done may run a callback that publishes */
    post_done(n, rc, NULL);
}

static void
on_posted(int status, unsigned flags, const cm_msg *rsp, void *user)
{
    (void)flags;
    pub_node *n = user;
    http_priv *p = cm_broker_priv(n->pb->b);
    node_line *l = n->line;
    pub_node *next = l->head; /* its turn: sent before n's publish may finish */
    l->active--;
    if (next != NULL) {
        l->head = next->next;
        l->tail = l->head != NULL ? l->tail : NULL;
        post_send(next);
    }
    line_drop_idle(p, l);
    const char *code = status == CM_EPROTO && rsp != NULL ? cm_msg_header(rsp, ":status") : NULL;
    if (code != NULL) { /* the subscriber refused it: its status and go-micro error */
        char detail[256];
        cJSON *e = cJSON_ParseWithLength((const char *)rsp->body, rsp->body_len);
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "detail"));
        snprintf(detail, sizeof(detail), "refused with HTTP %s: %s", code, d ? d : "(no detail)");
        cJSON_Delete(e);
        post_done(n, CM_EREMOTE, detail);
    } else {
        post_done(n, status < 0 ? status : 0, NULL);
    }
}

/* "/?id=" + the id percent-encoded as Go's url.Values.Encode does (QueryEscape). */
static char *
id_path(const char *id)
{
    size_t n = strlen(id);
    char *out = malloc(6 + 3 * n);
    if (out == NULL) {
        return NULL;
    }
    memcpy(out, "/?id=", 5);
    char *o = out + 5;
    for (const unsigned char *s = (const unsigned char *)id; *s; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
            *s == '-' || *s == '_' || *s == '.' || *s == '~') {
            *o++ = (char)*s;
        } else if (*s == ' ') {
            *o++ = '+';
        } else {
            o += sprintf(o, "%%%02X", *s);
        }
    }
    *o = '\0';
    return out;
}

/* The line of POSTs to addr, made when there is none. NULL: out of memory. */
static node_line *
line_of(http_priv *p, const char *addr)
{
    for (node_line *l = p->lines; l != NULL; l = l->next) {
        if (strcmp(l->addr, addr) == 0) {
            return l;
        }
    }
    size_t len = strlen(addr);
    node_line *l = calloc(1, sizeof(*l) + len + 1);
    if (l != NULL) {
        memcpy(l->addr, addr, len + 1);
        l->next = p->lines;
        p->lines = l;
    }
    return l;
}

static void
post_node(pub *pb, const cm_node *node)
{
    http_priv *p = cm_broker_priv(pb->b);
    pub_node *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        pub_fail(pb, strdup(node->id), strdup(node->address), CM_ENOMEM, NULL);
        return;
    }
    n->pb = pb;
    n->id = strdup(node->id);
    n->addr = strdup(node->address);
    n->path = id_path(node->id);
    pb->outstanding++;
    const char *secure = cm_md_get(node->metadata, "secure");
    if (n->id == NULL || n->addr == NULL || n->path == NULL ||
        (n->line = line_of(p, node->address)) == NULL) {
        post_done(n, CM_ENOMEM, NULL);
    } else if (secure != NULL && strcmp(secure, "true") == 0) {
        line_drop_idle(p, n->line);
        post_done(n, CM_ENOTSUP, "an https subscriber: not supported here");
    } else if (n->line->active < p->node_posts) {
        post_send(n);
    } else { /* waits for a POST of its line to end */
        node_line *l = n->line;
        if (l->tail != NULL) {
            l->tail->next = n;
        } else {
            l->head = n;
        }
        l->tail = n;
    }
}

/* A disconnect: the POSTs waiting in line are not sent. */
static void
cancel_lines(http_priv *p)
{
    for (node_line *l = p->lines, *next; l != NULL; l = next) {
        next = l->next;
        pub_node *n = l->head;
        l->head = l->tail = NULL;
        while (n != NULL) {
            pub_node *after = n->next;
            post_done(n, CM_ECANCELED, "the broker disconnected before it was sent");
            n = after;
        }
        line_drop_idle(p, l);
    }
}

static int
node_matches(const cm_node *n, const char *topic)
{
    const char *br = cm_md_get(n->metadata, "broker");
    const char *tp = cm_md_get(n->metadata, "topic");
    return br != NULL && strcmp(br, "http") == 0 && tp != NULL && strcmp(tp, topic) == 0;
}

/* POSTs pb to the nodes of its topic in list (NULL: the lookup failed with p->lookup_err). */
static void
dispatch(pub *pb, const cm_reg_service_list *list)
{
    http_priv *p = cm_broker_priv(pb->b);
    pb->outstanding = 1; /* held while posting, so that no callback finishes pb early */
    if (list == NULL) {
        pb->status = p->lookup_err;
        cm_broker_set_why(pb->b, "http: looking up %s: %s", SERVICE, cm_strerror(p->lookup_err));
    } else if (p->disconnecting) {
        pb->status = CM_ECANCELED;
        cm_broker_set_why(pb->b, "http: disconnected before the publish on \"%s\" was sent",
                          pb->topic);
    }
    for (size_t i = 0; list != NULL && !p->disconnecting && i < list->n; i++) {
        const cm_reg_service *svc = list->items[i];
        size_t matching = 0;
        for (size_t k = 0; k < svc->nnodes; k++) {
            matching += node_matches(&svc->nodes[k], pb->topic);
        }
        if (matching == 0) {
            continue;
        }
        int broadcast = svc->version != NULL && strcmp(svc->version, BROADCAST) == 0;
        size_t pick = broadcast ? 0 : (size_t)(uv_hrtime() % matching);
        size_t seen = 0;
        for (size_t k = 0; k < svc->nnodes; k++) {
            if (node_matches(&svc->nodes[k], pb->topic) && (broadcast || seen++ == pick)) {
                post_node(pb, &svc->nodes[k]);
            }
        }
    }
    if (--pb->outstanding == 0) {
        pub_finish(pb);
    }
}

/* Sends every waiting publish with the cache (or its lookup's error). */
static void
flush(void *arg)
{
    http_priv *p = arg;
    p->flush_posted = 0;
    pub *pb = p->wait_head;
    p->wait_head = p->wait_tail = NULL;
    while (pb != NULL) { /* a callback that publishes again waits for the next flush */
        pub *next = pb->next;
        dispatch(pb, p->cache);
        pb = next;
    }
}

static void
on_lookup(int status, const cm_reg_service_list *list, void *arg)
{
    http_priv *p = arg;
    p->looking = 0;
    cm_reg_service_list *dup = NULL;
    if (status == 0 && (dup = cm_reg_service_list_dup(list)) == NULL) {
        status = CM_ENOMEM;
    }
    if (status == 0 || status == CM_ENOTFOUND) {
        cm_reg_service_list_free(p->cache);
        p->cache = dup != NULL ? dup : cm_reg_service_list_dup(&(cm_reg_service_list){NULL, 0});
        p->cache_at = cm_now_ms();
    } else if (p->cache != NULL) {
        cm_log(CM_LOG_DEBUG, MODULE, "http: looking up %s: %s; using the last answer", SERVICE,
               cm_strerror(status));
    }
    p->lookup_err = p->cache != NULL ? 0 : status;
    flush(p);      /* its last publish must not end a disconnect (freeing p) under us: */
    p->inflight--; /* the lookup counts until here */
    maybe_disconnected(p);
}

/* Sends the waiting publishes on a later turn: with the cache when it is fresh, else after a
 * lookup. */
static void
kick(http_priv *p)
{
    int fresh = p->cache != NULL && p->cache_at != 0 && cm_now_ms() - p->cache_at < p->cache_ms;
    if (!fresh && !p->looking) {
        int rc = cm_registry_get_service(p->reg, SERVICE, on_lookup, p);
        if (rc == 0) {
            p->looking = 1;
            p->inflight++;
            return;
        }
        if (p->cache == NULL) {
            p->lookup_err = rc;
        }
    }
    if (p->looking || p->flush_posted) {
        return;
    }
    if (cm__broker_defer(p->b, flush, p) == 0) {
        p->flush_posted = 1;
    }
}

static int
http_publish(cm_broker *b, const char *topic, const cm_md *header, const uint8_t *body,
             size_t body_len, cm_broker_publish_cb cb, void *arg)
{
    http_priv *p = cm_broker_priv(b);
    pub *pb = calloc(1, sizeof(*pb));
    cm_md *h = cm_md_new();
    int rc = pb != NULL && h != NULL ? 0 : CM_ENOMEM;
    for (size_t i = 0; rc == 0 && header != NULL && i < cm_md_count(header); i++) {
        const char *k, *v;
        cm_md_at(header, i, &k, &v);
        rc = cm_md_set(h, k, v);
    }
    if (rc == 0) {
        rc = cm_md_set(h, CM_BROKER_TOPIC_HEADER, topic); /* as go-micro's broker adds it */
    }
    if (rc == 0) {
        pb->b = b;
        pb->cb = cb;
        pb->arg = arg;
        pb->topic = strdup(topic);
        rc = pb->topic != NULL ? cm_broker_msg_encode(h, body, body_len, &pb->body) : CM_ENOMEM;
    }
    cm_md_free(h);
    if (rc == 0 && pb->body.len > p->max_body) {
        cm_broker_set_why(b, "http: message of %zu bytes over max_body_bytes (%zu)", pb->body.len,
                          p->max_body);
        rc = CM_ETOOBIG;
    }
    if (rc == 0 &&
        (p->npubs >= cm_broker_queue_max(b) || p->pub_bytes + pb->body.len > p->pub_bytes_max)) {
        cm_broker_set_why(b,
                          "http: %zu publishes (%zu bytes) wait for the registry or are being "
                          "sent: at queue_max or queue_bytes_max; the subscribers or the "
                          "registry are slower than the publishing",
                          p->npubs, p->pub_bytes);
        rc = CM_EAGAIN;
    }
    if (rc < 0) {
        if (pb != NULL) {
            pub_free(pb);
        }
        return rc;
    }
    if (p->wait_tail != NULL) {
        p->wait_tail->next = pb;
    } else {
        p->wait_head = pb;
    }
    p->wait_tail = pb;
    p->inflight++;
    p->npubs++;
    p->pub_bytes += pb->body.len;
    kick(p);
    return 0;
}

/* ---- connect, disconnect ---- */

/* The address the nodes carry: the "advertise" option, else the listener's, with an unspecified
 * host replaced by the first private IPv4 address (go-micro's addr.Extract), else 127.0.0.1. */
static void
node_address(http_priv *p)
{
    const char *adv = cm_broker_option(p->b, "advertise");
    const char *colon = strrchr(p->addr, ':');
    const char *port = colon != NULL ? colon + 1 : "0";
    if (adv != NULL) {
        snprintf(p->node_addr, sizeof(p->node_addr), "%s%s%s", adv,
                 strchr(adv, ':') != NULL ? "" : ":", strchr(adv, ':') != NULL ? "" : port);
        return;
    }
    if (strncmp(p->addr, "0.0.0.0:", 8) != 0 && strncmp(p->addr, "[::]:", 5) != 0) {
        snprintf(p->node_addr, sizeof(p->node_addr), "%s", p->addr);
        return;
    }
    char ip[64] = "127.0.0.1";
    uv_interface_address_t *ifs = NULL;
    int n = 0;
    if (uv_interface_addresses(&ifs, &n) == 0) {
        for (int i = 0; i < n; i++) {
            if (!ifs[i].is_internal && ifs[i].address.address4.sin_family == AF_INET) {
                uv_ip4_name(&ifs[i].address.address4, ip, sizeof(ip));
                break;
            }
        }
        uv_free_interface_addresses(ifs, n);
    }
    snprintf(p->node_addr, sizeof(p->node_addr), "%s:%s", ip, port);
}

static void
connected_later(void *arg)
{
    cm_broker_connected(arg, 0);
}

static void
on_watch(cm_watch_action action, const cm_reg_service *svc, void *arg)
{
    (void)action;
    (void)svc;
    ((http_priv *)arg)->cache_at = 0;
}

static int
http_connect(cm_broker *b)
{
    http_priv *p = cm_broker_priv(b);
    const char *addr = cm_broker_addresses(b) != NULL ? cm_broker_addresses(b) : "127.0.0.1:0";
    int rc = cm_transport_listen(p->t, addr, on_request, p, &p->l);
    if (rc == 0) {
        rc = cm_listener_addr(p->l, p->addr, sizeof(p->addr));
    }
    if (rc == 0) {
        node_address(p);
        p->disconnecting = 0;
        p->cache_at = 0;
        if (cm_registry_watch(p->reg, SERVICE, on_watch, p, &p->watch) < 0) {
            p->watch = NULL; /* the TTL still bounds what the cache misses */
        }
        uv_timer_start(p->timer, on_refresh, p->interval_ms, p->interval_ms);
        rc = cm__broker_defer(b, connected_later, b);
    }
    if (rc < 0) {
        cm_broker_set_why(b, "http: cannot listen on %s: %s", addr, cm_strerror(rc));
        if (p->watch != NULL) {
            cm_watcher_stop(p->watch);
            p->watch = NULL;
        }
        if (p->l != NULL) {
            uv_timer_stop(p->timer);
            cm_listener_close(p->l, NULL, NULL);
            p->l = NULL;
        }
    }
    return rc;
}

static void
maybe_disconnected(http_priv *p)
{
    if (p->disconnecting && p->busy == 0 && p->inflight == 0) {
        p->disconnecting = 0;
        cm_broker_disconnected(p->b);
    }
}

static void
listener_closed(void *arg)
{
    http_priv *p = arg;
    p->busy--;
    maybe_disconnected(p);
}

static void
http_disconnect(cm_broker *b)
{
    http_priv *p = cm_broker_priv(b);
    uv_timer_stop(p->timer);
    if (p->watch != NULL) {
        cm_watcher_stop(p->watch);
        p->watch = NULL;
    }
    p->disconnecting = 1;
    p->busy = 1;
    cancel_lines(p);
    cm_listener_close(p->l, listener_closed, p);
    p->l = NULL;
}

static const char *
http_address(cm_broker *b)
{
    http_priv *p = cm_broker_priv(b);
    return p->addr;
}

/* ---- life ---- */

static int
opt_u64(cm_broker *b, const char *key, uint64_t def, uint64_t *out)
{
    const char *v = cm_broker_option(b, key);
    *out = def;
    if (v == NULL) {
        return 0;
    }
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || *end != '\0' || n == 0 || v[0] == '-') {
        cm_broker_set_why(b, "http broker: option \"%s\" is not a positive number: \"%s\"", key, v);
        return CM_EINVAL;
    }
    *out = n;
    return 0;
}

static void http_fini(cm_broker *b);

static int
http_init(cm_broker *b)
{
    http_priv *p = cm_broker_priv(b);
    p->b = b;
    uint64_t max_body = 0;
    int rc = opt_u64(b, "register_ttl_ms", 60000, &p->ttl_ms);
    if (rc == 0) {
        rc = opt_u64(b, "publish_cache_ms", 60000, &p->cache_ms); /* go-micro's registry cache */
    }
    if (rc == 0) {
        rc = opt_u64(b, "register_interval_ms", 30000, &p->interval_ms);
    }
    if (rc == 0) {
        rc = opt_u64(b, "max_body_bytes", 4u << 20, &max_body);
    }
    if (rc == 0) {
        rc = opt_u64(b, "queue_bytes_max", 64u << 20, &p->pub_bytes_max);
    }
    if (rc == 0) {
        rc = opt_u64(b, "max_node_posts", 64, &p->node_posts);
    }
    if (rc < 0) {
        return rc;
    }
    p->max_body = (size_t)max_body;
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, p->id);
    cm_transport_opts to;
    cm_transport_opts_init(&to);
    to.max_body_bytes = p->max_body;
    to.dial_timeout_ms = cm_broker_timeout_ms(b);
    cm_loop *loop = cm_broker_loop(b);
    if ((rc = cm_transport_new(loop, "http", &to, &p->t)) < 0) {
        return rc;
    }
    p->reg = cm_broker_registry(b);
    if (p->reg == NULL) {
        if ((rc = cm_registry_new(loop, NULL, NULL, &p->reg)) < 0) {
            cm_broker_set_why(b, "http: no registry: %s", cm_strerror(rc));
            cm_transport_close(p->t, NULL, NULL);
            return rc;
        }
        p->own_reg = 1;
    }
    if ((p->timer = malloc(sizeof(*p->timer))) == NULL) {
        http_fini(b);
        return CM_ENOMEM;
    }
    uv_timer_init(cm_loop_uv(loop), p->timer);
    p->timer->data = p;
    uv_unref((uv_handle_t *)p->timer);
    return 0;
}

static void
free_handle(uv_handle_t *h)
{
    free(h);
}

static void
http_fini(cm_broker *b)
{
    http_priv *p = cm_broker_priv(b);
    if (p->timer != NULL) {
        uv_close((uv_handle_t *)p->timer, free_handle);
    }
    cm_reg_service_list_free(p->cache);
    p->cache = NULL;
    cm_transport_close(p->t, NULL, NULL);
    if (p->own_reg) {
        cm_registry_close(p->reg, NULL, NULL);
    }
}

static const char *const http_keys[] = {
    "advertise",        "max_body_bytes",  "register_ttl_ms", "register_interval_ms",
    "publish_cache_ms", "queue_bytes_max", "max_node_posts",  NULL};

const cm_broker_ops cm__broker_http = {
    .abi_version = CM_ABI_VERSION,
    .name = "http",
    .priv_size = sizeof(http_priv),
    .sub_priv_size = sizeof(http_sub),
    .option_keys = http_keys,
    .init = http_init,
    .fini = http_fini,
    .connect = http_connect,
    .disconnect = http_disconnect,
    .publish = http_publish,
    .subscribe = http_subscribe,
    .unsubscribe = http_unsubscribe,
    .address = http_address,
};
