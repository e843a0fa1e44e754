/* cmicro: internals of the mDNS registry backend, shared by mdns.c (sockets, registrations,
 * lookups, watch) and mdns_wire.c (DNS messages with ldns, entry assembly, the TXT payload).
 * Not installed. */
#ifndef CMICRO_MDNS_INT_H
#define CMICRO_MDNS_INT_H

#include "registry_int.h"

#include <ldns/ldns.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CM__MDNS_PORT 5353
#define CM__MDNS_GROUP4 "224.0.0.251"
#define CM__MDNS_GROUP6 "ff02::fb"
#define CM__MDNS_TTL 120       /* seconds, go-micro's defaultTTL */
#define CM__MDNS_TXT_CHUNK 255 /* hex characters per TXT string */
#define CM__MDNS_WILDCARD_PORT 9999
#define CM__MDNS_MAX_ENTRIES 1024 /* per lookup or per message: more are dropped */
#define CM__MDNS_MAX_DGRAM 65536
#define CM__MDNS_MAX_TXT 60000 /* hex characters: the reply must fit one UDP datagram */
#define CM__MDNS_MAX_OWNERS 1024 /* instance names whose first source is remembered */
#define CM__MDNS_MAX_OWNER_TTL 3600 /* seconds: a longer TTL holds a name this long */
#define CM__MDNS_REPLY_FACTOR 4  /* a reply is at most this many times its query, or the answer
                                    to the query's first question */

/* ---- logging ---- */

/* Through the log facade, module "registry.mdns". A failure that is also returned to the caller
 * is logged at debug; a background one (an announcement that could not be built) at warn. */
#define cm__mdns_debug(...) cm_log(CM_LOG_DEBUG, "registry.mdns", __VA_ARGS__)
#define cm__mdns_warn(...) cm_log(CM_LOG_WARN, "registry.mdns", __VA_ARGS__)

/* ---- responder zones (go-micro's util/mdns MDNSService) ---- */

/* What one responder serves: a registered node (instance = node id, service = service name)
 * or the per-service wildcard used for listing (instance = service name, service "_services",
 * port 9999, address 0.0.0.0, a TXT record with no strings). */
typedef struct cm__mdns_zone {
    ldns_rdf *service_addr;  /* "<service>.micro." */
    ldns_rdf *instance_addr; /* "<instance>.<service>.micro." */
    ldns_rdf *enum_addr;     /* "_services._dns-sd._udp.micro." */
    ldns_rdf *host;          /* "<hostname>." */
    uint16_t port;
    int family; /* AF_INET or AF_INET6 */
    uint8_t ip[16];
    char *txt; /* the hex payload, served as 255-character strings; NULL: no strings */
    size_t txtlen;
    int wildcard; /* set by the caller: no answers for the host name (go-micro's wildcard
                     answers them with 0.0.0.0) */
} cm__mdns_zone;

/* Builds the zone's names. txt (txtlen characters) is copied; it may be NULL. Returns 0,
 * CM_EINVAL (a name that is not a valid DNS name: empty or over-long label, over 255 bytes) or
 * CM_ENOMEM; on error nothing is left allocated. */
/* ldns_wire2pkt, refusing what would make it leak (more than one TSIG record). */
ldns_status cm__mdns_wire2pkt(ldns_pkt **pkt, const uint8_t *wire, size_t len);

int cm__mdns_zone_init(cm__mdns_zone *z, const char *instance, const char *service,
                       const char *host, uint16_t port, int family, const uint8_t ip[16],
                       const char *txt, size_t txtlen);
void cm__mdns_zone_fini(cm__mdns_zone *z);

/* The reply of zone z to query: the questions it answers echoed (a repeated question once), the
 * records z serves for them, each once (PTR, SRV, A, AAAA, TXT as go-micro orders them), ID 0 or
 * the query's ID when an answered question has the unicast-response bit, flags QR and AA. *wire
 * is NULL when z has nothing to answer. Returns 0 or CM_ENOMEM; *wire is freed with free(). */
int cm__mdns_zone_answer(const cm__mdns_zone *z, const ldns_pkt *query, uint8_t **wire,
                         size_t *len);
/* As cm__mdns_zone_answer, cut to the answer of the first question it answers when the reply
 * would be longer than limit bytes. */
int cm__mdns_zone_answer_limit(const cm__mdns_zone *z, const ldns_pkt *query, size_t limit,
                               uint8_t **wire, size_t *len);
/* An unsolicited response with the instance's SRV, A/AAAA and TXT records at the given TTL
 * (120: announcement, 0: goodbye). 0 or CM_ENOMEM. */
int cm__mdns_zone_announce(const cm__mdns_zone *z, uint32_t ttl, uint8_t **wire, size_t *len);

/* A query for qname (e.g. "greeter.micro.") type PTR class IN, RD clear. 0, CM_EINVAL (not a
 * DNS name) or CM_ENOMEM. */
int cm__mdns_query_wire(const char *qname, uint16_t id, uint8_t **wire, size_t *len);

/* ---- service entries assembled from replies (go-micro's ServiceEntry) ---- */

typedef struct cm__mdns_entry {
    char *name; /* instance name, presentation form with the trailing dot */
    char *host; /* SRV target; NULL before an SRV record */
    uint16_t port;
    int has_v4, has_v6;
    uint8_t v4[4], v6[16];
    char *txt; /* the TXT strings concatenated; NULL before a TXT record */
    size_t txtlen;
    uint32_t ttl; /* of the last record naming the entry */
} cm__mdns_entry;

typedef struct cm__mdns_hostaddr {
    char *host;
    int has_v4, has_v6;
    uint8_t v4[4], v6[16];
} cm__mdns_hostaddr;

/* Zero-initialise. */
typedef struct cm__mdns_entries {
    cm__mdns_entry *v;
    size_t n, cap;
    cm__mdns_hostaddr *hosts; /* A/AAAA seen, for entries whose message had none */
    size_t nhosts, hostcap;
} cm__mdns_entries;

/* Folds the answer and additional records of one message into set: PTR names an entry, SRV
 * sets its port and host, TXT its strings, A/AAAA of the SRV target (from the same message
 * first) its address. Records of wrong shape are skipped. 0 or CM_ENOMEM. */
int cm__mdns_collect(const ldns_pkt *pkt, cm__mdns_entries *set);
/* Gives entries with a host but no address the host's address seen in another message. */
void cm__mdns_entries_resolve(cm__mdns_entries *set);
void cm__mdns_entries_fini(cm__mdns_entries *set);
/* An address, a port and a TXT record (go-micro's complete()). */
int cm__mdns_entry_complete(const cm__mdns_entry *e);
/* "ip:port" or "[ip6]:port" of a complete entry into out. */
void cm__mdns_entry_address(const cm__mdns_entry *e, char *out, size_t outlen);
/* The part of name before suffix ("<id>" of "<id>.greeter.micro."), copied; NULL when name
 * does not end with suffix (ASCII case-insensitive) or nothing precedes it. */
char *cm__mdns_strip_suffix(const char *name, const char *suffix);

/* ---- who speaks for an instance (RFC 6762 section 11: no answer from one source replaces
 * what another source said before its TTL ends) ---- */

/* The first source heard for an instance name, until its TTL ends. */
typedef struct cm__mdns_owner {
    ldns_rdf *name; /* the instance name */
    int family;
    uint8_t ip[16];
    uint64_t hash; /* of the last datagram it sent that named the instance */
    size_t len;
    uint64_t until; /* loop time, ms */
} cm__mdns_owner;

/* Zero-initialise. */
typedef struct cm__mdns_owners {
    cm__mdns_owner v[CM__MDNS_MAX_OWNERS];
    size_t n;
} cm__mdns_owners;

/* Whether response pkt (the datagram data, len bytes) from source from (IPv4 or IPv6) may be used
 * at loop time now: no instance it describes (owner of an SRV, TXT, A or AAAA record, target of a
 * PTR record under its owner) is held by another source whose TTL has not ended, unless the
 * datagram is the one that source sent last (the same announcement or reply heard from another
 * address of its host). When it may, its instances are held for from until their records' TTL
 * ends (a goodbye, TTL 0, lets go; a full table holds no new names). 1 or 0; 0 also when out of
 * memory. */
int cm__mdns_owners_admit(cm__mdns_owners *o, const ldns_pkt *pkt, const uint8_t *data,
                          size_t len, const struct sockaddr *from, uint64_t now);
void cm__mdns_owners_fini(cm__mdns_owners *o);

/* ---- the TXT payload: hex(zlib(JSON{Service, Version, Endpoints, Metadata})) ---- */

/* Encodes svc's name, version, endpoints and node's metadata. *hex is NUL-terminated, freed
 * with free(). 0 or CM_ENOMEM. */
int cm__mdns_txt_encode(const cm_reg_service *svc, const cm_node *node, char **hex, size_t *len);
/* Decodes a payload into *svc (name = Service, version = Version, the endpoints; no nodes) and
 * *md (the node metadata). 0, CM_EPROTO (bad hex, zlib, JSON or types) or CM_ENOMEM; nothing
 * is left allocated on error. */
int cm__mdns_txt_decode(const char *hex, size_t len, cm_reg_service **svc, cm_md **md);

/* ---- the backend: mdns.c (sockets, interfaces, init, close), mdns_responder.c and
 * mdns_lookup.c ---- */

typedef struct cm__mdns_state cm__mdns_state;

typedef struct cm__mdns_iface {
    char name[IF_NAMESIZE];
    char addr[INET_ADDRSTRLEN]; /* its IPv4 address, which chooses it for IPv4 multicast */
    unsigned index;
    int v6; /* ff02::fb joined on it too */
} cm__mdns_iface;

/* An address prefix: the subnet of an interface address or one of the "subnets" option. */
typedef struct cm__mdns_prefix {
    int family;
    uint8_t addr[16];
    unsigned bits;
} cm__mdns_prefix;

/* A socket address of either family. */
typedef union cm__mdns_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} cm__mdns_sockaddr;

/* Responses heard on port 5353 lately, to drop the copy that arrives over the other family. */
#define CM__MDNS_RECENT 32
typedef struct cm__mdns_recent {
    uint64_t hash; /* of the datagram */
    uint64_t at;   /* loop time, ms */
    size_t len;
    int family; /* AF_UNSPEC once its copy came */
} cm__mdns_recent;

/* A registered node, keyed by (service name, node id). */
typedef struct cm__mdns_node {
    struct cm__mdns_node *next;
    cm__mdns_state *st;
    char *service;
    char *id;
    char *fingerprint; /* address and TXT payload: compared when registered again */
    cm__mdns_zone zone;
    uv_timer_t timer; /* announcements */
    int announced;
} cm__mdns_node;

/* The per-service wildcard that go-micro's ListServices finds, alive while a node of the
 * service is registered. */
typedef struct cm__mdns_wild {
    struct cm__mdns_wild *next;
    char *service;
    size_t nodes;
    cm__mdns_zone zone;
} cm__mdns_wild;

typedef struct cm__mdns_query {
    struct cm__mdns_query *next;
    cm__mdns_state *st;
    uv_udp_t sock[2]; /* IPv4, then IPv6 when nsocks is 2; ephemeral ports */
    int nsocks;
    uv_timer_t timer;
    int open; /* handles not yet closed */
    int canceled;
    int list; /* list_services */
    char *name;
    char *qname; /* "<name>.micro." */
    ldns_rdf *qdname;
    cm_registry_list_cb cb;
    void *user;
    cm__mdns_entries entries;
    size_t replies;
} cm__mdns_query;

typedef struct cm__mdns_done {
    struct cm__mdns_done *next;
    cm_registry_cb cb;
    void *user;
    int status;
} cm__mdns_done;

struct cm__mdns_state {
    cm_registry *r;
    uv_loop_t *loop;
    uv_udp_t sock[2];  /* 0.0.0.0:5353, then [::]:5353 when nsocks is 2 */
    int nsocks;        /* 2 when IPv6 is joined on at least one interface */
    uv_timer_t defer;  /* runs the completions of register and deregister */
    uv_timer_t drain;  /* bounds the wait for queued goodbyes on close */
    unsigned nhandles; /* open handles, the queries' and nodes' included */
    unsigned nsends;   /* sends queued on any socket */
    int closing;
    int draining;
    int init_failed;
    cm__mdns_iface *ifaces;
    size_t nifaces;
    char ifnames[256]; /* "lo (v4+v6), eth0 (v4)", for log lines */
    char *host;        /* "<hostname>." */
    uint64_t window_ms;
    cm__mdns_node *nodes;
    cm__mdns_wild *wilds;
    cm__mdns_query *queries;
    cm__mdns_done *done_head, **done_tail;
    cm__mdns_recent recent[CM__MDNS_RECENT];
    unsigned nrecent; /* responses remembered so far; the next goes to nrecent % RECENT */
    cm__mdns_prefix *links; /* the subnets of the chosen interfaces' addresses */
    size_t nlinks;
    uint64_t links_at;        /* loop time they were read */
    cm__mdns_prefix *subnets; /* the "subnets" option; NULL: every on-link source */
    size_t nsubnets;
    cm__mdns_owners owners;
    const char *refused_why; /* the last datagram dropped by RFC 6762 section 11: why, whence */
    int refused_family;
    uint8_t refused_ip[16];
    uint8_t rbuf[CM__MDNS_MAX_DGRAM];
};

cm__mdns_state *cm__mdns_state_of(cm_registry *r);
/* The address of sa into ip (IPv4 in the first 4 bytes, the rest 0): AF_INET, AF_INET6, or
 * AF_UNSPEC (ip all 0) for another family or NULL. */
int cm__mdns_sockaddr_ip(const struct sockaddr *sa, uint8_t ip[16]);
/* "ip:port" of sa into buf, for log lines. */
const char *cm__mdns_addr_str(const struct sockaddr *sa, char *buf, size_t len);
/* Called by the close callback of every handle counted in st->nhandles. */
void cm__mdns_handle_done(cm__mdns_state *st);
/* Queues cb(status) for the next loop turn; d (NULL when cb is NULL) is preallocated. */
void cm__mdns_complete_later(cm__mdns_state *st, cm__mdns_done *d, cm_registry_cb cb, void *user,
                             int status);
/* Sends a datagram now if the socket takes it, else queues a copy. */
void cm__mdns_send(cm__mdns_state *st, uv_udp_t *sock, const uint8_t *data, size_t len,
                   const struct sockaddr *to);
/* Multicasts a datagram to 224.0.0.251:5353 from socks[0] on every chosen interface and, when
 * nsocks is 2, to [ff02::fb]:5353 from socks[1] on those with IPv6. */
void cm__mdns_multicast(cm__mdns_state *st, uv_udp_t socks[], int nsocks, const uint8_t *data,
                        size_t len);

/* Responder (mdns_responder.c). */
int cm__mdns_reg(cm_registry *r, const cm_reg_service *svc, uint64_t ttl_ms, cm_registry_cb cb,
                 void *user);
int cm__mdns_dereg(cm_registry *r, const cm_reg_service *svc, cm_registry_cb cb, void *user);
/* Unlinks n, says goodbye for it and frees it (its timer closes first). */
void cm__mdns_node_remove(cm__mdns_state *st, cm__mdns_node *n);
/* Answers a query of len bytes: one unicast datagram to from (over the 5353 socket of its family)
 * per node or wildcard that has answers, each at most CM__MDNS_REPLY_FACTOR times len or the
 * answer to the first question it answers. */
void cm__mdns_answer(cm__mdns_state *st, const ldns_pkt *query, size_t len,
                     const struct sockaddr *from);
/* Whether a datagram from from may be used (RFC 6762 section 11): from is on-link (in the subnet
 * of an address of a chosen interface, or link-local) and, when the "subnets" option is set, in
 * one of those subnets. The interfaces' addresses are read again, at most once a second, when
 * from is in none of them. */
int cm__mdns_source_ok(cm__mdns_state *st, const struct sockaddr *from);
/* Logs (debug) that datagrams from from are dropped and why (a static string), once for a run of
 * drops from one address for one reason. */
void cm__mdns_refused(cm__mdns_state *st, const struct sockaddr *from, const char *why);

/* Lookups and watch (mdns_lookup.c). */
int cm__mdns_get_service(cm_registry *r, const char *name, cm_registry_list_cb cb, void *user);
int cm__mdns_list_services(cm_registry *r, cm_registry_list_cb cb, void *user);
int cm__mdns_watch(cm_registry *r, cm_watcher *w);
void cm__mdns_watch_stop(cm_registry *r, cm_watcher *w);
/* Takes a response into q if it answers q's question. */
void cm__mdns_query_feed(cm__mdns_query *q, const ldns_pkt *pkt);
/* The services of q's entries so far (the lookup's result; for a list, the service names):
 * appended to l, owned by the caller. 0 or CM_ENOMEM. Exposed for the fuzz harness. */
int cm__mdns_query_result(cm__mdns_query *q, cm_reg_service_list *l);
/* The service one complete entry describes (name, version, endpoints, the one node), or NULL
 * when its TXT does not decode, its name does not fit or (want not NULL) the service is not
 * want. Returns owned (cm_reg_service_free). */
cm_reg_service *cm__mdns_entry_service(const cm__mdns_entry *e, const char *want);
/* Unlinks q and closes it; its callback runs with CM_ECANCELED once its handles are closed. */
void cm__mdns_query_cancel(cm__mdns_query *q);
/* Turns the complete entries of a response heard on port 5353 into watch events. */
void cm__mdns_notify_watchers(cm__mdns_state *st, const ldns_pkt *pkt);

/* Handles one datagram as it arrived on the 5353 socket of r (an mdns registry) of from's
 * family: queries are answered (unicast to from), responses feed the watchers and the pending
 * lookups whose question they answer, except the copy of a response heard over the other family
 * just before (announcements go to both groups). Malformed datagrams are dropped with a debug
 * line. Exposed for tests (the fuzz test feeds it directly). */
void cm__mdns_handle_packet(cm_registry *r, const uint8_t *data, size_t len,
                            const struct sockaddr *from);

#endif
