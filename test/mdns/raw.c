/* What the mdns backend puts on the wire, checked by an independent decoder: plain UDP sockets,
 * ldns to parse, zlib and cJSON to read the TXT payload (none of the backend's parsing code).
 * A helper process (mdns-server) is the responder; every check runs over IPv4 and, when the
 * namespace has IPv6 (run-netns.sh sets CMICRO_TEST_IPV6=1), over IPv6 too. Then this program
 * plays the responder over IPv6 alone for a registry of its own: its lookups and its watcher
 * must work through ff02::fb. Runs inside a private network namespace.
 *   test-mdns-raw PATH_TO_MDNS_SERVER */
#include "mdns_test.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <zlib.h>

#define SVC "raw.test"
#define VERSION "v3"
#define NODE_ID "raw-1"
#define INSTANCE NODE_ID "." SVC ".micro."
#define NENDPOINTS 30

static char hostname[300];

/* ---- sockets (v6: 0 for IPv4, 1 for IPv6) ---- */

typedef union sockaddr_any {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    struct sockaddr_storage ss;
} sockaddr_any;

static const char *const family_name[2] = {"IPv4", "IPv6"};

/* 224.0.0.251:5353 or [ff02::fb%lo]:5353. */
static socklen_t
group(int v6, sockaddr_any *to)
{
    memset(to, 0, sizeof *to);
    if (v6) {
        to->in6.sin6_family = AF_INET6;
        to->in6.sin6_port = htons(5353);
        to->in6.sin6_scope_id = if_nametoindex("lo");
        inet_pton(AF_INET6, "ff02::fb", &to->in6.sin6_addr);
        return sizeof to->in6;
    }
    to->in.sin_family = AF_INET;
    to->in.sin_port = htons(5353);
    inet_pton(AF_INET, "224.0.0.251", &to->in.sin_addr);
    return sizeof to->in;
}

/* A socket on 0.0.0.0:5353 or [::]:5353 joined to the group on lo, as another responder
 * would have. */
static int
listener(int v6)
{
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    int one = 1;
    CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0);
    sockaddr_any a;
    memset(&a, 0, sizeof a);
    if (v6) {
        CHECK(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0);
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons(5353);
        CHECK(bind(fd, &a.sa, sizeof a.in6) == 0);
        struct ipv6_mreq m;
        inet_pton(AF_INET6, "ff02::fb", &m.ipv6mr_multiaddr);
        m.ipv6mr_interface = if_nametoindex("lo");
        CHECK(setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof m) == 0);
        return fd;
    }
    a.in.sin_family = AF_INET;
    a.in.sin_port = htons(5353);
    CHECK(bind(fd, &a.sa, sizeof a.in) == 0);
    struct ip_mreq m;
    inet_pton(AF_INET, "224.0.0.251", &m.imr_multiaddr);
    inet_pton(AF_INET, "127.0.0.1", &m.imr_interface);
    CHECK(setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) == 0);
    return fd;
}

/* A querier on an ephemeral port, multicasting through lo. */
static int
querier(int v6)
{
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    if (v6) {
        unsigned lo = if_nametoindex("lo");
        CHECK(setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &lo, sizeof lo) == 0);
        return fd;
    }
    struct in_addr lo;
    inet_pton(AF_INET, "127.0.0.1", &lo);
    CHECK(setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo) == 0);
    return fd;
}

/* The family of a socket's local address. */
static int
is_v6(int fd)
{
    sockaddr_any a;
    socklen_t len = sizeof a;
    CHECK(getsockname(fd, &a.sa, &len) == 0);
    return a.sa.sa_family == AF_INET6;
}

/* Multicasts a datagram from fd to the group of its family. */
static void
send_group(int fd, const uint8_t *data, size_t len)
{
    sockaddr_any to;
    socklen_t tolen = group(is_v6(fd), &to);
    CHECK(sendto(fd, data, len, 0, &to.sa, tolen) == (ssize_t)len);
}

/* The next datagram within ms (its length), or -1. */
static ssize_t
recv_within(int fd, uint8_t *buf, size_t len, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) {
        return -1;
    }
    return recv(fd, buf, len, 0);
}

/* Sends a query (one question, built with ldns) to the group of fd's family. */
static void
send_query(int fd, const char *name, ldns_rr_type type, uint16_t klass, uint16_t id)
{
    ldns_pkt *p = ldns_pkt_new();
    ldns_rr *q = ldns_rr_new();
    ldns_rdf *owner = NULL;
    CHECK(ldns_str2rdf_dname(&owner, name) == LDNS_STATUS_OK);
    ldns_rr_set_owner(q, owner);
    ldns_rr_set_type(q, type);
    ldns_rr_set_class(q, klass);
    ldns_rr_set_question(q, true);
    ldns_pkt_set_id(p, id);
    CHECK(ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, q));
    uint8_t *wire;
    size_t len;
    CHECK(ldns_pkt2wire(&wire, p, &len) == LDNS_STATUS_OK);
    send_group(fd, wire, len);
    free(wire);
    ldns_pkt_free(p);
}

/* The last reply that ask() got, as it was on the wire. */
static uint8_t last_reply[65536];
static size_t last_reply_len;

/* The reply to a query (ldns-parsed), or NULL when none came within ms. It comes from the
 * responder's socket on port 5353 of the query's family, unicast to the querier's port. */
static ldns_pkt *
ask(int fd, const char *name, ldns_rr_type type, uint16_t klass, uint16_t id, int ms)
{
    send_query(fd, name, type, klass, id);
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, ms) <= 0) {
        return NULL;
    }
    sockaddr_any from;
    socklen_t fromlen = sizeof from;
    ssize_t n = recvfrom(fd, last_reply, sizeof last_reply, 0, &from.sa, &fromlen);
    CHECK(n > 0);
    CHECK_EQ_INT(from.sa.sa_family, is_v6(fd) ? AF_INET6 : AF_INET);
    CHECK_EQ_INT(ntohs(from.sa.sa_family == AF_INET6 ? from.in6.sin6_port : from.in.sin_port),
                 5353);
    last_reply_len = (size_t)n;
    ldns_pkt *p = NULL;
    CHECK(ldns_wire2pkt(&p, last_reply, (size_t)n) == LDNS_STATUS_OK);
    return p;
}

/* ---- checks on records ---- */

static char *
name_of(const ldns_rdf *rdf)
{
    char *s = ldns_rdf2str(rdf);
    CHECK(s != NULL);
    return s;
}

static void
check_name(const ldns_rdf *rdf, const char *want)
{
    char *s = name_of(rdf);
    CHECK_EQ_STR(s, want);
    free(s);
}

static void
check_types(const ldns_rr_list *l, const ldns_rr_type *want, size_t n, uint32_t ttl)
{
    CHECK_EQ_INT(ldns_rr_list_rr_count(l), n);
    for (size_t i = 0; i < n; i++) {
        const ldns_rr *rr = ldns_rr_list_rr(l, i);
        CHECK_EQ_INT(ldns_rr_get_type(rr), want[i]);
        CHECK_EQ_INT(ldns_rr_get_class(rr), LDNS_RR_CLASS_IN); /* no cache-flush bit */
        CHECK_EQ_INT(ldns_rr_ttl(rr), ttl);
    }
}

static void
check_srv(const ldns_rr *rr, const char *owner, uint16_t port)
{
    check_name(ldns_rr_owner(rr), owner);
    CHECK_EQ_INT(ldns_rr_rd_count(rr), 4);
    CHECK_EQ_INT(ldns_rdf2native_int16(ldns_rr_rdf(rr, 0)), 10);
    CHECK_EQ_INT(ldns_rdf2native_int16(ldns_rr_rdf(rr, 1)), 1);
    CHECK_EQ_INT(ldns_rdf2native_int16(ldns_rr_rdf(rr, 2)), port);
    check_name(ldns_rr_rdf(rr, 3), hostname);
}

static void
check_a(const ldns_rr *rr, const char *ip)
{
    check_name(ldns_rr_owner(rr), hostname);
    char *s = ldns_rdf2str(ldns_rr_rdf(rr, 0));
    CHECK_EQ_STR(s, ip);
    free(s);
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1; /* go-micro writes lower case only */
}

/* The TXT record's strings: each at most 255 characters, all but the last exactly 255; their
 * concatenation hex-decodes, inflates and parses as the registered service. */
static void
check_txt_payload(const ldns_rr *rr)
{
    check_name(ldns_rr_owner(rr), INSTANCE);
    size_t n = ldns_rr_rd_count(rr);
    CHECK(n >= 2); /* the payload needs several strings */
    char *hex = NULL;
    size_t hexlen = 0;
    for (size_t i = 0; i < n; i++) {
        const ldns_rdf *s = ldns_rr_rdf(rr, i);
        CHECK_EQ_INT(ldns_rdf_get_type(s), LDNS_RDF_TYPE_STR);
        const uint8_t *d = ldns_rdf_data(s);
        CHECK(d[0] <= 255);
        if (i + 1 < n) {
            CHECK_EQ_INT(d[0], 255);
        }
        hex = realloc(hex, hexlen + d[0] + 1);
        memcpy(hex + hexlen, d + 1, d[0]);
        hexlen += d[0];
    }
    CHECK(hexlen % 2 == 0);
    size_t zlen = hexlen / 2;
    uint8_t *z = malloc(zlen);
    for (size_t i = 0; i < zlen; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        CHECK(hi >= 0 && lo >= 0);
        z[i] = (uint8_t)(hi << 4 | lo);
    }
    free(hex);
    uLongf jlen = 1 << 20;
    char *json = malloc(jlen + 1);
    CHECK(uncompress((Bytef *)json, &jlen, z, zlen) == Z_OK);
    json[jlen] = '\0';
    free(z);
    cJSON *o = cJSON_Parse(json);
    free(json);
    CHECK(o != NULL);
    /* go-micro's mdnsTxt has no json tags: the keys are capitalised. */
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "Service")), SVC);
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "Version")), VERSION);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "Metadata");
    CHECK(cJSON_IsObject(md));
    CHECK_EQ_INT(cJSON_GetArraySize(md), 2);
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(md, "protocol")), "mucp");
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(md, "zone")), "eu");
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(o, "Endpoints");
    CHECK(cJSON_IsArray(eps));
    CHECK_EQ_INT(cJSON_GetArraySize(eps), NENDPOINTS);
    for (int i = 0; i < NENDPOINTS; i++) {
        const cJSON *e = cJSON_GetArrayItem(eps, i);
        char name[64];
        gen_endpoint_name((unsigned)i, name, sizeof name);
        CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "name")), name);
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(e, "request");
        CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "type")),
                     "Request");
        const cJSON *vals = cJSON_GetObjectItemCaseSensitive(req, "values");
        CHECK_EQ_INT(cJSON_GetArraySize(vals), 2);
        /* Leaf values carry "values": null, as go-micro writes them. */
        CHECK(
            cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(vals, 0), "values")));
        CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(e, "metadata")));
    }
    cJSON_Delete(o);
}

/* An unsolicited response of the instance: no question, SRV, A, TXT at ttl. */
static void
check_unsolicited(const uint8_t *buf, size_t n, uint32_t ttl)
{
    ldns_pkt *p = NULL;
    CHECK(ldns_wire2pkt(&p, buf, n) == LDNS_STATUS_OK);
    CHECK(ldns_pkt_qr(p));
    CHECK(ldns_pkt_aa(p));
    CHECK_EQ_INT(ldns_pkt_id(p), 0);
    CHECK_EQ_INT(ldns_pkt_qdcount(p), 0);
    static const ldns_rr_type want[] = {LDNS_RR_TYPE_SRV, LDNS_RR_TYPE_A, LDNS_RR_TYPE_TXT};
    check_types(ldns_pkt_answer(p), want, 3, ttl);
    check_srv(ldns_rr_list_rr(ldns_pkt_answer(p), 0), INSTANCE, 7777);
    check_a(ldns_rr_list_rr(ldns_pkt_answer(p), 1), "127.0.0.1");
    check_txt_payload(ldns_rr_list_rr(ldns_pkt_answer(p), 2));
    ldns_pkt_free(p);
}

/* The next datagram on the listener that is a response (queries are skipped). */
static ssize_t
next_response(int fd, uint8_t *buf, size_t len, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (now_ms() < end) {
        ssize_t n = recv_within(fd, buf, len, (int)(end - now_ms()));
        if (n >= 12 && (buf[2] & 0x80)) {
            return n;
        }
    }
    return -1;
}

/* The reply to the PTR query for the service, as check_queries() last got it. */
static uint8_t ptr_reply[65536];
static size_t ptr_reply_len;

/* Every kind of query, asked from fd, and its reply checked. */
static void
check_queries(int fd)
{
    static uint8_t buf[65536];
    fprintf(stderr, "-- PTR query: question echoed, PTR SRV A TXT, TTL 120, unicast to us\n");
    ldns_pkt *p = ask(fd, SVC ".micro.", LDNS_RR_TYPE_PTR, LDNS_RR_CLASS_IN, 0x4242, 1000);
    CHECK(p != NULL);
    CHECK_EQ_INT(ldns_pkt_id(p), 0);
    CHECK(ldns_pkt_qr(p) && ldns_pkt_aa(p));
    CHECK(!ldns_pkt_tc(p) && !ldns_pkt_rd(p) && !ldns_pkt_ra(p));
    CHECK_EQ_INT(ldns_pkt_get_opcode(p), LDNS_PACKET_QUERY);
    CHECK_EQ_INT(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    CHECK_EQ_INT(ldns_pkt_qdcount(p), 1);
    const ldns_rr *q = ldns_rr_list_rr(ldns_pkt_question(p), 0);
    check_name(ldns_rr_owner(q), SVC ".micro.");
    CHECK_EQ_INT(ldns_rr_get_type(q), LDNS_RR_TYPE_PTR);
    CHECK_EQ_INT(ldns_rr_get_class(q), LDNS_RR_CLASS_IN);
    static const ldns_rr_type order[] = {LDNS_RR_TYPE_PTR, LDNS_RR_TYPE_SRV, LDNS_RR_TYPE_A,
                                         LDNS_RR_TYPE_TXT};
    const ldns_rr_list *an = ldns_pkt_answer(p);
    check_types(an, order, 4, 120);
    CHECK_EQ_INT(ldns_pkt_nscount(p), 0);
    CHECK_EQ_INT(ldns_pkt_arcount(p), 0);
    check_name(ldns_rr_owner(ldns_rr_list_rr(an, 0)), SVC ".micro.");
    check_name(ldns_rr_rdf(ldns_rr_list_rr(an, 0), 0), INSTANCE);
    check_srv(ldns_rr_list_rr(an, 1), INSTANCE, 7777);
    check_a(ldns_rr_list_rr(an, 2), "127.0.0.1");
    check_txt_payload(ldns_rr_list_rr(an, 3));
    ldns_pkt_free(p);
    memcpy(ptr_reply, last_reply, last_reply_len);
    ptr_reply_len = last_reply_len;
    CHECK(recv_within(fd, buf, sizeof buf, 200) < 0); /* one datagram per instance */

    fprintf(stderr, "-- QU bit: the reply carries the query's ID\n");
    p = ask(fd, SVC ".micro.", LDNS_RR_TYPE_PTR, 0x8001, 0x1234, 1000);
    CHECK(p != NULL);
    CHECK_EQ_INT(ldns_pkt_id(p), 0x1234);
    CHECK_EQ_INT(ldns_rr_get_class(ldns_rr_list_rr(ldns_pkt_question(p), 0)), 0x8001);
    ldns_pkt_free(p);

    fprintf(stderr, "-- ANY for the service is answered like PTR\n");
    p = ask(fd, SVC ".micro.", LDNS_RR_TYPE_ANY, LDNS_RR_CLASS_IN, 7, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), order, 4, 120);
    ldns_pkt_free(p);

    fprintf(stderr, "-- instance queries: ANY, SRV, TXT, A\n");
    static const ldns_rr_type any[] = {LDNS_RR_TYPE_SRV, LDNS_RR_TYPE_A, LDNS_RR_TYPE_TXT};
    p = ask(fd, INSTANCE, LDNS_RR_TYPE_ANY, LDNS_RR_CLASS_IN, 8, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), any, 3, 120);
    check_txt_payload(ldns_rr_list_rr(ldns_pkt_answer(p), 2));
    ldns_pkt_free(p);
    p = ask(fd, INSTANCE, LDNS_RR_TYPE_SRV, LDNS_RR_CLASS_IN, 9, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), any, 2, 120);
    ldns_pkt_free(p);
    p = ask(fd, INSTANCE, LDNS_RR_TYPE_TXT, LDNS_RR_CLASS_IN, 10, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), any + 2, 1, 120);
    ldns_pkt_free(p);
    p = ask(fd, INSTANCE, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 11, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), any + 1, 1, 120);
    ldns_pkt_free(p);
    p = ask(fd, hostname, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 12, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), any + 1, 1, 120);
    check_a(ldns_rr_list_rr(ldns_pkt_answer(p), 0), "127.0.0.1");
    ldns_pkt_free(p);

    fprintf(stderr, "-- _services.micro. PTR: the wildcard entry for ListServices\n");
    p = ask(fd, "_services.micro.", LDNS_RR_TYPE_PTR, LDNS_RR_CLASS_IN, 13, 1000);
    CHECK(p != NULL);
    an = ldns_pkt_answer(p);
    check_types(an, order, 4, 120);
    check_name(ldns_rr_rdf(ldns_rr_list_rr(an, 0), 0), SVC "._services.micro.");
    check_srv(ldns_rr_list_rr(an, 1), SVC "._services.micro.", 9999);
    check_a(ldns_rr_list_rr(an, 2), "0.0.0.0");
    check_name(ldns_rr_owner(ldns_rr_list_rr(an, 3)), SVC "._services.micro.");
    CHECK_EQ_INT(ldns_rr_rd_count(ldns_rr_list_rr(an, 3)), 0); /* TXT with zero strings */
    ldns_pkt_free(p);

    fprintf(stderr, "-- DNS-SD enumeration\n");
    p = ask(fd, "_services._dns-sd._udp.micro.", LDNS_RR_TYPE_PTR, LDNS_RR_CLASS_IN, 14, 1000);
    CHECK(p != NULL);
    static const ldns_rr_type ptr[] = {LDNS_RR_TYPE_PTR};
    check_types(ldns_pkt_answer(p), ptr, 1, 120);
    ldns_pkt_free(p);
    CHECK(recv_within(fd, buf, sizeof buf, 300) > 0); /* node and wildcard both answer */

    fprintf(stderr, "-- other names: no answer\n");
    CHECK(ask(fd, "other.micro.", LDNS_RR_TYPE_PTR, LDNS_RR_CLASS_IN, 15, 300) == NULL);
    CHECK(ask(fd, INSTANCE, LDNS_RR_TYPE_MX, LDNS_RR_CLASS_IN, 16, 300) == NULL);

}

/* ---- a registry of this process, answered over IPv6 alone ---- */

typedef struct lookup_res {
    int done;
    int status;
    size_t nodes;
    char address[64];
} lookup_res;

static void
on_lookup(int status, const cm_reg_service_list *l, void *user)
{
    lookup_res *res = user;
    res->status = status;
    for (size_t i = 0; status == 0 && i < l->n; i++) {
        CHECK_EQ_STR(l->items[i]->name, SVC);
        for (size_t j = 0; j < l->items[i]->nnodes; j++) {
            CHECK_EQ_STR(l->items[i]->nodes[j].id, NODE_ID);
            snprintf(res->address, sizeof res->address, "%s", l->items[i]->nodes[j].address);
            res->nodes++;
        }
    }
    res->done = 1;
}

static int ncreated, ndeleted;

static void
on_event(cm_watch_action action, const cm_reg_service *svc, void *user)
{
    (void)user;
    CHECK_EQ_STR(svc->name, SVC);
    CHECK_EQ_INT(svc->nnodes, 1);
    CHECK_EQ_STR(svc->nodes[0].address, "127.0.0.1:7777");
    if (action == CM_WATCH_CREATE) {
        ncreated++;
    } else {
        ndeleted++;
    }
}

/* Drops what fd heard so far. */
static void
drain(int fd)
{
    static uint8_t buf[65536];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0) {
    }
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Reads what listener fd heard: returns how many PTR queries for the service came, and answers
 * them with reply (unicast to their source, as a responder does) when reply is not NULL. */
static int
serve_queries(int fd, const uint8_t *reply, size_t replylen)
{
    static uint8_t buf[65536];
    int n = 0;
    for (;;) {
        sockaddr_any from;
        socklen_t fromlen = sizeof from;
        ssize_t k = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, &from.sa, &fromlen);
        if (k < 0) {
            CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
            return n;
        }
        ldns_pkt *p = NULL;
        if (ldns_wire2pkt(&p, buf, (size_t)k) != LDNS_STATUS_OK || ldns_pkt_qr(p)) {
            ldns_pkt_free(p);
            continue;
        }
        CHECK_EQ_INT(ldns_pkt_qdcount(p), 1);
        const ldns_rr *q = ldns_rr_list_rr(ldns_pkt_question(p), 0);
        check_name(ldns_rr_owner(q), SVC ".micro.");
        CHECK_EQ_INT(ldns_rr_get_type(q), LDNS_RR_TYPE_PTR);
        ldns_pkt_free(p);
        n++;
        if (reply != NULL) {
            CHECK(sendto(fd, reply, replylen, 0, &from.sa, fromlen) == (ssize_t)replylen);
        }
    }
}

/* get_service(SVC) on r while this process answers the queries heard on lfd[f] where answer[f]
 * is set; counts the queries of each family into asked. */
static lookup_res
lookup_answered(cm_loop *loop, cm_registry *r, const int lfd[2], const int answer[2],
                int asked[2])
{
    lookup_res res = {0};
    CHECK_EQ_INT(cm_registry_get_service(r, SVC, on_lookup, &res), 0);
    uint64_t end = now_ms() + 3000;
    while (!res.done && now_ms() < end) {
        run_for(loop, 2);
        for (int f = 0; f < 2; f++) {
            asked[f] += serve_queries(lfd[f], answer[f] ? ptr_reply : NULL, ptr_reply_len);
        }
    }
    CHECK(res.done);
    CHECK_EQ_INT(res.status, 0);
    return res;
}

static void
set_flag(void *arg)
{
    *(int *)arg = 1;
}

/* Lookups and watch events of a registry of this process, with this process as the only
 * responder: the records the helper served, replayed. */
static void
registry_over_ipv6(const int lfd[2], int qfd6, const uint8_t *announcement, size_t alen,
                   const uint8_t *goodbye, size_t glen)
{
    for (int f = 0; f < 2; f++) {
        drain(lfd[f]); /* the queries asked so far */
    }
    cm_loop *loop;
    cm_registry *r;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", NULL, &r), 0);
    cm_watcher *w;
    CHECK_EQ_INT(cm_registry_watch(r, SVC, on_event, NULL, &w), 0);

    fprintf(stderr, "-- registry: the query goes to both groups; an answer over IPv6 alone "
                    "is found\n");
    int asked[2] = {0, 0};
    lookup_res res = lookup_answered(loop, r, lfd, (const int[2]){0, 1}, asked);
    CHECK_EQ_INT(asked[0], 1);
    CHECK_EQ_INT(asked[1], 1);
    CHECK_EQ_INT(res.nodes, 1);
    CHECK_EQ_STR(res.address, "127.0.0.1:7777");

    fprintf(stderr, "-- registry: answers over both families give the node once\n");
    asked[0] = asked[1] = 0;
    res = lookup_answered(loop, r, lfd, (const int[2]){1, 1}, asked);
    CHECK_EQ_INT(asked[0], 1);
    CHECK_EQ_INT(asked[1], 1);
    CHECK_EQ_INT(res.nodes, 1);

    fprintf(stderr, "-- registry: an announcement on ff02::fb alone is a create event\n");
    CHECK_EQ_INT(ncreated, 0);
    send_group(qfd6, announcement, alen);
    uint64_t end = now_ms() + 2000;
    while (ncreated == 0 && now_ms() < end) {
        run_for(loop, 5);
    }
    CHECK_EQ_INT(ncreated, 1);
    run_for(loop, 700); /* past the window in which a copy over IPv4 would count as one */

    fprintf(stderr, "-- registry: one announcement on both groups is one create event\n");
    int qfd4 = querier(0);
    send_group(qfd4, announcement, alen);
    send_group(qfd6, announcement, alen);
    run_for(loop, 300);
    CHECK_EQ_INT(ncreated, 2);
    fprintf(stderr, "-- registry: one goodbye on both groups is one delete event\n");
    send_group(qfd6, goodbye, glen);
    send_group(qfd4, goodbye, glen);
    run_for(loop, 300);
    CHECK_EQ_INT(ndeleted, 1);
    CHECK_EQ_INT(ncreated, 2);
    close(qfd4);

    cm_watcher_stop(w);
    int closed = 0;
    cm_registry_close(r, set_flag, &closed);
    CHECK(run_until(loop, &closed, 2000));
    cm_loop_free(loop);
}

int
main(int argc, char **argv)
{
    require_private_netns();
    CHECK(argc == 2);
    CHECK(gethostname(hostname, sizeof hostname - 2) == 0);
    strcat(hostname, ".");
    static uint8_t buf[65536], copy[65536], announcement[65536], goodbye[65536];
    const char *v6env = getenv("CMICRO_TEST_IPV6");
    int nfam = v6env != NULL && strcmp(v6env, "1") == 0 ? 2 : 1;
    if (nfam == 1) {
        fprintf(stderr, "note: no IPv6 in this namespace: the IPv6 checks are left out\n");
    }

    int lfd[2] = {-1, -1}, qfd[2] = {-1, -1};
    for (int f = 0; f < nfam; f++) {
        lfd[f] = listener(f);
        qfd[f] = querier(f);
    }
    char *srv_argv[] = {argv[1],         SVC,       VERSION, NODE_ID, "127.0.0.1:7777",
                        "protocol=mucp", "zone=eu", "-e",    "30",    NULL};
    child c = spawn_ready(srv_argv);

    fprintf(stderr, "-- announcements: three, at t, t+1 s, t+3 s, TTL 120, on each group\n");
    uint64_t at[3];
    size_t alen = 0;
    for (int i = 0; i < 3; i++) {
        ssize_t n = next_response(lfd[0], buf, sizeof buf, 4000);
        CHECK(n > 0);
        at[i] = now_ms();
        check_unsolicited(buf, (size_t)n, 120);
        if (i == 0) {
            memcpy(announcement, buf, (size_t)n);
            alen = (size_t)n;
        }
        if (nfam == 2) {
            /* The same datagram on ff02::fb. */
            ssize_t k = next_response(lfd[1], copy, sizeof copy, 1000);
            CHECK_EQ_INT(k, n);
            CHECK(memcmp(copy, buf, (size_t)n) == 0);
        }
    }
    fprintf(stderr, "   (gaps %llu ms, %llu ms)\n", (unsigned long long)(at[1] - at[0]),
            (unsigned long long)(at[2] - at[1]));
    CHECK(at[1] - at[0] >= 800 && at[1] - at[0] <= 1500);
    CHECK(at[2] - at[1] >= 1800 && at[2] - at[1] <= 2500);

    for (int f = 0; f < nfam; f++) {
        fprintf(stderr, "-- queries over %s\n", family_name[f]);
        check_queries(qfd[f]);
        /* Answered over the query's family only. */
        CHECK(nfam == 1 || recv_within(qfd[!f], buf, sizeof buf, 0) < 0);
    }

    fprintf(stderr, "-- SIGTERM: one goodbye, the same records at TTL 0, on each group\n");
    int status = stop_child(&c, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    size_t glen = 0;
    for (int f = 0; f < nfam; f++) {
        ssize_t n = next_response(lfd[f], buf, sizeof buf, 1000);
        CHECK(n > 0);
        check_unsolicited(buf, (size_t)n, 0);
        memcpy(goodbye, buf, (size_t)n);
        glen = (size_t)n;
        CHECK(next_response(lfd[f], buf, sizeof buf, 300) < 0);
        CHECK(ask(qfd[f], SVC ".micro.", LDNS_RR_TYPE_PTR, LDNS_RR_CLASS_IN, 17, 300) == NULL);
    }

    if (nfam == 2) {
        registry_over_ipv6(lfd, qfd[1], announcement, alen, goodbye, glen);
    }
    for (int f = 0; f < nfam; f++) {
        close(lfd[f]);
        close(qfd[f]);
    }
    TEST_DONE();
}
