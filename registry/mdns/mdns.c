/* cmicro: the mDNS registry backend (go-micro's default registry), on the registry's loop.
 *
 * A UDP socket on 0.0.0.0:5353 and one on [::]:5353 (SO_REUSEADDR and SO_REUSEPORT, so they
 * coexist with go-micro and other responders; joined to 224.0.0.251 and ff02::fb on the chosen
 * interfaces, multicast loopback on) answer queries for the registered nodes, by unicast over the
 * query's family, and hear the announcements and goodbyes that feed the watchers. Each lookup
 * sends one PTR query to both groups from sockets of its own on ephemeral ports (go-micro's
 * responders answer by unicast to the query's source) and collects the replies of both for the
 * query window. Registering announces the node three times (t, t+1 s, t+3 s) on both groups;
 * deregistering and closing send goodbyes (TTL 0) likewise.
 *
 * Files: mdns.c (this: sockets, interfaces, the packet handler, init and close),
 * mdns_responder.c (registrations and answers), mdns_lookup.c (lookups and watch events),
 * mdns_wire.c (the DNS messages, with ldns), mdns_entries.c (reading replies, TXT payload).
 *
 * IPv6 is optional: an interface without an IPv6 address is served over IPv4 only, and when
 * [::]:5353 cannot be bound or ff02::fb joined anywhere the backend runs over IPv4 alone (with a
 * debug line). A response heard over both families counts once.
 *
 * Trust (RFC 6762 section 11): datagrams are used only from on-link sources (the subnet of an
 * address of a chosen interface, or link-local) and, with the "subnets" option
 * (MICRO_MDNS_SUBNETS), from those subnets; a response for an instance that another source holds
 * is dropped (mdns_entries.c). The IP TTL is not checked: libuv gives no ancillary data, and
 * go-micro multicasts at TTL 1 and replies at the default TTL, so TTL 255 would refuse it.
 */
#include "mdns_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_WINDOW_MS 100
#define DRAIN_MS 500 /* at most this long for queued goodbyes before the sockets close */
#define LINKS_MS 1000 /* the interfaces' addresses are read again at most this often */
#define COPY_MS 500  /* a response's copy over the other family comes within this (< 1 s, the
                        gap between announcements) */

typedef struct pending_send {
    uv_udp_send_t req;
    cm__mdns_state *st;
    uint8_t data[];
} pending_send;

cm__mdns_state *
cm__mdns_state_of(cm_registry *r)
{
    cm__mdns_state *st; /* the registry's private block holds a pointer to the state */
    memcpy(&st, r->priv, sizeof st);
    return st;
}

const char *
cm__mdns_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        port = ntohs(in->sin_port);
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in->sin6_addr, ip, sizeof ip);
        port = ntohs(in->sin6_port);
    }
    snprintf(buf, len, "%s:%u", ip, port);
    return buf;
}

int
cm__mdns_sockaddr_ip(const struct sockaddr *sa, uint8_t ip[16])
{
    memset(ip, 0, 16);
    if (sa != NULL && sa->sa_family == AF_INET) {
        memcpy(ip, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa != NULL && sa->sa_family == AF_INET6) {
        memcpy(ip, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return AF_INET6;
    }
    return AF_UNSPEC;
}

/* ---- sources (RFC 6762 section 11) ---- */

static int
in_prefix(const cm__mdns_prefix *p, int family, const uint8_t ip[16])
{
    if (p->family != family) {
        return 0;
    }
    unsigned full = p->bits / 8, rest = p->bits % 8;
    if (memcmp(p->addr, ip, full) != 0) {
        return 0;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return rest == 0 || (p->addr[full] & mask) == (ip[full] & mask);
}

static int
in_prefixes(const cm__mdns_prefix *v, size_t n, int family, const uint8_t ip[16])
{
    for (size_t i = 0; i < n; i++) {
        if (in_prefix(&v[i], family, ip)) {
            return 1;
        }
    }
    return 0;
}

static int
link_local(int family, const uint8_t ip[16])
{
    if (family == AF_INET) {
        return ip[0] == 169 && ip[1] == 254;
    }
    return ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80;
}

/* The length of the prefix a netmask covers. */
static unsigned
mask_bits(const struct sockaddr *mask)
{
    uint8_t m[16];
    int family = cm__mdns_sockaddr_ip(mask, m);
    unsigned bits = 0, len = family == AF_INET ? 4 : 16;
    for (unsigned i = 0; i < len && m[i] == 0xff; i++) {
        bits += 8;
    }
    for (uint8_t b = bits / 8 < len ? m[bits / 8] : 0; b & 0x80; b = (uint8_t)(b << 1)) {
        bits++;
    }
    return bits;
}

static int
chosen(const cm__mdns_state *st, const char *name)
{
    for (size_t i = 0; i < st->nifaces; i++) {
        if (strcmp(st->ifaces[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Reads the subnets of the chosen interfaces' addresses (both families) into st->links. 0,
 * CM_ENOMEM or -errno. */
static int
read_links(cm__mdns_state *st)
{
    struct ifaddrs *all;
    if (getifaddrs(&all) != 0) {
        return -errno;
    }
    size_t n = 0, cap = 1;
    for (struct ifaddrs *i = all; i != NULL; i = i->ifa_next) {
        cap++;
    }
    cm__mdns_prefix *v = calloc(cap, sizeof *v);
    for (struct ifaddrs *i = all; v != NULL && i != NULL; i = i->ifa_next) {
        cm__mdns_prefix *p = &v[n];
        if (i->ifa_netmask != NULL && chosen(st, i->ifa_name) &&
            (p->family = cm__mdns_sockaddr_ip(i->ifa_addr, p->addr)) != AF_UNSPEC &&
            i->ifa_netmask->sa_family == p->family) {
            p->bits = mask_bits(i->ifa_netmask);
            n++;
        }
    }
    freeifaddrs(all);
    if (v == NULL) {
        return CM_ENOMEM;
    }
    free(st->links);
    st->links = v;
    st->nlinks = n;
    st->links_at = uv_now(st->loop);
    return 0;
}

int
cm__mdns_source_ok(cm__mdns_state *st, const struct sockaddr *from)
{
    uint8_t ip[16];
    int family = cm__mdns_sockaddr_ip(from, ip);
    if (family == AF_UNSPEC ||
        (st->subnets != NULL && !in_prefixes(st->subnets, st->nsubnets, family, ip))) {
        return 0;
    }
    if (link_local(family, ip) || in_prefixes(st->links, st->nlinks, family, ip)) {
        return 1;
    }
    /* Addresses change (DHCP, a new interface address): read them again, at most once a
     * second. */
    uint64_t now = uv_now(st->loop);
    if (now - st->links_at < LINKS_MS) {
        return 0;
    }
    st->links_at = now;
    return read_links(st) == 0 && in_prefixes(st->links, st->nlinks, family, ip);
}

/* Parses one subnet: "10.1.0.0/16", "fd00::/8", or an address alone (one host). 0 or
 * CM_EINVAL. */
static int
parse_prefix(const char *s, size_t n, cm__mdns_prefix *p)
{
    char buf[INET6_ADDRSTRLEN + 8];
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        n--;
    }
    if (n == 0 || n >= sizeof buf) {
        return CM_EINVAL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *slash = strchr(buf, '/'), *end = NULL;
    unsigned long bits = 0;
    if (slash != NULL) {
        *slash = '\0';
        errno = 0;
        bits = strtoul(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || errno != 0) {
            return CM_EINVAL;
        }
    }
    memset(p, 0, sizeof *p);
    unsigned long max = 128;
    if (inet_pton(AF_INET, buf, p->addr) == 1) {
        p->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, p->addr) == 1) {
        p->family = AF_INET6;
    } else {
        return CM_EINVAL;
    }
    if (slash == NULL) {
        bits = max;
    }
    p->bits = (unsigned)bits;
    return bits <= max ? 0 : CM_EINVAL;
}

/* Reads list, comma-separated subnets, into st->subnets (NULL or empty: none). 0, CM_EINVAL
 * (with a debug line naming the bad item) or CM_ENOMEM. */
static int
read_subnets(cm__mdns_state *st, const char *list)
{
    if (list == NULL || list[0] == '\0') {
        return 0;
    }
    size_t cap = 1;
    for (const char *p = list; *p != '\0'; p++) {
        cap += *p == ',';
    }
    st->subnets = calloc(cap, sizeof *st->subnets);
    if (st->subnets == NULL) {
        return CM_ENOMEM;
    }
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (parse_prefix(p, n, &st->subnets[st->nsubnets]) != 0) {
            cm__mdns_debug("subnets: \"%.*s\" is not an IPv4 or IPv6 subnet (10.0.0.0/8, "
                           "fd00::/8)",
                           (int)n, p);
            return CM_EINVAL;
        }
        st->nsubnets++;
        p += n + (p[n] == ',');
    }
    return 0;
}

void
cm__mdns_refused(cm__mdns_state *st, const struct sockaddr *from, const char *why)
{
    uint8_t ip[16];
    int family = cm__mdns_sockaddr_ip(from, ip);
    if (why == st->refused_why && family == st->refused_family &&
        memcmp(ip, st->refused_ip, 16) == 0) {
        return;
    }
    char a[64];
    cm__mdns_debug("dropped datagrams from %s: %s", cm__mdns_addr_str(from, a, sizeof a), why);
    st->refused_why = why;
    st->refused_family = family;
    memcpy(st->refused_ip, ip, 16);
}

/* ---- handles and the end of the state ---- */

static void finish(cm__mdns_state *st);

void
cm__mdns_handle_done(cm__mdns_state *st)
{
    st->nhandles--;
    if (st->closing && st->nhandles == 0) {
        finish(st);
    }
}

static void
state_handle_closed(uv_handle_t *h)
{
    cm__mdns_handle_done(h->data);
}

static void
run_completions(cm__mdns_state *st)
{
    while (st->done_head != NULL) {
        cm__mdns_done *d = st->done_head;
        st->done_head = d->next;
        if (st->done_head == NULL) {
            st->done_tail = &st->done_head;
        }
        d->cb(d->status, d->user);
        free(d);
    }
}

static void
defer_fired(uv_timer_t *t)
{
    run_completions(t->data);
}

/* Queues cb(status) for the next loop turn; d is preallocated by the caller. */
void
cm__mdns_complete_later(cm__mdns_state *st, cm__mdns_done *d, cm_registry_cb cb, void *user,
                        int status)
{
    if (d == NULL) {
        return;
    }
    d->cb = cb;
    d->user = user;
    d->status = status;
    d->next = NULL;
    *st->done_tail = d;
    st->done_tail = &d->next;
    uv_timer_start(&st->defer, defer_fired, 0, 0);
}

static void
finish(cm__mdns_state *st)
{
    run_completions(st);
    cm_registry *r = st->init_failed ? NULL : st->r;
    free(st->ifaces);
    free(st->host);
    free(st->links);
    free(st->subnets);
    cm__mdns_owners_fini(&st->owners);
    free(st);
    if (r != NULL) {
        cm_registry_closed(r);
    }
}

static void
close_own_handles(cm__mdns_state *st)
{
    st->draining = 0;
    for (int f = 0; f < st->nsocks; f++) {
        uv_close((uv_handle_t *)&st->sock[f], state_handle_closed);
    }
    uv_close((uv_handle_t *)&st->defer, state_handle_closed);
    uv_close((uv_handle_t *)&st->drain, state_handle_closed);
}

static void
drain_fired(uv_timer_t *t)
{
    cm__mdns_state *st = t->data;
    if (st->draining) {
        cm__mdns_debug("%u goodbye datagrams still queued at close", st->nsends);
        close_own_handles(st);
    }
}

/* ---- sending ---- */

static void
sent(uv_udp_send_t *req, int status)
{
    pending_send *s = (pending_send *)(void *)req;
    cm__mdns_state *st = s->st;
    if (status < 0 && status != UV_ECANCELED) {
        cm__mdns_debug("send failed: %s", uv_strerror(status));
    }
    free(s);
    st->nsends--;
    if (st->draining && st->nsends == 0) {
        uv_timer_stop(&st->drain);
        close_own_handles(st);
    }
}

/* Sends a datagram now if the socket takes it, else queues a copy. */
void
cm__mdns_send(cm__mdns_state *st, uv_udp_t *sock, const uint8_t *data, size_t len,
              const struct sockaddr *to)
{
    char a[64];
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)data, (unsigned)len);
    int rc = uv_udp_try_send(sock, &b, 1, to);
    if (rc >= 0) {
        return;
    }
    if (rc != UV_EAGAIN && rc != UV_ENOBUFS) {
        cm__mdns_debug("send of %zu bytes to %s failed: %s", len,
                       cm__mdns_addr_str(to, a, sizeof a), uv_strerror(rc));
        return;
    }
    pending_send *s = malloc(sizeof *s + len);
    if (s == NULL) {
        return;
    }
    memcpy(s->data, data, len);
    s->st = st;
    b = uv_buf_init((char *)s->data, (unsigned)len);
    rc = uv_udp_send(&s->req, sock, &b, 1, to, sent);
    if (rc < 0) {
        cm__mdns_debug("send to %s failed: %s", cm__mdns_addr_str(to, a, sizeof a),
                       uv_strerror(rc));
        free(s);
        return;
    }
    st->nsends++;
}

/* Multicasts a datagram to 224.0.0.251:5353 from socks[0] on every chosen interface and, when
 * nsocks is 2, to [ff02::fb]:5353 from socks[1] on those with IPv6. */
void
cm__mdns_multicast(cm__mdns_state *st, uv_udp_t socks[], int nsocks, const uint8_t *data,
                   size_t len)
{
    cm__mdns_sockaddr to4, to6;
    uv_ip4_addr(CM__MDNS_GROUP4, CM__MDNS_PORT, &to4.in);
    uv_ip6_addr(CM__MDNS_GROUP6, CM__MDNS_PORT, &to6.in6);
    for (size_t i = 0; i < st->nifaces; i++) {
        const cm__mdns_iface *f = &st->ifaces[i];
        int rc = uv_udp_set_multicast_interface(&socks[0], f->addr);
        if (rc < 0) {
            cm__mdns_debug("multicast interface %s: %s", f->name, uv_strerror(rc));
        } else {
            cm__mdns_send(st, &socks[0], data, len, &to4.sa);
        }
        if (nsocks == 2 && f->v6) {
            to6.in6.sin6_scope_id = f->index; /* the link of the link-local group */
            cm__mdns_send(st, &socks[1], data, len, &to6.sa);
        }
    }
}

/* ---- the 5353 sockets ---- */

/* Whether a response is the copy, over the other family, of one heard within COPY_MS: go-micro
 * and cmicro send each announcement to both groups at once. Remembers the first copy; it stands
 * for one copy only, so the next announcement counts again. */
static int
copy_over_other_family(cm__mdns_state *st, const uint8_t *data, size_t len, int family)
{
    uint64_t h = cm__fnv1a(data, len), now = uv_now(st->loop);
    for (size_t i = 0; i < CM__MDNS_RECENT; i++) {
        cm__mdns_recent *c = &st->recent[i];
        if (c->family != AF_UNSPEC && c->family != family && c->len == len && c->hash == h &&
            now - c->at <= COPY_MS) {
            c->family = AF_UNSPEC;
            return 1;
        }
    }
    st->recent[st->nrecent++ % CM__MDNS_RECENT] = (cm__mdns_recent){h, now, len, family};
    return 0;
}

void
cm__mdns_handle_packet(cm_registry *r, const uint8_t *data, size_t len, const struct sockaddr *from)
{
    cm__mdns_state *st = cm__mdns_state_of(r);
    char a[64];
    if (st->closing) {
        return;
    }
    ldns_pkt *pkt = NULL;
    ldns_status s = cm__mdns_wire2pkt(&pkt, data, len);
    if (s != LDNS_STATUS_OK) {
        cm__mdns_debug("dropped a malformed datagram from %s: %s",
                       cm__mdns_addr_str(from, a, sizeof a), ldns_get_errorstr_by_id(s));
        ldns_pkt_free(pkt);
        return;
    }
    /* RFC 6762 18.3 and 18.11: other opcodes and response codes are ignored. The TC bit is
     * ignored too, as go-micro does (no known-answer suppression). */
    if (ldns_pkt_get_opcode(pkt) != LDNS_PACKET_QUERY ||
        ldns_pkt_get_rcode(pkt) != LDNS_RCODE_NOERROR) {
        cm__mdns_debug("dropped a datagram from %s: opcode or rcode not 0",
                       cm__mdns_addr_str(from, a, sizeof a));
    } else if (!cm__mdns_source_ok(st, from)) {
        cm__mdns_refused(st, from, "not an on-link source");
    } else if (!ldns_pkt_qr(pkt)) {
        cm__mdns_answer(st, pkt, len, from);
    } else if (!cm__mdns_owners_admit(&st->owners, pkt, data, len, from, uv_now(st->loop))) {
        /* Checked before the copy over the other family: a refused datagram is not the one its
         * copy stands for. */
        cm__mdns_refused(st, from, "it speaks for an instance that another source holds");
    } else if (!copy_over_other_family(st, data, len, from->sa_family)) {
        if (st->r->watchers != NULL) {
            cm__mdns_notify_watchers(st, pkt);
        }
        /* Multicast replies to a pending lookup count too. */
        for (cm__mdns_query *q = st->queries; q != NULL && !st->closing; q = q->next) {
            cm__mdns_query_feed(q, pkt);
        }
    }
    ldns_pkt_free(pkt);
}

static void
sock_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    cm__mdns_state *st = h->data;
    *buf = uv_buf_init((char *)st->rbuf, sizeof st->rbuf);
}

static void
sock_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
          unsigned flags)
{
    cm__mdns_state *st = h->data;
    char a[64];
    if (nread < 0) {
        cm__mdns_debug("receive on port 5353 failed: %s", uv_strerror((int)nread));
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
    cm__mdns_handle_packet(st->r, (const uint8_t *)buf->base, (size_t)nread, addr);
}

/* Appends ", item" (or "item" first) to a list in buf. */
static void list_add(char *buf, size_t len, const char *fmt, ...) CM_PRINTF(3, 4);

static void
list_add(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used > 0 && used + 2 < len) {
        memcpy(buf + used, ", ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

/* Whether name (n bytes) is an element of the comma-separated list. */
static int
in_list(const char *list, const char *name, size_t n)
{
    for (const char *p = list; p != NULL && *p != '\0';) {
        size_t k = strcspn(p, ",");
        if (k == n && strncmp(p, name, n) == 0) {
            return 1;
        }
        p += k + (p[k] == ',');
    }
    return 0;
}

/* An IPv4 interface address worth joining on: named in want, or (want NULL) up and
 * multicast-capable. */
static int
candidate(const struct ifaddrs *i, const char *want)
{
    if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
        strlen(i->ifa_name) >= IF_NAMESIZE) {
        return 0;
    }
    if (want != NULL) {
        return in_list(want, i->ifa_name, strlen(i->ifa_name));
    }
    return (i->ifa_flags & IFF_UP) && (i->ifa_flags & IFF_MULTICAST);
}

/* Whether the interface called name has an IPv6 address. */
static int
has_ipv6(const struct ifaddrs *all, const char *name)
{
    for (const struct ifaddrs *i = all; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr != NULL && i->ifa_addr->sa_family == AF_INET6 &&
            strcmp(i->ifa_name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Joins ff02::fb on f when it has IPv6 (by index: libuv names the interface by an address).
 * 1 when joined. */
static int
join_v6(cm__mdns_state *st, cm__mdns_iface *f, const struct ifaddrs *all)
{
    if (st->nsocks < 2) {
        return 0;
    }
    if (f->index == 0 || !has_ipv6(all, f->name)) {
        cm__mdns_debug("no IPv6 on %s: IPv4 only there", f->name);
        return 0;
    }
    struct ipv6_mreq m;
    memset(&m, 0, sizeof m);
    inet_pton(AF_INET6, CM__MDNS_GROUP6, &m.ipv6mr_multiaddr);
    m.ipv6mr_interface = f->index;
    uv_os_fd_t fd;
    int rc = uv_fileno((uv_handle_t *)&st->sock[1], &fd);
    if (rc == 0 && setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof m) != 0) {
        rc = -errno;
    }
    if (rc != 0) {
        cm__mdns_debug("cannot join %s on %s: %s; IPv4 only there", CM__MDNS_GROUP6, f->name,
                       uv_strerror(rc));
        return 0;
    }
    return 1;
}

/* Joins the groups on one interface; notes the attempt in tried. */
static void
join_one(cm__mdns_state *st, const struct ifaddrs *i, const struct ifaddrs *all, char *tried,
         size_t triedlen)
{
    cm__mdns_iface *f = &st->ifaces[st->nifaces];
    snprintf(f->name, sizeof f->name, "%s", i->ifa_name);
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)i->ifa_addr;
    inet_ntop(AF_INET, &in->sin_addr, f->addr, sizeof f->addr);
    int rc = uv_udp_set_membership(&st->sock[0], CM__MDNS_GROUP4, f->addr, UV_JOIN_GROUP);
    if (rc != 0) {
        list_add(tried, triedlen, "%s: %s", f->name, uv_err_name(rc));
        cm__mdns_debug("cannot join %s on %s (%s): %s", CM__MDNS_GROUP4, f->name, f->addr,
                       uv_strerror(rc));
        return;
    }
    f->index = if_nametoindex(f->name);
    f->v6 = join_v6(st, f, all);
    list_add(tried, triedlen, "%s", f->name);
    list_add(st->ifnames, sizeof st->ifnames, "%s (%s)", f->name, f->v6 ? "v4+v6" : "v4");
    st->nifaces++;
}

/* Closes [::]:5353 if it is open: the backend carries on over IPv4. */
static void
drop_v6(cm__mdns_state *st)
{
    if (st->nsocks == 2) {
        uv_close((uv_handle_t *)&st->sock[1], state_handle_closed);
        st->nsocks = 1;
    }
}

/* Joins 224.0.0.251 on the wanted interfaces: a comma-separated list of names, or NULL for
 * every IPv4 interface that is up and multicast-capable; and ff02::fb on those of them with
 * IPv6 (none joined: [::]:5353 is closed). 0, CM_EINVAL (224.0.0.251 joined nowhere, with a log
 * line naming what was tried), CM_ENOMEM or -errno. */
static int
join_interfaces(cm__mdns_state *st, const char *want)
{
    struct ifaddrs *all;
    if (getifaddrs(&all) != 0) {
        int err = -errno;
        cm__mdns_debug("cannot list network interfaces: %s", strerror(-err));
        return err;
    }
    size_t cap = 1;
    for (struct ifaddrs *i = all; i != NULL; i = i->ifa_next) {
        cap++;
    }
    st->ifaces = calloc(cap, sizeof *st->ifaces);
    if (st->ifaces == NULL) {
        freeifaddrs(all);
        return CM_ENOMEM;
    }
    char tried[512] = "", attempted[4096] = "";
    for (struct ifaddrs *i = all; i != NULL; i = i->ifa_next) {
        /* One attempt per interface, with its first IPv4 address. */
        if (candidate(i, want) && !in_list(attempted, i->ifa_name, strlen(i->ifa_name))) {
            size_t used = strlen(attempted);
            snprintf(attempted + used, sizeof attempted - used, "%s%s", used ? "," : "",
                     i->ifa_name);
            join_one(st, i, all, tried, sizeof tried);
        }
    }
    freeifaddrs(all);
    for (const char *p = want; p != NULL && *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n > 0 && !in_list(attempted, p, n)) {
            list_add(tried, sizeof tried, "%.*s: no such interface with IPv4", (int)n, p);
        }
        p += n + (p[n] == ',');
    }
    if (st->nifaces == 0) {
        cm__mdns_debug("cannot join %s on any interface (wanted %s; tried [%s]); set "
                       "MICRO_MDNS_INTERFACE to a multicast-capable interface with an IPv4 address",
                       CM__MDNS_GROUP4, want ? want : "every multicast-capable interface", tried);
        return CM_EINVAL;
    }
    int joined6 = 0;
    for (size_t i = 0; i < st->nifaces; i++) {
        joined6 += st->ifaces[i].v6;
    }
    if (st->nsocks == 2 && joined6 == 0) {
        cm__mdns_debug("%s joined on no interface: IPv4 only", CM__MDNS_GROUP6);
        drop_v6(st);
    }
    cm__mdns_debug("joined on [%s]", st->ifnames);
    return 0;
}

/* Opens the 5353 socket of one family (IPv6: v6-only), shared with other responders through
 * SO_REUSEADDR and SO_REUSEPORT. Once the handle exists it counts in nsocks. */
static int
bind_socket(cm__mdns_state *st, int v6)
{
    uv_udp_t *s = &st->sock[v6];
    int rc = uv_udp_init_ex(st->loop, s, v6 ? AF_INET6 : AF_INET);
    if (rc != 0) {
        return rc;
    }
    s->data = st;
    st->nhandles++;
    st->nsocks++;
    uv_os_fd_t fd;
    int one = 1;
    rc = uv_fileno((uv_handle_t *)s, &fd);
    if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        rc = -errno;
    }
    cm__mdns_sockaddr any;
    if (v6) {
        uv_ip6_addr("::", CM__MDNS_PORT, &any.in6);
    } else {
        uv_ip4_addr("0.0.0.0", CM__MDNS_PORT, &any.in);
    }
    if (rc == 0) {
        rc = uv_udp_bind(s, &any.sa, UV_UDP_REUSEADDR | (v6 ? UV_UDP_IPV6ONLY : 0));
    }
    return rc;
}

static int
open_sockets(cm__mdns_state *st, const char *want)
{
    int rc = bind_socket(st, 0);
    if (rc != 0) {
        cm__mdns_debug("cannot bind 0.0.0.0:%d: %s", CM__MDNS_PORT, uv_strerror(rc));
        return rc;
    }
    if ((rc = bind_socket(st, 1)) != 0) {
        cm__mdns_debug("cannot bind [::]:%d: %s; IPv4 only", CM__MDNS_PORT, uv_strerror(rc));
        drop_v6(st);
    }
    if ((rc = join_interfaces(st, want)) != 0) {
        return rc;
    }
    for (int f = st->nsocks - 1; f >= 0; f--) {
        uv_udp_set_multicast_loop(&st->sock[f], 1);
        uv_udp_set_multicast_ttl(&st->sock[f], 255);
        rc = uv_udp_recv_start(&st->sock[f], sock_alloc, sock_recv);
        if (rc != 0 && f == 1) {
            cm__mdns_debug("cannot receive on [::]:%d: %s; IPv4 only", CM__MDNS_PORT,
                           uv_strerror(rc));
            drop_v6(st);
        } else if (rc != 0) {
            cm__mdns_debug("cannot receive on port %d: %s", CM__MDNS_PORT, uv_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static int
mdns_init(cm_registry *r)
{
    cm__mdns_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        return CM_ENOMEM;
    }
    memcpy(r->priv, &st, sizeof st);
    st->r = r;
    st->loop = cm_loop_uv(r->loop);
    st->done_tail = &st->done_head;
    st->window_ms = r->timeout_ms ? r->timeout_ms : DEFAULT_WINDOW_MS;
    char host[256];
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
        snprintf(host, sizeof host, "localhost");
    }
    host[sizeof host - 1] = '\0';
    size_t hlen = strlen(host) + 2;
    st->host = malloc(hlen);
    if (st->host == NULL) {
        free(st);
        return CM_ENOMEM;
    }
    snprintf(st->host, hlen, "%s.", host);
    uv_timer_init(st->loop, &st->defer);
    uv_timer_init(st->loop, &st->drain);
    st->defer.data = st;
    st->drain.data = st;
    st->nhandles = 2;
    const char *want = cm_registry_option(r, "interface");
    if (want == NULL || want[0] == '\0') {
        want = getenv("MICRO_MDNS_INTERFACE");
    }
    if (want != NULL && want[0] == '\0') {
        want = NULL;
    }
    const char *subnets = cm_registry_option(r, "subnets");
    if (subnets == NULL || subnets[0] == '\0') {
        subnets = getenv("MICRO_MDNS_SUBNETS");
    }
    int rc = read_subnets(st, subnets);
    if (rc == 0) {
        rc = open_sockets(st, want);
    }
    if (rc == 0) {
        rc = read_links(st);
    }
    if (rc != 0) {
        /* The handles close on the loop; the state goes with them, r is the caller's. */
        st->init_failed = 1;
        st->closing = 1;
        close_own_handles(st);
        return rc;
    }
    return 0;
}

static void
mdns_close(cm_registry *r)
{
    cm__mdns_state *st = cm__mdns_state_of(r);
    st->closing = 1;
    for (int f = 0; f < st->nsocks; f++) {
        uv_udp_recv_stop(&st->sock[f]);
    }
    while (st->nodes != NULL) {
        cm__mdns_node_remove(st, st->nodes);
    }
    while (st->queries != NULL) {
        cm__mdns_query_cancel(st->queries);
    }
    uv_timer_stop(&st->defer);
    if (st->nsends > 0) {
        st->draining = 1;
        uv_timer_start(&st->drain, drain_fired, DRAIN_MS, 0);
    } else {
        close_own_handles(st);
    }
}

const cm_registry_ops cm__registry_mdns = {
    .abi_version = CM_ABI_VERSION,
    .name = "mdns",
    .option_keys = (const char *const[]){"interface", "subnets", NULL},
    .priv_size = sizeof(cm__mdns_state *),
    .watcher_priv_size = 0,
    .init = mdns_init,
    .close = mdns_close,
    .reg = cm__mdns_reg,
    .dereg = cm__mdns_dereg,
    .get_service = cm__mdns_get_service,
    .list_services = cm__mdns_list_services,
    .watch = cm__mdns_watch,
    .watch_stop = cm__mdns_watch_stop,
};
