/* Plain IPv4 UDP sockets and hand-built mDNS messages for the mDNS tests (udp.h). */
#include "udp.h"

#include "test.h"

#include <arpa/inet.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

void
udp_add_offlink_route(void)
{
    /* A local route without an interface address: binding to its addresses works, and
     * getifaddrs does not list them. */
    CHECK(system("ip route add local 192.0.2.0/24 dev lo") == 0);
}

int
udp_open(const char *ip, unsigned port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    int one = 1;
    if (port != 0) {
        CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
        CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    CHECK(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    struct in_addr lo;
    inet_pton(AF_INET, "127.0.0.1", &lo);
    CHECK(setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo) == 0);
    return fd;
}

void
udp_send_group(int fd, const uint8_t *data, size_t len)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(5353)};
    inet_pton(AF_INET, "224.0.0.251", &to.sin_addr);
    CHECK(sendto(fd, data, len, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)len);
}

ssize_t
udp_recv(int fd, uint8_t *buf, size_t len, int ms, struct sockaddr_in *from)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) {
        return -1;
    }
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    ssize_t n = recvfrom(fd, buf, len, 0, (struct sockaddr *)&a, &alen);
    if (from != NULL) {
        *from = a;
    }
    return n;
}

static void
push_question(ldns_pkt *p, const char *name, ldns_rr_type type)
{
    ldns_rr *q = ldns_rr_new();
    ldns_rdf *owner = NULL;
    CHECK(q != NULL && ldns_str2rdf_dname(&owner, name) == LDNS_STATUS_OK);
    ldns_rr_set_owner(q, owner);
    ldns_rr_set_type(q, type);
    ldns_rr_set_class(q, LDNS_RR_CLASS_IN);
    ldns_rr_set_question(q, true);
    CHECK(ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, q));
}

uint8_t *
udp_query(const char *name, ldns_rr_type type, unsigned repeat, const char *const *others,
          size_t *len)
{
    ldns_pkt *p = ldns_pkt_new();
    CHECK(p != NULL);
    for (unsigned i = 0; i < repeat; i++) {
        push_question(p, name, type);
    }
    for (size_t i = 0; others != NULL && others[i] != NULL; i++) {
        push_question(p, others[i], LDNS_RR_TYPE_PTR);
    }
    uint8_t *wire;
    CHECK(ldns_pkt2wire(&wire, p, len) == LDNS_STATUS_OK);
    ldns_pkt_free(p);
    return wire;
}
