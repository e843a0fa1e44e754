/* go-micro's registry encodings: the JSON forms (spec 1.1) and hex(zlib(...)) (spec 2.3). The Go
 * texts below were produced by go-micro.dev/v4 v4.11.0 registry types with encoding/json and by
 * compress/zlib (Go 1.26); the v4.9 text has that release's field order, written by hand. */
#include "registry_int.h"
#include "test.h"

#include <zlib.h>

/* json.Marshal of a registry.Service by go-micro v4.11 (Node: metadata,id,address; Endpoint:
 * request,response,metadata,name; map keys sorted; <, >, & escaped). */
static const char go411_json[] =
    "{\"name\":\"helloworld\",\"version\":\"latest\",\"metadata\":null,\"endpoints\":[{\"request\":"
    "{\"name\":\"CallRequest\",\"type\":\"CallRequest\",\"values\":[{\"name\":\"name\",\"type\":"
    "\"string\",\"values\":null}]},\"response\":{\"name\":\"CallResponse\",\"type\":"
    "\"CallResponse\",\"values\":[{\"name\":\"msg\",\"type\":\"string\",\"values\":null}]},"
    "\"metadata\":{},\"name\":\"Helloworld.Call\"},{\"request\":{\"name\":\"Event\",\"type\":"
    "\"Event\",\"values\":[{\"name\":\"tags\",\"type\":\"[]string\",\"values\":null}]},"
    "\"response\":null,\"metadata\":{\"subscriber\":\"true\","
    "\"topic\":\"a\\u003cb\\u003e\\u0026c\"},\"name\":\"Func\"}],\"nodes\":[{\"metadata\":"
    "{\"broker\":\"http\",\"protocol\":\"mucp\","
    "\"registry\":\"mdns\",\"server\":\"mucp\",\"transport\":\"http\"},\"id\":"
    "\"helloworld-2d0f6c2a-1111-4c8e-9a55-0a6b1c1e2f3d\",\"address\":\"192.168.1.10:38463\"}]}";

/* The same service as go-micro v4.9 orders it (Node: id,address,metadata; Endpoint:
 * name,request,response,metadata). */
static const char go49_json[] =
    "{\"name\":\"helloworld\",\"version\":\"latest\",\"metadata\":null,\"endpoints\":[{\"name\":"
    "\"Helloworld.Call\",\"request\":{\"name\":\"CallRequest\",\"type\":\"CallRequest\","
    "\"values\":[{\"name\":\"name\",\"type\":\"string\",\"values\":null}]},\"response\":{\"name\":"
    "\"CallResponse\",\"type\":\"CallResponse\",\"values\":[{\"name\":\"msg\",\"type\":\"string\","
    "\"values\":null}]},\"metadata\":{}},{\"name\":\"Func\",\"request\":{\"name\":\"Event\","
    "\"type\":\"Event\",\"values\":[{\"name\":\"tags\",\"type\":\"[]string\",\"values\":null}]},"
    "\"response\":null,\"metadata\":{\"subscriber\":\"true\","
    "\"topic\":\"a\\u003cb\\u003e\\u0026c\"}}],\"nodes\":[{\"id\":"
    "\"helloworld-2d0f6c2a-1111-4c8e-9a55-0a6b1c1e2f3d\",\"address\":"
    "\"192.168.1.10:38463\",\"metadata\":{\"broker\":\"http\",\"protocol\":\"mucp\",\"registry\":"
    "\"mdns\",\"server\":\"mucp\",\"transport\":\"http\"}}]}";

/* Go's compress/zlib output for "latest" and for a small service JSON: both end with Go's empty
 * final stored block. */
static const char go_latest_hex[] = "789cca492c492d2e01040000ffff08cc028e";
static const char go_small_json[] =
    "{\"name\":\"helloworld\",\"version\":\"latest\",\"metadata\":null,\"endpoints\":null,"
    "\"nodes\":[{\"metadata\":{\"protocol\":\"mucp\"},\"id\":\"helloworld-1\",\"address\":"
    "\"10.0.0.1:8080\"}]}";
static const char go_small_hex[] =
    "789c548db10ac2600c06dfe59b7fa5dd4a5e451c4213b09026e54faa43e9bb8b83a0dc761cdc01e7554178a859bc"
    "a29ba0e1a93d9770108c4bb3d0b06ab17031c877b30675d962f1caaff0104dd0edf8490f6c3d2ae63010d67dde70"
    "362cf2b7bb8c686091ae99208cc3f5c348d3300d38efe73b0000ffffd5b735ba";

static void
add_kv(cm_md *md, const char *k, const char *v)
{
    CHECK(cm_md_set(md, k, v) == 0);
}

/* The service of go411_json, built through the data model. */
static cm_reg_service *
go_service(void)
{
    cm_reg_service *s = cm_reg_service_new("helloworld", "latest");
    cm_value name = {"name", "string", NULL, 0}, msg = {"msg", "string", NULL, 0};
    cm_value tags = {"tags", "[]string", NULL, 0};
    cm_value req = {"CallRequest", "CallRequest", &name, 1};
    cm_value rsp = {"CallResponse", "CallResponse", &msg, 1};
    cm_value ev = {"Event", "Event", &tags, 1};
    CHECK(cm_reg_service_add_endpoint(s, "Helloworld.Call", &req, &rsp, NULL) != NULL);
    cm_md *md = cm_md_new();
    add_kv(md, "topic", "a<b>&c");
    add_kv(md, "subscriber", "true");
    CHECK(cm_reg_service_add_endpoint(s, "Func", &ev, NULL, md) != NULL);
    cm_md_free(md);
    md = cm_md_new();
    add_kv(md, "transport", "http");
    add_kv(md, "broker", "http");
    add_kv(md, "server", "mucp");
    add_kv(md, "registry", "mdns");
    add_kv(md, "protocol", "mucp");
    CHECK(cm_reg_service_add_node(s, "helloworld-2d0f6c2a-1111-4c8e-9a55-0a6b1c1e2f3d",
                              "192.168.1.10:38463", md) != NULL);
    cm_md_free(md);
    return s;
}

static char *
print(cJSON *j)
{
    CHECK(j != NULL);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    CHECK(s != NULL);
    return s;
}

static void
test_encode_exact(void)
{
    cm_reg_service *s = cm_reg_service_new("helloworld", "latest");
    cm_value name = {"name", "string", NULL, 0}, msg = {"msg", "string", NULL, 0};
    cm_value req = {"CallRequest", "CallRequest", &name, 1};
    cm_value rsp = {"CallResponse", "CallResponse", &msg, 1};
    CHECK(cm_reg_service_add_endpoint(s, "Helloworld.Call", &req, &rsp, NULL) != NULL);
    cm_md *md = cm_md_new();
    add_kv(md, "topic", "news");
    CHECK(cm_reg_service_add_endpoint(s, "Func", &name, NULL, md) != NULL);
    cm_md_free(md);
    md = cm_md_new();
    add_kv(md, "protocol", "mucp");
    CHECK(cm_reg_service_add_node(s, "helloworld-1", "10.0.0.1:8080", md) != NULL);
    cm_md_free(md);

    char *txt = print(cm__service_to_json(s));
    CHECK_EQ_STR(txt,
                 "{\"name\":\"helloworld\",\"version\":\"latest\",\"metadata\":null,"
                 "\"endpoints\":[{\"name\":\"Helloworld.Call\",\"request\":{\"name\":"
                 "\"CallRequest\",\"type\":\"CallRequest\",\"values\":[{\"name\":\"name\","
                 "\"type\":\"string\",\"values\":null}]},\"response\":{\"name\":\"CallResponse\","
                 "\"type\":\"CallResponse\",\"values\":[{\"name\":\"msg\",\"type\":\"string\","
                 "\"values\":null}]},\"metadata\":{}},{\"name\":\"Func\",\"request\":{\"name\":"
                 "\"name\",\"type\":\"string\",\"values\":null},\"response\":null,\"metadata\":"
                 "{\"topic\":\"news\"}}],\"nodes\":[{\"id\":\"helloworld-1\",\"address\":"
                 "\"10.0.0.1:8080\",\"metadata\":{\"protocol\":\"mucp\"}}]}");
    free(txt);

    txt = print(cm__endpoint_to_json(&s->endpoints[1]));
    CHECK_EQ_STR(txt, "{\"name\":\"Func\",\"request\":{\"name\":\"name\",\"type\":\"string\","
                      "\"values\":null},\"response\":null,\"metadata\":{\"topic\":\"news\"}}");
    free(txt);
    txt = print(cm__value_to_json(&name));
    CHECK_EQ_STR(txt, "{\"name\":\"name\",\"type\":\"string\",\"values\":null}");
    free(txt);
    txt = print(cm__md_to_json(NULL));
    CHECK_EQ_STR(txt, "null");
    free(txt);
    cm_reg_service_free(s);

    /* An empty service: nil slices and maps are null, as encoding/json writes them. */
    s = cm_reg_service_new("x", "");
    txt = print(cm__service_to_json(s));
    CHECK_EQ_STR(txt, "{\"name\":\"x\",\"version\":\"\",\"metadata\":null,\"endpoints\":null,"
                      "\"nodes\":null}");
    free(txt);
    cm_reg_service_free(s);
}

/* Our encoding of the service Go encoded is the same JSON value (key order aside). */
static void
test_encode_matches_go(void)
{
    cm_reg_service *s = go_service();
    cJSON *ours = cm__service_to_json(s);
    cJSON *theirs = cJSON_Parse(go411_json);
    CHECK(ours != NULL && theirs != NULL);
    CHECK(cJSON_Compare(ours, theirs, 1));
    /* The comparison can fail: change one leaf. */
    cJSON *nodes = cJSON_GetObjectItemCaseSensitive(ours, "nodes");
    cJSON *n0 = cJSON_GetArrayItem(nodes, 0);
    cJSON_ReplaceItemInObjectCaseSensitive(n0, "address", cJSON_CreateString("1.2.3.4:5"));
    CHECK(!cJSON_Compare(ours, theirs, 1));
    cJSON_Delete(ours);
    cJSON_Delete(theirs);
    cm_reg_service_free(s);
}

static void
check_go_service(const cm_reg_service *s)
{
    CHECK_EQ_STR(s->name, "helloworld");
    CHECK_EQ_STR(s->version, "latest");
    CHECK(s->metadata == NULL);
    CHECK_EQ_INT(s->nendpoints, 2);
    const cm_endpoint *e = &s->endpoints[0];
    CHECK_EQ_STR(e->name, "Helloworld.Call");
    CHECK_EQ_STR(e->request->name, "CallRequest");
    CHECK_EQ_STR(e->request->type, "CallRequest");
    CHECK_EQ_INT(e->request->nvalues, 1);
    CHECK_EQ_STR(e->request->values[0].name, "name");
    CHECK_EQ_STR(e->request->values[0].type, "string");
    CHECK(e->request->values[0].values == NULL);
    CHECK_EQ_STR(e->response->values[0].name, "msg");
    CHECK(e->metadata != NULL);
    CHECK_EQ_INT(cm_md_count(e->metadata), 0);
    e = &s->endpoints[1];
    CHECK_EQ_STR(e->name, "Func");
    CHECK(e->response == NULL);
    CHECK_EQ_STR(e->request->values[0].type, "[]string");
    CHECK_EQ_STR(cm_md_get(e->metadata, "topic"), "a<b>&c");
    CHECK_EQ_STR(cm_md_get(e->metadata, "subscriber"), "true");
    CHECK_EQ_INT(s->nnodes, 1);
    CHECK_EQ_STR(s->nodes[0].id, "helloworld-2d0f6c2a-1111-4c8e-9a55-0a6b1c1e2f3d");
    CHECK_EQ_STR(s->nodes[0].address, "192.168.1.10:38463");
    CHECK_EQ_INT(cm_md_count(s->nodes[0].metadata), 5);
    CHECK_EQ_STR(cm_md_get(s->nodes[0].metadata, "protocol"), "mucp");
    CHECK_EQ_STR(cm_md_get(s->nodes[0].metadata, "registry"), "mdns");
}

static cm_reg_service *
decode(const char *txt, int expect)
{
    cJSON *j = cJSON_Parse(txt);
    CHECK(j != NULL);
    cm_reg_service *s = (cm_reg_service *)1;
    int rc = cm__service_from_json(j, &s);
    cJSON_Delete(j);
    if (rc != expect) {
        fprintf(stderr, "decoding %s: %d, expected %d\n", txt, rc, expect);
    }
    CHECK_EQ_INT(rc, expect);
    if (rc < 0) {
        CHECK(s == NULL);
    }
    return s;
}

static void
test_decode_go(void)
{
    cm_reg_service *s = decode(go411_json, 0);
    check_go_service(s);
    cm_reg_service_free(s);
    s = decode(go49_json, 0);
    check_go_service(s);
    cm_reg_service_free(s);

    /* Missing keys, nulls and unknown keys are Go's zero values. */
    s = decode("{\"nodes\":[{\"id\":\"n\"},null],\"endpoints\":[null,{\"name\":\"E\","
               "\"request\":{\"values\":[null]}}],\"extra\":[1,2],\"version\":null}",
               0);
    CHECK_EQ_STR(s->name, "");
    CHECK_EQ_STR(s->version, "");
    CHECK(s->metadata == NULL);
    CHECK_EQ_INT(s->nnodes, 1);
    CHECK_EQ_STR(s->nodes[0].address, "");
    CHECK(s->nodes[0].metadata != NULL);
    CHECK_EQ_INT(s->nendpoints, 1);
    CHECK_EQ_STR(s->endpoints[0].name, "E");
    CHECK(s->endpoints[0].response == NULL);
    CHECK(s->endpoints[0].metadata != NULL);
    CHECK_EQ_INT(s->endpoints[0].request->nvalues, 1);
    CHECK_EQ_STR(s->endpoints[0].request->values[0].name, "");
    cm_reg_service_free(s);

    /* Service metadata is kept when present; odd keys cm_md cannot hold are skipped. */
    s = decode("{\"name\":\"a\",\"metadata\":{\"k\":\"v\",\"\":\"x\",\"a:b\":\"y\"}}", 0);
    CHECK(s->metadata != NULL);
    CHECK_EQ_INT(cm_md_count(s->metadata), 1);
    CHECK_EQ_STR(cm_md_get(s->metadata, "k"), "v");
    cm_reg_service_free(s);

    /* Decode then encode then decode: the same value. */
    s = decode(go411_json, 0);
    char *txt = print(cm__service_to_json(s));
    cm_reg_service *t = decode(txt, 0);
    check_go_service(t);
    free(txt);
    cm_reg_service_free(s);
    cm_reg_service_free(t);
}

static void
test_decode_malformed(void)
{
    static const char *bad[] = {
        "[]",
        "\"helloworld\"",
        "{\"name\":1}",
        "{\"name\":\"a\",\"version\":true}",
        "{\"name\":\"a\",\"metadata\":\"x\"}",
        "{\"name\":\"a\",\"metadata\":{\"k\":1}}",
        "{\"name\":\"a\",\"nodes\":{}}",
        "{\"name\":\"a\",\"nodes\":[1]}",
        "{\"name\":\"a\",\"nodes\":[{\"id\":\"x\"},{\"id\":\"y\",\"metadata\":{\"k\":1}}]}",
        "{\"name\":\"a\",\"nodes\":[{\"id\":\"x\"},{\"id\":\"y\",\"address\":[]}]}",
        "{\"name\":\"a\",\"endpoints\":\"x\"}",
        "{\"name\":\"a\",\"endpoints\":[\"x\"]}",
        "{\"name\":\"a\",\"endpoints\":[{\"name\":\"e\",\"request\":\"str\"}]}",
        "{\"name\":\"a\",\"endpoints\":[{\"name\":\"e\",\"response\":[]}]}",
        "{\"name\":\"a\",\"endpoints\":[{\"name\":\"e\",\"metadata\":[]}]}",
        "{\"name\":\"a\",\"endpoints\":[{\"name\":\"e\",\"request\":{\"name\":\"r\","
        "\"values\":\"x\"}}]}",
        "{\"name\":\"a\",\"endpoints\":[{\"name\":\"e\",\"request\":{\"name\":\"r\",\"values\":"
        "[{\"name\":\"x\",\"values\":[{\"name\":\"y\"}]},3]}}]}",
        "{\"name\":\"a\",\"endpoints\":[{\"name\":\"ok\"},{\"name\":\"e\",\"request\":{\"type\":"
        "5}}],\"nodes\":[{\"id\":\"x\"}]}",
        "{\"name\":\"a\",\"nodes\":[{\"id\":\"x\"}],\"endpoints\":[{\"name\":2}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        decode(bad[i], CM_EPROTO);
    }

    cm_value v;
    cJSON *j = cJSON_Parse("{\"name\":\"r\",\"values\":[{\"name\":\"a\"},{\"type\":{}}]}");
    CHECK_EQ_INT(cm__value_from_json(j, &v), CM_EPROTO);
    CHECK(v.name == NULL && v.values == NULL);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"name\":\"r\",\"values\":[{\"name\":\"a\"}]}");
    CHECK_EQ_INT(cm__value_from_json(j, &v), 0);
    CHECK_EQ_STR(v.values[0].name, "a");
    cm_value_fini(&v);
    cJSON_Delete(j);

    cm_endpoint e;
    j = cJSON_Parse("[1]");
    CHECK_EQ_INT(cm__endpoint_from_json(j, &e), CM_EPROTO);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"request\":{\"name\":\"q\"},\"metadata\":{\"k\":false}}");
    CHECK_EQ_INT(cm__endpoint_from_json(j, &e), CM_EPROTO);
    CHECK(e.name == NULL && e.request == NULL && e.metadata == NULL);
    cJSON_Delete(j);

    cm_md *md = (cm_md *)1;
    j = cJSON_Parse("[]");
    CHECK_EQ_INT(cm__md_from_json(j, &md), CM_EPROTO);
    CHECK(md == NULL);
    cJSON_Delete(j);
    CHECK_EQ_INT(cm__md_from_json(NULL, &md), 0);
    CHECK(md != NULL);
    CHECK_EQ_INT(cm_md_count(md), 0);
    cm_md_free(md);
}

/* ---- hex(zlib(...)) ---- */

static char *
hexzlib(const char *s)
{
    cm_buf b = {0};
    CHECK_EQ_INT(cm__hexzlib_encode(s, strlen(s), &b), 0);
    CHECK_EQ_INT(cm_buf_append(&b, "", 1), 0);
    return (char *)b.data;
}

/* Decodes hex and checks the result against want (NULL: expect err). */
static void
unhex(const char *hex, size_t max, const char *want, int err)
{
    cm_buf b = {0};
    CHECK_EQ_INT(cm_buf_append(&b, "pre", 3), 0);
    int rc = cm__hexzlib_decode(hex, strlen(hex), max, &b);
    if (want != NULL) {
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(b.len, 3 + strlen(want));
        CHECK(memcmp(b.data, "pre", 3) == 0);
        CHECK(memcmp(b.data + 3, want, strlen(want)) == 0);
    } else {
        CHECK_EQ_INT(rc, err);
        CHECK_EQ_INT(b.len, 3); /* nothing appended on failure */
    }
    cm_buf_free(&b);
}

static char *
to_hex(const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        sprintf(s + 2 * i, "%02x", p[i]);
    }
    s[2 * n] = '\0';
    return s;
}

/* A stream shaped like Go's: the data in a sync-flushed block, then an empty final stored block
 * (01 00 00 ff ff), then the Adler-32. */
static char *
go_style(const char *data)
{
    uint8_t out[512];
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    CHECK_EQ_INT(deflateInit(&zs, Z_DEFAULT_COMPRESSION), Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)data;
    zs.avail_in = (uInt)strlen(data);
    zs.next_out = out;
    zs.avail_out = sizeof(out);
    CHECK_EQ_INT(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
    size_t n = sizeof(out) - zs.avail_out;
    deflateEnd(&zs);
    CHECK(n >= 4 && memcmp(out + n - 4, "\x00\x00\xff\xff", 4) == 0);
    memcpy(out + n, "\x01\x00\x00\xff\xff", 5);
    n += 5;
    uLong a = adler32(adler32(0, NULL, 0), (const Bytef *)data, (uInt)strlen(data));
    out[n++] = (uint8_t)(a >> 24);
    out[n++] = (uint8_t)(a >> 16);
    out[n++] = (uint8_t)(a >> 8);
    out[n++] = (uint8_t)a;
    return to_hex(out, n);
}

static void
test_hexzlib(void)
{
    char *h = hexzlib("latest");
    CHECK_EQ_STR(h, "789ccb492c492d2e010008cc028e");
    free(h);
    h = hexzlib("{\"protocol\":\"mucp\"}");
    CHECK_EQ_STR(h, "789cab562a28ca2fc94fcecf51b252ca2d4d2e50aa050046a906e2");
    free(h);

    unhex("789ccb492c492d2e010008cc028e", 0, "latest", 0);
    unhex("789CCB492C492D2E010008CC028E", 0, "latest", 0);
    unhex(go_latest_hex, 0, "latest", 0);
    unhex(go_small_hex, 0, go_small_json, 0);
    h = go_style("latest");
    CHECK(strstr(h, "0000ffff010000ffff") != NULL);
    unhex(h, 0, "latest", 0);
    free(h);
    h = go_style(go411_json);
    unhex(h, 0, go411_json, 0);
    free(h);

    /* Round trip of bytes that are not text. */
    uint8_t bin[300];
    for (size_t i = 0; i < sizeof(bin); i++) {
        bin[i] = (uint8_t)(i * 7);
    }
    cm_buf b = {0};
    CHECK_EQ_INT(cm__hexzlib_encode(bin, sizeof(bin), &b), 0);
    cm_buf d = {0};
    CHECK_EQ_INT(cm__hexzlib_decode((const char *)b.data, b.len, 0, &d), 0);
    CHECK_EQ_INT(d.len, sizeof(bin));
    CHECK(memcmp(d.data, bin, sizeof(bin)) == 0);
    cm_buf_free(&b);
    cm_buf_free(&d);
}

static void
test_hexzlib_bad(void)
{
    unhex("", 0, NULL, CM_EPROTO);
    unhex("789ccb492c492d2e010008cc028", 0, NULL, CM_EPROTO);   /* odd length */
    unhex("789ccb492c492d2e010008cc02zz", 0, NULL, CM_EPROTO);  /* not hex */
    unhex("78 ccb492c492d2e010008cc028e", 0, NULL, CM_EPROTO);  /* not hex */
    unhex("789ccb492c492d2e010008cc028f", 0, NULL, CM_EPROTO);  /* bad Adler-32 */
    unhex("789ccb492c492d2e010008cc", 0, NULL, CM_EPROTO);      /* truncated */
    unhex("789ccb492c492d2e01", 0, NULL, CM_EPROTO);            /* truncated */
    unhex("0011aabbccdd", 0, NULL, CM_EPROTO);                  /* not zlib */
    unhex("789ccb492c492d2e010008cc028e00", 0, NULL, CM_EPROTO); /* trailing bytes */
    /* The cap: exactly "latest" fits in 6 bytes, not in 5. */
    unhex("789ccb492c492d2e010008cc028e", 6, "latest", 0);
    unhex("789ccb492c492d2e010008cc028e", 5, NULL, CM_EPROTO);

    /* A zip bomb: 16 MiB of zeros in about 16 KiB of zlib stops at the 4 MiB default cap, having
     * used a bounded buffer. */
    size_t big = (size_t)16 << 20;
    uint8_t *zeros = calloc(1, big);
    cm_buf b = {0};
    CHECK_EQ_INT(cm__hexzlib_encode(zeros, big, &b), 0);
    free(zeros);
    CHECK(b.len < 100 * 1024);
    cm_buf d = {0};
    CHECK_EQ_INT(cm__hexzlib_decode((const char *)b.data, b.len, 0, &d), CM_EPROTO);
    CHECK_EQ_INT(d.len, 0);
    CHECK(d.cap <= (size_t)8 << 20);
    CHECK_EQ_INT(cm__hexzlib_decode((const char *)b.data, b.len, 1000, &d), CM_EPROTO);
    CHECK_EQ_INT(cm__hexzlib_decode((const char *)b.data, b.len, big, &d), 0);
    CHECK_EQ_INT(d.len, big);
    cm_buf_free(&d);
    cm_buf_free(&b);
}

int
main(void)
{
    RUN(test_encode_exact);
    RUN(test_encode_matches_go);
    RUN(test_decode_go);
    RUN(test_decode_malformed);
    RUN(test_hexzlib);
    RUN(test_hexzlib_bad);
    TEST_DONE();
}
