/* What the mdns backend puts on the wire, checked by an independent decoder: plain UDP sockets,
 * ldns to parse, zlib and cJSON to read the TXT payload (none of the backend's parsing code).
 * A helper process (mdns-server) is the responder. Runs inside a private network namespace.
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

/* ---- sockets ---- */

/* A socket on 0.0.0.0:5353 joined to the group on lo, as another responder would have. */
static int
listener(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    int one = 1;
    CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(5353);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    struct ip_mreq m;
    inet_pton(AF_INET, "224.0.0.251", &m.imr_multiaddr);
    inet_pton(AF_INET, "127.0.0.1", &m.imr_interface);
    CHECK(setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) == 0);
    return fd;
}

/* A querier on an ephemeral port, multicasting through lo. */
static int
querier(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    struct in_addr lo;
    inet_pton(AF_INET, "127.0.0.1", &lo);
    CHECK(setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo) == 0);
    return fd;
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

/* Sends a query (one question, built with ldns) to 224.0.0.251:5353. */
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
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons(5353);
    inet_pton(AF_INET, "224.0.0.251", &to.sin_addr);
    CHECK(sendto(fd, wire, len, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)len);
    free(wire);
    ldns_pkt_free(p);
}

/* The reply to a query (ldns-parsed), or NULL when none came within ms. */
static ldns_pkt *
ask(int fd, const char *name, ldns_rr_type type, uint16_t klass, uint16_t id, int ms)
{
    static uint8_t buf[65536];
    send_query(fd, name, type, klass, id);
    ssize_t n = recv_within(fd, buf, sizeof buf, ms);
    if (n < 0) {
        return NULL;
    }
    ldns_pkt *p = NULL;
    CHECK(ldns_wire2pkt(&p, buf, (size_t)n) == LDNS_STATUS_OK);
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

int
main(int argc, char **argv)
{
    require_private_netns();
    CHECK(argc == 2);
    CHECK(gethostname(hostname, sizeof hostname - 2) == 0);
    strcat(hostname, ".");
    static uint8_t buf[65536];

    int lfd = listener();
    int qfd = querier();
    char *srv_argv[] = {argv[1],         SVC,       VERSION, NODE_ID, "127.0.0.1:7777",
                        "protocol=mucp", "zone=eu", "-e",    "30",    NULL};
    child c = spawn_ready(srv_argv);

    fprintf(stderr, "-- announcements: three, at t, t+1 s, t+3 s, TTL 120\n");
    uint64_t at[3];
    for (int i = 0; i < 3; i++) {
        ssize_t n = next_response(lfd, buf, sizeof buf, 4000);
        CHECK(n > 0);
        at[i] = now_ms();
        check_unsolicited(buf, (size_t)n, 120);
    }
    fprintf(stderr, "   (gaps %llu ms, %llu ms)\n", (unsigned long long)(at[1] - at[0]),
            (unsigned long long)(at[2] - at[1]));
    CHECK(at[1] - at[0] >= 800 && at[1] - at[0] <= 1500);
    CHECK(at[2] - at[1] >= 1800 && at[2] - at[1] <= 2500);

    fprintf(stderr, "-- PTR query: question echoed, PTR SRV A TXT, TTL 120, unicast to us\n");
    ldns_pkt *p = ask(qfd, SVC ".micro.", LDNS_RR_TYPE_PTR, LDNS_RR_CLASS_IN, 0x4242, 1000);
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
    CHECK(recv_within(qfd, buf, sizeof buf, 200) < 0); /* one datagram per instance */

    fprintf(stderr, "-- QU bit: the reply carries the query's ID\n");
    p = ask(qfd, SVC ".micro.", LDNS_RR_TYPE_PTR, 0x8001, 0x1234, 1000);
    CHECK(p != NULL);
    CHECK_EQ_INT(ldns_pkt_id(p), 0x1234);
    CHECK_EQ_INT(ldns_rr_get_class(ldns_rr_list_rr(ldns_pkt_question(p), 0)), 0x8001);
    ldns_pkt_free(p);

    fprintf(stderr, "-- ANY for the service is answered like PTR\n");
    p = ask(qfd, SVC ".micro.", LDNS_RR_TYPE_ANY, LDNS_RR_CLASS_IN, 7, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), order, 4, 120);
    ldns_pkt_free(p);

    fprintf(stderr, "-- instance queries: ANY, SRV, TXT, A\n");
    static const ldns_rr_type any[] = {LDNS_RR_TYPE_SRV, LDNS_RR_TYPE_A, LDNS_RR_TYPE_TXT};
    p = ask(qfd, INSTANCE, LDNS_RR_TYPE_ANY, LDNS_RR_CLASS_IN, 8, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), any, 3, 120);
    check_txt_payload(ldns_rr_list_rr(ldns_pkt_answer(p), 2));
    ldns_pkt_free(p);
    p = ask(qfd, INSTANCE, LDNS_RR_TYPE_SRV, LDNS_RR_CLASS_IN, 9, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), any, 2, 120);
    ldns_pkt_free(p);
    p = ask(qfd, INSTANCE, LDNS_RR_TYPE_TXT, LDNS_RR_CLASS_IN, 10, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), any + 2, 1, 120);
    ldns_pkt_free(p);
    p = ask(qfd, INSTANCE, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 11, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), any + 1, 1, 120);
    ldns_pkt_free(p);
    p = ask(qfd, hostname, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 12, 1000);
    CHECK(p != NULL);
    check_types(ldns_pkt_answer(p), any + 1, 1, 120);
    check_a(ldns_rr_list_rr(ldns_pkt_answer(p), 0), "127.0.0.1");
    ldns_pkt_free(p);

    fprintf(stderr, "-- _services.micro. PTR: the wildcard entry for ListServices\n");
    p = ask(qfd, "_services.micro.", LDNS_RR_TYPE_PTR, LDNS_RR_CLASS_IN, 13, 1000);
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
    p = ask(qfd, "_services._dns-sd._udp.micro.", LDNS_RR_TYPE_PTR, LDNS_RR_CLASS_IN, 14, 1000);
    CHECK(p != NULL);
    static const ldns_rr_type ptr[] = {LDNS_RR_TYPE_PTR};
    check_types(ldns_pkt_answer(p), ptr, 1, 120);
    ldns_pkt_free(p);
    CHECK(recv_within(qfd, buf, sizeof buf, 300) > 0); /* node and wildcard both answer */

    fprintf(stderr, "-- other names: no answer\n");
    CHECK(ask(qfd, "other.micro.", LDNS_RR_TYPE_PTR, LDNS_RR_CLASS_IN, 15, 300) == NULL);
    CHECK(ask(qfd, INSTANCE, LDNS_RR_TYPE_MX, LDNS_RR_CLASS_IN, 16, 300) == NULL);

    fprintf(stderr, "-- SIGTERM: one goodbye, the same records at TTL 0\n");
    int status = stop_child(&c, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ssize_t n = next_response(lfd, buf, sizeof buf, 1000);
    CHECK(n > 0);
    check_unsolicited(buf, (size_t)n, 0);
    CHECK(next_response(lfd, buf, sizeof buf, 300) < 0);
    CHECK(ask(qfd, SVC ".micro.", LDNS_RR_TYPE_PTR, LDNS_RR_CLASS_IN, 17, 300) == NULL);

    close(lfd);
    close(qfd);
    TEST_DONE();
}
