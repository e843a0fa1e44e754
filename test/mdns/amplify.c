/* The responder is no amplifier (RFC 6762 section 11; defect: a 641-byte query of 100 repeated
 * questions got a 48,904-byte reply, and any source got unicast replies). A registry of this
 * process serves one node; plain UDP sockets ask:
 *   - the same question 100 times: the reply echoes it once, carries each record once and is at
 *     most 4 times the query (or the reply to the question asked once);
 *   - one owned name among 100 names of others: only the owned name is echoed and answered;
 *   - from 192.0.2.7, an address in no subnet of lo's (an off-link source): no reply at all,
 *     while the same query from 127.0.0.1 is answered.
 * Runs inside a private network namespace (run-netns.sh). */
#include "mdns_test.h"
#include "udp.h"

#define SVC "amp.test"
#define QNAME SVC ".micro."

static void
set_flag(void *arg)
{
    *(int *)arg = 1;
}

static void
registered(int status, void *user)
{
    CHECK_EQ_INT(status, 0);
    *(int *)user = 1;
}

/* Sends query from fd, runs the loop for the replies to come, and returns the bytes of all
 * datagrams fd got (their number in *n); the first is parsed into *first (NULL: none). */
static size_t
ask(cm_loop *loop, int fd, const uint8_t *query, size_t qlen, int *n, ldns_pkt **first)
{
    static uint8_t buf[65536];
    udp_send_group(fd, query, qlen);
    run_for(loop, 300);
    size_t total = 0;
    ssize_t k;
    *n = 0;
    *first = NULL;
    while ((k = udp_recv(fd, buf, sizeof buf, 0, NULL)) > 0) {
        if (*n == 0) {
            CHECK(ldns_wire2pkt(first, buf, (size_t)k) == LDNS_STATUS_OK);
        }
        total += (size_t)k;
        (*n)++;
    }
    return total;
}

/* The reply to one question, for the size a legitimate answer needs. */
static size_t
single_reply(cm_loop *loop, int fd)
{
    size_t qlen;
    uint8_t *q = udp_query(QNAME, LDNS_RR_TYPE_PTR, 1, NULL, &qlen);
    int n;
    ldns_pkt *p;
    size_t len = ask(loop, fd, q, qlen, &n, &p);
    free(q);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ldns_rr_list_rr_count(ldns_pkt_answer(p)), 4); /* PTR SRV A TXT */
    ldns_pkt_free(p);
    return len;
}

static void
repeated_questions(cm_loop *loop, int fd, size_t single)
{
    size_t qlen;
    uint8_t *q = udp_query(QNAME, LDNS_RR_TYPE_PTR, 100, NULL, &qlen);
    int n;
    ldns_pkt *p;
    size_t len = ask(loop, fd, q, qlen, &n, &p);
    free(q);
    fprintf(stderr, "   query %zu bytes, reply %zu bytes in %d datagrams (one question: %zu)\n",
            qlen, len, n, single);
    CHECK_EQ_INT(n, 1);
    CHECK(len <= (4 * qlen > single ? 4 * qlen : single));
    CHECK_EQ_INT(ldns_pkt_qdcount(p), 1);
    CHECK_EQ_INT(ldns_rr_list_rr_count(ldns_pkt_answer(p)), 4);
    ldns_pkt_free(p);
}

static void
names_of_others(cm_loop *loop, int fd)
{
    static char names[100][32];
    const char *others[101];
    for (int i = 0; i < 100; i++) {
        snprintf(names[i], sizeof names[i], "other%d.micro.", i);
        others[i] = names[i];
    }
    others[100] = NULL;
    size_t qlen;
    uint8_t *q = udp_query(QNAME, LDNS_RR_TYPE_PTR, 1, others, &qlen);
    int n;
    ldns_pkt *p;
    ask(loop, fd, q, qlen, &n, &p);
    free(q);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ldns_pkt_qdcount(p), 1);
    char *owner = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(p), 0)));
    CHECK_EQ_STR(owner, QNAME);
    free(owner);
    ldns_pkt_free(p);
}

static void
offlink_source(cm_loop *loop)
{
    int fd = udp_open("192.0.2.7", 0);
    size_t qlen;
    uint8_t *q = udp_query(QNAME, LDNS_RR_TYPE_PTR, 1, NULL, &qlen);
    int n;
    ldns_pkt *p;
    ask(loop, fd, q, qlen, &n, &p);
    free(q);
    CHECK_EQ_INT(n, 0);
    close(fd);
}

int
main(void)
{
    require_private_netns();
    udp_add_offlink_route();
    cm_loop *loop;
    cm_registry *r;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", NULL, &r), 0);
    cm_reg_service *svc = cm_reg_service_new(SVC, "v1");
    CHECK(cm_reg_service_add_node(svc, "amp-1", "127.0.0.1:7777", NULL) != NULL);
    int done = 0;
    CHECK_EQ_INT(cm_registry_register_service(r, svc, 0, registered, &done), 0);
    CHECK(run_until(loop, &done, 2000));
    run_for(loop, 100);
    int fd = udp_open("127.0.0.1", 0);

    fprintf(stderr, "-- one question: one reply (the control)\n");
    size_t single = single_reply(loop, fd);
    fprintf(stderr, "-- 100 repeated questions: one answer, at most 4x the query\n");
    repeated_questions(loop, fd, single);
    fprintf(stderr, "-- one owned name among 100 of others: only it is echoed\n");
    names_of_others(loop, fd);
    fprintf(stderr, "-- a query from an off-link source (192.0.2.7): no reply\n");
    offlink_source(loop);
    single_reply(loop, fd); /* still answered on the link */

    close(fd);
    cm_reg_service_free(svc);
    int closed = 0;
    cm_registry_close(r, set_flag, &closed);
    CHECK(run_until(loop, &closed, 3000));
    cm_loop_free(loop);
    TEST_DONE();
}
