/* cmicro: the querier side of the mDNS registry backend: lookups (get_service, list_services)
 * from sockets of their own (one per family), and watch events from announcements and
 * goodbyes. */
#include "mdns_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- watch ---- */

cm_reg_service *
cm__mdns_entry_service(const cm__mdns_entry *e, const char *want)
{
    cm_reg_service *svc;
    cm_md *md;
    int rc = cm__mdns_txt_decode(e->txt, e->txtlen, &svc, &md);
    if (rc != 0) {
        cm__mdns_debug("entry %s: undecodable TXT payload (%s)", e->name, cm_strerror(rc));
        return NULL;
    }
    char suffix[512];
    snprintf(suffix, sizeof suffix, ".%s.micro.", svc->name);
    char *id = cm__mdns_strip_suffix(e->name, suffix);
    char address[INET6_ADDRSTRLEN + 16];
    cm__mdns_entry_address(e, address, sizeof address);
    if (id == NULL || (want != NULL && strcmp(svc->name, want) != 0) ||
        cm_reg_service_add_node(svc, id, address, md) == NULL) {
        cm_reg_service_free(svc);
        svc = NULL;
    }
    free(id);
    cm_md_free(md);
    return svc;
}

void
cm__mdns_notify_watchers(cm__mdns_state *st, const ldns_pkt *pkt)
{
    cm__mdns_entries set = {0};
    if (cm__mdns_collect(pkt, &set) != 0) {
        cm__mdns_entries_fini(&set);
        return;
    }
    for (size_t i = 0; i < set.n && !st->closing; i++) {
        const cm__mdns_entry *e = &set.v[i];
        if (!cm__mdns_entry_complete(e)) {
            continue;
        }
        cm_reg_service *svc = cm__mdns_entry_service(e, NULL);
        if (svc == NULL) {
            continue;
        }
        if (svc->name[0] != '\0' && svc->version != NULL && svc->version[0] != '\0') {
            cm_registry_notify(st->r, e->ttl == 0 ? CM_WATCH_DELETE : CM_WATCH_CREATE, svc);
        }
        cm_reg_service_free(svc);
    }
    cm__mdns_entries_fini(&set);
}

int
cm__mdns_watch(cm_registry *r, cm_watcher *w)
{
    (void)w; /* the 5353 socket always listens; cm__registry_notify filters by name */
    return cm__mdns_state_of(r)->closing ? CM_ESTATE : 0;
}

void
cm__mdns_watch_stop(cm_registry *r, cm_watcher *w)
{
    (void)r;
    (void)w;
}

/* ---- lookups ---- */

static void
query_handle_closed(uv_handle_t *h)
{
    cm__mdns_query *q = h->data;
    cm__mdns_state *st = q->st;
    if (--q->open == 0) {
        if (q->canceled && q->cb != NULL) {
            q->cb(CM_ECANCELED, NULL, q->user);
        }
        cm__mdns_entries_fini(&q->entries);
        ldns_rdf_deep_free(q->qdname);
        free(q->name);
        free(q->qname);
        free(q);
    }
    cm__mdns_handle_done(st);
}

/* Unlinks q and closes its handles; it is freed when they are closed. */
static void
query_close(cm__mdns_query *q)
{
    cm__mdns_state *st = q->st;
    for (cm__mdns_query **p = &st->queries; *p != NULL; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            break;
        }
    }
    for (int f = 0; f < q->nsocks; f++) {
        uv_close((uv_handle_t *)&q->sock[f], query_handle_closed);
    }
    uv_close((uv_handle_t *)&q->timer, query_handle_closed);
}

/* Takes a reply into q if it answers q's question. */
void
cm__mdns_query_feed(cm__mdns_query *q, const ldns_pkt *pkt)
{
    const ldns_rr_list *qs = ldns_pkt_question(pkt);
    int match = qs != NULL && ldns_rr_list_rr_count(qs) > 0 &&
                ldns_dname_compare(ldns_rr_owner(ldns_rr_list_rr(qs, 0)), q->qdname) == 0;
    /* Responders that do not echo the question are accepted when they answer the PTR. */
    const ldns_rr_list *an = ldns_pkt_answer(pkt);
    for (size_t i = 0; !match && an != NULL && i < ldns_rr_list_rr_count(an); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(an, i);
        match = ldns_rr_get_type(rr) == LDNS_RR_TYPE_PTR &&
                ldns_dname_compare(ldns_rr_owner(rr), q->qdname) == 0;
    }
    if (!match) {
        return;
    }
    q->replies++;
    if (cm__mdns_collect(pkt, &q->entries) != 0) {
        cm__mdns_debug("out of memory collecting a reply for %s", q->name);
    }
}

/* Appends svc to l, taking it (freed on failure). */
static int
list_append(cm_reg_service_list *l, cm_reg_service *svc)
{
    cm_reg_service **items = realloc(l->items, (l->n + 1) * sizeof *items);
    if (items == NULL) {
        cm_reg_service_free(svc);
        return CM_ENOMEM;
    }
    l->items = items;
    l->items[l->n++] = svc;
    return 0;
}

/* Adds the one node of svc to the service of its version, or appends svc; takes svc. */
static int
group_by_version(cm_reg_service_list *l, cm_reg_service *svc)
{
    for (size_t i = 0; i < l->n; i++) {
        cm_reg_service *g = l->items[i];
        if (strcmp(g->version, svc->version) == 0) {
            const cm_node *n = &svc->nodes[0];
            int rc = cm_reg_service_add_node(g, n->id, n->address, n->metadata) ? 0 : CM_ENOMEM;
            cm_reg_service_free(svc);
            return rc;
        }
    }
    return list_append(l, svc);
}

static int
list_add_name(cm_reg_service_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i]->name, name) == 0) {
            return 0;
        }
    }
    cm_reg_service *s = cm_reg_service_new(name, "");
    return s == NULL ? CM_ENOMEM : list_append(l, s);
}

int
cm__mdns_query_result(cm__mdns_query *q, cm_reg_service_list *l)
{
    cm__mdns_entries_resolve(&q->entries);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < q->entries.n; i++) {
        const cm__mdns_entry *e = &q->entries.v[i];
        if (e->ttl == 0) {
            continue;
        }
        if (q->list) {
            /* Wildcards "<svc>._services.micro."; go-micro's are always complete, others
             * count as soon as a live record names them. */
            char *name = cm__mdns_strip_suffix(e->name, "._services.micro.");
            if (name != NULL) {
                rc = list_add_name(l, name);
                free(name);
            }
            continue;
        }
        if (!cm__mdns_entry_complete(e)) {
            continue;
        }
        cm_reg_service *svc = cm__mdns_entry_service(e, q->name);
        if (svc != NULL) {
            rc = group_by_version(l, svc);
        }
    }
    return rc;
}

static void
query_window_end(uv_timer_t *t)
{
    cm__mdns_query *q = t->data;
    cm__mdns_state *st = q->st;
    cm_reg_service_list l = {NULL, 0};
    int rc = cm__mdns_query_result(q, &l);
    if (rc == 0 && l.n == 0) {
        const char *what = q->list ? "_services" : q->name;
        if (q->replies == 0) {
            cm__mdns_debug(
                "0 answers for %s in %llu ms on interfaces [%s]; multicast may be blocked", what,
                (unsigned long long)st->window_ms, st->ifnames);
            cm_registry_set_why(st->r, what,
                                "mdns: 0 answers in %llu ms on interfaces [%s]; multicast may be "
                                "blocked",
                                (unsigned long long)st->window_ms, st->ifnames);
        } else {
            cm_registry_set_why(st->r, what,
                                "mdns: %zu replies in %llu ms on interfaces [%s], none usable "
                                "(incomplete records or a bad TXT payload)",
                                q->replies, (unsigned long long)st->window_ms, st->ifnames);
        }
    }
    query_close(q);
    cm_registry_list_cb cb = q->cb;
    q->cb = NULL;
    cb(rc, rc == 0 ? &l : NULL, q->user);
    for (size_t i = 0; i < l.n; i++) {
        cm_reg_service_free(l.items[i]);
    }
    free(l.items);
}

static void
query_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    cm__mdns_query *q = h->data;
    *buf = uv_buf_init((char *)q->st->rbuf, sizeof q->st->rbuf);
}

static void
query_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
           unsigned flags)
{
    cm__mdns_query *q = h->data;
    char a[64];
    if (nread < 0) {
        cm__mdns_debug("lookup of %s: receive failed: %s", q->name, uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || addr == NULL) {
        return;
    }
    if (flags & UV_UDP_PARTIAL) {
        cm__mdns_debug("dropped a truncated datagram from %s",
                       cm__mdns_addr_str(addr, a, sizeof a));
        return;
    }
    ldns_pkt *pkt = NULL;
    ldns_status s = cm__mdns_wire2pkt(&pkt, (const uint8_t *)buf->base, (size_t)nread);
    if (s != LDNS_STATUS_OK) {
        cm__mdns_debug("dropped a malformed reply from %s: %s",
                       cm__mdns_addr_str(addr, a, sizeof a), ldns_get_errorstr_by_id(s));
        ldns_pkt_free(pkt);
        return;
    }
    /* RFC 6762 section 11: replies from on-link sources only, none replacing an instance that
     * another source holds. */
    if (!cm__mdns_source_ok(q->st, addr)) {
        cm__mdns_refused(q->st, addr, "not an on-link source");
    } else if (ldns_pkt_qr(pkt) && ldns_pkt_get_opcode(pkt) == LDNS_PACKET_QUERY &&
               ldns_pkt_get_rcode(pkt) == LDNS_RCODE_NOERROR) {
        if (cm__mdns_owners_admit(&q->st->owners, pkt, (const uint8_t *)buf->base, (size_t)nread,
                                  addr, uv_now(q->st->loop))) {
            cm__mdns_query_feed(q, pkt);
        } else {
            cm__mdns_refused(q->st, addr, "it speaks for an instance that another source holds");
        }
    }
    ldns_pkt_free(pkt);
}

/* Opens q's socket of one family on an ephemeral port and starts reading. Once the handle
 * exists it counts in q->nsocks and closes with q. */
static int
query_socket(cm__mdns_query *q, int v6)
{
    uv_udp_t *s = &q->sock[v6];
    int rc = uv_udp_init(q->st->loop, s);
    if (rc != 0) {
        return rc;
    }
    s->data = q;
    q->nsocks++;
    q->open++;
    q->st->nhandles++;
    cm__mdns_sockaddr any;
    if (v6) {
        uv_ip6_addr("::", 0, &any.in6);
    } else {
        uv_ip4_addr("0.0.0.0", 0, &any.in);
    }
    rc = uv_udp_bind(s, &any.sa, v6 ? UV_UDP_IPV6ONLY : 0);
    if (rc == 0) {
        uv_udp_set_multicast_ttl(s, 255);
        uv_udp_set_multicast_loop(s, 1);
        rc = uv_udp_recv_start(s, query_alloc, query_recv);
    }
    return rc;
}

static int
query_start(cm_registry *r, const char *name, int list, cm_registry_list_cb cb, void *user)
{
    cm__mdns_state *st = cm__mdns_state_of(r);
    if (st->closing) {
        return CM_ESTATE;
    }
    if (cb == NULL || name == NULL || name[0] == '\0') {
        return CM_EINVAL;
    }
    cm__mdns_query *q = calloc(1, sizeof *q);
    if (q == NULL) {
        return CM_ENOMEM;
    }
    q->st = st;
    q->list = list;
    q->cb = cb;
    q->user = user;
    q->name = strdup(name);
    size_t qlen = strlen(name) + sizeof ".micro.";
    q->qname = malloc(qlen);
    if (q->name == NULL || q->qname == NULL) {
        free(q->name);
        free(q->qname);
        free(q);
        return CM_ENOMEM;
    }
    snprintf(q->qname, qlen, "%s.micro.", name);
    uint8_t *wire = NULL;
    size_t len = 0;
    uint16_t id = (uint16_t)(uv_hrtime() ^ (uintptr_t)q ^ ((uintptr_t)q >> 16));
    int rc = cm__mdns_query_wire(q->qname, id, &wire, &len);
    if (rc == 0 && ldns_str2rdf_dname(&q->qdname, q->qname) != LDNS_STATUS_OK) {
        rc = CM_ENOMEM;
    }
    if (rc != 0) {
        if (rc == CM_EINVAL) {
            cm__mdns_debug("cannot look up \"%s\": not a valid DNS name", name);
        }
        free(wire);
        ldns_rdf_deep_free(q->qdname);
        free(q->name);
        free(q->qname);
        free(q);
        return rc;
    }
    /* From here on the handles exist: failures close them and free q without a callback. */
    uv_timer_init(st->loop, &q->timer);
    q->timer.data = q;
    q->open = 1;
    st->nhandles++;
    q->next = st->queries;
    st->queries = q;
    if ((rc = query_socket(q, 0)) != 0) {
        cm__mdns_debug("cannot open a query socket for %s: %s", name, uv_strerror(rc));
        free(wire);
        q->cb = NULL;
        query_close(q);
        return rc;
    }
    if (st->nsocks == 2 && (rc = query_socket(q, 1)) != 0) {
        cm__mdns_debug("lookup of %s: no IPv6 query socket (%s); IPv4 only", name,
                       uv_strerror(rc));
        if (q->nsocks == 2) {
            uv_close((uv_handle_t *)&q->sock[1], query_handle_closed);
            q->nsocks = 1;
        }
    }
    cm__mdns_multicast(st, q->sock, q->nsocks, wire, len);
    free(wire);
    uv_timer_start(&q->timer, query_window_end, st->window_ms, 0);
    return 0;
}

int
cm__mdns_get_service(cm_registry *r, const char *name, cm_registry_list_cb cb, void *user)
{
    return query_start(r, name, 0, cb, user);
}

int
cm__mdns_list_services(cm_registry *r, cm_registry_list_cb cb, void *user)
{
    return query_start(r, "_services", 1, cb, user);
}

void
cm__mdns_query_cancel(cm__mdns_query *q)
{
    q->canceled = 1;
    query_close(q);
}
