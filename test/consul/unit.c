/* The Consul backend's pure parts, without an agent: Go durations, addresses, Meta rules, the
 * register body, go-micro's tag decoders (with their quirks), health replies, the blocking-query
 * arithmetic, snapshot diffs, and the address/environment configuration. */
#include "test.h"

#include "consul_int.h"

#include <uv.h>

#include <stdarg.h>
#include <stdlib.h>

static void
test_durations(void)
{
    struct {
        uint64_t ms;
        const char *want;
    } cases[] = {{0, "0s"},
                 {10, "10ms"},
                 {500, "500ms"},
                 {1000, "1s"},
                 {1500, "1.5s"},
                 {30000, "30s"},
                 {60000, "1m0s"},
                 {65000, "1m5s"},
                 {90000, "1m30s"},
                 {95000, "1m35s"},
                 {61500, "1m1.5s"},
                 {3600000, "1h0m0s"},
                 {3661001, "1h1m1.001s"},
                 {300000, "5m0s"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        cm__consul_go_duration(cases[i].ms, buf, sizeof(buf));
        CHECK_EQ_STR(buf, cases[i].want);
    }
    CHECK_EQ_INT(cm__consul_dereg_ms(30000), 65000);
    CHECK_EQ_INT(cm__consul_dereg_ms(59999), 65000);
    CHECK_EQ_INT(cm__consul_dereg_ms(60000), 65000);
    CHECK_EQ_INT(cm__consul_dereg_ms(90000), 95000);
}

static void
test_hostport(void)
{
    struct {
        const char *in, *host;
        int port, rc;
    } cases[] = {
        {"127.0.0.1:9090", "127.0.0.1", 9090, 0},
        {"[::1]:9091", "::1", 9091, 0},
        {"[::1]", "::1", 0, 0},
        {"host", "host", 0, 0},
        {"::1", "::1", 0, 0},
        {"h:", "h", 0, 0},
        {"", "", 0, 0},
        {"h:99999", NULL, 0, CM_EADDR},
        {"h:x", NULL, 0, CM_EADDR},
        {"[::1", NULL, 0, CM_EADDR},
        {"[::1]x", NULL, 0, CM_EADDR},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[64];
        int port = -1;
        int rc = cm__consul_split_hostport(cases[i].in, host, sizeof(host), &port);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0) {
            CHECK_EQ_STR(host, cases[i].host);
            CHECK_EQ_INT(port, cases[i].port);
        }
    }
}

static void
test_meta_rules(void)
{
    char k128[130], v513[514];
    memset(k128, 'k', 128);
    k128[128] = '\0';
    memset(v513, 'v', 513);
    v513[513] = '\0';
    CHECK(cm__consul_meta_ok("ok_key-1", "v"));
    CHECK(cm__consul_meta_ok(k128, "v"));
    CHECK(cm__consul_meta_ok("k", v513 + 1));
    CHECK(cm__consul_meta_ok("Consul-x", "v")); /* the reserved prefix is case-sensitive */
    CHECK(!cm__consul_meta_ok("a.b", "v"));
    CHECK(!cm__consul_meta_ok("a/b", "v"));
    CHECK(!cm__consul_meta_ok("", "v"));
    CHECK(!cm__consul_meta_ok("consul-x", "v"));
    CHECK(!cm__consul_meta_ok("k", v513));
    k128[128] = 'k';
    k128[129] = '\0';
    CHECK(!cm__consul_meta_ok(k128, "v"));
}

static void
test_register_body(void)
{
    cm_reg_service *s = cm_reg_service_new("svc", "v1");
    char *body = NULL;
    CHECK_EQ_INT(cm__consul_register_body(s, 1000, 0, &body), CM_EINVAL); /* no node */
    cm_md *md = cm_md_new();
    CHECK(cm_reg_service_add_node(s, "", "1.2.3.4:5", md) != NULL);
    CHECK_EQ_INT(cm__consul_register_body(s, 1000, 0, &body), CM_EINVAL); /* no id */
    cm_reg_service_free(s);

    /* 70 acceptable keys: Meta keeps 64; no port, no address, no check. */
    s = cm_reg_service_new("svc", "v1");
    for (int i = 0; i < 70; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%02d", i);
        cm_md_set(md, k, "v");
    }
    CHECK(cm_reg_service_add_node(s, "svc-1", "", md) != NULL);
    CHECK_EQ_INT(cm__consul_register_body(s, 0, 0, &body), 0);
    cJSON *j = cJSON_Parse(body);
    const char *order[] = {"ID", "Name", "Tags", "Meta", "Check", "Checks"};
    size_t i = 0;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, j)
    {
        CHECK(i < 6);
        CHECK_EQ_STR(kv->string, order[i]);
        i++;
    }
    CHECK_EQ_INT(i, 6);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "Meta")), 64);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "Tags")), 71);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "Check")));
    cJSON_Delete(j);
    free(body);
    cm_reg_service_free(s);

    /* No acceptable key: no Meta; with a port: Port before Address, as the Go struct. */
    cm_md_free(md);
    md = cm_md_new();
    cm_md_set(md, "a.b", "x");
    s = cm_reg_service_new("svc", NULL);
    CHECK(cm_reg_service_add_node(s, "svc-1", "[fe80::1]:80", md) != NULL);
    CHECK_EQ_INT(cm__consul_register_body(s, 0, 2000, &body), 0);
    j = cJSON_Parse(body);
    const char *order2[] = {"ID", "Name", "Tags", "Port", "Address", "Check", "Checks"};
    i = 0;
    cJSON_ArrayForEach(kv, j)
    {
        CHECK(i < 7);
        CHECK_EQ_STR(kv->string, order2[i]);
        i++;
    }
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "Address")->valuestring, "fe80::1");
    const cJSON *chk = cJSON_GetObjectItem(j, "Check");
    CHECK_EQ_STR(cJSON_GetObjectItem(chk, "TCP")->valuestring, "[fe80::1]:80");
    CHECK_EQ_STR(cJSON_GetObjectItem(chk, "Interval")->valuestring, "2s");
    CHECK_EQ_STR(cJSON_GetObjectItem(chk, "DeregisterCriticalServiceAfter")->valuestring, "1m5s");
    cJSON_Delete(j);
    free(body);
    cm_reg_service_free(s);
    cm_md_free(md);
}

/* "x-" + hex(zlib(s)) with the backend's shared encoder. */
static char *
enc(char prefix, const char *s)
{
    cm_buf b = {0};
    char head[2] = {prefix, '-'};
    cm_buf_append(&b, head, 2);
    CHECK_EQ_INT(cm__hexzlib_encode(s, strlen(s), &b), 0);
    cm_buf_append(&b, "", 1);
    return (char *)b.data;
}

static cJSON *
tags_of(int n, ...)
{
    va_list ap;
    va_start(ap, n);
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        const char *s = va_arg(ap, const char *);
        cJSON_AddItemToArray(a, s != NULL ? cJSON_CreateString(s) : cJSON_CreateNumber(7));
    }
    va_end(ap);
    return a;
}

static void
check_version(cJSON *tags, const char *want)
{
    char *v = cm__consul_decode_version(tags);
    CHECK_EQ_STR(v, want);
    free(v);
    cJSON_Delete(tags);
}

/* Decodes tags' metadata; returns the number of pairs, a's value in *a. */
static size_t
md_of(cJSON *tags, char *a, size_t len)
{
    cm_md *md = NULL;
    CHECK_EQ_INT(cm__consul_decode_metadata(tags, &md), 0);
    const char *v = cm_md_get(md, "a");
    snprintf(a, len, "%s", v != NULL ? v : "");
    size_t n = cm_md_count(md);
    cm_md_free(md);
    cJSON_Delete(tags);
    return n;
}

static void
test_tag_decoders(void)
{
    char *v2 = enc('v', "2.0"), *ta = enc('t', "{\"a\":\"1\"}"), *tb = enc('t', "{\"b\":\"2\"}");
    char *tnum = enc('t', "{\"a\":1}");
    check_version(tags_of(0), "");
    check_version(tags_of(1, "v=1.0"), "1.0");
    check_version(tags_of(4, "x", "v", (const char *)NULL, v2), "2.0");
    check_version(tags_of(2, "vX", "v=3"), "3");
    check_version(tags_of(2, "v-zz", "v=3"), ""); /* the first v- wins even when it is bad */

    char a[32];
    CHECK_EQ_INT(md_of(tags_of(2, ta, tb), a, sizeof(a)), 2);
    CHECK_EQ_STR(a, "1");
    CHECK_EQ_INT(md_of(tags_of(1, "t={\"a\":\"L\"}"), a, sizeof(a)), 1); /* legacy plain */
    CHECK_EQ_STR(a, "L");
    /* The first t tag fixes the format: later t- tags are skipped. */
    CHECK_EQ_INT(md_of(tags_of(2, "t={\"a\":\"L\"}", tb), a, sizeof(a)), 1);
    CHECK_EQ_STR(a, "L");
    /* A foreign tag first disables every go-micro t- tag (go-micro's quirk). */
    CHECK_EQ_INT(md_of(tags_of(2, "traefik.enable=true", ta), a, sizeof(a)), 0);
    /* One-character tags (a panic in Go), empty tags, non-strings: skipped, no crash. */
    CHECK_EQ_INT(md_of(tags_of(4, "t", "", (const char *)NULL, ta), a, sizeof(a)), 1);
    CHECK_EQ_STR(a, "1");
    /* A pair whose value is not a string: the whole tag is ignored, as Go's decoder. */
    CHECK_EQ_INT(md_of(tags_of(2, tnum, tb), a, sizeof(a)), 1);
    CHECK_EQ_INT(md_of(tags_of(1, "t-00ff"), a, sizeof(a)), 0);

    char *e1 = enc('e', "{\"name\":\"Greeter.Hello\",\"request\":{\"name\":\"Req\",\"type\":"
                        "\"Req\",\"values\":null},\"response\":null,\"metadata\":{}}");
    char *ebad = enc('e', "[1,2]");
    cm_reg_service *s = cm_reg_service_new("x", "");
    cJSON *tags = tags_of(5, "e", ebad, e1, "e=not json", "e-");
    CHECK_EQ_INT(cm__consul_decode_endpoints(tags, s), 0);
    CHECK_EQ_INT(s->nendpoints, 1);
    CHECK_EQ_STR(s->endpoints[0].name, "Greeter.Hello");
    CHECK_EQ_STR(s->endpoints[0].request->type, "Req");
    CHECK(s->endpoints[0].response == NULL);
    cJSON_Delete(tags);
    cm_reg_service_free(s);
    free(v2);
    free(ta);
    free(tb);
    free(tnum);
    free(e1);
    free(ebad);
}

static void
test_parse_health(void)
{
    char *v1 = enc('v', "1"), *v2 = enc('v', "2"), *tm = enc('t', "{\"k\":\"m\"}");
    char json[4096];
    snprintf(json, sizeof(json),
             "[{\"Node\":{\"Address\":\"10.0.0.1\"},\"Service\":{\"ID\":\"a\",\"Service\":\"s\","
             "\"Tags\":[\"%s\",\"%s\"],\"Address\":\"\",\"Port\":1},\"Checks\":[{\"Status\":"
             "\"passing\"},{\"Status\":\"warning\"}]},"
             "{\"Node\":{\"Address\":\"10.0.0.1\"},\"Service\":{\"ID\":\"b\",\"Service\":\"s\","
             "\"Tags\":[\"%s\"],\"Address\":\"10.0.0.2\",\"Port\":2},\"Checks\":[{\"Status\":"
             "\"passing\"},{\"Status\":\"critical\"}]},"
             "{\"Service\":{\"ID\":\"c\",\"Service\":\"s\",\"Tags\":[\"%s\"],\"Port\":3},"
             "\"Checks\":[{\"Status\":\"critical\"}]},"
             "{\"Service\":{\"ID\":\"d\",\"Service\":\"other\",\"Tags\":[],\"Port\":4}},"
             "{\"Service\":{\"ID\":\"e\",\"Service\":\"s\",\"Tags\":[\"%s\"],"
             "\"Address\":\"::1\",\"Port\":5},\"Checks\":[]},"
             "7, {}, {\"Service\":{\"ID\":\"f\",\"Service\":\"s\",\"Tags\":null,\"Port\":6}}]",
             v1, tm, v1, v2, v1);
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(cm__consul_parse_health("s", json, strlen(json), &l), 0);
    CHECK_EQ_INT(l->n, 3); /* versions "1", "2" (no nodes) and "" */
    CHECK_EQ_STR(l->items[0]->version, "1");
    CHECK_EQ_INT(l->items[0]->nnodes, 2);
    CHECK_EQ_STR(l->items[0]->nodes[0].id, "a");
    CHECK_EQ_STR(l->items[0]->nodes[0].address, "10.0.0.1:1"); /* the node's address */
    CHECK_EQ_STR(cm_md_get(l->items[0]->nodes[0].metadata, "k"), "m");
    CHECK_EQ_STR(l->items[0]->nodes[1].address, "[::1]:5");
    CHECK_EQ_STR(l->items[1]->version, "2");
    CHECK_EQ_INT(l->items[1]->nnodes, 0);
    CHECK_EQ_STR(l->items[2]->version, "");
    CHECK_EQ_STR(l->items[2]->nodes[0].address, ":6");
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(cm__consul_parse_health("s", "null", 4, &l), 0);
    CHECK_EQ_INT(l->n, 0);
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(cm__consul_parse_health("s", "{}", 2, &l), CM_EPROTO);
    CHECK_EQ_INT(cm__consul_parse_health("s", "[", 1, &l), CM_EPROTO);
    /* A port out of range is 0, never an undefined conversion (found by test/fuzz
     * consul-json; UBSan checks the cast in the sanitizer build). */
    const char *ports = "[{\"Service\":{\"ID\":\"a\",\"Service\":\"s\",\"Port\":1e999}},"
                        "{\"Service\":{\"ID\":\"b\",\"Service\":\"s\",\"Port\":-1e300}},"
                        "{\"Service\":{\"ID\":\"c\",\"Service\":\"s\",\"Port\":65536}},"
                        "{\"Service\":{\"ID\":\"d\",\"Service\":\"s\",\"Port\":80.5}}]";
    CHECK_EQ_INT(cm__consul_parse_health("s", ports, strlen(ports), &l), 0);
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_INT(l->items[0]->nnodes, 4);
    CHECK_EQ_STR(l->items[0]->nodes[0].address, ":0");
    CHECK_EQ_STR(l->items[0]->nodes[1].address, ":0");
    CHECK_EQ_STR(l->items[0]->nodes[2].address, ":0");
    CHECK_EQ_STR(l->items[0]->nodes[3].address, ":80");
    cm_reg_service_list_free(l);
    free(v1);
    free(v2);
    free(tm);
}

static void
test_wstate(void)
{
    cm__consul_wstate s;
    cm__consul_wstate_init(&s);
    CHECK_EQ_INT(s.index, 0);
    CHECK_EQ_INT(cm__consul_wstate_timeout(&s), s.wait_ms + s.wait_ms / 16 + 5000);
    CHECK_EQ_INT(cm__consul_wstate_reply(&s, 1, 10, 5), 1); /* the first reply is news */
    CHECK_EQ_INT(s.index, 10);
    CHECK_EQ_INT(s.idle, 0);
    /* The gap: the next query starts no sooner than gap after the last one started. */
    CHECK_EQ_INT(cm__consul_wstate_delay(&s, 1000, 1010, 0), s.gap_ms - 10);
    CHECK_EQ_INT(cm__consul_wstate_delay(&s, 1000, 1000 + s.gap_ms + 5, 0), 0);
    /* The wait ran out, index unchanged: no news, no back-off. */
    CHECK_EQ_INT(cm__consul_wstate_reply(&s, 1, 10, s.wait_ms), 0);
    CHECK_EQ_INT(s.idle, 0);
    /* Back at once with the same index: no news, and a back-off so we do not spin. */
    CHECK_EQ_INT(cm__consul_wstate_reply(&s, 1, 10, 3), 0);
    CHECK_EQ_INT(s.idle, 1);
    uint64_t d = cm__consul_wstate_delay(&s, 0, 100000, 12345);
    CHECK(d >= s.base_ms / 2 && d <= s.base_ms);
    /* Forward: news, the back-off ends. */
    CHECK_EQ_INT(cm__consul_wstate_reply(&s, 1, 11, 3), 1);
    CHECK_EQ_INT(s.idle, 0);
    /* Backwards: reset to 0 (a plain read next), which is news. */
    CHECK_EQ_INT(cm__consul_wstate_reply(&s, 1, 4, 3), 1);
    CHECK_EQ_INT(s.index, 0);
    /* 0 or absent is raised to 1. */
    CHECK_EQ_INT(cm__consul_wstate_reply(&s, 1, 0, 3), 1);
    CHECK_EQ_INT(s.index, 1);
    CHECK_EQ_INT(cm__consul_wstate_reply(&s, 0, 99, 3), 0);
    CHECK_EQ_INT(s.index, 1);
    /* Errors: exponential, jittered within [b/2, b], capped. */
    uint64_t prev_hi = 0;
    for (unsigned i = 1; i <= 12; i++) {
        cm__consul_wstate_error(&s);
        uint64_t b = s.base_ms << (i - 1);
        if (b > s.cap_ms) {
            b = s.cap_ms;
        }
        uint64_t lo = cm__consul_wstate_delay(&s, 0, 100000, 0);
        uint64_t hi = cm__consul_wstate_delay(&s, 0, 100000, (uint32_t)(b / 2));
        uint64_t mid = cm__consul_wstate_delay(&s, 0, 100000, 0xdeadbeef);
        CHECK_EQ_INT(lo, b / 2);
        CHECK_EQ_INT(hi, b);
        CHECK(mid >= lo && mid <= hi);
        CHECK(hi >= prev_hi);
        prev_hi = hi;
    }
    CHECK_EQ_INT(prev_hi, s.cap_ms);
    for (int i = 0; i < 100; i++) {
        cm__consul_wstate_error(&s); /* no overflow with long streaks */
    }
    CHECK(cm__consul_wstate_delay(&s, 0, 100000, 7) <= s.cap_ms);
    /* After an error the next query is a plain read; a reply ends the streak. */
    CHECK_EQ_INT(s.index, 0);
    CHECK_EQ_INT(cm__consul_wstate_reply(&s, 1, 50, 3), 1);
    CHECK_EQ_INT(s.failures, 0);
    CHECK_EQ_INT(s.index, 50);
}

/* ---- diffs ---- */

static cm_reg_service *
svc_with(const char *version, const char *ids)
{
    cm_reg_service *s = cm_reg_service_new("s", version);
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", ids);
    for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
        CHECK(cm_reg_service_add_node(s, tok, "1.1.1.1:1", NULL) != NULL);
    }
    return s;
}

static cm_reg_service_list *
list_of(int n, ...)
{
    va_list ap;
    va_start(ap, n);
    cm_reg_service_list *l = calloc(1, sizeof(*l));
    l->items = calloc((size_t)n + 1, sizeof(cm_reg_service *));
    for (int i = 0; i < n; i++) {
        const char *v = va_arg(ap, const char *);
        const char *ids = va_arg(ap, const char *);
        l->items[l->n++] = svc_with(v, ids);
    }
    va_end(ap);
    return l;
}

static char got[256];
static int stop_after;

static int
record(void *arg, cm_watch_action a, const cm_reg_service *svc)
{
    (void)arg;
    char one[64];
    snprintf(one, sizeof(one), "%s %s [", cm_watch_action_name(a), svc->version);
    strcat(got, one);
    for (size_t i = 0; i < svc->nnodes; i++) {
        strcat(got, i > 0 ? "," : "");
        strcat(got, svc->nodes[i].id);
    }
    strcat(got, "]; ");
    return --stop_after == 0;
}

static void
check_diff(cm_reg_service_list *old, cm_reg_service_list *cur, const char *want)
{
    got[0] = '\0';
    stop_after = -1;
    CHECK_EQ_INT(cm__consul_diff(old, cur, record, NULL), 0);
    CHECK_EQ_STR(got, want);
    cm_reg_service_list_free(old);
    cm_reg_service_list_free(cur);
}

static void
test_diff(void)
{
    check_diff(NULL, list_of(1, "1", "a"), "create 1 [a]; ");
    check_diff(NULL, list_of(0), "");
    check_diff(list_of(1, "1", "a"), list_of(1, "1", "a"), "");
    check_diff(list_of(1, "1", "a"), list_of(1, "1", "a,b"), "update 1 [a,b]; ");
    check_diff(list_of(1, "1", "a,b"), list_of(1, "1", "b"), "delete 1 [a]; update 1 [b]; ");
    check_diff(list_of(1, "1", "a"), list_of(0), "delete 1 [a]; ");
    check_diff(list_of(2, "1", "a", "2", "b"), list_of(2, "2", "b", "3", "c"),
               "create 3 [c]; delete 1 [a]; ");
    check_diff(list_of(1, "1", "a,b"), list_of(1, "1", ""), "delete 1 [a,b]; update 1 []; ");
    /* A callback that stops the watcher ends the walk. */
    got[0] = '\0';
    stop_after = 1;
    cm_reg_service_list *old = list_of(1, "1", "a,b"), *cur = list_of(1, "1", "c");
    CHECK_EQ_INT(cm__consul_diff(old, cur, record, NULL), 1);
    CHECK_EQ_STR(got, "delete 1 [a,b]; ");
    cm_reg_service_list_free(old);
    cm_reg_service_list_free(cur);
}

/* ---- configuration ---- */

static void
on_canceled(int status, const cm_reg_service_list *l, void *user)
{
    CHECK_EQ_INT(status, CM_ECANCELED);
    CHECK(l == NULL);
    *(int *)user = 1;
}

static void
no_event(cm_watch_action a, const cm_reg_service *svc, void *user)
{
    (void)a;
    (void)svc;
    (void)user;
    CHECK(0);
}

static void
closed(void *arg)
{
    *(int *)arg = 1;
}

static void
close_and_run(cm_loop *l, cm_registry *r)
{
    int done = 0;
    cm_registry_close(r, closed, &done);
    for (int i = 0; i < 1000 && !done; i++) {
        uv_run(cm_loop_uv(l), UV_RUN_NOWAIT);
    }
    CHECK(done);
}

static cm_registry *
make(cm_loop *l, const char *addresses, int consistent, const char *dc, int want_rc)
{
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    o.addresses = addresses;
    if (consistent) {
        cm_registry_opts_set(&o, "consistent", "true");
    }
    if (dc != NULL) {
        cm_registry_opts_set(&o, "datacenter", dc);
    }
    cm_registry *r = NULL;
    CHECK_EQ_INT(cm_registry_new(l, "consul", &o, &r), want_rc);
    return r;
}

static void
test_config(void)
{
    cm_loop *l = NULL;
    CHECK_EQ_INT(cm_loop_new(&l), 0);
    unsetenv("MICRO_REGISTRY_ADDRESS");
    unsetenv("CONSUL_HTTP_ADDR");
    unsetenv("CONSUL_HTTP_SSL");
    unsetenv("CONSUL_CLIENT_CERT");
    unsetenv("CONSUL_CLIENT_KEY");
    unsetenv("CONSUL_HTTP_TOKEN");
    unsetenv("CONSUL_HTTP_TOKEN_FILE");

    cm_registry *r = make(l,
                          "a, http://b:1/, https://c/prefix/, [::1], ::1, "
                          "unix:///tmp/x.sock, [fe80::1]:99, d:",
                          0, NULL, 0);
    cm__consul *c = cm__consul_of(r);
    const char *want[] = {"http://a:8500",       "http://b:1",        "https://c:8500/prefix",
                          "http://[::1]:8500",   "http://[::1]:8500", "http://localhost",
                          "http://[fe80::1]:99", "http://d:8500"};
    CHECK_EQ_INT(c->nagents, 8);
    for (size_t i = 0; i < 8; i++) {
        CHECK_EQ_STR(c->agents[i].base, want[i]);
    }
    CHECK_EQ_STR(c->agents[5].unix_path, "/tmp/x.sock");
    CHECK(c->agents[0].unix_path == NULL);
    CHECK_EQ_STR(c->read_query, "?stale");
    CHECK(c->hdr_get == NULL); /* no token, no header */
    close_and_run(l, r);

    r = make(l, "x", 1, "dc 2", 0);
    CHECK_EQ_STR(cm__consul_of(r)->read_query, "?consistent&dc=dc%202");
    close_and_run(l, r);

    /* Precedence: opts, MICRO_REGISTRY_ADDRESS, CONSUL_HTTP_ADDR, 127.0.0.1:8500. */
    r = make(l, NULL, 0, NULL, 0);
    CHECK_EQ_STR(cm__consul_of(r)->agents[0].base, "http://127.0.0.1:8500");
    close_and_run(l, r);
    setenv("CONSUL_HTTP_ADDR", "consul.local:8501", 1);
    setenv("CONSUL_HTTP_SSL", "true", 1);
    r = make(l, NULL, 0, NULL, 0);
    CHECK_EQ_STR(cm__consul_of(r)->agents[0].base, "https://consul.local:8501");
    close_and_run(l, r);
    unsetenv("CONSUL_HTTP_SSL");
    setenv("MICRO_REGISTRY_ADDRESS", "m1,m2:9", 1);
    r = make(l, NULL, 0, NULL, 0);
    CHECK_EQ_INT(cm__consul_of(r)->nagents, 2);
    CHECK_EQ_STR(cm__consul_of(r)->agents[1].base, "http://m2:9");
    close_and_run(l, r);
    r = make(l, "o", 0, NULL, 0);
    CHECK_EQ_STR(cm__consul_of(r)->agents[0].base, "http://o:8500");
    close_and_run(l, r);
    unsetenv("MICRO_REGISTRY_ADDRESS");
    unsetenv("CONSUL_HTTP_ADDR");

    /* Token: opts wins; a header holding it. */
    setenv("CONSUL_HTTP_TOKEN", "envtok", 1);
    r = make(l, "x", 0, NULL, 0);
    CHECK_EQ_STR(cm__consul_of(r)->hdr_get->data, "X-Consul-Token: envtok");
    close_and_run(l, r);
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    cm_registry_opts_set(&o, "token", "optok");
    CHECK_EQ_INT(cm_registry_new(l, "consul", &o, &r), 0);
    CHECK_EQ_STR(cm__consul_of(r)->hdr_get->data, "X-Consul-Token: optok");
    close_and_run(l, r);
    unsetenv("CONSUL_HTTP_TOKEN");

    /* Refused at once. */
    make(l, "ftp://x", 0, NULL, CM_EINVAL);
    make(l, " , ", 0, NULL, CM_EINVAL);
    make(l, "[::1", 0, NULL, CM_EINVAL);
    setenv("CONSUL_HTTP_TOKEN_FILE", "/nonexistent/token", 1);
    make(l, "x", 0, NULL, CM_EINVAL);
    unsetenv("CONSUL_HTTP_TOKEN_FILE");
    setenv("CONSUL_CLIENT_CERT", "/tmp/c.pem", 1);
    make(l, "x", 0, NULL, CM_EINVAL);
    unsetenv("CONSUL_CLIENT_CERT");

    /* Closed, then the loop freed without running it: still released (ASan checks leaks). */
    cm_loop *l2 = NULL;
    CHECK_EQ_INT(cm_loop_new(&l2), 0);
    r = make(l2, "127.0.0.1:1", 0, NULL, 0);
    int got_cb = 0, done = 0;
    CHECK_EQ_INT(cm_registry_get_service(r, "x", on_canceled, &got_cb), 0);
    cm_registry_close(r, closed, &done);
    CHECK(!got_cb && !done);
    cm_loop_free(l2);
    CHECK(got_cb && done);

    /* Watching everything is not supported (as go-micro's plugin). */
    r = make(l, "x", 0, NULL, 0);
    cm_watcher *w = NULL;
    CHECK_EQ_INT(cm_registry_watch(r, NULL, no_event, NULL, &w), CM_ENOTSUP);
    close_and_run(l, r);
    cm_loop_free(l);
}

/* A health answer of n entries of one service and version. */
static char *
many_nodes_json(size_t n)
{
    cm_buf b = {0};
    CHECK_EQ_INT(cm_buf_append(&b, "[", 1), 0);
    for (size_t i = 0; i < n; i++) {
        char e[256];
        int k = snprintf(e, sizeof e,
                         "%s{\"Node\":{\"Address\":\"10.0.0.1\"},\"Service\":{\"ID\":\"s-%zu\","
                         "\"Service\":\"s\",\"Address\":\"10.%zu.%zu.%zu\",\"Port\":8080,"
                         "\"Tags\":[\"v-31\"]},\"Checks\":[]}",
                         i ? "," : "", i, (i >> 16) & 255, (i >> 8) & 255, i & 255);
        CHECK_EQ_INT(cm_buf_append(&b, e, (size_t)k), 0);
    }
    CHECK_EQ_INT(cm_buf_append(&b, "]", 2), 0);
    return (char *)b.data;
}

static uint64_t
parse_ms(size_t n)
{
    char *json = many_nodes_json(n);
    uint64_t t0 = uv_hrtime();
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(cm__consul_parse_health("s", json, strlen(json), &l), 0);
    uint64_t ms = (uv_hrtime() - t0) / 1000000u;
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_INT(l->items[0]->nnodes, n);
    char last[32];
    snprintf(last, sizeof last, "s-%zu", n - 1);
    CHECK_EQ_STR(l->items[0]->nodes[n - 1].id, last);
    cm_reg_service_list_free(l);
    free(json);
    return ms;
}

/* 50,000 nodes in one answer parse in time linear in their number: 4 times the nodes take
 * about 4 times as long (a grow-by-one array made it 16 times, and 24 s under ASan). The bound
 * is loose (8x, plus 200 ms for a busy machine) so that only a quadratic cost fails it. */
static void
test_parse_many_nodes(void)
{
    parse_ms(1000); /* warm up the allocator */
    uint64_t small = parse_ms(12500);
    uint64_t big = parse_ms(50000);
    fprintf(stderr, "   12,500 nodes: %llu ms; 50,000 nodes: %llu ms\n", (unsigned long long)small,
            (unsigned long long)big);
    CHECK(big <= 8 * small + 200);
}

int
main(void)
{
    RUN(test_durations);
    RUN(test_hostport);
    RUN(test_meta_rules);
    RUN(test_register_body);
    RUN(test_tag_decoders);
    RUN(test_parse_health);
    RUN(test_parse_many_nodes);
    RUN(test_wstate);
    RUN(test_diff);
    RUN(test_config);
    TEST_DONE();
}
