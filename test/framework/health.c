/* The service's health answers on its own listener: /health, /health/live and /health/ready in
 * go-micro's health shape, turning 503 when a user check fails or the registry loses the node
 * and 200 again after; 404 for any other GET; odd paths and methods answered without harm. */
#include "test.h"
#include <uv.h>

#include <cJSON.h>
#include <cmicro/cmicro.h>
#include <curl/curl.h>
#include <stdatomic.h>
#include <unistd.h>

typedef struct runner {
    cm_service *svc;
    uv_thread_t thread;
    int rc;
} runner;

static void
run_main(void *arg)
{
    runner *r = arg;
    r->rc = cm_service_run(r->svc);
}

static atomic_int check_fails;
static atomic_int check_runs;
static atomic_int refreshes;

/* The service's RegisterCheck: runs just before each registration refresh. */
static int
count_refresh(void *user)
{
    (void)user;
    atomic_fetch_add(&refreshes, 1);
    return 0;
}

static int
db_check(void *user, char *why, size_t whylen)
{
    (void)user;
    atomic_fetch_add(&check_runs, 1);
    if (atomic_load(&check_fails)) {
        snprintf(why, whylen, "database unreachable");
        return -1;
    }
    return 0;
}

/* Hold.Wait: a call that holds its call slot while hold is set (at most 5 s). */
static atomic_int hold;
static atomic_int held_done;

static int
hold_wait(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)rsp;
    (void)user;
    for (int i = 0; i < 500 && atomic_load(&hold); i++) {
        usleep(10 * 1000);
    }
    return 0;
}

static void
on_held(int status, void *rsp, const cm_error *err, void *user)
{
    (void)err;
    (void)user;
    CHECK_EQ_INT(status, 0);
    cm_message_free(NULL, rsp);
    atomic_fetch_add(&held_done, 1);
}

/* ---- a plain HTTP client ---- */

typedef struct reply {
    long status;
    char body[8192];
    size_t len;
    char ctype[128];
} reply;

static size_t
on_body(char *p, size_t size, size_t n, void *user)
{
    reply *r = user;
    size_t k = size * n;
    size_t room = sizeof(r->body) - 1 - r->len;
    memcpy(r->body + r->len, p, k < room ? k : room);
    r->len += k < room ? k : room;
    r->body[r->len] = '\0';
    return k;
}

static void
request(const char *addr, const char *method, const char *path, reply *r)
{
    memset(r, 0, sizeof(*r));
    char url[512];
    snprintf(url, sizeof(url), "http://%s%s", addr, path);
    CURL *e = curl_easy_init();
    CHECK(e != NULL);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    CHECK_EQ_INT(curl_easy_perform(e), CURLE_OK);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
    curl_easy_cleanup(e);
}

/* The check named name in a health answer, or NULL. */
static const cJSON *
find_check(const cJSON *root, const char *name)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "checks"))
    {
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "name")), name) == 0) {
            return c;
        }
    }
    return NULL;
}

static const char *
str_of(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
}

/* GETs path until its status is want (up to max_ms); returns the last answer's status. */
static long
wait_status(const char *addr, const char *path, long want, int max_ms, reply *r)
{
    for (int waited = 0; waited <= max_ms; waited += 50) {
        request(addr, "GET", path, r);
        if (r->status == want) {
            break;
        }
        usleep(50 * 1000);
    }
    return r->status;
}

/* ---- the registry, seen from outside the service ---- */

typedef struct ext {
    cm_loop *loop;
    cm_registry *reg;
    cm_reg_service *svc;
    atomic_int done;
} ext;

static void
on_dereg(int status, void *user)
{
    CHECK_EQ_INT(status, 0);
    atomic_store(&((ext *)user)->done, 1);
}

static void
do_dereg(void *arg)
{
    ext *x = arg;
    CHECK_EQ_INT(cm_registry_deregister_service(x->reg, x->svc, on_dereg, x), 0);
}

static void
close_reg(void *arg)
{
    cm_registry_close(arg, NULL, NULL);
}

/* Takes the service's node out of the memory registry behind its back. */
static void
lose_registration(cm_service *svc)
{
    ext x;
    memset(&x, 0, sizeof x);
    CHECK_EQ_INT(cm_loop_new(&x.loop), 0);
    CHECK_EQ_INT(cm_registry_new(x.loop, "memory", NULL, &x.reg), 0);
    x.svc = cm_reg_service_new(cm_service_name(svc), cm_service_version(svc));
    CHECK(x.svc != NULL);
    CHECK(cm_reg_service_add_node(x.svc, cm_service_node_id(svc), cm_service_advertised(svc),
                                  NULL) != NULL);
    CHECK_EQ_INT(cm_loop_start(x.loop), 0);
    CHECK_EQ_INT(cm_loop_post(x.loop, do_dereg, &x), 0);
    for (int i = 0; i < 200 && !atomic_load(&x.done); i++) {
        usleep(10 * 1000);
    }
    CHECK(atomic_load(&x.done));
    cm_loop_post(x.loop, close_reg, x.reg);
    cm_loop_stop(x.loop);
    cm_loop_free(x.loop);
    cm_reg_service_free(x.svc);
}

/* ---- tests ---- */

static void
check_shape(const char *body, const char *status)
{
    cJSON *root = cJSON_Parse(body);
    CHECK(root != NULL);
    CHECK_EQ_STR(str_of(root, "status"), status);
    const cJSON *srv = find_check(root, "server");
    const cJSON *reg = find_check(root, "registry");
    const cJSON *db = find_check(root, "database");
    CHECK(srv != NULL && reg != NULL && db != NULL);
    CHECK_EQ_STR(str_of(srv, "status"), "up");
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(db, "duration")));
    const cJSON *info = cJSON_GetObjectItem(root, "info");
    CHECK_EQ_STR(str_of(info, "name"), "health.test");
    CHECK_EQ_STR(str_of(info, "version"), "1.2.3");
    CHECK_EQ_STR(str_of(info, "registry"), "memory");
    CHECK(strncmp(str_of(info, "id"), "health.test-", 12) == 0);
    cJSON_Delete(root);
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    setenv("CMICRO_QUIET", "1", 1);
    setenv("MICRO_SERVER_MAX_CALLS", "2", 1);
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "health.test";
    o.version = "1.2.3";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.register_ttl_ms = 20000;
    o.register_interval_ms = 5000; /* a lost registration comes back within 5 s */
    o.register_check = count_refresh;
    o.drain_timeout_ms = 2000;
    o.deregister_wait_ms = 10;
    runner r = {0};
    CHECK_EQ_INT(cm_service_new(&o, &r.svc), 0);
    CHECK_EQ_INT(cm_service_add_health_check(r.svc, "database", db_check, NULL), 0);
    CHECK_EQ_INT(cm_service_add_health_check(r.svc, "", db_check, NULL), CM_EINVAL);
    cm_handler h = {"Hold.Wait", NULL, NULL, hold_wait, 0, NULL, NULL, NULL};
    CHECK_EQ_INT(cm_server_handle(cm_service_server(r.svc), &h, NULL), 0);
    CHECK_EQ_INT(uv_thread_create(&r.thread, run_main, &r), 0);
    const char *addr = NULL;
    for (int i = 0; i < 200 && (addr = cm_server_address(cm_service_server(r.svc))) == NULL; i++) {
        usleep(10 * 1000);
    }
    CHECK(addr != NULL);
    char a[128];
    snprintf(a, sizeof a, "%s", addr);
    reply rep;

    fprintf(stderr, "-- ready once registered, in go-micro's shape\n");
    CHECK_EQ_INT(wait_status(a, "/health/ready", 200, 3000, &rep), 200);
    CHECK_EQ_STR(rep.ctype, "application/json");
    check_shape(rep.body, "up");
    request(a, "GET", "/health", &rep);
    CHECK_EQ_INT(rep.status, 200);
    check_shape(rep.body, "up");
    request(a, "GET", "/health/live", &rep);
    CHECK_EQ_INT(rep.status, 200);
    CHECK_EQ_STR(rep.body, "{\"status\":\"up\"}\n");
    request(a, "GET", "/health/ready?verbose=1", &rep);
    CHECK_EQ_INT(rep.status, 200);

    fprintf(stderr, "-- a failing user check turns it down, and up again\n");
    atomic_store(&check_fails, 1);
    request(a, "GET", "/health/ready", &rep);
    CHECK_EQ_INT(rep.status, 503);
    cJSON *root = cJSON_Parse(rep.body);
    CHECK(root != NULL);
    CHECK_EQ_STR(str_of(root, "status"), "down");
    CHECK_EQ_STR(str_of(find_check(root, "database"), "status"), "down");
    CHECK_EQ_STR(str_of(find_check(root, "database"), "error"), "database unreachable");
    CHECK_EQ_STR(str_of(find_check(root, "registry"), "status"), "up");
    cJSON_Delete(root);
    request(a, "GET", "/health/live", &rep);
    CHECK_EQ_INT(rep.status, 200); /* alive all the same */
    atomic_store(&check_fails, 0);
    request(a, "GET", "/health", &rep);
    CHECK_EQ_INT(rep.status, 200);
    CHECK(atomic_load(&check_runs) >= 5);

    fprintf(stderr, "-- the registry loses the node: down, then up after the next refresh\n");
    /* Right after a refresh, so that the next one is a whole interval away. */
    int seen = atomic_load(&refreshes);
    for (int i = 0; i < 700 && atomic_load(&refreshes) == seen; i++) {
        usleep(10 * 1000);
    }
    CHECK(atomic_load(&refreshes) > seen);
    usleep(100 * 1000); /* the refresh's own register lands */
    lose_registration(r.svc);
    CHECK_EQ_INT(wait_status(a, "/health/ready", 503, 3000, &rep), 503);
    root = cJSON_Parse(rep.body);
    CHECK(root != NULL);
    CHECK_EQ_STR(str_of(find_check(root, "registry"), "status"), "down");
    CHECK(strstr(str_of(find_check(root, "registry"), "error"), "not in registry memory") != NULL);
    cJSON_Delete(root);
    CHECK_EQ_INT(wait_status(a, "/health/ready", 200, 8000, &rep), 200);

    fprintf(stderr, "-- every call slot taken (and a call waiting): GETs answered meanwhile\n");
    atomic_store(&hold, 1);
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = a;
    co.content_type = CM_CT_BYTES;
    co.timeout_ms = 10000;
    ProtobufCBinaryData in = {1, (uint8_t *)"x"};
    for (int i = 0; i < 3; i++) { /* MICRO_SERVER_MAX_CALLS is 2 */
        CHECK_EQ_INT(cm_client_call_async(cm_service_client(r.svc), "health.test", "Hold.Wait",
                                          NULL, &in, NULL, &co, on_held, NULL),
                     0);
    }
    usleep(200 * 1000);
    const char *gets[] = {"/health/live", "/health/ready", "/metrics"};
    for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
        request(a, "GET", gets[i], &rep);
        CHECK_EQ_INT(rep.status, 200);
    }
    CHECK_EQ_INT(atomic_load(&held_done), 0); /* the slots were still taken */
    atomic_store(&hold, 0);
    for (int i = 0; i < 500 && atomic_load(&held_done) < 3; i++) {
        usleep(10 * 1000);
    }
    CHECK_EQ_INT(atomic_load(&held_done), 3);

    fprintf(stderr, "-- other GETs: 404; odd paths answered\n");
    const char *odd[] = {"/",    "/healthz", "/health/",   "/health/ready/x",
                         "/%00", "/..%2f..", "/health%20", "/?a=\"<>\""};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        request(a, "GET", odd[i], &rep);
        CHECK_EQ_INT(rep.status, 404);
    }
    char longpath[3000] = "/health/";
    memset(longpath + 8, 'x', sizeof(longpath) - 9);
    longpath[sizeof(longpath) - 1] = '\0';
    request(a, "GET", longpath, &rep);
    CHECK_EQ_INT(rep.status, 404);
    /* Other methods stay go-micro calls: no endpoint, a go-micro error. */
    request(a, "DELETE", "/health", &rep);
    CHECK_EQ_INT(rep.status, 200);

    fprintf(stderr, "-- stop\n");
    cm_service_stop(r.svc);
    uv_thread_join(&r.thread);
    CHECK_EQ_INT(r.rc, 0);
    cm_service_free(r.svc);
    curl_global_cleanup();
    TEST_DONE();
}
