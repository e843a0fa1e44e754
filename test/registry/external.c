/* A registry backend written outside the library, registered with cm_registry_register() and
 * picked by name through MICRO_REGISTRY: a service registers through it and a client calls that
 * service by name through it. The backend fails its first registrations, so the test also sees
 * the log facade's rule for background failures: one warning per change of state, the retries at
 * debug. Only public headers are used, as an application would. */
#include "rpctest.pb-c.h"
#include "test.h"

#include <cmicro/cmicro.h>
#include <stdatomic.h>
#include <uv.h>

/* ---- the backend: one process-wide table of services, a callback posted per operation ---- */

#define EXT_MAX 8

static uv_mutex_t ext_mu;
static cm_reg_service *ext_services[EXT_MAX];
static atomic_int ext_fail_left; /* registrations still to refuse */
static atomic_int ext_registers, ext_deregisters;
static char ext_seen_registry_md[32], ext_seen_transport_md[32];

typedef struct ext_reply {
    cm_registry_cb cb;
    cm_registry_list_cb list_cb;
    void *user;
    int status;
    cm_reg_service_list *list;
} ext_reply;

static void
ext_deliver(void *arg)
{
    ext_reply *r = arg;
    if (r->list_cb != NULL) {
        r->list_cb(r->status, r->status == 0 ? r->list : NULL, r->user);
        cm_reg_service_list_free(r->list);
    } else if (r->cb != NULL) {
        r->cb(r->status, r->user);
    }
    free(r);
}

/* Calls back later on r's loop, never from inside the call (the async contract). */
static int
ext_post(cm_registry *reg, ext_reply *r)
{
    int rc = cm_loop_post(cm_registry_loop(reg), ext_deliver, r);
    if (rc < 0) {
        cm_reg_service_list_free(r->list);
        free(r);
    }
    return rc;
}

static int
ext_init(cm_registry *r)
{
    /* The backend's option, read through the public accessor. */
    const char *mode = cm_registry_option(r, "mode");
    return mode == NULL || strcmp(mode, "ok") == 0 ? 0 : CM_EINVAL;
}

static void
ext_close(cm_registry *r)
{
    cm_registry_closed(r);
}

static int
ext_reg(cm_registry *reg, const cm_reg_service *svc, uint64_t ttl_ms, cm_registry_cb cb, void *user)
{
    (void)ttl_ms;
    ext_reply *r = calloc(1, sizeof(*r));
    CHECK(r != NULL);
    r->cb = cb;
    r->user = user;
    atomic_fetch_add(&ext_registers, 1);
    if (atomic_load(&ext_fail_left) > 0) {
        atomic_fetch_sub(&ext_fail_left, 1);
        r->status = CM_EREGISTRY;
        return ext_post(reg, r);
    }
    uv_mutex_lock(&ext_mu);
    int slot = -1;
    for (int i = 0; i < EXT_MAX; i++) {
        if (ext_services[i] != NULL &&
            strcmp(ext_services[i]->nodes[0].id, svc->nodes[0].id) == 0) {
            slot = i;
        } else if (ext_services[i] == NULL && slot < 0) {
            slot = i;
        }
    }
    CHECK(slot >= 0);
    cm_reg_service_free(ext_services[slot]);
    ext_services[slot] = cm_reg_service_dup(svc);
    const char *v = cm_md_get(svc->nodes[0].metadata, "registry");
    snprintf(ext_seen_registry_md, sizeof ext_seen_registry_md, "%s", v ? v : "");
    v = cm_md_get(svc->nodes[0].metadata, "transport");
    snprintf(ext_seen_transport_md, sizeof ext_seen_transport_md, "%s", v ? v : "");
    uv_mutex_unlock(&ext_mu);
    return ext_post(reg, r);
}

static int
ext_dereg(cm_registry *reg, const cm_reg_service *svc, cm_registry_cb cb, void *user)
{
    ext_reply *r = calloc(1, sizeof(*r));
    CHECK(r != NULL);
    r->cb = cb;
    r->user = user;
    uv_mutex_lock(&ext_mu);
    for (int i = 0; i < EXT_MAX; i++) {
        if (ext_services[i] != NULL &&
            strcmp(ext_services[i]->nodes[0].id, svc->nodes[0].id) == 0) {
            cm_reg_service_free(ext_services[i]);
            ext_services[i] = NULL;
            atomic_fetch_add(&ext_deregisters, 1);
        }
    }
    uv_mutex_unlock(&ext_mu);
    return ext_post(reg, r);
}

static int
ext_get(cm_registry *reg, const char *name, cm_registry_list_cb cb, void *user)
{
    ext_reply *r = calloc(1, sizeof(*r));
    cm_reg_service_list l = {NULL, 0};
    cm_reg_service *found[EXT_MAX];
    CHECK(r != NULL);
    uv_mutex_lock(&ext_mu);
    for (int i = 0; i < EXT_MAX; i++) {
        if (ext_services[i] != NULL && strcmp(ext_services[i]->name, name) == 0) {
            found[l.n++] = ext_services[i];
        }
    }
    l.items = found;
    r->list = cm_reg_service_list_dup(&l);
    uv_mutex_unlock(&ext_mu);
    CHECK(r->list != NULL);
    if (l.n == 0) {
        cm_registry_set_why(reg, name, "ext: no such service");
    }
    r->list_cb = cb;
    r->user = user;
    return ext_post(reg, r);
}

static const cm_registry_ops ext_ops = {
    .abi_version = CM_ABI_VERSION,
    .name = "ext",
    .option_keys = (const char *const[]){"mode", NULL},
    .init = ext_init,
    .close = ext_close,
    .reg = ext_reg,
    .dereg = ext_dereg,
    .get_service = ext_get,
};

/* ---- the log lines the service writes ---- */

static uv_mutex_t log_mu;
static int register_warns, register_debugs, registered_infos, other_above_debug;

static void
on_log(cm_log_level level, const char *module, const char *msg, void *user)
{
    (void)user;
    uv_mutex_lock(&log_mu);
    int is_service = strcmp(module, "service") == 0;
    if (is_service && strncmp(msg, "register ", 9) == 0 && strstr(msg, " failed: ") != NULL) {
        register_warns += level == CM_LOG_WARN;
        register_debugs += level == CM_LOG_DEBUG;
    } else if (is_service && strncmp(msg, "registered ", 11) == 0) {
        registered_infos += level == CM_LOG_INFO;
    } else if (level > CM_LOG_INFO) {
        other_above_debug++;
        fprintf(stderr, "unexpected log line: [%s] %s\n", module, msg);
    }
    uv_mutex_unlock(&log_mu);
}

/* ---- the test ---- */

static int
echo(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    (void)user;
    const Rpctest__Req *req = vreq;
    Rpctest__Rsp *rsp = vrsp;
    rsp->msg = cm_ctx_strdup(ctx, "via ext");
    rsp->n = req->n;
    return 0;
}

static void
run_main(void *arg)
{
    CHECK_EQ_INT(cm_service_run(arg), 0);
}

static void
test_registration_api(void)
{
    cm_registry_ops bad = ext_ops;
    bad.abi_version = CM_ABI_VERSION + 1;
    CHECK_EQ_INT(cm_registry_register(&bad), CM_EINVAL);
    bad = ext_ops;
    bad.close = NULL;
    CHECK_EQ_INT(cm_registry_register(&bad), CM_EINVAL);
    CHECK(cm_registry_find("ext") == NULL);
    CHECK_EQ_INT(cm_registry_register(&ext_ops), 0);
    CHECK(cm_registry_find("ext") == &ext_ops);
    CHECK_EQ_INT(cm_registry_register(&ext_ops), 0); /* again: replaces, no second entry */
    /* The built-ins went through the same table. */
    CHECK(cm_registry_find("mdns") != NULL && cm_registry_find("consul") != NULL &&
          cm_registry_find("memory") != NULL);

    cm_loop *loop;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    cm_registry *r = NULL;
    CHECK_EQ_INT(cm_registry_opts_set(&o, "bogus", "1"), 0);
    CHECK_EQ_INT(cm_registry_new(loop, "ext", &o, &r), CM_EINVAL); /* unknown key */
    cm_registry_opts_init(&o);
    CHECK_EQ_INT(cm_registry_opts_set(&o, "mode", "broken"), 0);
    CHECK_EQ_INT(cm_registry_new(loop, "ext", &o, &r), CM_EINVAL); /* the backend's own check */
    CHECK_EQ_INT(cm_registry_opts_set(&o, "mode", "ok"), 0);
    CHECK_EQ_INT(cm_registry_new(loop, "ext", &o, &r), 0);
    CHECK_EQ_STR(cm_registry_name(r), "ext");
    cm_registry_close(r, NULL, NULL);
    cm_loop_free(loop);
}

static void
test_service_by_name(void)
{
    setenv("MICRO_REGISTRY", "ext", 1);
    atomic_store(&ext_fail_left, 3);
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "ext.svc";
    o.address = "127.0.0.1:0";
    o.register_ttl_ms = 30000;
    o.register_interval_ms = 10000;
    o.deregister_wait_ms = 10;
    cm_service *s;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    CHECK_EQ_STR(cm_registry_name(cm_service_registry(s)), "ext");
    cm_handler h = {
        "Echo.Call", &rpctest__req__descriptor, &rpctest__rsp__descriptor, echo, 0, NULL, NULL,
        NULL};
    CHECK_EQ_INT(cm_server_handle(cm_service_server(s), &h, NULL), 0);
    uv_thread_t t;
    CHECK_EQ_INT(uv_thread_create(&t, run_main, s), 0);

    /* Three refused registrations (100 + 600 + 1900 ms of back-off), then the fourth holds. */
    for (int i = 0; i < 500 && atomic_load(&ext_registers) < 4; i++) {
        uv_sleep(20);
    }
    CHECK(atomic_load(&ext_registers) >= 4);
    uv_sleep(50);
    CHECK_EQ_STR(ext_seen_registry_md, "ext");
    CHECK_EQ_STR(ext_seen_transport_md, "http");

    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.n = 42;
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    int rc = cm_client_call(cm_service_client(s), "ext.svc", "Echo.Call", &rpctest__req__descriptor,
                            &req, &rpctest__rsp__descriptor, (void **)&rsp, NULL, &err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(rsp->msg, "via ext");
    CHECK_EQ_INT(rsp->n, 42);
    cm_message_free(&rpctest__rsp__descriptor, rsp);

    /* A name the backend does not know: its reason reaches the caller's error. */
    rc = cm_client_call(cm_service_client(s), "ext.nobody", "Echo.Call", &rpctest__req__descriptor,
                        &req, &rpctest__rsp__descriptor, (void **)&rsp, NULL, &err);
    CHECK_EQ_INT(rc, CM_ENOTFOUND);
    CHECK(err != NULL && strstr(err->detail, "ext: no such service") != NULL);
    cm_error_free(err);

    cm_service_stop(s);
    uv_thread_join(&t);
    CHECK_EQ_INT(atomic_load(&ext_deregisters), 1);
    cm_service_free(s);

    /* One warning for the change of state (registered -> failing), the retries at debug, one info
     * when it recovered; nothing else above debug. */
    CHECK_EQ_INT(register_warns, 1);
    CHECK_EQ_INT(register_debugs, 2);
    CHECK_EQ_INT(registered_infos, 1);
    CHECK_EQ_INT(other_above_debug, 0);
}

int
main(void)
{
    CHECK_EQ_INT(uv_mutex_init(&ext_mu), 0);
    CHECK_EQ_INT(uv_mutex_init(&log_mu), 0);
    cm_log_set_level(CM_LOG_DEBUG);
    cm_log_set_handler(on_log, NULL);
    RUN(test_registration_api);
    RUN(test_service_by_name);
    for (int i = 0; i < EXT_MAX; i++) {
        cm_reg_service_free(ext_services[i]);
    }
    TEST_DONE();
}
