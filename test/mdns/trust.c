/* Whom the backend believes (RFC 6762 section 11; defect: a hostile responder in the namespace
 * drew 7 of 10 calls to its node, and a later packet could overwrite a known node's SRV, TXT or
 * address). A helper process (mdns-server) registers real-1 at 127.0.0.1:7777; this process
 * forges responses from the real one's reply (another port, another address, other names, TTL
 * 0) and multicasts them from sockets of its own:
 *   - from 127.0.0.2 (on-link: in lo's 127.0.0.0/8), during lookups, as announcements and as a
 *     goodbye: real-1 keeps its address in every lookup and no watch event moves or deletes it;
 *   - from 192.0.2.7 (a local route, in no subnet of lo's: off-link): a new node is not added;
 *   - with the "subnets" option 127.0.0.1/32, a new node from 127.0.0.2 is not added, while a
 *     registry without the option (the control) adds it; a bad subnet fails cm_registry_new.
 * Runs inside a private network namespace (run-netns.sh).
 *   test-mdns-trust PATH_TO_MDNS_SERVER */
#include "mdns_test.h"
#include "udp.h"

#define SVC "trust.test"
#define QNAME SVC ".micro."

static uint8_t real_reply[65536];
static size_t real_len;

/* ---- forged responses ---- */

static void
set_name(ldns_rr *rr, int rdf, const ldns_rdf *name)
{
    ldns_rdf *copy = ldns_rdf_clone(name);
    CHECK(copy != NULL);
    if (rdf < 0) {
        ldns_rdf_deep_free(ldns_rr_owner(rr));
        ldns_rr_set_owner(rr, copy);
    } else {
        ldns_rdf_deep_free(ldns_rr_set_rdf(rr, copy, (size_t)rdf));
    }
}

/* The real reply with the instance renamed to "<id>.trust.test.micro." (id NULL: kept), the SRV
 * port, the A address and every TTL replaced. Freed with free(). */
static uint8_t *
forge(const char *id, uint16_t port, const char *ip, uint32_t ttl, size_t *len)
{
    ldns_pkt *p = NULL;
    CHECK(ldns_wire2pkt(&p, real_reply, real_len) == LDNS_STATUS_OK);
    ldns_rdf *inst = NULL;
    char name[128];
    snprintf(name, sizeof name, "%s." QNAME, id ? id : "");
    CHECK(id == NULL || ldns_str2rdf_dname(&inst, name) == LDNS_STATUS_OK);
    const ldns_rr_list *an = ldns_pkt_answer(p);
    for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
        ldns_rr *rr = ldns_rr_list_rr(an, i);
        ldns_rr_set_ttl(rr, ttl);
        ldns_rr_type t = ldns_rr_get_type(rr);
        if (inst != NULL && t == LDNS_RR_TYPE_PTR) {
            set_name(rr, 0, inst);
        } else if (inst != NULL && (t == LDNS_RR_TYPE_SRV || t == LDNS_RR_TYPE_TXT)) {
            set_name(rr, -1, inst);
        }
        if (t == LDNS_RR_TYPE_SRV) {
            ldns_rdf *p16 = ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, port);
            ldns_rdf_deep_free(ldns_rr_set_rdf(rr, p16, 2));
        } else if (t == LDNS_RR_TYPE_A) {
            ldns_rdf *a = NULL;
            CHECK(ldns_str2rdf_a(&a, ip) == LDNS_STATUS_OK);
            ldns_rdf_deep_free(ldns_rr_set_rdf(rr, a, 0));
        }
    }
    uint8_t *wire;
    CHECK(ldns_pkt2wire(&wire, p, len) == LDNS_STATUS_OK);
    ldns_rdf_deep_free(inst);
    ldns_pkt_free(p);
    return wire;
}

/* ---- lookups and watch events ---- */

typedef struct seen {
    int done;
    int status;
    int real, evil;  /* nodes: real-1 at 127.0.0.1:7777, any other node or address */
    int deleted;     /* delete events */
    char last[128];  /* the last node not real-1 at 127.0.0.1:7777, "id@address" */
} seen;

static void
count_node(seen *s, const cm_node *n)
{
    if (strcmp(n->id, "real-1") == 0 && strcmp(n->address, "127.0.0.1:7777") == 0) {
        s->real++;
    } else {
        s->evil++;
        snprintf(s->last, sizeof s->last, "%s@%s", n->id, n->address);
    }
}

static void
on_lookup(int status, const cm_reg_service_list *l, void *user)
{
    seen *s = user;
    s->status = status;
    for (size_t i = 0; status == 0 && i < l->n; i++) {
        for (size_t j = 0; j < l->items[i]->nnodes; j++) {
            count_node(s, &l->items[i]->nodes[j]);
        }
    }
    s->done = 1;
}

static void
on_event(cm_watch_action action, const cm_reg_service *svc, void *user)
{
    seen *s = user;
    if (action == CM_WATCH_DELETE) {
        s->deleted++;
        return;
    }
    for (size_t j = 0; j < svc->nnodes; j++) {
        count_node(s, &svc->nodes[j]);
    }
}

/* A lookup on r; when forged is not NULL it is multicast from fd 100 ms into the window, after
 * the real node's reply. */
static seen
lookup(cm_loop *loop, cm_registry *r, int fd, const uint8_t *forged, size_t len)
{
    seen s = {0};
    CHECK_EQ_INT(cm_registry_get_service(r, SVC, on_lookup, &s), 0);
    if (forged != NULL) {
        run_for(loop, 100);
        udp_send_group(fd, forged, len);
    }
    CHECK(run_until(loop, &s.done, 3000));
    CHECK_EQ_INT(s.status, 0);
    if (s.evil > 0) {
        fprintf(stderr, "   lookup found %s\n", s.last);
    }
    return s;
}

static cm_registry *
open_registry(cm_loop *loop, const char *subnets, cm_watcher **w, seen *events)
{
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    o.timeout_ms = 300;
    if (subnets != NULL) {
        cm_registry_opts_set(&o, "subnets", subnets);
    }
    cm_registry *r = NULL;
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", &o, &r), 0);
    CHECK_EQ_INT(cm_registry_watch(r, SVC, on_event, events, w), 0);
    return r;
}

static void
set_flag(void *arg)
{
    *(int *)arg = 1;
}

static void
close_registry(cm_loop *loop, cm_registry *r, cm_watcher *w)
{
    cm_watcher_stop(w);
    int closed = 0;
    cm_registry_close(r, set_flag, &closed);
    CHECK(run_until(loop, &closed, 3000));
}

/* The real node's reply to a PTR query, as it is on the wire. */
static void
capture_real_reply(void)
{
    int fd = udp_open("127.0.0.1", 0);
    size_t qlen;
    uint8_t *q = udp_query(QNAME, LDNS_RR_TYPE_PTR, 1, NULL, &qlen);
    udp_send_group(fd, q, qlen);
    free(q);
    ssize_t n = udp_recv(fd, real_reply, sizeof real_reply, 2000, NULL);
    CHECK(n > 0);
    real_len = (size_t)n;
    close(fd);
}

/* ---- the cases ---- */

static void
replace_from_onlink(cm_loop *loop, cm_registry *r, seen *events)
{
    int h = udp_open("127.0.0.2", 5353);
    size_t len;
    uint8_t *moved = forge(NULL, 6666, "127.0.0.2", 120, &len);
    fprintf(stderr, "-- real-1 is learned from 127.0.0.1\n");
    seen s = lookup(loop, r, h, NULL, 0);
    CHECK_EQ_INT(s.real, 1);
    CHECK_EQ_INT(s.evil, 0);
    fprintf(stderr, "-- 127.0.0.2 answers for real-1 with its own address: not replaced\n");
    for (int i = 0; i < 5; i++) {
        s = lookup(loop, r, h, moved, len);
        CHECK_EQ_INT(s.real, 1);
        CHECK_EQ_INT(s.evil, 0);
    }
    fprintf(stderr, "-- 127.0.0.2 announces real-1 elsewhere, then says goodbye for it: no "
                    "event\n");
    udp_send_group(h, moved, len);
    run_for(loop, 300);
    free(moved);
    uint8_t *goodbye = forge(NULL, 7777, "127.0.0.1", 0, &len);
    udp_send_group(h, goodbye, len);
    run_for(loop, 300);
    free(goodbye);
    CHECK_EQ_INT(events->evil, 0);
    CHECK_EQ_INT(events->deleted, 0);
    s = lookup(loop, r, h, NULL, 0);
    CHECK_EQ_INT(s.real, 1);
    close(h);
}

static void
new_node_from_offlink(cm_loop *loop, cm_registry *r, seen *events)
{
    fprintf(stderr, "-- 192.0.2.7 (off-link) adds evil-1: not added\n");
    int h = udp_open("192.0.2.7", 5353);
    size_t len;
    uint8_t *evil = forge("evil-1", 6666, "192.0.2.7", 120, &len);
    udp_send_group(h, evil, len);
    run_for(loop, 300);
    CHECK_EQ_INT(events->evil, 0);
    seen s = lookup(loop, r, h, evil, len);
    CHECK_EQ_INT(s.real, 1);
    CHECK_EQ_INT(s.evil, 0);
    free(evil);
    close(h);
}

static void
subnets_option(cm_loop *loop, cm_registry *r, seen *events)
{
    fprintf(stderr, "-- subnets: a bad subnet fails cm_registry_new\n");
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    cm_registry_opts_set(&o, "subnets", "127.0.0.1/32,not-a-subnet");
    cm_registry *bad = NULL;
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", &o, &bad), CM_EINVAL);

    fprintf(stderr, "-- subnets 127.0.0.1/32: evil-2 from 127.0.0.2 is not added (without the "
                    "option it is)\n");
    seen only = {0};
    cm_watcher *w;
    cm_registry *r2 = open_registry(loop, "127.0.0.1/32", &w, &only);
    int h = udp_open("127.0.0.2", 5353);
    size_t len;
    uint8_t *evil = forge("evil-2", 6666, "127.0.0.2", 120, &len);
    udp_send_group(h, evil, len);
    run_for(loop, 300);
    CHECK_EQ_INT(only.evil, 0);
    CHECK_EQ_INT(events->evil, 1); /* the control: an on-link source may add a node */
    seen s = lookup(loop, r2, h, evil, len);
    CHECK_EQ_INT(s.real, 1);
    CHECK_EQ_INT(s.evil, 0);
    free(evil);
    close(h);
    close_registry(loop, r2, w);
    (void)r;
}

int
main(int argc, char **argv)
{
    require_private_netns();
    CHECK(argc == 2);
    udp_add_offlink_route();
    char *srv_argv[] = {argv[1], SVC, "v1", "real-1", "127.0.0.1:7777", NULL};
    child c = spawn_ready(srv_argv);
    capture_real_reply();

    cm_loop *loop;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    seen events = {0};
    cm_watcher *w;
    cm_registry *r = open_registry(loop, NULL, &w, &events);
    replace_from_onlink(loop, r, &events);
    new_node_from_offlink(loop, r, &events);
    subnets_option(loop, r, &events);

    close_registry(loop, r, w);
    cm_loop_free(loop);
    int status = stop_child(&c, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    TEST_DONE();
}
