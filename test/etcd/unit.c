/* The etcd backend's pure parts: go-micro's plugin's key paths (path.Join of the names with '/'
 * turned into '-'), base64 both ways, range ends, the stored value's Go escaping, and numbers. */
#include "etcd_int.h"
#include "test.h"

static void
check_path(const char *svc, const char *node, const char *want)
{
    char *p = node != NULL ? cm__etcd_node_path(svc, node) : cm__etcd_service_path(svc);
    CHECK_EQ_STR(p, want);
    free(p);
}

static void
test_paths(void)
{
    check_path("greeter", "greeter-1", "/micro/registry/greeter/greeter-1");
    check_path("a/b", "c/d/e", "/micro/registry/a-b/c-d-e");
    check_path("greeter", NULL, "/micro/registry/greeter");
    /* Go's path.Join: empty and "." elements vanish, ".." climbs. */
    check_path("", "n1", "/micro/registry/n1");
    check_path(".", "n1", "/micro/registry/n1");
    check_path("svc", "..", "/micro/registry");
    char *end = cm__etcd_prefix_end("/micro/registry/");
    CHECK_EQ_STR(end, "/micro/registry0");
    free(end);
}

static void
b64_round(const char *in, const char *want)
{
    cm_buf b = {0};
    CHECK_EQ_INT(cm__etcd_b64_encode(&b, in, strlen(in)), 0);
    CHECK_EQ_INT(cm_buf_append(&b, "", 1), 0);
    CHECK_EQ_STR((char *)b.data, want);
    size_t n = 0;
    char *back = cm__etcd_b64_decode((char *)b.data, &n);
    CHECK_EQ_STR(back, in);
    CHECK_EQ_INT(n, strlen(in));
    free(back);
    cm_buf_free(&b);
}

static void
test_base64(void)
{
    b64_round("", "");
    b64_round("f", "Zg==");
    b64_round("fo", "Zm8=");
    b64_round("foo", "Zm9v");
    b64_round("/micro/registry/a/b", "L21pY3JvL3JlZ2lzdHJ5L2EvYg==");
    size_t n = 0;
    CHECK(cm__etcd_b64_decode("Zm9", &n) == NULL);
    CHECK(cm__etcd_b64_decode("Z=9v", &n) == NULL);
    CHECK(cm__etcd_b64_decode("Zm9*", &n) == NULL);
}

static void
test_value(void)
{
    cm_reg_service *s = cm_reg_service_new("x", "1");
    cm_md *md = cm_md_new();
    cm_md_set(md, "z", "<\xe2\x80\xa8&>");
    cm_md_set(md, "a", "1");
    CHECK(cm_reg_service_add_node(s, "x-1", "127.0.0.1:1", md) != NULL);
    CHECK(cm_reg_service_add_node(s, "x-2", "127.0.0.1:2", NULL) != NULL);
    char *v = cm__etcd_encode_node(s, 1);
    CHECK_EQ_STR(v, "{\"name\":\"x\",\"version\":\"1\",\"metadata\":null,\"endpoints\":null,"
                    "\"nodes\":[{\"id\":\"x-2\",\"address\":\"127.0.0.1:2\",\"metadata\":{}}]}");
    free(v);
    v = cm__etcd_encode_node(s, 0);
    CHECK_EQ_STR(v, "{\"name\":\"x\",\"version\":\"1\",\"metadata\":null,\"endpoints\":null,"
                    "\"nodes\":[{\"id\":\"x-1\",\"address\":\"127.0.0.1:1\",\"metadata\":{\"a\":"
                    "\"1\",\"z\":\"\\u003c\\u2028\\u0026\\u003e\"}}]}");
    /* And back, through base64 as the gateway carries it. */
    cm_buf b = {0};
    CHECK_EQ_INT(cm__etcd_b64_encode(&b, v, strlen(v)), 0);
    CHECK_EQ_INT(cm_buf_append(&b, "", 1), 0);
    cm_reg_service *d = cm__etcd_decode_value((char *)b.data);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->nnodes, 1);
    CHECK_EQ_STR(cm_md_get(d->nodes[0].metadata, "z"), "<\xe2\x80\xa8&>");
    cm_reg_service_free(d);
    CHECK(cm__etcd_decode_value("bm90IGpzb24=") == NULL); /* "not json": skipped */
    cm_buf_free(&b);
    free(v);
    cm_md_free(md);
    cm_reg_service_free(s);
}

/* Numbers from etcd (revisions, lease ids) as JSON numbers or strings; hostile ones are none. */
static void
test_int(void)
{
    const char *cases[][2] = {
        {"{\"a\":\"42\"}", "42"},
        {"{\"a\":7}", "7"},
        {"{\"a\":1e300}", "0"},
        {"{\"a\":-5}", "0"},
        {"{\"a\":\"9223372036854775807\"}", "0"},
        {"{\"a\":\"99999999999999999999\"}", "0"},
        {"{\"a\":\"-3\"}", "0"},
        {"{\"a\":true}", "0"},
        {"{}", "0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *o = cJSON_Parse(cases[i][0]);
        char got[32];
        snprintf(got, sizeof(got), "%lld", (long long)cm__etcd_int(o, "a"));
        CHECK_EQ_STR(got, cases[i][1]);
        cJSON_Delete(o);
    }
}

int
main(void)
{
    RUN(test_paths);
    RUN(test_base64);
    RUN(test_value);
    RUN(test_int);
    TEST_DONE();
}
