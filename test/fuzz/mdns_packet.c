/* libFuzzer harness: mDNS datagrams through the mdns registry backend's packet handling, without
 * sockets. This is cm__mdns_handle_packet (registry/mdns.c) taken apart so that no datagram is
 * sent: ldns parses the datagram; a query is answered by the zones a registry serves (a node of
 * greeter over IPv4, one over IPv6, the greeter wildcard), and every answer must parse again; a
 * response feeds a lookup of greeter and a listing as cm__mdns_query_feed does, their results
 * are built (cm__mdns_query_result: entries, TXT hex -> zlib -> JSON, addresses), and its
 * complete entries become watch events as cm__mdns_notify_watchers makes them. */
#include "fuzz.h"
#include "mdns_int.h"

#include <string.h>

#define HOST "fuzzhost."

static cm__mdns_zone zones[3];
static ldns_rdf *qd_service, *qd_list;

/* The TXT payload of a greeter node with endpoints and metadata. */
static void
make_txt(char **hex, size_t *len)
{
    cm_reg_service *svc = cm_reg_service_new("greeter", "1.0.0");
    cm_md *md = cm_md_new();
    FUZZ_CHECK(svc != NULL && md != NULL);
    FUZZ_CHECK(cm_md_set(md, "protocol", "mucp") == 0);
    FUZZ_CHECK(cm_md_set(md, "transport", "http") == 0);
    cm_value fields[1] = {{"name", "string", NULL, 0}};
    cm_value req = {"Request", "Request", fields, 1};
    cm_value rsp = {"Response", "Response", fields, 1};
    FUZZ_CHECK(cm_reg_service_add_endpoint(svc, "Greeter.Hello", &req, &rsp, NULL) != NULL);
    cm_node *node = cm_reg_service_add_node(svc, "greeter-1", "127.0.0.1:4000", md);
    FUZZ_CHECK(node != NULL);
    FUZZ_CHECK(cm__mdns_txt_encode(svc, node, hex, len) == 0);
    cm_md_free(md);
    cm_reg_service_free(svc);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char *txt;
    size_t txtlen;
    make_txt(&txt, &txtlen);
    uint8_t v4[16] = {127, 0, 0, 1}, v6[16] = {0}, any[16] = {0};
    v6[15] = 1;
    FUZZ_CHECK(cm__mdns_zone_init(&zones[0], "greeter-1", "greeter", HOST, 4000, AF_INET, v4, txt,
                                  txtlen) == 0);
    FUZZ_CHECK(cm__mdns_zone_init(&zones[1], "greeter-2", "greeter", HOST, 4001, AF_INET6, v6, txt,
                                  txtlen) == 0);
    FUZZ_CHECK(cm__mdns_zone_init(&zones[2], "greeter", "_services", HOST,
                                  CM__MDNS_WILDCARD_PORT, AF_INET, any, NULL, 0) == 0);
    zones[2].wildcard = 1;
    free(txt);
    FUZZ_CHECK(ldns_str2rdf_dname(&qd_service, "greeter.micro.") == LDNS_STATUS_OK);
    FUZZ_CHECK(ldns_str2rdf_dname(&qd_list, "_services.micro.") == LDNS_STATUS_OK);
    return 0;
}

/* The responder: what each zone answers must be a datagram ldns reads back. */
static void
answer(const ldns_pkt *query)
{
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        uint8_t *wire = NULL;
        size_t len = 0;
        FUZZ_CHECK(cm__mdns_zone_answer(&zones[i], query, &wire, &len) == 0);
        if (wire == NULL) {
            continue;
        }
        ldns_pkt *back = NULL;
        ldns_status s = ldns_wire2pkt(&back, wire, len);
        if (s != LDNS_STATUS_OK) {
            fprintf(stderr, "answer of zone %zu does not parse: %s\n", i,
                    ldns_get_errorstr_by_id(s));
            FUZZ_CHECK(!"unparsable answer");
        }
        FUZZ_CHECK(ldns_pkt_qr(back) && ldns_pkt_aa(back));
        ldns_pkt_free(back);
        free(wire);
    }
}

/* A lookup (or a listing) that hears pkt, as mdns_lookup.c runs it, minus the sockets. */
static void
lookup(const ldns_pkt *pkt, const char *name, ldns_rdf *qdname, int list)
{
    cm__mdns_query q;
    memset(&q, 0, sizeof(q));
    q.name = (char *)name;
    q.qdname = qdname;
    q.list = list;
    cm__mdns_query_feed(&q, pkt);
    cm_reg_service_list l = {NULL, 0};
    int rc = cm__mdns_query_result(&q, &l);
    FUZZ_CHECK(rc == 0);
    for (size_t i = 0; i < l.n; i++) {
        const cm_reg_service *s = l.items[i];
        FUZZ_CHECK(s->name != NULL && s->version != NULL);
        FUZZ_CHECK(list || strcmp(s->name, name) == 0);
        for (size_t j = 0; j < s->nnodes; j++) {
            FUZZ_CHECK(s->nodes[j].id != NULL && s->nodes[j].address != NULL);
        }
        cm_reg_service_free(l.items[i]);
    }
    free(l.items);
    cm__mdns_entries_fini(&q.entries);
}

/* The watch events a response makes. */
static void
notify(const ldns_pkt *pkt)
{
    cm__mdns_entries set = {0};
    if (cm__mdns_collect(pkt, &set) == 0) {
        for (size_t i = 0; i < set.n; i++) {
            const cm__mdns_entry *e = &set.v[i];
            if (!cm__mdns_entry_complete(e)) {
                continue;
            }
            cm_reg_service *svc = cm__mdns_entry_service(e, NULL);
            if (svc != NULL) {
                FUZZ_CHECK(svc->nnodes == 1);
                cm_reg_service_free(svc);
            }
        }
    }
    cm__mdns_entries_fini(&set);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > CM__MDNS_MAX_DGRAM) {
        return 0;
    }
    ldns_pkt *pkt = NULL;
    if (cm__mdns_wire2pkt(&pkt, data, size) != LDNS_STATUS_OK) {
        ldns_pkt_free(pkt);
        return 0;
    }
    if (ldns_pkt_get_opcode(pkt) == LDNS_PACKET_QUERY &&
        ldns_pkt_get_rcode(pkt) == LDNS_RCODE_NOERROR) {
        if (!ldns_pkt_qr(pkt)) {
            answer(pkt);
        } else {
            notify(pkt);
            lookup(pkt, "greeter", qd_service, 0);
            lookup(pkt, "_services", qd_list, 1);
        }
    }
    ldns_pkt_free(pkt);
    return 0;
}
