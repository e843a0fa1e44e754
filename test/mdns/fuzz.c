/* Fuzz smoke test of the mdns backend's packet handling: 100,000 random datagrams and mutations
 * of real ones (queries, replies, announcements, goodbyes, replies with broken TXT payloads)
 * are fed straight into cm__mdns_handle_packet (as if heard over IPv4 and IPv6 in turn) of a
 * registry that has a registered node, a watcher and lookups in flight. Meant for ASan/UBSan
 * builds: no crash, no leak. The registry must still answer afterwards. Runs inside a private
 * network namespace.
 *   test-mdns-fuzz [ITERATIONS [SEED]] */
#include "mdns_test.h"

#include "mdns_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#define MAX_SEEDS 128

typedef struct seed {
    uint8_t *data;
    size_t len;
} seed;

static seed seeds[MAX_SEEDS];
static int nseeds;
static uint32_t rng;

static uint32_t
rnd(uint32_t n)
{
    return n ? gen_next(&rng) % n : 0;
}

static void
add_seed(uint8_t *data, size_t len)
{
    CHECK(data != NULL && nseeds < MAX_SEEDS);
    seeds[nseeds].data = data;
    seeds[nseeds].len = len;
    nseeds++;
}

static char hostname[300];

/* A zone for instance id of fuzz.svc with the given hex TXT payload. */
static void
zone_with_txt(cm__mdns_zone *z, const char *id, const char *txt, int v6)
{
    uint8_t ip[16] = {127, 0, 0, 2};
    if (v6) {
        memset(ip, 0, sizeof ip);
        ip[15] = 1;
    }
    CHECK_EQ_INT(cm__mdns_zone_init(z, id, "fuzz.svc", hostname, 4001, v6 ? AF_INET6 : AF_INET, ip,
                                    txt, txt ? strlen(txt) : 0),
                 0);
}

/* The reply, announcement and goodbye of a zone, as seeds. */
static void
add_zone_seeds(cm__mdns_zone *z, const uint8_t *query, size_t qlen)
{
    ldns_pkt *q = NULL;
    CHECK(ldns_wire2pkt(&q, query, qlen) == LDNS_STATUS_OK);
    uint8_t *wire;
    size_t len;
    CHECK_EQ_INT(cm__mdns_zone_answer(z, q, &wire, &len), 0);
    if (wire != NULL) {
        add_seed(wire, len);
    }
    ldns_pkt_free(q);
    CHECK_EQ_INT(cm__mdns_zone_announce(z, 120, &wire, &len), 0);
    add_seed(wire, len);
    CHECK_EQ_INT(cm__mdns_zone_announce(z, 0, &wire, &len), 0);
    add_seed(wire, len);
}

static char *
hexzlib(const char *s)
{
    cm_buf b = {0};
    CHECK_EQ_INT(cm__hexzlib_encode(s, strlen(s), &b), 0);
    CHECK_EQ_INT(cm_buf_append(&b, "", 1), 0);
    return (char *)b.data;
}

static void
make_seeds(const cm_reg_service *svc)
{
    uint8_t *q_svc, *q_list, *q_multi;
    size_t q_svc_len, q_list_len, q_multi_len;
    CHECK_EQ_INT(cm__mdns_query_wire("fuzz.svc.micro.", 1, &q_svc, &q_svc_len), 0);
    add_seed(q_svc, q_svc_len);
    CHECK_EQ_INT(cm__mdns_query_wire("_services.micro.", 2, &q_list, &q_list_len), 0);
    add_seed(q_list, q_list_len);

    /* Several questions in one query, one with the unicast-response bit. */
    ldns_pkt *p = ldns_pkt_new();
    const char *names[] = {"fuzz.svc.micro.", "fuzz-1.fuzz.svc.micro.", "fuzz-1.fuzz.svc.micro.",
                           hostname, "_services._dns-sd._udp.micro."};
    const ldns_rr_type types[] = {LDNS_RR_TYPE_ANY, LDNS_RR_TYPE_TXT, LDNS_RR_TYPE_SRV,
                                  LDNS_RR_TYPE_A, LDNS_RR_TYPE_PTR};
    for (int i = 0; i < 5; i++) {
        ldns_rr *rr = ldns_rr_new();
        ldns_rdf *owner = NULL;
        CHECK(ldns_str2rdf_dname(&owner, names[i]) == LDNS_STATUS_OK);
        ldns_rr_set_owner(rr, owner);
        ldns_rr_set_type(rr, types[i]);
        ldns_rr_set_class(rr, i == 1 ? 0x8001 : LDNS_RR_CLASS_IN);
        ldns_rr_set_question(rr, true);
        CHECK(ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, rr));
    }
    CHECK(ldns_pkt2wire(&q_multi, p, &q_multi_len) == LDNS_STATUS_OK);
    ldns_pkt_free(p);
    add_seed(q_multi, q_multi_len);

    /* Replies of another node: a good payload, an IPv6 one, and broken ones. */
    char *good;
    size_t goodlen;
    CHECK_EQ_INT(cm__mdns_txt_encode(svc, &svc->nodes[0], &good, &goodlen), 0);
    cm__mdns_zone z;
    zone_with_txt(&z, "fuzz-2", good, 0);
    add_zone_seeds(&z, q_svc, q_svc_len);
    add_zone_seeds(&z, q_multi, q_multi_len);
    cm__mdns_zone_fini(&z);
    zone_with_txt(&z, "fuzz-6", good, 1);
    add_zone_seeds(&z, q_svc, q_svc_len);
    cm__mdns_zone_fini(&z);
    free(good);

    static const char *bad_json[] = {
        "not json",
        "{\"Service\":5}",
        "[1,2]",
        "{\"Service\":\"fuzz.svc\",\"Version\":7}",
        "{\"Service\":\"fuzz.svc\",\"Version\":\"1\",\"Endpoints\":\"x\"}",
        "{\"Service\":\"fuzz.svc\",\"Version\":\"1\",\"Endpoints\":[{\"name\":1}]}",
        "{\"Service\":\"fuzz.svc\",\"Version\":\"1\",\"Metadata\":[1]}",
        "{\"Service\":\"fuzz.svc\",\"Version\":\"1\",\"Metadata\":{\"a\":1}}",
        ("{\"Service\":\"fuzz.svc\",\"Version\":\"1\",\"Endpoints\":[null,{\"name\":\"a\","
         "\"request\":{\"name\":\"x\",\"type\":\"y\",\"values\":[{\"name\":1}]}}]}"),
        "{\"Service\":\"other\",\"Version\":\"1\"}",
        "{\"Service\":\"fuzz.svc\",\"Version\":\"2\",\"Endpoints\":null,\"Metadata\":null}",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        char *hex = hexzlib(bad_json[i]);
        char id[16];
        snprintf(id, sizeof id, "bad-%zu", i);
        zone_with_txt(&z, id, hex, 0);
        add_zone_seeds(&z, q_svc, q_svc_len);
        cm__mdns_zone_fini(&z);
        free(hex);
    }
    zone_with_txt(&z, "badhex", "zz0g", 0);
    add_zone_seeds(&z, q_svc, q_svc_len);
    cm__mdns_zone_fini(&z);
    zone_with_txt(&z, "badzlib", "78da0102030405060708", 0);
    add_zone_seeds(&z, q_svc, q_svc_len);
    cm__mdns_zone_fini(&z);

    /* A wildcard's reply to the list query. */
    static const uint8_t any[16] = {0};
    CHECK_EQ_INT(
        cm__mdns_zone_init(&z, "fuzz.svc", "_services", hostname, 9999, AF_INET, any, NULL, 0), 0);
    ldns_pkt *q = NULL;
    CHECK(ldns_wire2pkt(&q, q_list, q_list_len) == LDNS_STATUS_OK);
    uint8_t *wire;
    size_t len;
    CHECK_EQ_INT(cm__mdns_zone_answer(&z, q, &wire, &len), 0);
    add_seed(wire, len);
    ldns_pkt_free(q);
    cm__mdns_zone_fini(&z);
}

/* One mutated datagram into buf; its length. */
static size_t
mutate(uint8_t *buf, size_t cap)
{
    int kind = (int)rnd(10);
    if (kind == 0) {
        size_t len = rnd(600);
        for (size_t i = 0; i < len; i++) {
            buf[i] = (uint8_t)rnd(256);
        }
        return len;
    }
    const seed *s = &seeds[rnd((uint32_t)nseeds)];
    size_t len = s->len < cap ? s->len : cap;
    memcpy(buf, s->data, len);
    switch (kind) {
    case 1: /* bit flips */
        for (uint32_t n = 1 + rnd(8); n > 0; n--) {
            size_t at = rnd((uint32_t)len);
            buf[at] ^= (uint8_t)(1u << rnd(8));
        }
        break;
    case 2: /* truncation */
        len = rnd((uint32_t)len);
        break;
    case 3: { /* a count field set huge */
        size_t at = 4 + 2 * rnd(4);
        uint16_t v = rnd(2) ? 0xffff : (uint16_t)rnd(65536);
        buf[at] = (uint8_t)(v >> 8);
        buf[at + 1] = (uint8_t)v;
        break;
    }
    case 4: { /* compression pointer loops: to itself, or two pointers to each other */
        size_t at = 12 + rnd((uint32_t)(len > 14 ? len - 14 : 1));
        if (at + 4 > len) {
            break;
        }
        if (rnd(2)) {
            buf[at] = (uint8_t)(0xc0 | (at >> 8));
            buf[at + 1] = (uint8_t)at;
        } else {
            buf[at] = (uint8_t)(0xc0 | ((at + 2) >> 8));
            buf[at + 1] = (uint8_t)(at + 2);
            buf[at + 2] = (uint8_t)(0xc0 | (at >> 8));
            buf[at + 3] = (uint8_t)at;
        }
        break;
    }
    case 5: /* random bytes here and there */
        for (uint32_t n = 1 + rnd(16); n > 0 && len > 0; n--) {
            buf[rnd((uint32_t)len)] = (uint8_t)rnd(256);
        }
        break;
    case 6: /* a pointer anywhere, often out of range */
        if (len > 14) {
            size_t at = 12 + rnd((uint32_t)(len - 13));
            buf[at] = (uint8_t)(0xc0 | rnd(64));
            buf[at + 1] = (uint8_t)rnd(256);
        }
        break;
    case 7: /* junk appended */
        for (uint32_t n = rnd(64); n > 0 && len < cap; n--) {
            buf[len++] = (uint8_t)rnd(256);
        }
        break;
    case 8: /* a length byte (label, TXT string or rdlength) set wrong */
        if (len > 0) {
            buf[rnd((uint32_t)len)] = (uint8_t)(rnd(2) ? 0xff : rnd(64));
        }
        break;
    default: /* unchanged */
        break;
    }
    return len;
}

/* ---- lookups that keep running while the fuzz goes on ---- */

static int stopping;
static int lookups_ok, lookups_canceled, lookups_found;
static cm_registry *reg;

static void start_lookup(int list);

static void
on_list(int status, const cm_reg_service_list *l, void *user)
{
    int list = (int)(intptr_t)user;
    if (status == CM_ECANCELED) {
        lookups_canceled++;
        return;
    }
    CHECK_EQ_INT(status, 0);
    lookups_ok++;
    lookups_found += l->n > 0;
    if (!stopping) {
        start_lookup(!list);
    }
}

static void
start_lookup(int list)
{
    int rc = list ? cm_registry_list_services(reg, on_list, (void *)(intptr_t)list)
                  : cm_registry_get_service(reg, "fuzz.svc", on_list, (void *)(intptr_t)list);
    CHECK_EQ_INT(rc, 0);
}

static int nevents;

static void
on_event(cm_watch_action action, const cm_reg_service *svc, void *user)
{
    (void)user;
    CHECK(action == CM_WATCH_CREATE || action == CM_WATCH_DELETE);
    CHECK(svc->name != NULL && svc->nnodes == 1);
    nevents++;
}

static void
set_flag(void *arg)
{
    *(int *)arg = 1;
}

static void
on_status(int status, void *user)
{
    CHECK_EQ_INT(status, 0);
    *(int *)user = 1;
}

typedef struct found {
    int done;
    size_t nodes;
} found;

static void
on_found(int status, const cm_reg_service_list *l, void *user)
{
    found *f = user;
    CHECK_EQ_INT(status, 0);
    for (size_t i = 0; i < l->n; i++) {
        f->nodes += l->items[i]->nnodes;
    }
    f->done = 1;
}

int
main(int argc, char **argv)
{
    require_private_netns();
    long iterations = argc > 1 ? atol(argv[1]) : 100000;
    rng = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 0) : 0x5eed1234u;
    if (rng == 0) {
        rng = 1;
    }
    fprintf(stderr, "fuzz: %ld datagrams, seed 0x%x\n", iterations, rng);
    CHECK(gethostname(hostname, sizeof hostname - 2) == 0);
    strcat(hostname, ".");

    cm_loop *loop;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    o.timeout_ms = 150;
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", &o, &reg), 0);
    cm_watcher *w;
    CHECK_EQ_INT(cm_registry_watch(reg, NULL, on_event, NULL, &w), 0);

    cm_reg_service *svc = cm_reg_service_new("fuzz.svc", "1.0");
    cm_md *md = cm_md_new();
    CHECK(cm_md_set(md, "protocol", "mucp") == 0);
    CHECK(cm_reg_service_add_node(svc, "fuzz-1", "127.0.0.1:4000", md) != NULL);
    cm_md_free(md);
    gen_endpoints(svc, 20);
    int registered = 0;
    CHECK_EQ_INT(cm_registry_register_service(reg, svc, 0, on_status, &registered), 0);
    CHECK(run_until(loop, &registered, 1000));
    make_seeds(svc);
    fprintf(stderr, "fuzz: %d seeds\n", nseeds);
    start_lookup(0);

    struct sockaddr_in from = {0};
    from.sin_family = AF_INET;
    from.sin_port = htons(9);
    inet_pton(AF_INET, "127.0.0.1", &from.sin_addr);
    struct sockaddr_in6 from6 = {0}; /* every other datagram comes over IPv6 */
    from6.sin6_family = AF_INET6;
    from6.sin6_port = htons(9);
    from6.sin6_addr = in6addr_loopback;
    static uint8_t buf[CM__MDNS_MAX_DGRAM];
    uint64_t t0 = now_ms();
    for (long i = 0; i < iterations; i++) {
        size_t len = mutate(buf, sizeof buf);
        cm__mdns_handle_packet(reg, buf, len,
                               i % 2 ? (const struct sockaddr *)&from6
                                     : (const struct sockaddr *)&from);
        if (i % 256 == 0) {
            uv_run(cm_loop_uv(loop), UV_RUN_NOWAIT);
        }
    }
    fprintf(stderr, "fuzz: %ld datagrams in %llu ms; %d watch events, %d lookups (%d found)\n",
            iterations, (unsigned long long)(now_ms() - t0), nevents, lookups_ok, lookups_found);
    CHECK(nevents > 0);
    CHECK(lookups_ok > 0 && lookups_found > 0);

    /* Still answering: a second registry finds the registered node. */
    cm_registry *r2;
    CHECK_EQ_INT(cm_registry_new(loop, "mdns", NULL, &r2), 0);
    found f = {0};
    CHECK_EQ_INT(cm_registry_get_service(r2, "fuzz.svc", on_found, &f), 0);
    CHECK(run_until(loop, &f.done, 2000));
    CHECK(f.nodes >= 1);

    stopping = 1;
    int closed = 0, closed2 = 0;
    cm_registry_close(reg, set_flag, &closed);
    cm_registry_close(r2, set_flag, &closed2);
    CHECK(run_until(loop, &closed, 2000));
    CHECK(run_until(loop, &closed2, 2000));
    CHECK(lookups_canceled <= 1);
    (void)w;
    cm_reg_service_free(svc);
    for (int i = 0; i < nseeds; i++) {
        free(seeds[i].data);
    }
    cm_loop_free(loop);
    TEST_DONE();
}
