/* Writes the generated part of the seed corpora: messages made by cmicro's own encoders, the
 * same bytes its server, client and registry backends put on the wire. make-seeds.sh runs it
 * (and captures the Consul replies from the test agent); the output is checked in under
 * corpus/, so this only runs again when the encoders change.
 *   fuzz-gen-seeds CORPUS_DIR REGISTER_BODY_FILE */
#pragma GCC diagnostic ignored "-Wunused-function" /* the fixture's helpers not used here */
#include "../codec/codec_fixture.h"
#include "consul_int.h"
#include "mdns_int.h"

#include <sys/stat.h>

static const char *root;

static void
put(const char *corpus, const char *name, const void *data, size_t len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", root, corpus);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", root, corpus, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static void
put_str(const char *corpus, const char *name, const char *s)
{
    put(corpus, name, s, strlen(s));
}

/* The greeter service of the mDNS and Consul seeds: two endpoints and node metadata as a
 * cmicro or go-micro server registers them. */
static cm_reg_service *
greeter(const char *node_id, const char *address)
{
    cm_reg_service *svc = cm_reg_service_new("greeter", "1.0.0");
    cm_md *md = cm_md_new();
    CHECK(svc != NULL && md != NULL);
    CHECK(cm_md_set(md, "protocol", "mucp") == 0);
    CHECK(cm_md_set(md, "transport", "http") == 0);
    CHECK(cm_md_set(md, "broker", "http") == 0);
    CHECK(cm_md_set(md, "registry", "mdns") == 0);
    CHECK(cm_md_set(md, "server", "mucp") == 0);
    cm_value name = {"name", "string", NULL, 0};
    cm_value msg = {"msg", "string", NULL, 0};
    cm_value req = {"Request", "Request", &name, 1};
    cm_value rsp = {"Response", "Response", &msg, 1};
    CHECK(cm_reg_service_add_endpoint(svc, "Greeter.Hello", &req, &rsp, NULL) != NULL);
    cm_md *emd = cm_md_new();
    CHECK(cm_md_set(emd, "stream", "true") == 0);
    CHECK(cm_reg_service_add_endpoint(svc, "Greeter.Stream", &req, &rsp, emd) != NULL);
    cm_md_free(emd);
    CHECK(cm_reg_service_add_node(svc, node_id, address, md) != NULL);
    cm_md_free(md);
    return svc;
}

/* ---- codecs ---- */

static void
codec_seeds(void)
{
    for (int which = 0; which <= 3; which++) {
        EchoRequest r;
        fill_rich(&r, which);
        cm_buf json = {0};
        CHECK_EQ_INT(cm_codec_json.marshal(ECHO_DESC, &r, &json), 0);
        cm_buf proto = pack_msg(&r.base);
        char name[64];
        snprintf(name, sizeof(name), "echo-request-rich-%d.json", which);
        put("codec-json", name, json.data, json.len);
        snprintf(name, sizeof(name), "echo-request-rich-%d.pb", which);
        put("codec-proto", name, proto.data, proto.len);
        cm_buf_free(&json);
        cm_buf_free(&proto);
    }
    Inner in = CMICRO__TEST__V1__INNER__INIT;
    in.name = "John";
    in.count = 3;
    Cmicro__Test__V1__EchoResponse rsp = CMICRO__TEST__V1__ECHO_RESPONSE__INIT;
    rsp.message = "Hello John";
    rsp.status = CMICRO__TEST__V1__STATUS__STATUS_OK;
    EchoRequest echo = CMICRO__TEST__V1__ECHO_REQUEST__INIT;
    echo.message = "John";
    echo.inner = &in;
    rsp.echo = &echo;
    cm_buf json = {0};
    CHECK_EQ_INT(cm_codec_json.marshal(&cmicro__test__v1__echo_response__descriptor, &rsp, &json),
                 0);
    put("codec-json", "echo-response.json", json.data, json.len);
    cm_buf proto = pack_msg(&rsp.base);
    put("codec-proto", "echo-response.pb", proto.data, proto.len);
    cm_buf_free(&json);
    cm_buf_free(&proto);

    static int32_t vals[] = {1, 2, 3};
    Legacy l = CMICRO__TEST__V1__LEGACY__INIT, child = CMICRO__TEST__V1__LEGACY__INIT;
    l.id = "root";
    l.has_count = 1;
    l.count = -4;
    l.label = "lab";
    child.id = "kid";
    child.has_ratio = 1;
    child.ratio = 2.5;
    l.child = &child;
    l.n_packed_vals = 3;
    l.packed_vals = vals;
    l.choice_case = CMICRO__TEST__V1__LEGACY__CHOICE_NAME;
    l.name = "nm";
    json.len = 0;
    CHECK_EQ_INT(cm_codec_json.marshal(LEGACY_DESC, &l, &json), 0);
    put("codec-json", "legacy.json", json.data, json.len);
    proto = pack_msg(&l.base);
    put("codec-proto", "legacy.pb", proto.data, proto.len);
    cm_buf_free(&json);
    cm_buf_free(&proto);
}

/* ---- mDNS ---- */

static void
put_pkt(const char *name, const uint8_t *wire, size_t len)
{
    put("mdns-packet", name, wire, len);
}

/* The zone's answer to query q and, when announce is set, its announcement and goodbye. */
static void
zone_seeds(const char *prefix, const cm__mdns_zone *z, const uint8_t *q, size_t qlen, int announce)
{
    ldns_pkt *query = NULL;
    CHECK(ldns_wire2pkt(&query, q, qlen) == LDNS_STATUS_OK);
    uint8_t *wire;
    size_t len;
    char name[128];
    CHECK_EQ_INT(cm__mdns_zone_answer(z, query, &wire, &len), 0);
    if (wire != NULL) {
        snprintf(name, sizeof(name), "%s-answer", prefix);
        put_pkt(name, wire, len);
        free(wire);
    }
    ldns_pkt_free(query);
    if (!announce) {
        return;
    }
    CHECK_EQ_INT(cm__mdns_zone_announce(z, CM__MDNS_TTL, &wire, &len), 0);
    snprintf(name, sizeof(name), "%s-announce", prefix);
    put_pkt(name, wire, len);
    free(wire);
    CHECK_EQ_INT(cm__mdns_zone_announce(z, 0, &wire, &len), 0);
    snprintf(name, sizeof(name), "%s-goodbye", prefix);
    put_pkt(name, wire, len);
    free(wire);
}

static void
mdns_seeds(void)
{
    uint8_t *q_svc, *q_list, *q_enum;
    size_t q_svc_len, q_list_len, q_enum_len;
    CHECK_EQ_INT(cm__mdns_query_wire("greeter.micro.", 0x1234, &q_svc, &q_svc_len), 0);
    put_pkt("query-greeter", q_svc, q_svc_len);
    CHECK_EQ_INT(cm__mdns_query_wire("_services.micro.", 7, &q_list, &q_list_len), 0);
    put_pkt("query-services", q_list, q_list_len);
    CHECK_EQ_INT(cm__mdns_query_wire("_services._dns-sd._udp.micro.", 9, &q_enum, &q_enum_len),
                 0);
    put_pkt("query-dns-sd", q_enum, q_enum_len);

    /* A query with several questions, one asking for a unicast response. */
    ldns_pkt *p = ldns_pkt_new();
    const char *names[] = {"greeter.micro.", "greeter-1.greeter.micro.",
                           "greeter-1.greeter.micro.", "fuzzhost."};
    const ldns_rr_type types[] = {LDNS_RR_TYPE_ANY, LDNS_RR_TYPE_TXT, LDNS_RR_TYPE_SRV,
                                  LDNS_RR_TYPE_A};
    for (int i = 0; i < 4; i++) {
        ldns_rr *rr = ldns_rr_new();
        ldns_rdf *owner = NULL;
        CHECK(ldns_str2rdf_dname(&owner, names[i]) == LDNS_STATUS_OK);
        ldns_rr_set_owner(rr, owner);
        ldns_rr_set_type(rr, types[i]);
        ldns_rr_set_class(rr, i == 1 ? 0x8001 : LDNS_RR_CLASS_IN);
        ldns_rr_set_question(rr, true);
        CHECK(ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, rr));
    }
    uint8_t *q_multi;
    size_t q_multi_len;
    CHECK(ldns_pkt2wire(&q_multi, p, &q_multi_len) == LDNS_STATUS_OK);
    ldns_pkt_free(p);
    put_pkt("query-multi", q_multi, q_multi_len);

    cm_reg_service *svc = greeter("greeter-1", "127.0.0.1:4000");
    char *txt;
    size_t txtlen;
    CHECK_EQ_INT(cm__mdns_txt_encode(svc, &svc->nodes[0], &txt, &txtlen), 0);
    uint8_t v4[16] = {127, 0, 0, 1}, v6[16] = {0}, any[16] = {0};
    v6[15] = 1;
    cm__mdns_zone z;
    CHECK_EQ_INT(cm__mdns_zone_init(&z, "greeter-3", "greeter", "fuzzhost.", 4003, AF_INET, v4, txt,
                                    txtlen),
                 0);
    zone_seeds("node-v4", &z, q_svc, q_svc_len, 1);
    zone_seeds("node-v4-multi", &z, q_multi, q_multi_len, 0);
    cm__mdns_zone_fini(&z);
    CHECK_EQ_INT(cm__mdns_zone_init(&z, "greeter-4", "greeter", "fuzzhost.", 4004, AF_INET6, v6,
                                    txt, txtlen),
                 0);
    zone_seeds("node-v6", &z, q_svc, q_svc_len, 1);
    cm__mdns_zone_fini(&z);
    CHECK_EQ_INT(cm__mdns_zone_init(&z, "greeter", "_services", "fuzzhost.", 9999, AF_INET, any,
                                    NULL, 0),
                 0);
    z.wildcard = 1;
    zone_seeds("wildcard", &z, q_list, q_list_len, 1);
    zone_seeds("wildcard-dns-sd", &z, q_enum, q_enum_len, 0);
    cm__mdns_zone_fini(&z);

    /* The TXT payload's JSON, for the registry-tags corpus. */
    cm_buf json = {0};
    CHECK_EQ_INT(cm__hexzlib_decode(txt, txtlen, 0, &json), 0);
    put("registry-tags", "txt-payload.json", json.data, json.len);
    cm_buf_free(&json);
    put("registry-tags", "txt-payload.hex", txt, txtlen);
    free(txt);

    /* The registry's JSON form of the service. */
    cJSON *j = cm__service_to_json(svc);
    char *s = cJSON_PrintUnformatted(j);
    put_str("registry-tags", "service.json", s);
    cJSON_free(s);
    cJSON_Delete(j);
    cm_reg_service_free(svc);
    free(q_svc);
    free(q_list);
    free(q_enum);
    free(q_multi);
}

/* ---- Consul ---- */

static void
consul_seeds(const char *register_path)
{
    cm_reg_service *svc = greeter("greeter-5f1c", "127.0.0.1:4005");
    char *body;
    CHECK_EQ_INT(cm__consul_register_body(svc, 90000, 0, &body), 0);
    /* Not a seed: make-seeds.sh registers it with the test agent and captures the replies. */
    FILE *f = fopen(register_path, "w");
    CHECK(f != NULL && fputs(body, f) >= 0 && fclose(f) == 0);
    /* The tags, one per line, for the registry-tags corpus. */
    cJSON *o = cJSON_Parse(body);
    const cJSON *t;
    cm_buf lines = {0};
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(o, "Tags"))
    {
        CHECK(cm_buf_append(&lines, t->valuestring, strlen(t->valuestring)) == 0);
        CHECK(cm_buf_append(&lines, "\n", 1) == 0);
    }
    put("registry-tags", "consul-tags", lines.data, lines.len - 1);
    cm_buf_free(&lines);
    cJSON_Delete(o);
    free(body);
    cm_reg_service_free(svc);
}

int
main(int argc, char **argv)
{
    CHECK(argc == 3);
    root = argv[1];
    codec_seeds();
    mdns_seeds();
    consul_seeds(argv[2]);
    return 0;
}
