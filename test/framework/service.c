/* The service object: configuration precedence, registration with RegisterCheck, discovery by
 * name through the memory registry, and the SIGTERM path (deregister, then drain). */
#include "rpctest.pb-c.h"
#include "test.h"
#include <uv.h>

#include <arpa/inet.h>
#include <cmicro/cmicro.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

static int
echo(cm_ctx *ctx, const void *vreq, void *vrsp, void *user)
{
    const Rpctest__Req *req = vreq;
    Rpctest__Rsp *rsp = vrsp;
    rsp->msg = cm_ctx_strdup(ctx, (const char *)user);
    rsp->n = req->n;
    return 0;
}

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

static cm_service *
make_service(const char *name, const char *answer)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = name;
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.register_ttl_ms = 2000;
    o.register_interval_ms = 100;
    o.drain_timeout_ms = 2000;
    cm_service *s;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    cm_handler h = {
        "Echo.Call", &rpctest__req__descriptor, &rpctest__rsp__descriptor, echo, 0, NULL, NULL,
        NULL};
    CHECK_EQ_INT(cm_server_handle(cm_service_server(s), &h, (void *)answer), 0);
    return s;
}

/* ---- observing the memory registry from outside the service ---- */

typedef struct probe {
    cm_loop *loop;
    cm_registry *reg;
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
    size_t nodes;
    char name[64];
} probe;

static void
on_list(int status, const cm_reg_service_list *l, void *user)
{
    probe *p = user;
    size_t n = 0;
    for (size_t i = 0; status == 0 && i < l->n; i++) {
        n += l->items[i]->nnodes;
    }
    uv_mutex_lock(&p->mu);
    p->nodes = n;
    p->done = 1;
    uv_cond_signal(&p->cv);
    uv_mutex_unlock(&p->mu);
}

static void
do_get(void *arg)
{
    probe *p = arg;
    CHECK_EQ_INT(cm_registry_get_service(p->reg, p->name, on_list, p), 0);
}

static size_t
count_nodes(probe *p, const char *name)
{
    uv_mutex_lock(&p->mu);
    p->done = 0;
    snprintf(p->name, sizeof(p->name), "%s", name);
    uv_mutex_unlock(&p->mu);
    CHECK_EQ_INT(cm_loop_post(p->loop, do_get, p), 0);
    uv_mutex_lock(&p->mu);
    while (!p->done) {
        uv_cond_wait(&p->cv, &p->mu);
    }
    size_t n = p->nodes;
    uv_mutex_unlock(&p->mu);
    return n;
}

static size_t
wait_nodes(probe *p, const char *name, size_t want, int max_ms)
{
    size_t n = 0;
    for (int waited = 0; waited <= max_ms; waited += 20) {
        n = count_nodes(p, name);
        if (n == want) {
            break;
        }
        usleep(20 * 1000);
    }
    return n;
}

static void
probe_open(probe *p)
{
    memset(p, 0, sizeof(*p));
    uv_mutex_init(&p->mu);
    uv_cond_init(&p->cv);
    CHECK_EQ_INT(cm_loop_new(&p->loop), 0);
    CHECK_EQ_INT(cm_registry_new(p->loop, "memory", NULL, &p->reg), 0);
    CHECK_EQ_INT(cm_loop_start(p->loop), 0);
}

static void
close_reg(void *arg)
{
    cm_registry_close(arg, NULL, NULL);
}

static void
probe_close(probe *p)
{
    cm_loop_post(p->loop, close_reg, p->reg);
    cm_loop_stop(p->loop);
    cm_loop_free(p->loop);
    uv_cond_destroy(&p->cv);
    uv_mutex_destroy(&p->mu);
}

/* ---- tests ---- */

static void
test_precedence(void)
{
    setenv("MICRO_REGISTER_TTL", "60", 1);
    setenv("MICRO_REGISTER_INTERVAL", "30", 1);
    setenv("MICRO_SERVER_NAME", "from-env", 1);
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.registry = "memory";
    o.register_ttl_ms = 20000;
    o.register_interval_ms = 10000;
    cm_service *s;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    /* Code wins over env. */
    CHECK_EQ_INT(cm_service_register_ttl_ms(s), 20000);
    CHECK_EQ_INT(cm_service_register_interval_ms(s), 10000);
    /* Env wins over defaults. */
    CHECK_EQ_STR(cm_service_name(s), "from-env");
    CHECK(strncmp(cm_service_node_id(s), "from-env-", 9) == 0);
    CHECK_EQ_INT(strlen(cm_service_node_id(s)), 9 + 36);
    cm_service_free(s);

    o.register_ttl_ms = 0;
    o.register_interval_ms = 0;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    CHECK_EQ_INT(cm_service_register_ttl_ms(s), 60000);
    CHECK_EQ_INT(cm_service_register_interval_ms(s), 30000);
    cm_service_free(s);

    /* Defaults: 90 s TTL, interval TTL/3. */
    unsetenv("MICRO_REGISTER_TTL");
    unsetenv("MICRO_REGISTER_INTERVAL");
    unsetenv("MICRO_SERVER_NAME");
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    CHECK_EQ_INT(cm_service_register_ttl_ms(s), 90000);
    CHECK_EQ_INT(cm_service_register_interval_ms(s), 30000);
    CHECK_EQ_STR(cm_service_name(s), "go.micro.server");
    cm_service_free(s);

    /* An interval above TTL/2 makes the registration flap: refused. */
    o.register_ttl_ms = 20000;
    o.register_interval_ms = 15000;
    CHECK_EQ_INT(cm_service_new(&o, &s), CM_EINVAL);
    /* Unknown backends and malformed env are errors, not silent defaults. */
    o.register_interval_ms = 0;
    o.registry = "nope";
    CHECK_EQ_INT(cm_service_new(&o, &s), CM_ENOTFOUND);
    o.registry = "memory";
    setenv("MICRO_CLIENT_RETRIES", "many", 1);
    CHECK_EQ_INT(cm_service_new(&o, &s), CM_EINVAL);
    unsetenv("MICRO_CLIENT_RETRIES");
}

/* go-micro's other environment variables, and cmicro's for the attempt timeout. */
static void
test_env_vars(void)
{
    setenv("MICRO_SERVER_VERSION", "1.2.3", 1);
    setenv("MICRO_SERVER_ID", "fixed-id", 1);
    setenv("MICRO_SERVER_METADATA", "team=pay,zone=a", 1);
    setenv("MICRO_CLIENT_POOL_SIZE", "7", 1);
    setenv("MICRO_CLIENT_POOL_TTL", "90s", 1);
    setenv("MICRO_CLIENT_DIAL_TIMEOUT", "1500ms", 1);
    setenv("MICRO_CLIENT_ATTEMPT_TIMEOUT", "2s", 1);
    setenv("MICRO_TRANSPORT", "http", 1);
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "envs";
    o.registry = "memory";
    cm_md *md = cm_md_new();
    CHECK_EQ_INT(cm_md_set(md, "zone", "from-code"), 0);
    o.metadata = md;
    cm_service *s;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    CHECK_EQ_STR(cm_service_version(s), "1.2.3");
    CHECK_EQ_STR(cm_service_node_id(s), "envs-fixed-id");
    cm_client_opts co;
    cm_client_get_opts(cm_service_client(s), &co);
    CHECK_EQ_INT(co.transport_opts.pool_size, 7);
    CHECK_EQ_INT(co.transport_opts.pool_ttl_ms, 90000);
    CHECK_EQ_INT(co.transport_opts.dial_timeout_ms, 1500);
    CHECK_EQ_INT(co.attempt_timeout_ms, 2000);
    CHECK_EQ_STR(co.transport, "http");
    cm_service_free(s);

    /* Code wins, key by key for metadata; the node carries the merged set. */
    o.version = "code";
    o.id = "code-id";
    o.pool_size = 3;
    o.attempt_timeout_ms = 250;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    CHECK_EQ_STR(cm_service_version(s), "code");
    CHECK_EQ_STR(cm_service_node_id(s), "envs-code-id");
    cm_client_get_opts(cm_service_client(s), &co);
    CHECK_EQ_INT(co.transport_opts.pool_size, 3);
    CHECK_EQ_INT(co.attempt_timeout_ms, 250);
    cm_service_free(s);

    /* Malformed values are errors that say which variable. */
    const char *bad[][2] = {
        {"MICRO_CLIENT_POOL_SIZE", "lots"},       {"MICRO_SERVER_MAX_CONNS", "-1"},
        {"MICRO_SERVER_IDLE_TIMEOUT", "forever"}, {"MICRO_CLIENT_POOL_TTL", "soon"},
        {"MICRO_SERVER_METADATA", "novalue"},     {"MICRO_TRANSPORT", "carrier-pigeon"},
        {"MICRO_SERVER_MAX_CALLS", "some"}};
    o.pool_size = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *was = getenv(bad[i][0]);
        char keep[64];
        snprintf(keep, sizeof keep, "%s", was ? was : "");
        setenv(bad[i][0], bad[i][1], 1);
        int rc = cm_service_new(&o, &s);
        CHECK(rc == CM_EINVAL || rc == CM_ENOTFOUND);
        if (rc == CM_EINVAL) {
            CHECK(strstr(cm_service_why(), bad[i][0]) != NULL);
        }
        setenv(bad[i][0], keep, 1);
    }
    cm_md_free(md);
    const char *names[] = {"MICRO_SERVER_VERSION",         "MICRO_SERVER_ID",
                           "MICRO_SERVER_METADATA",        "MICRO_CLIENT_POOL_SIZE",
                           "MICRO_CLIENT_POOL_TTL",        "MICRO_CLIENT_DIAL_TIMEOUT",
                           "MICRO_CLIENT_ATTEMPT_TIMEOUT", "MICRO_TRANSPORT"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        unsetenv(names[i]);
    }
}

/* The server's connection limits from the environment reach its transport: an idle
 * connection is closed after MICRO_SERVER_IDLE_TIMEOUT. */
static void
test_server_limits_env(void)
{
    setenv("MICRO_SERVER_IDLE_TIMEOUT", "300ms", 1);
    cm_service *s = make_service("limits", "x");
    unsetenv("MICRO_SERVER_IDLE_TIMEOUT");
    runner r;
    memset(&r, 0, sizeof r);
    r.svc = s;
    CHECK_EQ_INT(uv_thread_create(&r.thread, run_main, &r), 0);
    const char *addr = NULL;
    for (int i = 0; i < 200 && (addr = cm_service_advertised(s)) == NULL; i++) {
        uv_sleep(10);
    }
    CHECK(addr != NULL);
    int port = atoi(strrchr(addr, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint64_t t0 = uv_hrtime();
    char b[16];
    CHECK_EQ_INT(recv(fd, b, sizeof b, 0), 0); /* closed by the server */
    uint64_t ms = (uv_hrtime() - t0) / 1000000u;
    CHECK(ms >= 250 && ms < 2000);
    close(fd);
    cm_service_stop(s);
    uv_thread_join(&r.thread);
    cm_service_free(s);
}

static atomic_int check_result;
static atomic_int check_calls;

static int
register_check(void *user)
{
    (void)user;
    atomic_fetch_add(&check_calls, 1);
    return atomic_load(&check_result);
}

static void
test_register_check(void)
{
    probe p;
    probe_open(&p);
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "checked";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.register_ttl_ms = 2000;
    o.register_interval_ms = 100;
    o.register_check = register_check;
    runner r = {0};
    CHECK_EQ_INT(cm_service_new(&o, &r.svc), 0);
    CHECK_EQ_INT(uv_thread_create(&r.thread, run_main, &r), 0);
    CHECK_EQ_INT(wait_nodes(&p, "checked", 1, 2000), 1);
    /* A failing check deregisters within one interval (plus slack), the server stays up. */
    atomic_store(&check_result, -1);
    CHECK_EQ_INT(wait_nodes(&p, "checked", 0, 1000), 0);
    CHECK(cm_service_advertised(r.svc) != NULL);
    /* Recovery registers again. */
    atomic_store(&check_result, 0);
    CHECK_EQ_INT(wait_nodes(&p, "checked", 1, 1000), 1);
    CHECK(atomic_load(&check_calls) >= 3);
    cm_service_stop(r.svc);
    uv_thread_join(&r.thread);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(count_nodes(&p, "checked"), 0);
    cm_service_free(r.svc);
    probe_close(&p);
}

static void
test_discovery_and_sigterm(void)
{
    probe p;
    probe_open(&p);
    runner a = {0}, b = {0};
    a.svc = make_service("greeter", "from-a");
    b.svc = make_service("greeter", "from-b");
    CHECK_EQ_INT(uv_thread_create(&a.thread, run_main, &a), 0);
    CHECK_EQ_INT(uv_thread_create(&b.thread, run_main, &b), 0);
    CHECK_EQ_INT(wait_nodes(&p, "greeter", 2, 2000), 2);

    /* A client-only service calls by name; round robin alternates between the two nodes. */
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "caller";
    o.registry = "memory";
    o.strategy = CM_STRATEGY_ROUND_ROBIN;
    o.strategy_set = 1;
    cm_service *c;
    CHECK_EQ_INT(cm_service_new(&o, &c), 0);
    int from_a = 0, from_b = 0;
    for (int i = 0; i < 10; i++) {
        Rpctest__Req req = RPCTEST__REQ__INIT;
        req.n = i;
        Rpctest__Rsp *rsp = NULL;
        cm_error *err = NULL;
        int rc = cm_client_call(cm_service_client(c), "greeter", "Echo.Call",
                                &rpctest__req__descriptor, &req, &rpctest__rsp__descriptor,
                                (void **)&rsp, NULL, &err);
        if (rc != 0) {
            fprintf(stderr, "call: %s %s\n", cm_err_name(rc), err ? err->detail : "");
        }
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(rsp->n, i);
        from_a += strcmp(rsp->msg, "from-a") == 0;
        from_b += strcmp(rsp->msg, "from-b") == 0;
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    }
    CHECK_EQ_INT(from_a, 5);
    CHECK_EQ_INT(from_b, 5);

    /* An unknown name is a clear error. */
    Rpctest__Req req = RPCTEST__REQ__INIT;
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    CHECK_EQ_INT(cm_client_call(cm_service_client(c), "nobody", "Echo.Call",
                                &rpctest__req__descriptor, &req, &rpctest__rsp__descriptor,
                                (void **)&rsp, NULL, &err),
                 CM_ENOTFOUND);
    CHECK_EQ_STR(err->detail, "service nobody: not found");
    cm_error_free(err);

    /* SIGTERM: both services' signal watchers see it; each deregisters before it exits. */
    kill(getpid(), SIGTERM);
    uv_thread_join(&a.thread);
    uv_thread_join(&b.thread);
    CHECK_EQ_INT(a.rc, 0);
    CHECK_EQ_INT(b.rc, 0);
    CHECK_EQ_INT(count_nodes(&p, "greeter"), 0);
    cm_service_free(a.svc);
    cm_service_free(b.svc);
    cm_service_free(c);
    probe_close(&p);
}

/* ---- TLS from the environment ---- */

static char tls_dir[256];

static void
tls_env(const char *name, const char *file)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tls_dir, file);
    setenv(name, p, 1);
}

/* One call of Echo.Call on name by a client-only service made from the environment as it is;
 * rc, and the error's detail in detail. */
static int tls_attempts = 1;

static int
tls_call(const char *name, char *detail, size_t len)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "tls-caller";
    o.registry = "memory";
    o.max_attempts = tls_attempts;
    cm_service *c;
    CHECK_EQ_INT(cm_service_new(&o, &c), 0);
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.n = 5;
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    int rc = cm_client_call(cm_service_client(c), name, "Echo.Call", &rpctest__req__descriptor,
                            &req, &rpctest__rsp__descriptor, (void **)&rsp, NULL, &err);
    snprintf(detail, len, "%s", err ? err->detail : "");
    if (rc == 0) {
        CHECK_EQ_INT(rsp->n, 5);
        CHECK_EQ_STR(rsp->msg, "over-tls");
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    }
    cm_error_free(err);
    cm_service_free(c);
    return rc;
}

/* MICRO_TRANSPORT_TLS_* reach the server's and the client's transports. */
static void
test_tls_env(void)
{
    probe p;
    probe_open(&p);
    tls_env("MICRO_TRANSPORT_TLS_CERT", "server.pem");
    tls_env("MICRO_TRANSPORT_TLS_KEY", "server.key");
    tls_env("MICRO_TRANSPORT_TLS_CA", "ca.pem");
    runner r = {0};
    r.svc = make_service("tls-greeter", "over-tls");
    CHECK_EQ_INT(uv_thread_create(&r.thread, run_main, &r), 0);
    CHECK_EQ_INT(wait_nodes(&p, "tls-greeter", 1, 2000), 1);
    char detail[256];
    CHECK_EQ_INT(tls_call("tls-greeter", detail, sizeof detail), 0);

    /* A client that trusts another CA, then one that does not speak TLS. */
    tls_env("MICRO_TRANSPORT_TLS_CA", "other-ca.pem");
    unsetenv("MICRO_TRANSPORT_TLS_CERT");
    unsetenv("MICRO_TRANSPORT_TLS_KEY");
    CHECK_EQ_INT(tls_call("tls-greeter", detail, sizeof detail), CM_ECERT);
    CHECK(strstr(detail, "TLS peer certificate not trusted") != NULL);
    /* A certificate failure is permanent: one attempt however many are allowed. */
    tls_attempts = 3;
    CHECK_EQ_INT(tls_call("tls-greeter", detail, sizeof detail), CM_ECERT);
    CHECK(strstr(detail, "(attempt 1 of 3 to ") != NULL);
    CHECK(strstr(detail, "no retry: a certificate failure is permanent") != NULL);
    tls_attempts = 1;
    /* ... unless it opts out of verification. */
    setenv("MICRO_TRANSPORT_TLS_INSECURE", "true", 1);
    CHECK_EQ_INT(tls_call("tls-greeter", detail, sizeof detail), 0);
    unsetenv("MICRO_TRANSPORT_TLS_INSECURE");
    unsetenv("MICRO_TRANSPORT_TLS_CA");
    CHECK(tls_call("tls-greeter", detail, sizeof detail) != 0);
    CHECK(strstr(detail, "Client sent an HTTP request to an HTTPS server.") != NULL);

    /* Bad values say which variable. */
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.registry = "memory";
    cm_service *s;
    setenv("MICRO_TRANSPORT_TLS", "maybe", 1);
    CHECK_EQ_INT(cm_service_new(&o, &s), CM_EINVAL);
    CHECK(strstr(cm_service_why(), "MICRO_TRANSPORT_TLS=maybe") != NULL);
    unsetenv("MICRO_TRANSPORT_TLS");
    tls_env("MICRO_TRANSPORT_TLS_CA", "missing.pem");
    CHECK_EQ_INT(cm_service_new(&o, &s), CM_EINVAL);
    CHECK(strstr(cm_service_why(), "MICRO_TRANSPORT_TLS_CA") != NULL);
    CHECK(strstr(cm_service_why(), "No such file") != NULL);
    /* Code wins over the environment. */
    char ca[512];
    snprintf(ca, sizeof ca, "%s/ca.pem", tls_dir);
    o.tls_ca_file = ca;
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    cm_client_opts co;
    cm_client_get_opts(cm_service_client(s), &co);
    CHECK_EQ_STR(co.transport_opts.tls_ca_file, ca);
    cm_service_free(s);
    unsetenv("MICRO_TRANSPORT_TLS_CA");

    cm_service_stop(r.svc);
    uv_thread_join(&r.thread);
    CHECK_EQ_INT(r.rc, 0);
    cm_service_free(r.svc);
    probe_close(&p);
}

int
main(int argc, char **argv)
{
    CHECK(argc == 2);
    snprintf(tls_dir, sizeof tls_dir, "%s", "/tmp/cmicro-svc-tls-XXXXXX");
    CHECK(mkdtemp(tls_dir) != NULL);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sh '%s' '%s'", argv[1], tls_dir);
    CHECK_EQ_INT(system(cmd), 0);
    RUN(test_precedence);
    RUN(test_env_vars);
    RUN(test_server_limits_env);
    RUN(test_register_check);
    RUN(test_discovery_and_sigterm);
    RUN(test_tls_env);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tls_dir);
    CHECK_EQ_INT(system(cmd), 0);
    TEST_DONE();
}
