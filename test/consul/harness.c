/* The Consul tests' helpers (harness.h): the agent, blocking HTTP to it, the loop, log capture
 * and the tag decoder. Compiled once per suite; CONSUL_PYTHON and CONSUL_AGENT_PY come from
 * test/consul/meson.build. */
#include "harness.h"

#include <sys/prctl.h>
#include <zlib.h>

int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

void
agent_spawn(test_agent *a, int port, const char *const *extra)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    char portarg[16];
    snprintf(portarg, sizeof(portarg), "%d", port);
    const char *argv[24] = {CONSUL_PYTHON, CONSUL_AGENT_PY,   "--port", portarg, "--min-reap",
                            "1",           "--reap-interval", "0.2"};
    size_t n = 8;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 22; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    char line[64] = {0};
    size_t got = 0;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    while (got < sizeof(line) - 1 && strchr(line, '\n') == NULL) {
        CHECK(poll(&pfd, 1, 10000) == 1);
        ssize_t r = read(fds[0], line + got, sizeof(line) - 1 - got);
        CHECK(r > 0);
        got += (size_t)r;
    }
    close(fds[0]);
    a->real = 0;
    a->pid = pid;
    a->port = atoi(line);
    CHECK(a->port > 0);
    snprintf(a->addr, sizeof(a->addr), "127.0.0.1:%d", a->port);
}

void
agent_start(test_agent *a, int allow_real, const char *const *extra)
{
    memset(a, 0, sizeof(*a));
    const char *env = getenv("CONSUL_HTTP_ADDR");
    if (allow_real && env != NULL && env[0] != '\0') {
        a->real = 1;
        snprintf(a->addr, sizeof(a->addr), "%s", env);
        return;
    }
    agent_spawn(a, 0, extra);
}

void
agent_stop(test_agent *a)
{
    if (a->real || a->pid <= 0) {
        return;
    }
    kill(a->pid, SIGTERM);
    int st;
    waitpid(a->pid, &st, 0);
    a->pid = 0;
}

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
    cm_buf *b = arg;
    return cm_buf_append(b, p, size * n) == 0 ? size * n : 0;
}

long
agent_http(const test_agent *a, const char *method, const char *path, const char *body, char **out)
{
    CURL *e = curl_easy_init();
    cm_buf b = {0};
    char url[1024];
    const char *scheme = strstr(a->addr, "://") != NULL ? "" : "http://";
    snprintf(url, sizeof(url), "%s%s%s", scheme, a->addr, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&b);
    if (body != NULL || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body != NULL ? body : "");
    }
    long status = 0;
    CURLcode rc = curl_easy_perform(e);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_easy_cleanup(e);
    cm_buf_append(&b, "", 1);
    if (out != NULL) {
        *out = (char *)b.data;
    } else {
        cm_buf_free(&b);
    }
    return status;
}

cJSON *
agent_json(const test_agent *a, const char *path)
{
    char *body = NULL;
    long st = agent_http(a, "GET", path, NULL, &body);
    cJSON *j = st == 200 ? cJSON_Parse(body) : NULL;
    free(body);
    return j;
}

void
agent_control(const test_agent *a, const char *path)
{
    CHECK_EQ_INT(agent_http(a, "PUT", path, NULL, NULL), 200);
}

/* ---- the loop ---- */

static void
beat(uv_timer_t *t)
{
    (void)t;
}

int
run_until(cm_loop *l, volatile int *flag, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(cm_loop_uv(l), &t);
    uv_timer_start(&t, beat, 5, 5);
    uint64_t end = cm_now_ms() + ms;
    while ((flag == NULL || !*flag) && cm_now_ms() < end) {
        uv_run(cm_loop_uv(l), UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(cm_loop_uv(l), UV_RUN_NOWAIT);
    return flag != NULL ? *flag : 0;
}

void
run_for(cm_loop *l, uint64_t ms)
{
    run_until(l, NULL, ms);
}

int in_call;

void
on_status(int status, void *user)
{
    result *r = user;
    CHECK(!in_call);
    CHECK(!r->done);
    r->done = 1;
    r->status = status;
}

void
on_list(int status, const cm_reg_service_list *l, void *user)
{
    result *r = user;
    CHECK(!in_call);
    CHECK(!r->done);
    CHECK((status == 0) == (l != NULL));
    r->done = 1;
    r->status = status;
    r->list = l != NULL ? cm_reg_service_list_dup(l) : NULL;
}

int
reg_sync(cm_loop *l, cm_registry *r, const cm_reg_service *s, uint64_t ttl_ms)
{
    result res = {0};
    in_call = 1;
    int rc = cm_registry_register_service(r, s, ttl_ms, on_status, &res);
    in_call = 0;
    if (rc < 0) {
        return rc;
    }
    CHECK(run_until(l, &res.done, 20000));
    return res.status;
}

int
dereg_sync(cm_loop *l, cm_registry *r, const cm_reg_service *s)
{
    result res = {0};
    in_call = 1;
    int rc = cm_registry_deregister_service(r, s, on_status, &res);
    in_call = 0;
    if (rc < 0) {
        return rc;
    }
    CHECK(run_until(l, &res.done, 20000));
    return res.status;
}

int
get_sync(cm_loop *l, cm_registry *r, const char *name, cm_reg_service_list **out)
{
    result res = {0};
    in_call = 1;
    int rc = name != NULL ? cm_registry_get_service(r, name, on_list, &res)
                          : cm_registry_list_services(r, on_list, &res);
    in_call = 0;
    if (rc < 0) {
        return rc;
    }
    CHECK(run_until(l, &res.done, 20000));
    *out = res.list;
    return res.status;
}

size_t
count_nodes(const cm_reg_service_list *l)
{
    size_t n = 0;
    for (size_t i = 0; l != NULL && i < l->n; i++) {
        n += l->items[i]->nnodes;
    }
    return n;
}

const cm_node *
find_node(const cm_reg_service_list *l, const char *id)
{
    for (size_t i = 0; l != NULL && i < l->n; i++) {
        for (size_t k = 0; k < l->items[i]->nnodes; k++) {
            if (strcmp(l->items[i]->nodes[k].id, id) == 0) {
                return &l->items[i]->nodes[k];
            }
        }
    }
    return NULL;
}

void
closed_cb(void *arg)
{
    *(int *)arg = 1;
}

void
close_registry(cm_loop *l, cm_registry *r)
{
    int done = 0;
    cm_registry_close(r, closed_cb, &done);
    CHECK(run_until(l, &done, 5000));
}

cm_registry *
new_registry(cm_loop *l, const char *addresses, const char *token, uint64_t timeout_ms)
{
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    o.addresses = addresses;
    cm_registry_opts_set(&o, "token", token);
    o.timeout_ms = timeout_ms;
    cm_registry *r = NULL;
    CHECK_EQ_INT(cm_registry_new(l, "consul", &o, &r), 0);
    CHECK_EQ_STR(cm_registry_name(r), "consul");
    return r;
}

/* ---- log capture (test/common/logcap.c) ---- */

void
capture_start(capture *c)
{
    (void)c;
    logcap_start();
}

char *
capture_end(capture *c)
{
    (void)c;
    return logcap_end();
}

/* ---- an independent decoder of go-micro's tags: hex, then zlib, then the caller's JSON ---- */

static int
hexnib(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    return -1; /* go-micro writes lower case only */
}

char *
tag_payload(const char *tag)
{
    const char *hex = tag + 2;
    size_t n = strlen(hex);
    if (n == 0 || n % 2 != 0) {
        return NULL;
    }
    unsigned char *bin = malloc(n / 2);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexnib(hex[2 * i]), lo = hexnib(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(bin);
            return NULL;
        }
        bin[i] = (unsigned char)(hi << 4 | lo);
    }
    uLongf cap = 1 << 20;
    char *out = malloc(cap + 1);
    int rc = uncompress((Bytef *)out, &cap, bin, (uLong)(n / 2));
    free(bin);
    if (rc != Z_OK) {
        free(out);
        return NULL;
    }
    out[cap] = '\0';
    return out;
}
