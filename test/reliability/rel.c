/* The reliability tests' helpers (rel.h): echo-server processes, the agent's view, a client
 * from the public parts, and the load driver. Compiled once per suite; ECHO_SERVER comes from
 * test/reliability/meson.build. */
#include "rel.h"
#include "test_loop.h"

#include <sys/prctl.h>

#ifndef ECHO_SERVER
#error "ECHO_SERVER: the path of the echo-server program"
#endif

uint64_t
now_ms(void)
{
    return cm_now_ms();
}

void
sleep_ms(uint64_t ms)
{
    usleep((useconds_t)(ms * 1000u));
}

/* ---- echo-server processes ---- */

/* The environment of a child: ours with each "KEY=VALUE" of sets[] replacing or adding KEY.
 * Built before fork, so that the child (of a process with threads) only calls execve. */
static char **
child_env(const char *const *sets)
{
    extern char **environ;
    size_t n = 0, k = 0;
    while (environ[n] != NULL) {
        n++;
    }
    while (sets != NULL && sets[k] != NULL) {
        k++;
    }
    char **env = calloc(n + k + 1, sizeof(char *));
    CHECK(env != NULL);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq != NULL ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int replaced = 0;
        for (size_t j = 0; j < k; j++) {
            replaced |= strncmp(sets[j], environ[i], klen) == 0 && sets[j][klen] == '=';
        }
        if (!replaced) {
            env[m++] = environ[i];
        }
    }
    for (size_t j = 0; j < k; j++) {
        env[m++] = (char *)sets[j];
    }
    env[m] = NULL;
    return env;
}

void
server_spawn(server_proc *p, const char *name, const char *tag, const char *agent_addr,
             const char *const *env)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->tag, sizeof(p->tag), "%s", tag);
    char tagset[64], regset[300];
    snprintf(tagset, sizeof(tagset), "ECHO_TAG=%s", tag);
    snprintf(regset, sizeof(regset), "MICRO_REGISTRY_ADDRESS=%s", agent_addr ? agent_addr : "");
    const char *sets[32] = {tagset, "MICRO_SERVER_ADDRESS=127.0.0.1:0", "CMICRO_QUIET=1",
                            agent_addr ? "MICRO_REGISTRY=consul" : "MICRO_REGISTRY=memory", regset};
    size_t ns = 5;
    for (size_t i = 0; env != NULL && env[i] != NULL && ns < 31; i++) {
        sets[ns++] = env[i];
    }
    char **envp = child_env(sets);
    const char *argv[] = {ECHO_SERVER, name, NULL};
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execve(ECHO_SERVER, (char *const *)argv, envp);
        _exit(127);
    }
    free(envp);
    close(fds[1]);
    char line[512] = {0};
    size_t got = 0;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    while (got < sizeof(line) - 1 && strchr(line, '\n') == NULL) {
        CHECK(poll(&pfd, 1, 10000) == 1);
        ssize_t r = read(fds[0], line + got, sizeof(line) - 1 - got);
        CHECK(r > 0);
        got += (size_t)r;
    }
    close(fds[0]);
    CHECK(sscanf(line, "listening %63s %159s", p->addr, p->id) == 2);
    p->pid = pid;
    p->started = now_ms();
}

int
server_wait(server_proc *p)
{
    int st = -1;
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return st;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "server %s did not exit\n", p->tag);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &st, 0);
    p->pid = 0;
    CHECK(0);
    return st;
}

int
server_signal(server_proc *p, int sig)
{
    if (p->pid <= 0) {
        return -1;
    }
    kill(p->pid, sig);
    if (sig != SIGKILL && sig != SIGTERM) {
        return -1;
    }
    return server_wait(p);
}

void
server_kill(server_proc *p)
{
    if (p->pid > 0) {
        server_signal(p, SIGKILL);
    }
}

/* ---- the agent's view ---- */

int
agent_has(const test_agent *a, const char *name, const char *id)
{
    char path[512];
    snprintf(path, sizeof(path), "/v1/health/service/%s?passing", name);
    cJSON *j = agent_json(a, path);
    int found = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        const cJSON *svc = cJSON_GetObjectItem(e, "Service");
        const cJSON *sid = cJSON_GetObjectItem(svc, "ID");
        found |= cJSON_IsString(sid) && strcmp(sid->valuestring, id) == 0;
    }
    cJSON_Delete(j);
    return found;
}

int64_t
agent_wait(const test_agent *a, const char *name, const char *id, int want, uint64_t max_ms)
{
    uint64_t t0 = now_ms();
    for (;;) {
        if (agent_has(a, name, id) == want) {
            return (int64_t)(now_ms() - t0);
        }
        if (now_ms() - t0 > max_ms) {
            return -1;
        }
        sleep_ms(50);
    }
}

/* ---- a client from the public parts ---- */

void
rclient_open(rclient *c, const char *agent_addr, const rclient_opts *o)
{
    rclient_opts none = {0};
    if (o == NULL) {
        o = &none;
    }
    memset(c, 0, sizeof(*c));
    CHECK_EQ_INT(cm_loop_new(&c->loop), 0);
    cm_registry_opts ro;
    cm_registry_opts_init(&ro);
    ro.addresses = agent_addr;
    CHECK_EQ_INT(cm_registry_new(c->loop, "consul", &ro, &c->reg), 0);
    cm_selector_opts so;
    cm_selector_opts_init(&so);
    so.strategy = CM_STRATEGY_ROUND_ROBIN;
    if (o->cache_ttl_ms) {
        so.cache_ttl_ms = o->cache_ttl_ms;
    }
    CHECK_EQ_INT(cm_selector_new(c->loop, c->reg, &so, &c->sel), 0);
    cm_client_opts co;
    cm_client_opts_init(&co);
    co.selector = c->sel;
    co.request_timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
    co.attempt_timeout_ms = o->attempt_timeout_ms ? o->attempt_timeout_ms : 2000;
    if (o->max_attempts) {
        co.max_attempts = o->max_attempts;
    }
    CHECK_EQ_INT(cm_client_new(c->loop, &co, &c->cli), 0);
    CHECK_EQ_INT(cm_loop_start(c->loop), 0);
}

typedef struct cache_probe {
    rclient *c;
    const char *service;
    const char *tag;
    int status;
} cache_probe;

static void
cache_probe_run(void *arg)
{
    cache_probe *p = arg;
    /* echo-server nodes carry their tag as node metadata. A pick narrowed to that label finds
     * the node even while passive health has it ejected (the panic threshold applies within
     * the filter), and changes nothing the calls see. */
    cm_md *labels = cm_md_new();
    CHECK(labels != NULL && cm_md_set(labels, "tag", p->tag) == 0);
    cm_select_filter f = {.labels = labels};
    const char *a = NULL;
    p->status = cm_selector_pick(p->c->sel, p->service, &f, &a, NULL);
    cm_md_free(labels);
}

int
cache_has(rclient *c, const char *service, const char *tag)
{
    cache_probe p = {c, service, tag, 0};
    test_on_loop(c->loop, cache_probe_run, &p);
    CHECK(p.status == 0 || p.status == CM_ENONODE || p.status == CM_ENOTFOUND);
    return p.status == 0;
}

typedef struct teardown {
    rclient *c;
    int closed;
} teardown;

static void
teardown_run(void *arg)
{
    teardown *t = arg;
    cm_selector_free(t->c->sel);
    cm_registry_close(t->c->reg, NULL, NULL);
}

void
rclient_close(rclient *c)
{
    cm_client_free(c->cli);
    teardown t = {c, 0};
    test_on_loop(c->loop, teardown_run, &t);
    cm_loop_stop(c->loop);
    cm_loop_free(c->loop);
    memset(c, 0, sizeof(*c));
}

int
echo_call(cm_client *cli, const char *service, const cm_call_opts *opts, int64_t n, char *tag,
          size_t tlen, int32_t *code, char *detail, size_t dlen)
{
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.n = n;
    Rpctest__Rsp *rsp = NULL;
    cm_error *err = NULL;
    int rc = cm_client_call(cli, service, "Echo.Call", &rpctest__req__descriptor, &req,
                            &rpctest__rsp__descriptor, (void **)&rsp, opts, &err);
    if (rc == 0) {
        CHECK_EQ_INT(rsp->n, n);
        if (tag != NULL) {
            snprintf(tag, tlen, "%s", rsp->header);
        }
        cm_message_free(&rpctest__rsp__descriptor, rsp);
    } else {
        if (code != NULL) {
            *code = err != NULL ? err->code : 0;
        }
        if (detail != NULL) {
            snprintf(detail, dlen, "%s", err != NULL ? err->detail : "");
        }
    }
    cm_error_free(err);
    return rc;
}

/* ---- the load driver: threads of sequential calls, every call recorded ---- */

static void
load_thread(void *arg)
{
    load *l = arg;
    while (!atomic_load(&l->stop)) {
        call_ev ev = {0};
        char detail[256] = "";
        int64_t n = atomic_fetch_add(&l->seq, 1);
        ev.t0 = now_ms();
        ev.status = echo_call(l->cli, l->service, &l->opts, n, ev.tag, sizeof(ev.tag), &ev.code,
                              detail, sizeof(detail));
        ev.t1 = now_ms();
        uv_mutex_lock(&l->mu);
        if (l->nevs < LOAD_MAX_EVENTS) {
            l->evs[l->nevs++] = ev;
        }
        if (ev.status != 0 && l->ndetails < LOAD_MAX_DETAILS) {
            snprintf(l->details[l->ndetails++], sizeof(l->details[0]),
                     "%s code %d after %llu ms: %s", cm_err_name(ev.status), (int)ev.code,
                     (unsigned long long)(ev.t1 - ev.t0), detail);
        }
        uv_mutex_unlock(&l->mu);
        if (l->pause_us) {
            usleep(l->pause_us);
        }
    }
}

load *
load_start(cm_client *cli, const char *service, const cm_call_opts *opts, int nthreads,
           unsigned pause_us)
{
    load *l = calloc(1, sizeof(*l));
    CHECK(l != NULL);
    l->evs = calloc(LOAD_MAX_EVENTS, sizeof(call_ev));
    CHECK(l->evs != NULL);
    l->cli = cli;
    l->service = service;
    if (opts != NULL) {
        l->opts = *opts;
    }
    l->nthreads = nthreads < LOAD_MAX_THREADS ? nthreads : LOAD_MAX_THREADS;
    l->pause_us = pause_us;
    uv_mutex_init(&l->mu);
    for (int i = 0; i < l->nthreads; i++) {
        CHECK_EQ_INT(uv_thread_create(&l->th[i], load_thread, l), 0);
    }
    return l;
}

void
load_stop(load *l)
{
    atomic_store(&l->stop, 1);
    for (int i = 0; i < l->nthreads; i++) {
        uv_thread_join(&l->th[i]);
    }
}

void
load_free(load *l)
{
    uv_mutex_destroy(&l->mu);
    free(l->evs);
    free(l);
}

load_sum
load_sum_between(const load *l, uint64_t from, uint64_t to, uint64_t slow_ms, const char *tag)
{
    load_sum s = {0};
    for (size_t i = 0; i < l->nevs; i++) {
        const call_ev *e = &l->evs[i];
        if (e->t1 < from || e->t1 >= to) {
            continue;
        }
        if (tag != NULL && (e->status != 0 || strcmp(e->tag, tag) != 0)) {
            continue;
        }
        uint64_t d = e->t1 - e->t0;
        s.calls++;
        s.max_ms = d > s.max_ms ? d : s.max_ms;
        s.slow += d >= slow_ms;
        if (e->status == 0) {
            s.ok++;
        } else {
            s.failed++;
            s.first_fail = s.first_fail ? s.first_fail : e->t1;
            s.last_fail = e->t1;
        }
    }
    return s;
}

void
load_print_failures(const load *l)
{
    for (size_t i = 0; i < l->ndetails; i++) {
        fprintf(stderr, "  failure: %s\n", l->details[i]);
    }
}
