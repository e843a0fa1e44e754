/* cmicro: the responder side of the mDNS registry backend: registered nodes and the
 * per-service wildcards, their announcements and goodbyes, and the answers to queries. */
#include "mdns_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
announce(cm__mdns_node *n, uint32_t ttl)
{
    uint8_t *wire;
    size_t len;
    if (cm__mdns_zone_announce(&n->zone, ttl, &wire, &len) != 0) {
        cm__mdns_warn("out of memory building the %s of %s", ttl ? "announcement" : "goodbye",
                      n->id);
        return;
    }
    cm__mdns_multicast(n->st, n->st->sock, n->st->nsocks, wire, len);
    free(wire);
}

static void
announce_fired(uv_timer_t *t)
{
    cm__mdns_node *n = t->data;
    announce(n, CM__MDNS_TTL);
    n->announced++;
    /* At t, t+1 s and t+3 s, as go-micro's probe() does after probing. */
    if (n->announced < 3) {
        uv_timer_start(&n->timer, announce_fired, n->announced == 1 ? 1000 : 2000, 0);
    }
}

static void
node_closed(uv_handle_t *h)
{
    cm__mdns_node *n = h->data;
    cm__mdns_state *st = n->st;
    cm__mdns_zone_fini(&n->zone);
    free(n->service);
    free(n->id);
    free(n->fingerprint);
    free(n);
    cm__mdns_handle_done(st);
}

static cm__mdns_wild *
find_wild(cm__mdns_state *st, const char *service)
{
    for (cm__mdns_wild *w = st->wilds; w != NULL; w = w->next) {
        if (strcmp(w->service, service) == 0) {
            return w;
        }
    }
    return NULL;
}

static void
wild_free(cm__mdns_wild *w)
{
    if (w != NULL) {
        cm__mdns_zone_fini(&w->zone);
        free(w->service);
        free(w);
    }
}

static void
wild_release(cm__mdns_state *st, const char *service)
{
    for (cm__mdns_wild **p = &st->wilds; *p != NULL; p = &(*p)->next) {
        cm__mdns_wild *w = *p;
        if (strcmp(w->service, service) == 0) {
            if (--w->nodes == 0) {
                *p = w->next;
                wild_free(w);
            }
            return;
        }
    }
}

/* Unlinks n, says goodbye for it and frees it (its timer closes first). */
void
cm__mdns_node_remove(cm__mdns_state *st, cm__mdns_node *n)
{
    for (cm__mdns_node **p = &st->nodes; *p != NULL; p = &(*p)->next) {
        if (*p == n) {
            *p = n->next;
            break;
        }
    }
    announce(n, 0);
    wild_release(st, n->service);
    uv_close((uv_handle_t *)&n->timer, node_closed);
}

static cm__mdns_node *
find_node(cm__mdns_state *st, const char *service, const char *id)
{
    for (cm__mdns_node *n = st->nodes; n != NULL; n = n->next) {
        if (strcmp(n->service, service) == 0 && strcmp(n->id, id) == 0) {
            return n;
        }
    }
    return NULL;
}

/* Parses "ip:port" or "[ip6]:port". 0, or -1 with why set. */
static int
parse_address(const char *addr, int *family, uint8_t ip[16], uint16_t *port, const char **why)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr) {
        *why = "not host:port";
        return -1;
    }
    char host[INET6_ADDRSTRLEN + 2];
    size_t hlen = (size_t)(colon - addr);
    const char *h = addr;
    if (addr[0] == '[') {
        if (hlen < 2 || addr[hlen - 1] != ']') {
            *why = "not host:port";
            return -1;
        }
        h++;
        hlen -= 2;
    }
    char *end;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || p == 0 || p > 65535) {
        *why = "the port must be 1..65535";
        return -1;
    }
    if (hlen == 0 || hlen >= sizeof host) {
        *why = "the host must be an IP literal (go-micro's mDNS registry cannot resolve names)";
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memset(ip, 0, 16);
    if (addr[0] != '[' && inet_pton(AF_INET, host, ip) == 1) {
        *family = AF_INET;
    } else if (addr[0] == '[' && inet_pton(AF_INET6, host, ip) == 1) {
        *family = AF_INET6;
    } else {
        *why = "the host must be an IP literal (go-micro's mDNS registry cannot resolve names)";
        return -1;
    }
    *port = (uint16_t)p;
    return 0;
}

/* A node ready to be linked: zone built, nothing announced yet. */
static int
node_prepare(cm__mdns_state *st, const cm_reg_service *svc, const cm_node *node, cm__mdns_node **out)
{
    int family;
    uint8_t ip[16];
    uint16_t port;
    const char *why = NULL;
    *out = NULL;
    if (node->id == NULL || node->id[0] == '\0' || node->address == NULL ||
        parse_address(node->address, &family, ip, &port, &why) != 0) {
        cm__mdns_debug("cannot register node \"%s\" of %s: address \"%s\": %s",
                       node->id ? node->id : "", svc->name, node->address ? node->address : "",
                       why ? why : "a node needs an id and an address");
        return CM_EINVAL;
    }
    cm__mdns_node *n = calloc(1, sizeof *n);
    char *txt = NULL;
    size_t txtlen = 0;
    int rc = n == NULL ? CM_ENOMEM : cm__mdns_txt_encode(svc, node, &txt, &txtlen);
    if (rc == 0 && txtlen > CM__MDNS_MAX_TXT) {
        cm__mdns_debug("cannot register node \"%s\" of %s: the TXT payload (%zu characters) does "
                       "not fit in one datagram; register fewer endpoints",
                       node->id, svc->name, txtlen);
        rc = CM_ETOOBIG;
    }
    if (rc == 0) {
        rc = cm__mdns_zone_init(&n->zone, node->id, svc->name, st->host, port, family, ip, txt,
                                txtlen);
        if (rc == CM_EINVAL) {
            cm__mdns_debug("cannot register node \"%s\" of %s: not a valid DNS name", node->id,
                           svc->name);
        }
    }
    if (rc == 0) {
        size_t flen = strlen(node->address) + txtlen + 2;
        n->fingerprint = malloc(flen);
        n->service = strdup(svc->name);
        n->id = strdup(node->id);
        if (n->fingerprint == NULL || n->service == NULL || n->id == NULL) {
            rc = CM_ENOMEM;
        } else {
            snprintf(n->fingerprint, flen, "%s|%s", node->address, txt);
        }
    }
    free(txt);
    if (rc != 0) {
        if (n != NULL) {
            cm__mdns_zone_fini(&n->zone);
            free(n->fingerprint);
            free(n->service);
            free(n->id);
            free(n);
        }
        return rc;
    }
    n->st = st;
    *out = n;
    return 0;
}

static void
node_discard(cm__mdns_node *n)
{
    cm__mdns_zone_fini(&n->zone);
    free(n->fingerprint);
    free(n->service);
    free(n->id);
    free(n);
}

/* Links a prepared node (replacing or keeping an existing one) and starts its announcements. */
static int
node_link(cm__mdns_state *st, cm__mdns_node *n, cm__mdns_wild *spare)
{
    cm__mdns_node *old = find_node(st, n->service, n->id);
    if (old != NULL && strcmp(old->fingerprint, n->fingerprint) == 0) {
        node_discard(n); /* unchanged: a no-op refresh */
        return 0;
    }
    if (old != NULL) {
        /* Changed: the new records replace the old ones and are announced again (go-micro
         * keeps the old ones until deregister). A new address first says goodbye to the old. */
        if (old->zone.port != n->zone.port || old->zone.family != n->zone.family ||
            memcmp(old->zone.ip, n->zone.ip, 16) != 0) {
            announce(old, 0);
        }
        cm__mdns_zone_fini(&old->zone);
        old->zone = n->zone;
        memset(&n->zone, 0, sizeof n->zone);
        free(old->fingerprint);
        old->fingerprint = n->fingerprint;
        n->fingerprint = NULL;
        node_discard(n);
        old->announced = 0;
        uv_timer_start(&old->timer, announce_fired, 0, 0);
        return 0;
    }
    /* The caller made a spare wildcard when the service had none. */
    cm__mdns_wild *w = find_wild(st, n->service);
    if (w == NULL) {
        w = spare;
        w->next = st->wilds;
        st->wilds = w;
    }
    w->nodes++;
    uv_timer_init(st->loop, &n->timer);
    n->timer.data = n;
    st->nhandles++;
    n->next = st->nodes;
    st->nodes = n;
    uv_timer_start(&n->timer, announce_fired, 0, 0);
    return w == spare ? 1 : 0;
}

/* A wildcard for service (not linked). */
static cm__mdns_wild *
wild_new(cm__mdns_state *st, const char *service)
{
    static const uint8_t any[16] = {0};
    cm__mdns_wild *w = calloc(1, sizeof *w);
    if (w == NULL || (w->service = strdup(service)) == NULL ||
        cm__mdns_zone_init(&w->zone, service, "_services", st->host, CM__MDNS_WILDCARD_PORT,
                           AF_INET, any, NULL, 0) != 0) {
        wild_free(w); /* a failed zone_init leaves the zone empty */
        return NULL;
    }
    w->zone.wildcard = 1;
    return w;
}

int
cm__mdns_reg(cm_registry *r, const cm_reg_service *svc, uint64_t ttl_ms, cm_registry_cb cb, void *user)
{
    (void)ttl_ms; /* mDNS records carry their own TTL (120 s) */
    cm__mdns_state *st = cm__mdns_state_of(r);
    if (st->closing) {
        return CM_ESTATE;
    }
    if (svc == NULL || svc->name == NULL || svc->name[0] == '\0' || svc->nnodes == 0) {
        cm__mdns_debug("cannot register: a service needs a name and at least one node");
        return CM_EINVAL;
    }
    /* Every node is checked and built before anything changes: all or nothing. */
    cm__mdns_node **prep = calloc(svc->nnodes, sizeof *prep);
    cm__mdns_done *d = cb != NULL ? malloc(sizeof *d) : NULL;
    cm__mdns_wild *spare = find_wild(st, svc->name) ? NULL : wild_new(st, svc->name);
    int rc = prep == NULL || (cb != NULL && d == NULL) ? CM_ENOMEM : 0;
    if (rc == 0 && spare == NULL && find_wild(st, svc->name) == NULL) {
        rc = CM_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < svc->nnodes; i++) {
        rc = node_prepare(st, svc, &svc->nodes[i], &prep[i]);
    }
    if (rc != 0) {
        for (size_t i = 0; prep != NULL && i < svc->nnodes; i++) {
            if (prep[i] != NULL) {
                node_discard(prep[i]);
            }
        }
        free(prep);
        free(d);
        wild_free(spare);
        return rc;
    }
    for (size_t i = 0; i < svc->nnodes; i++) {
        if (node_link(st, prep[i], spare) == 1) {
            spare = NULL;
        }
    }
    free(prep);
    wild_free(spare); /* unused: every node was already known */
    cm__mdns_complete_later(st, d, cb, user, 0);
    return 0;
}

int
cm__mdns_dereg(cm_registry *r, const cm_reg_service *svc, cm_registry_cb cb, void *user)
{
    cm__mdns_state *st = cm__mdns_state_of(r);
    if (st->closing) {
        return CM_ESTATE;
    }
    if (svc == NULL || svc->name == NULL) {
        return CM_EINVAL;
    }
    cm__mdns_done *d = NULL;
    if (cb != NULL && (d = malloc(sizeof *d)) == NULL) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < svc->nnodes; i++) {
        cm__mdns_node *n = svc->nodes[i].id ? find_node(st, svc->name, svc->nodes[i].id) : NULL;
        if (n != NULL) {
            cm__mdns_node_remove(st, n);
        }
    }
    cm__mdns_complete_later(st, d, cb, user, 0);
    return 0;
}

/* The limit on one reply to a query of len bytes. */
static size_t
reply_limit(size_t len)
{
    return len > SIZE_MAX / CM__MDNS_REPLY_FACTOR ? SIZE_MAX : len * CM__MDNS_REPLY_FACTOR;
}

static void
answer_zone(cm__mdns_state *st, const cm__mdns_zone *z, const ldns_pkt *pkt, size_t len,
            uv_udp_t *sock, const struct sockaddr *from)
{
    uint8_t *wire;
    size_t wlen;
    if (cm__mdns_zone_answer_limit(z, pkt, reply_limit(len), &wire, &wlen) == 0 &&
        wire != NULL) {
        cm__mdns_send(st, sock, wire, wlen, from);
        free(wire);
    }
}

void
cm__mdns_answer(cm__mdns_state *st, const ldns_pkt *pkt, size_t len, const struct sockaddr *from)
{
    int v6 = from->sa_family == AF_INET6;
    if (v6 && st->nsocks < 2) {
        return;
    }
    uv_udp_t *sock = &st->sock[v6];
    for (cm__mdns_node *n = st->nodes; n != NULL; n = n->next) {
        answer_zone(st, &n->zone, pkt, len, sock, from);
    }
    for (cm__mdns_wild *w = st->wilds; w != NULL; w = w->next) {
        answer_zone(st, &w->zone, pkt, len, sock, from);
    }
}
