/* The Consul registry backend against an agent: the real one named by CONSUL_HTTP_ADDR (steps
 * that need the test agent's control endpoints print SKIP), else the Python test agent
 * (consul_agent.py) started on a free port. */
#include "harness.h"
#include <uv.h>

#include <uuid/uuid.h>

/* ---- services used by the tests ---- */

static void
new_id(const char *name, char *out, size_t len)
{
    uuid_t u;
    char s[37];
    uuid_generate(u);
    uuid_unparse_lower(u, s);
    snprintf(out, len, "%s-%s", name, s);
}

/* A go-micro-like service: two endpoints, node metadata with keys Consul rejects as Meta. */
static cm_reg_service *
make_svc(const char *name, const char *version, const char *id, const char *address)
{
    cm_reg_service *s = cm_reg_service_new(name, version);
    cm_value leaf = {.name = "name", .type = "string"};
    cm_value req = {.name = "HelloRequest", .type = "HelloRequest", .values = &leaf, .nvalues = 1};
    cm_value msg = {.name = "msg", .type = "string"};
    cm_value rsp = {.name = "HelloResponse", .type = "HelloResponse", .values = &msg, .nvalues = 1};
    cm_md *stream = cm_md_new();
    cm_md_set(stream, "stream", "true");
    CHECK(cm_reg_service_add_endpoint(s, "Greeter.Hello", &req, &rsp, NULL) != NULL);
    CHECK(cm_reg_service_add_endpoint(s, "Greeter.Stream", &req, &rsp, stream) != NULL);
    cm_md_free(stream);
    cm_md *md = cm_md_new();
    cm_md_set(md, "protocol", "mucp");
    cm_md_set(md, "transport", "http");
    cm_md_set(md, "registry", "consul");
    cm_md_set(md, "a.b", "dotted");
    cm_md_set(md, "consul-x", "reserved");
    cm_md_set(md, "ok_key", "v");
    CHECK(cm_reg_service_add_node(s, id, address, md) != NULL);
    cm_md_free(md);
    return s;
}

/* Index of the last logged request to path (-1: none) in /_test/requests. */
static int
last_request(const cJSON *log, const char *method, const char *path)
{
    int found = -1, i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, log)
    {
        if (strcmp(cJSON_GetObjectItem(e, "path")->valuestring, path) == 0 &&
            strcmp(cJSON_GetObjectItem(e, "method")->valuestring, method) == 0) {
            found = i;
        }
        i++;
    }
    return found;
}

static int
count_requests(const cJSON *log, const char *path)
{
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, log)
    {
        n += strcmp(cJSON_GetObjectItem(e, "path")->valuestring, path) == 0;
    }
    return n;
}

/* The status of check service:<id> as the agent reports it ("" when absent). */
static char *
check_status(const test_agent *a, const char *name, const char *id)
{
    char path[512];
    snprintf(path, sizeof(path), "/v1/health/service/%s", name);
    cJSON *j = agent_json(a, path);
    char want[300];
    snprintf(want, sizeof(want), "service:%s", id);
    char *st = strdup("");
    const cJSON *e, *c;
    cJSON_ArrayForEach(e, j)
    {
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(e, "Checks"))
        {
            if (strcmp(cJSON_GetObjectItem(c, "CheckID")->valuestring, want) == 0) {
                free(st);
                st = strdup(cJSON_GetObjectItem(c, "Status")->valuestring);
            }
        }
    }
    cJSON_Delete(j);
    return st;
}

static cm_loop *loop;
static test_agent agent;

/* ---- register body, tags and check (spec 2.2, 2.3) ---- */

static void
check_tags(const cJSON *tags)
{
    int t = 0, e = 0, v = 0, last = 0;
    int seen_hello = 0, seen_stream = 0;
    const char *want_md[][2] = {{"protocol", "mucp"},     {"transport", "http"},
                                {"registry", "consul"},   {"a.b", "dotted"},
                                {"consul-x", "reserved"}, {"ok_key", "v"}};
    int md_seen[6] = {0};
    const cJSON *tag;
    cJSON_ArrayForEach(tag, tags)
    {
        const char *s = tag->valuestring;
        CHECK(s != NULL && strlen(s) > 6);
        CHECK(s[1] == '-');
        CHECK(strncmp(s + 2, "789c", 4) == 0); /* zlib, default level */
        char *payload = tag_payload(s);
        CHECK(payload != NULL);
        if (s[0] == 't') {
            CHECK(last <= 0); /* t- tags come first */
            t++;
            cJSON *j = cJSON_Parse(payload);
            CHECK(cJSON_IsObject(j) && cJSON_GetArraySize(j) == 1);
            const cJSON *kv = j->child;
            CHECK(cJSON_IsString(kv));
            int hit = 0;
            for (int i = 0; i < 6; i++) {
                if (strcmp(kv->string, want_md[i][0]) == 0) {
                    CHECK_EQ_STR(kv->valuestring, want_md[i][1]);
                    md_seen[i]++;
                    hit = 1;
                }
            }
            CHECK(hit);
            cJSON_Delete(j);
        } else if (s[0] == 'e') {
            CHECK(last <= 1);
            last = 1;
            e++;
            cJSON *j = cJSON_Parse(payload);
            CHECK(cJSON_IsObject(j));
            const char *name = cJSON_GetObjectItem(j, "name")->valuestring;
            const cJSON *req = cJSON_GetObjectItem(j, "request");
            CHECK_EQ_STR(cJSON_GetObjectItem(req, "name")->valuestring, "HelloRequest");
            CHECK_EQ_STR(cJSON_GetObjectItem(req, "type")->valuestring, "HelloRequest");
            const cJSON *leaf = cJSON_GetArrayItem(cJSON_GetObjectItem(req, "values"), 0);
            CHECK_EQ_STR(cJSON_GetObjectItem(leaf, "name")->valuestring, "name");
            CHECK(cJSON_IsNull(cJSON_GetObjectItem(leaf, "values")));
            const cJSON *md = cJSON_GetObjectItem(j, "metadata");
            CHECK(cJSON_IsObject(md));
            if (strcmp(name, "Greeter.Hello") == 0) {
                seen_hello++;
                CHECK_EQ_INT(cJSON_GetArraySize(md), 0);
            } else {
                CHECK_EQ_STR(name, "Greeter.Stream");
                seen_stream++;
                CHECK_EQ_STR(cJSON_GetObjectItem(md, "stream")->valuestring, "true");
            }
            cJSON_Delete(j);
        } else {
            CHECK(s[0] == 'v');
            last = 2;
            v++;
            CHECK_EQ_STR(payload, "1.2.3"); /* raw bytes, not JSON */
        }
        free(payload);
    }
    CHECK_EQ_INT(t, 6);
    CHECK_EQ_INT(e, 2);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(last, 2); /* v- is last */
    CHECK(seen_hello == 1 && seen_stream == 1);
    for (int i = 0; i < 6; i++) {
        CHECK_EQ_INT(md_seen[i], 1);
    }
}

static void
test_register_body(void)
{
    char id[128];
    new_id("cm.test.body", id, sizeof(id));
    cm_registry *r = new_registry(loop, agent.addr, NULL, 0);
    cm_reg_service *s = make_svc("cm.test.body", "1.2.3", id, "127.0.0.1:9090");
    CHECK_EQ_INT(reg_sync(loop, r, s, 90000), 0);
    if (agent.real) {
        printf("SKIP: captured register body (real agent)\n");
    } else {
        cJSON *last = agent_json(&agent, "/_test/last?path=/v1/agent/service/register");
        CHECK(last != NULL);
        CHECK_EQ_STR(cJSON_GetObjectItem(last, "method")->valuestring, "PUT");
        const cJSON *hdrs = cJSON_GetObjectItem(last, "headers");
        CHECK_EQ_STR(cJSON_GetObjectItem(hdrs, "content-type")->valuestring, "application/json");
        CHECK(cJSON_GetObjectItem(hdrs, "x-consul-token") == NULL);
        cJSON *body = cJSON_Parse(cJSON_GetObjectItem(last, "body")->valuestring);
        CHECK(body != NULL);
        CHECK_EQ_STR(cJSON_GetObjectItem(body, "ID")->valuestring, id);
        CHECK_EQ_STR(cJSON_GetObjectItem(body, "Name")->valuestring, "cm.test.body");
        CHECK_EQ_STR(cJSON_GetObjectItem(body, "Address")->valuestring, "127.0.0.1");
        CHECK(cJSON_IsNumber(cJSON_GetObjectItem(body, "Port")));
        CHECK_EQ_INT(cJSON_GetObjectItem(body, "Port")->valueint, 9090);
        check_tags(cJSON_GetObjectItem(body, "Tags"));
        /* Meta: only the keys Consul accepts. */
        const cJSON *meta = cJSON_GetObjectItem(body, "Meta");
        CHECK(cJSON_IsObject(meta));
        CHECK_EQ_INT(cJSON_GetArraySize(meta), 4);
        CHECK_EQ_STR(cJSON_GetObjectItem(meta, "protocol")->valuestring, "mucp");
        CHECK_EQ_STR(cJSON_GetObjectItem(meta, "ok_key")->valuestring, "v");
        CHECK(cJSON_GetObjectItem(meta, "a.b") == NULL);
        CHECK(cJSON_GetObjectItem(meta, "consul-x") == NULL);
        /* The check: TTL with Go's duration text, dereg = ttl + 5s. */
        const cJSON *chk = cJSON_GetObjectItem(body, "Check");
        CHECK_EQ_INT(cJSON_GetArraySize(chk), 2);
        CHECK_EQ_STR(cJSON_GetObjectItem(chk, "TTL")->valuestring, "1m30s");
        CHECK_EQ_STR(cJSON_GetObjectItem(chk, "DeregisterCriticalServiceAfter")->valuestring,
                     "1m35s");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(body, "Checks")));
        cJSON_Delete(body);
        cJSON_Delete(last);

        /* The TTL pass follows at once. */
        char path[512];
        snprintf(path, sizeof(path), "/_test/last?path=/v1/agent/check/pass/service:%s", id);
        cJSON *pass = agent_json(&agent, path);
        CHECK(pass != NULL);
        CHECK_EQ_STR(cJSON_GetObjectItem(pass, "method")->valuestring, "PUT");
        CHECK_EQ_STR(cJSON_GetObjectItem(pass, "query")->valuestring, "note=");
        cJSON_Delete(pass);
        cJSON *log = agent_json(&agent, "/_test/requests");
        snprintf(path, sizeof(path), "/v1/agent/check/pass/service:%s", id);
        int ireg = last_request(log, "PUT", "/v1/agent/service/register");
        int ipass = last_request(log, "PUT", path);
        CHECK(ireg >= 0 && ipass > ireg);
        cJSON_Delete(log);
    }
    /* Not critical: Go clients see it. */
    char *st = check_status(&agent, "cm.test.body", id);
    CHECK_EQ_STR(st, "passing");
    free(st);

    /* A TTL of 60 s gives "1m0s" / "1m5s"; 30 s gives "30s" / "1m5s" (Consul's 1m floor). */
    if (!agent.real) {
        char id2[128];
        new_id("cm.test.body", id2, sizeof(id2));
        cm_reg_service *s2 = make_svc("cm.test.body", "1.2.3", id2, "127.0.0.1:9091");
        uint64_t ttls[] = {60000, 30000};
        const char *want[][2] = {{"1m0s", "1m5s"}, {"30s", "1m5s"}};
        for (int i = 0; i < 2; i++) {
            CHECK_EQ_INT(reg_sync(loop, r, s2, ttls[i]), 0);
            cJSON *last = agent_json(&agent, "/_test/last?path=/v1/agent/service/register");
            cJSON *body = cJSON_Parse(cJSON_GetObjectItem(last, "body")->valuestring);
            const cJSON *chk = cJSON_GetObjectItem(body, "Check");
            CHECK_EQ_STR(cJSON_GetObjectItem(chk, "TTL")->valuestring, want[i][0]);
            CHECK_EQ_STR(cJSON_GetObjectItem(chk, "DeregisterCriticalServiceAfter")->valuestring,
                         want[i][1]);
            cJSON_Delete(body);
            cJSON_Delete(last);
        }
        CHECK_EQ_INT(dereg_sync(loop, r, s2), 0);
        cm_reg_service_free(s2);
    }
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    cm_reg_service_free(s);
    close_registry(loop, r);
}

/* ---- register → get_service / list_services, IPv6, versions ---- */

static void
test_get_service(void)
{
    char id1[128], id2[128], id3[128];
    new_id("cm.test.get", id1, sizeof(id1));
    new_id("cm.test.get", id2, sizeof(id2));
    new_id("cm.test.get", id3, sizeof(id3));
    cm_registry *r = new_registry(loop, agent.addr, NULL, 0);
    cm_reg_service *s1 = make_svc("cm.test.get", "1.2.3", id1, "127.0.0.1:9090");
    cm_reg_service *s2 = make_svc("cm.test.get", "1.2.3", id2, "[::1]:9091");
    cm_reg_service *s3 = make_svc("cm.test.get", "2.0.0", id3, "127.0.0.2:9092");
    CHECK_EQ_INT(reg_sync(loop, r, s1, 30000), 0);
    CHECK_EQ_INT(reg_sync(loop, r, s2, 30000), 0);
    CHECK_EQ_INT(reg_sync(loop, r, s3, 30000), 0);
    if (!agent.real) {
        cJSON *last = agent_json(&agent, "/_test/last?path=/v1/agent/service/register");
        cJSON *body = cJSON_Parse(cJSON_GetObjectItem(last, "body")->valuestring);
        CHECK_EQ_STR(cJSON_GetObjectItem(body, "Address")->valuestring, "127.0.0.2");
        cJSON_Delete(body);
        cJSON_Delete(last);
    }

    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.get", &l), 0);
    CHECK_EQ_INT(l->n, 2); /* grouped by version */
    const cm_reg_service *v1 = strcmp(l->items[0]->version, "1.2.3") == 0 ? l->items[0] : l->items[1];
    const cm_reg_service *v2 = v1 == l->items[0] ? l->items[1] : l->items[0];
    CHECK_EQ_STR(v1->name, "cm.test.get");
    CHECK_EQ_STR(v1->version, "1.2.3");
    CHECK_EQ_STR(v2->version, "2.0.0");
    CHECK_EQ_INT(v1->nnodes, 2);
    CHECK_EQ_INT(v2->nnodes, 1);
    CHECK_EQ_INT(v1->nendpoints, 2);
    CHECK_EQ_STR(v1->endpoints[0].name, "Greeter.Hello");
    CHECK_EQ_STR(v1->endpoints[0].request->name, "HelloRequest");
    CHECK_EQ_INT(v1->endpoints[0].request->nvalues, 1);
    CHECK_EQ_STR(v1->endpoints[0].request->values[0].type, "string");
    CHECK_EQ_STR(v1->endpoints[0].response->values[0].name, "msg");
    CHECK_EQ_STR(cm_md_get(v1->endpoints[1].metadata, "stream"), "true");
    const cm_node *n1 = find_node(l, id1), *n2 = find_node(l, id2), *n3 = find_node(l, id3);
    CHECK(n1 != NULL && n2 != NULL && n3 != NULL);
    CHECK_EQ_STR(n1->address, "127.0.0.1:9090");
    CHECK_EQ_STR(n2->address, "[::1]:9091");
    CHECK_EQ_STR(n3->address, "127.0.0.2:9092");
    /* Metadata comes from the tags, so keys Consul refuses as Meta survive. */
    CHECK_EQ_INT(cm_md_count(n1->metadata), 6);
    CHECK_EQ_STR(cm_md_get(n1->metadata, "a.b"), "dotted");
    CHECK_EQ_STR(cm_md_get(n1->metadata, "consul-x"), "reserved");
    CHECK_EQ_STR(cm_md_get(n1->metadata, "protocol"), "mucp");
    cm_reg_service_list_free(l);

    /* An unknown service: an empty list, no error. */
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.nosuch", &l), 0);
    CHECK_EQ_INT(l->n, 0);
    cm_reg_service_list_free(l);

    /* list_services: names, "consul" included. */
    CHECK_EQ_INT(get_sync(loop, r, NULL, &l), 0);
    int consul = 0, ours = 0;
    for (size_t i = 0; i < l->n; i++) {
        consul += strcmp(l->items[i]->name, "consul") == 0;
        ours += strcmp(l->items[i]->name, "cm.test.get") == 0;
    }
    CHECK(consul == 1 && ours == 1);
    cm_reg_service_list_free(l);

    CHECK_EQ_INT(dereg_sync(loop, r, s1), 0);
    CHECK_EQ_INT(dereg_sync(loop, r, s2), 0);
    CHECK_EQ_INT(dereg_sync(loop, r, s3), 0);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.get", &l), 0);
    CHECK_EQ_INT(l->n, 0); /* deregister removes */
    cm_reg_service_list_free(l);
    /* Deregistering what is gone: the agent's 404 counts as done. */
    CHECK_EQ_INT(dereg_sync(loop, r, s1), 0);
    cm_reg_service_free(s1);
    cm_reg_service_free(s2);
    cm_reg_service_free(s3);
    close_registry(loop, r);
}

/* ---- the TTL lapses without refresh: the node is dropped ---- */

static void
test_ttl_lapse(void)
{
    char id[128];
    new_id("cm.test.ttl", id, sizeof(id));
    cm_registry *r = new_registry(loop, agent.addr, NULL, 0);
    cm_reg_service *s = make_svc("cm.test.ttl", "1.0.0", id, "127.0.0.1:9090");
    CHECK_EQ_INT(reg_sync(loop, r, s, 1000), 0);
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.ttl", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 1);
    cm_reg_service_list_free(l);
    /* A real agent checks TTLs with the same 1 s resolution. */
    run_for(loop, 2000);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.ttl", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 0);
    cm_reg_service_list_free(l);
    /* A refresh brings it back. */
    CHECK_EQ_INT(reg_sync(loop, r, s, 1000), 0);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.ttl", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 1);
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    cm_reg_service_free(s);
    close_registry(loop, r);
}

/* ---- TCP check: no TTL pass ---- */

static void
test_tcp_check(void)
{
    SKIP_IF_REAL(&agent, "TCP check body");
    char id[128];
    new_id("cm.test.tcp", id, sizeof(id));
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    o.addresses = agent.addr;
    cm_registry_opts_set(&o, "tcp_check_interval_ms", "10000");
    cm_registry *r = NULL;
    CHECK_EQ_INT(cm_registry_new(loop, "consul", &o, &r), 0);
    cm_reg_service *s = make_svc("cm.test.tcp", "1.0.0", id, "127.0.0.1:9");
    agent_control(&agent, "/_test/clear");
    CHECK_EQ_INT(reg_sync(loop, r, s, 90000), 0);
    cJSON *last = agent_json(&agent, "/_test/last?path=/v1/agent/service/register");
    cJSON *body = cJSON_Parse(cJSON_GetObjectItem(last, "body")->valuestring);
    const cJSON *chk = cJSON_GetObjectItem(body, "Check");
    CHECK_EQ_INT(cJSON_GetArraySize(chk), 3);
    CHECK_EQ_STR(cJSON_GetObjectItem(chk, "TCP")->valuestring, "127.0.0.1:9");
    CHECK_EQ_STR(cJSON_GetObjectItem(chk, "Interval")->valuestring, "10s");
    CHECK_EQ_STR(cJSON_GetObjectItem(chk, "DeregisterCriticalServiceAfter")->valuestring, "1m5s");
    cJSON_Delete(body);
    cJSON_Delete(last);
    /* A refresh asks the agent whether it still has the service; nothing is passed. */
    CHECK_EQ_INT(reg_sync(loop, r, s, 90000), 0);
    cJSON *log = agent_json(&agent, "/_test/requests");
    char path[512];
    snprintf(path, sizeof(path), "/v1/agent/check/pass/service:%s", id);
    CHECK_EQ_INT(count_requests(log, path), 0);
    CHECK_EQ_INT(count_requests(log, "/v1/agent/service/register"), 1);
    snprintf(path, sizeof(path), "/v1/agent/service/%s", id);
    CHECK_EQ_INT(count_requests(log, path), 1);
    cJSON_Delete(log);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    cm_reg_service_free(s);
    close_registry(loop, r);
}

/* ---- the agent restarts (state wiped): the next refresh registers again ---- */

static void
test_restart(void)
{
    SKIP_IF_REAL(&agent, "agent restart");
    char id[128], path[512];
    new_id("cm.test.restart", id, sizeof(id));
    cm_registry *r = new_registry(loop, agent.addr, NULL, 0);
    cm_reg_service *s = make_svc("cm.test.restart", "1.0.0", id, "127.0.0.1:9090");
    CHECK_EQ_INT(reg_sync(loop, r, s, 30000), 0);
    /* Same content: a refresh is one TTL pass, no register. */
    agent_control(&agent, "/_test/clear");
    CHECK_EQ_INT(reg_sync(loop, r, s, 30000), 0);
    cJSON *log = agent_json(&agent, "/_test/requests");
    snprintf(path, sizeof(path), "/v1/agent/check/pass/service:%s", id);
    CHECK_EQ_INT(cJSON_GetArraySize(log), 1);
    CHECK_EQ_INT(count_requests(log, path), 1);
    cJSON_Delete(log);

    agent_control(&agent, "/_test/restart");
    agent_control(&agent, "/_test/clear");
    CHECK_EQ_INT(reg_sync(loop, r, s, 30000), 0);
    log = agent_json(&agent, "/_test/requests");
    CHECK_EQ_INT(cJSON_GetArraySize(log), 3); /* pass (404), register, pass */
    CHECK_EQ_INT(last_request(log, "PUT", "/v1/agent/service/register"), 1);
    CHECK_EQ_INT(last_request(log, "PUT", path), 2);
    cJSON_Delete(log);
    char *st = check_status(&agent, "cm.test.restart", id);
    CHECK_EQ_STR(st, "passing");
    free(st);

    /* Content changed: a full register. */
    cm_md_set(s->nodes[0].metadata, "extra", "1");
    agent_control(&agent, "/_test/clear");
    CHECK_EQ_INT(reg_sync(loop, r, s, 30000), 0);
    log = agent_json(&agent, "/_test/requests");
    CHECK_EQ_INT(last_request(log, "PUT", "/v1/agent/service/register"), 0);
    cJSON_Delete(log);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    cm_reg_service_free(s);
    close_registry(loop, r);
}

/* ---- the agent is down: a clear error, then success once it is up ---- */

static void
test_agent_down(void)
{
    SKIP_IF_REAL(&agent, "agent down");
    char id[128], addr[64];
    new_id("cm.test.down", id, sizeof(id));
    int port = free_port();
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    cm_registry *r = new_registry(loop, addr, NULL, 2000);
    cm_reg_service *s = make_svc("cm.test.down", "1.0.0", id, "127.0.0.1:9090");
    capture cap;
    capture_start(&cap);
    int rc = reg_sync(loop, r, s, 30000);
    char *log = capture_end(&cap);
    CHECK_EQ_INT(rc, UV_ECONNREFUSED);
    CHECK(strstr(log, "[registry.consul] PUT /v1/agent/service/register: http://127.0.0.1:") !=
          NULL);
    free(log);
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.down", &l), UV_ECONNREFUSED);

    test_agent late;
    agent_spawn(&late, port, NULL);
    CHECK_EQ_INT(reg_sync(loop, r, s, 30000), 0);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.down", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 1);
    cm_reg_service_list_free(l);
    cm_reg_service_free(s);
    close_registry(loop, r);
    agent_stop(&late);
}

/* ---- failover: the next agent, and registering again there (LESSONS 4) ---- */

static void
test_failover(void)
{
    SKIP_IF_REAL(&agent, "failover");
    test_agent b, c;
    agent_spawn(&b, 0, NULL);
    agent_spawn(&c, 0, NULL);
    char addrs[600], id[128];
    snprintf(addrs, sizeof(addrs), "%s, http://%s", b.addr, c.addr);
    new_id("cm.test.failover", id, sizeof(id));
    cm_registry *r = new_registry(loop, addrs, NULL, 2000);
    cm_reg_service *s = make_svc("cm.test.failover", "1.0.0", id, "127.0.0.1:9090");
    CHECK_EQ_INT(reg_sync(loop, r, s, 30000), 0);
    char *st = check_status(&b, "cm.test.failover", id);
    CHECK_EQ_STR(st, "passing");
    free(st);
    st = check_status(&c, "cm.test.failover", id);
    CHECK_EQ_STR(st, "");
    free(st);

    agent_stop(&b);
    /* The refresh's pass cannot reach b: register again, on c, and pass there. */
    CHECK_EQ_INT(reg_sync(loop, r, s, 30000), 0);
    st = check_status(&c, "cm.test.failover", id);
    CHECK_EQ_STR(st, "passing");
    free(st);
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.failover", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 1);
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    st = check_status(&c, "cm.test.failover", id);
    CHECK_EQ_STR(st, "");
    free(st);
    close_registry(loop, r);

    /* A read fails over too, and registrations held by the old agent move with it. */
    int dead = free_port();
    snprintf(addrs, sizeof(addrs), "127.0.0.1:%d,%s", dead, c.addr);
    test_agent d;
    agent_spawn(&d, dead, NULL);
    r = new_registry(loop, addrs, NULL, 2000);
    CHECK_EQ_INT(reg_sync(loop, r, s, 30000), 0);
    st = check_status(&d, "cm.test.failover", id);
    CHECK_EQ_STR(st, "passing");
    free(st);
    agent_stop(&d);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.failover", &l), 0);
    cm_reg_service_list_free(l);
    /* The get moved to c, which starts registering s there in the background. */
    for (int i = 0; i < 100; i++) {
        st = check_status(&c, "cm.test.failover", id);
        int ok = strcmp(st, "passing") == 0;
        free(st);
        if (ok) {
            break;
        }
        run_for(loop, 20);
    }
    st = check_status(&c, "cm.test.failover", id);
    CHECK_EQ_STR(st, "passing");
    free(st);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    cm_reg_service_free(s);
    close_registry(loop, r);
    agent_stop(&c);
}

/* ---- watch: events pushed by blocking queries ---- */

typedef struct event {
    cm_watch_action action;
    cm_reg_service *svc;
} event;

static event events[32];
static int nevents;

static void
on_event(cm_watch_action action, const cm_reg_service *svc, void *user)
{
    (void)user;
    CHECK(!in_call);
    CHECK(nevents < 32);
    events[nevents].action = action;
    events[nevents].svc = cm_reg_service_dup(svc);
    nevents++;
}

static void
clear_events(void)
{
    for (int i = 0; i < nevents; i++) {
        cm_reg_service_free(events[i].svc);
    }
    nevents = 0;
}

/* Runs the loop until n events arrived. */
static void
wait_events(int n)
{
    uint64_t end = cm_now_ms() + 5000;
    while (nevents < n && cm_now_ms() < end) {
        run_for(loop, 20);
    }
    CHECK_EQ_INT(nevents, n);
}

/* Runs the loop until the last event shows want nodes. Registering makes the instance appear
 * with a critical check before its pass: a watch may see the version with no node first (a
 * create with 0 nodes, then an update), as go-micro's watcher does. */
static void
wait_nodes(size_t want)
{
    uint64_t end = cm_now_ms() + 5000;
    while ((nevents == 0 || events[nevents - 1].action == CM_WATCH_DELETE ||
            events[nevents - 1].svc->nnodes != want) &&
           cm_now_ms() < end) {
        run_for(loop, 20);
    }
    CHECK(nevents > 0);
    CHECK_EQ_INT(events[nevents - 1].svc->nnodes, want);
}

static void
test_watch(void)
{
    char id1[128], id2[128];
    new_id("cm.test.watch", id1, sizeof(id1));
    new_id("cm.test.watch", id2, sizeof(id2));
    cm_registry *watching = new_registry(loop, agent.addr, NULL, 0);
    cm_registry *other = new_registry(loop, agent.addr, NULL, 0);
    cm_watcher *w = NULL;
    CHECK_EQ_INT(cm_registry_watch(watching, NULL, on_event, NULL, &w), CM_ENOTSUP);
    in_call = 1;
    CHECK_EQ_INT(cm_registry_watch(watching, "cm.test.watch", on_event, NULL, &w), 0);
    in_call = 0;
    run_for(loop, 300); /* the first reply: nothing there, no event */
    CHECK_EQ_INT(nevents, 0);
    if (!agent.real) {
        agent_control(&agent, "/_test/clear");
    }

    cm_reg_service *s1 = make_svc("cm.test.watch", "1.0.0", id1, "127.0.0.1:9001");
    cm_reg_service *s2 = make_svc("cm.test.watch", "1.0.0", id2, "127.0.0.1:9002");
    CHECK_EQ_INT(reg_sync(loop, other, s1, 30000), 0);
    wait_nodes(1);
    CHECK(nevents <= 2);
    CHECK_EQ_INT(events[0].action, CM_WATCH_CREATE);
    CHECK_EQ_INT(events[nevents - 1].action, nevents == 1 ? CM_WATCH_CREATE : CM_WATCH_UPDATE);
    const cm_reg_service *ev = events[nevents - 1].svc;
    CHECK_EQ_STR(ev->name, "cm.test.watch");
    CHECK_EQ_STR(ev->version, "1.0.0");
    CHECK_EQ_STR(ev->nodes[0].id, id1);
    CHECK_EQ_STR(ev->nodes[0].address, "127.0.0.1:9001");
    CHECK_EQ_STR(cm_md_get(ev->nodes[0].metadata, "protocol"), "mucp");
    CHECK_EQ_INT(ev->nendpoints, 2);
    if (!agent.real) {
        /* Pushed, not polled: a handful of blocking queries, not a query per gap. */
        run_for(loop, 400);
        cJSON *log = agent_json(&agent, "/_test/requests?prefix=/v1/health/service/cm.test.watch");
        int n = cJSON_GetArraySize(log);
        CHECK(n >= 1 && n <= 4);
        const cJSON *q = cJSON_GetObjectItem(cJSON_GetArrayItem(log, 0), "query");
        CHECK(strstr(q->valuestring, "index=") != NULL);
        CHECK(strstr(q->valuestring, "wait=1m0s") != NULL);
        CHECK(strstr(q->valuestring, "stale") != NULL);
        cJSON_Delete(log);
    }
    clear_events();

    CHECK_EQ_INT(reg_sync(loop, other, s2, 30000), 0);
    wait_events(1);
    CHECK_EQ_INT(events[0].action, CM_WATCH_UPDATE);
    CHECK_EQ_INT(events[0].svc->nnodes, 2);
    clear_events();

    CHECK_EQ_INT(dereg_sync(loop, other, s1), 0);
    wait_events(2);
    CHECK_EQ_INT(events[0].action, CM_WATCH_DELETE);
    CHECK_EQ_INT(events[0].svc->nnodes, 1);
    CHECK_EQ_STR(events[0].svc->nodes[0].id, id1);
    CHECK_EQ_INT(events[1].action, CM_WATCH_UPDATE);
    CHECK_EQ_INT(events[1].svc->nnodes, 1);
    CHECK_EQ_STR(events[1].svc->nodes[0].id, id2);
    clear_events();

    CHECK_EQ_INT(dereg_sync(loop, other, s2), 0);
    wait_events(1);
    CHECK_EQ_INT(events[0].action, CM_WATCH_DELETE);
    CHECK_EQ_STR(events[0].svc->nodes[0].id, id2);
    clear_events();

    if (!agent.real) {
        /* The agent restarts while a blocking query waits: its index goes backwards; the
         * watch starts over and goes on. */
        run_for(loop, 400);
        agent_control(&agent, "/_test/restart");
        run_for(loop, 400);
        CHECK_EQ_INT(reg_sync(loop, other, s1, 30000), 0);
        wait_nodes(1);
        CHECK_EQ_INT(events[0].action, CM_WATCH_CREATE);
        clear_events();
        CHECK_EQ_INT(dereg_sync(loop, other, s1), 0);
        wait_events(1);
        clear_events();
    }

    cm_watcher_stop(w);
    CHECK_EQ_INT(reg_sync(loop, other, s1, 30000), 0);
    run_for(loop, 300);
    CHECK_EQ_INT(nevents, 0); /* nothing after stop */
    CHECK_EQ_INT(dereg_sync(loop, other, s1), 0);

    /* A watcher still running when its registry closes. */
    CHECK_EQ_INT(cm_registry_watch(watching, "cm.test.watch", on_event, NULL, &w), 0);
    run_for(loop, 100);
    cm_reg_service_free(s1);
    cm_reg_service_free(s2);
    close_registry(loop, other);
    close_registry(loop, watching);
    clear_events();
}

/* ---- ACL token ---- */

static void
test_acl(void)
{
    SKIP_IF_REAL(&agent, "ACL");
    const char *args[] = {"--token", "s3cret", NULL};
    test_agent a;
    agent_spawn(&a, 0, args);
    char id[128];
    new_id("cm.test.acl", id, sizeof(id));
    cm_reg_service *s = make_svc("cm.test.acl", "1.0.0", id, "127.0.0.1:9090");

    cm_registry *r = new_registry(loop, a.addr, "s3cret", 0);
    CHECK_EQ_INT(reg_sync(loop, r, s, 30000), 0);
    char *body = NULL;
    CHECK_EQ_INT(agent_http(&a, "GET", "/_test/last?path=/v1/agent/service/register", NULL, &body),
                 200);
    cJSON *last = cJSON_Parse(body);
    free(body);
    const cJSON *hdrs = cJSON_GetObjectItem(last, "headers");
    CHECK_EQ_STR(cJSON_GetObjectItem(hdrs, "x-consul-token")->valuestring, "s3cret");
    cJSON_Delete(last);
    close_registry(loop, r);

    /* From the environment: CONSUL_HTTP_TOKEN, and CONSUL_HTTP_TOKEN_FILE which wins. */
    setenv("CONSUL_HTTP_TOKEN", "s3cret", 1);
    r = new_registry(loop, a.addr, NULL, 0);
    cm_reg_service_list *l = NULL;
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.acl", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 1);
    cm_reg_service_list_free(l);
    close_registry(loop, r);
    char path[] = "/tmp/cm-consul-token-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "  s3cret\n", 9) == 9);
    close(fd);
    setenv("CONSUL_HTTP_TOKEN", "wrong", 1);
    setenv("CONSUL_HTTP_TOKEN_FILE", path, 1);
    r = new_registry(loop, a.addr, NULL, 0);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.acl", &l), 0);
    cm_reg_service_list_free(l);
    close_registry(loop, r);
    unsetenv("CONSUL_HTTP_TOKEN_FILE");
    unlink(path);

    /* A wrong token: 403, CM_EREGISTRY, the status and the agent's words on stderr. */
    unsetenv("CONSUL_HTTP_TOKEN");
    r = new_registry(loop, a.addr, "nope", 0);
    capture cap;
    capture_start(&cap);
    int rc = reg_sync(loop, r, s, 30000);
    int rc2 = get_sync(loop, r, "cm.test.acl", &l);
    char *log = capture_end(&cap);
    CHECK_EQ_INT(rc, CM_EREGISTRY);
    CHECK_EQ_INT(rc2, CM_EREGISTRY);
    CHECK(strstr(log, "[registry.consul] PUT /v1/agent/service/register: 403 ACL not found\n") !=
          NULL);
    CHECK(strstr(log, "[registry.consul] GET /v1/health/service/cm.test.acl: 403 ") != NULL);
    free(log);
    close_registry(loop, r);
    /* No token at all. */
    r = new_registry(loop, a.addr, NULL, 0);
    capture_start(&cap);
    rc = dereg_sync(loop, r, s);
    log = capture_end(&cap);
    CHECK_EQ_INT(rc, CM_EREGISTRY);
    CHECK(strstr(log, ": 403 Permission denied") != NULL);
    free(log);
    close_registry(loop, r);
    cm_reg_service_free(s);
    agent_stop(&a);
}

/* ---- HTTPS: CONSUL_CACERT, CONSUL_HTTP_SSL[_VERIFY], CONSUL_CLIENT_CERT/KEY ---- */

/* Makes a self-signed certificate for 127.0.0.1 in dir/<name>.{pem,key}. */
static int
make_cert(const char *dir, const char *name)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout %s/%s.key -out %s/%s.pem "
             ">/dev/null 2>&1",
             dir, name, dir, name);
    return system(cmd);
}

/* get_service through a registry made with the current environment. */
static int
get_with_env(const char *addresses)
{
    cm_registry *r = new_registry(loop, addresses, NULL, 5000);
    cm_reg_service_list *l = NULL;
    int rc = get_sync(loop, r, "cm.test.tls", &l);
    cm_reg_service_list_free(l);
    close_registry(loop, r);
    return rc;
}

static void
test_tls(void)
{
    SKIP_IF_REAL(&agent, "HTTPS");
    char dir[] = "/tmp/cm-consul-tls-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    if (make_cert(dir, "server") != 0 || make_cert(dir, "client") != 0) {
        printf("SKIP: HTTPS (no openssl to make certificates)\n");
        return;
    }
    char cert[300], key[300], ca[300], ccert[300], ckey[300], url[300];
    snprintf(cert, sizeof(cert), "%s/server.pem", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(ccert, sizeof(ccert), "%s/client.pem", dir);
    snprintf(ckey, sizeof(ckey), "%s/client.key", dir);
    snprintf(ca, sizeof(ca), "%s", cert);
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    test_agent a;
    agent_spawn(&a, 0, args);
    snprintf(url, sizeof(url), "https://%s", a.addr);

    setenv("CONSUL_CACERT", ca, 1);
    CHECK_EQ_INT(get_with_env(url), 0);
    /* CONSUL_HTTP_SSL makes https the scheme of addresses without one. */
    setenv("CONSUL_HTTP_SSL", "true", 1);
    CHECK_EQ_INT(get_with_env(a.addr), 0);
    unsetenv("CONSUL_HTTP_SSL");
    unsetenv("CONSUL_CACERT");
    /* An unknown CA: refused, and said so. */
    capture cap;
    capture_start(&cap);
    int rc = get_with_env(url);
    char *log = capture_end(&cap);
    CHECK_EQ_INT(rc, CM_EREGISTRY);
    CHECK(strstr(log, "[registry.consul] GET /v1/health/service/cm.test.tls: https://") != NULL);
    CHECK(strstr(log, "certificate") != NULL);
    free(log);
    /* Verification off. */
    setenv("CONSUL_HTTP_SSL_VERIFY", "false", 1);
    CHECK_EQ_INT(get_with_env(url), 0);
    unsetenv("CONSUL_HTTP_SSL_VERIFY");
    agent_stop(&a);

    /* verify_incoming: a client certificate is required. */
    const char *margs[] = {"--tls-cert", cert, "--tls-key", key, "--tls-ca", ccert, NULL};
    agent_spawn(&a, 0, margs);
    snprintf(url, sizeof(url), "https://%s", a.addr);
    setenv("CONSUL_CACERT", ca, 1);
    capture_start(&cap);
    rc = get_with_env(url);
    log = capture_end(&cap);
    free(log);
    CHECK(rc < 0);
    setenv("CONSUL_CLIENT_CERT", ccert, 1);
    setenv("CONSUL_CLIENT_KEY", ckey, 1);
    CHECK_EQ_INT(get_with_env(url), 0);
    unsetenv("CONSUL_CLIENT_CERT");
    unsetenv("CONSUL_CLIENT_KEY");
    unsetenv("CONSUL_CACERT");
    agent_stop(&a);
    const char *files[] = {cert, key, ccert, ckey};
    for (int i = 0; i < 4; i++) {
        unlink(files[i]);
    }
    rmdir(dir);
}

/* ---- a slow agent does not block the loop; timeouts; agent errors ---- */

typedef struct ticker {
    uv_timer_t t;
    uint64_t last;
    uint64_t max_gap;
    int ticks;
} ticker;

static void
on_tick(uv_timer_t *t)
{
    ticker *k = (ticker *)t;
    uint64_t now = cm_now_ms();
    if (k->last != 0 && now - k->last > k->max_gap) {
        k->max_gap = now - k->last;
    }
    k->last = now;
    k->ticks++;
}

static void
test_slow_agent(void)
{
    SKIP_IF_REAL(&agent, "slow agent");
    char id[128];
    new_id("cm.test.slow", id, sizeof(id));
    cm_registry *r = new_registry(loop, agent.addr, NULL, 0);
    cm_reg_service *s = make_svc("cm.test.slow", "1.0.0", id, "127.0.0.1:9090");
    agent_control(&agent, "/_test/delay?ms=2000");
    ticker k = {0};
    uv_timer_init(cm_loop_uv(loop), &k.t);
    uv_timer_start(&k.t, on_tick, 10, 10);
    uint64_t t0 = cm_now_ms();
    result res = {0};
    in_call = 1;
    CHECK_EQ_INT(cm_registry_register_service(r, s, 30000, on_status, &res), 0);
    in_call = 0;
    CHECK(run_until(loop, &res.done, 10000));
    uint64_t took = cm_now_ms() - t0;
    uv_close((uv_handle_t *)&k.t, NULL);
    CHECK_EQ_INT(res.status, 0);
    CHECK(took >= 3900); /* register + pass, 2 s each */
    printf("slow agent: %llu ms, %d ticks, largest gap %llu ms\n", (unsigned long long)took,
           k.ticks, (unsigned long long)k.max_gap);
    CHECK(k.max_gap < 100);
    CHECK(k.ticks >= (int)(took / 10) / 2);
    close_registry(loop, r);

    /* opts.timeout_ms bounds a request: CM_ETIMEDOUT. */
    r = new_registry(loop, agent.addr, NULL, 500);
    cm_reg_service_list *l = NULL;
    capture cap;
    capture_start(&cap);
    t0 = cm_now_ms();
    int rc = get_sync(loop, r, "cm.test.slow", &l);
    took = cm_now_ms() - t0;
    char *log = capture_end(&cap);
    CHECK_EQ_INT(rc, CM_ETIMEDOUT);
    CHECK(took < 1500);
    CHECK(strstr(log, "[registry.consul] GET /v1/health/service/cm.test.slow: ") != NULL);
    free(log);

    /* Closing cancels what is in flight: CM_ECANCELED, after the close call. */
    result pending = {0};
    CHECK_EQ_INT(cm_registry_get_service(r, "cm.test.slow", on_list, &pending), 0);
    run_for(loop, 50);
    int done = 0;
    cm_registry_close(r, closed_cb, &done);
    CHECK(!pending.done);
    CHECK(run_until(loop, &done, 5000));
    CHECK(pending.done);
    CHECK_EQ_INT(pending.status, CM_ECANCELED);
    agent_control(&agent, "/_test/delay?ms=0");

    r = new_registry(loop, agent.addr, NULL, 0);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    cm_reg_service_free(s);
    close_registry(loop, r);
}

static void
test_agent_errors(void)
{
    SKIP_IF_REAL(&agent, "agent errors");
    char id[128];
    new_id("cm.test.err", id, sizeof(id));
    cm_registry *r = new_registry(loop, agent.addr, NULL, 0);
    cm_reg_service *s = make_svc("cm.test.err", "1.0.0", id, "127.0.0.1:9090");
    cm_reg_service_list *l = NULL;
    capture cap;
    capture_start(&cap);
    agent_control(&agent, "/_test/fail?status=500&count=1&prefix=/v1/health/service&body=No+"
                          "cluster+leader");
    int rc1 = get_sync(loop, r, "cm.test.err", &l);
    agent_control(&agent, "/_test/fail?status=429&count=1&prefix=/v1/agent/service/register"
                          "&body=rate+limit+exceeded");
    int rc2 = reg_sync(loop, r, s, 30000);
    agent_control(&agent, "/_test/fail?status=200&count=1&prefix=/v1/catalog/services"
                          "&body=not+json");
    int rc3 = get_sync(loop, r, NULL, &l);
    char *log = capture_end(&cap);
    CHECK_EQ_INT(rc1, CM_EREGISTRY);
    CHECK_EQ_INT(rc2, CM_EREGISTRY);
    CHECK_EQ_INT(rc3, CM_EPROTO);
    CHECK(strstr(log, "[registry.consul] GET /v1/health/service/cm.test.err: 500 No cluster "
                      "leader\n") != NULL);
    CHECK(strstr(log, "[registry.consul] PUT /v1/agent/service/register: 429 rate limit "
                      "exceeded\n") != NULL);
    free(log);
    /* A bad address is refused at once. */
    cm_reg_service *bad = make_svc("cm.test.err", "1.0.0", id, "127.0.0.1:http");
    CHECK_EQ_INT(cm_registry_register_service(r, bad, 30000, NULL, NULL), CM_EADDR);
    cm_reg_service_free(bad);
    /* A metadata value too long for Meta is left out of it; registration succeeds. */
    char big[600];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cm_md_set(s->nodes[0].metadata, "big", big);
    CHECK_EQ_INT(reg_sync(loop, r, s, 30000), 0);
    CHECK_EQ_INT(get_sync(loop, r, "cm.test.err", &l), 0);
    CHECK_EQ_INT(count_nodes(l), 1);
    CHECK_EQ_INT(strlen(cm_md_get(l->items[0]->nodes[0].metadata, "big")), 599);
    cm_reg_service_list_free(l);
    CHECK_EQ_INT(dereg_sync(loop, r, s), 0);
    cm_reg_service_free(s);
    close_registry(loop, r);
}

int
main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    agent_start(&agent, 1, NULL);
    printf("agent: %s%s\n", agent.addr, agent.real ? " (real, CONSUL_HTTP_ADDR)" : "");
    RUN(test_register_body);
    RUN(test_get_service);
    RUN(test_ttl_lapse);
    RUN(test_tcp_check);
    RUN(test_restart);
    RUN(test_agent_down);
    RUN(test_failover);
    RUN(test_watch);
    RUN(test_acl);
    RUN(test_tls);
    RUN(test_slow_agent);
    RUN(test_agent_errors);
    agent_stop(&agent);
    cm_loop_free(loop);
    curl_global_cleanup();
    TEST_DONE();
}
