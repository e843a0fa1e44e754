/* Plain IPv4 UDP sockets and hand-built mDNS messages (ldns) for the mDNS tests that play a
 * querier or a hostile responder next to the backend. Every function fails the test (CHECK) on
 * an error. Only inside the private namespace that run-netns.sh makes. */
#ifndef CM_MDNS_UDP_H
#define CM_MDNS_UDP_H

#include <ldns/ldns.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Lets this namespace's lo send from any address of 192.0.2.0/24 (TEST-NET-1), which is in no
 * subnet of lo's addresses: the off-link source of the tests. */
void udp_add_offlink_route(void);

/* A socket bound to ip:port (port 0: ephemeral; port 5353 with SO_REUSEADDR and SO_REUSEPORT),
 * multicasting through lo. */
int udp_open(const char *ip, unsigned port);

/* Sends a datagram to 224.0.0.251:5353. */
void udp_send_group(int fd, const uint8_t *data, size_t len);

/* The next datagram within ms into buf (its length, the sender in from when not NULL), or -1. */
ssize_t udp_recv(int fd, uint8_t *buf, size_t len, int ms, struct sockaddr_in *from);

/* A query with the question (name, type, class IN) repeat times, then the names of others (NULL
 * or NULL-terminated) once each, type PTR. Freed with free(). */
uint8_t *udp_query(const char *name, ldns_rr_type type, unsigned repeat, const char *const *others,
                   size_t *len);

#endif
