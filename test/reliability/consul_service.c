/* Services over Consul, end to end: echo-server processes registering through cm_service with
 * MICRO_REGISTRY=consul, and a client resolving them by name. Against the real agent named by
 * CONSUL_HTTP_ADDR (steps that need the test agent's control endpoints print SKIP), else the
 * Python test agent.
 *
 * The services register with TTL 3 s and interval 1 s. The client is the selector of
 * cm_service (round robin here, so that every node is seen) over the Consul registry.
 *
 * Staleness bound: a node that dies without deregistering (SIGKILL) leaves the client's cache
 * within TTL + watch lag (the blocking query wakes when the check turns critical; < 1 s), and
 * the client stops sending to it long before: the first refused connection takes it out of
 * rotation (passive health) and the call is retried on another node. */
#include "rel.h"

#define TTL_MS 3000u
#define INTERVAL_MS 1000u
/* Slack for a loaded 2-core machine: these are functional bounds, not measurements. */
#define SLACK_MS 2500u

static test_agent agent;
/* The deregister wait covers the watch's lag on loopback (tens of ms) with room to spare. */
static const char *const fast_reg[] = {"MICRO_REGISTER_TTL=3", "MICRO_REGISTER_INTERVAL=1",
                                       "ECHO_DEREGISTER_WAIT_MS=300", NULL};

static void
svc_name(char *out, size_t len, const char *what)
{
    snprintf(out, len, "cm.rel.%s-%d", what, (int)getpid());
}

static void
spawn_registered(server_proc *p, const test_agent *a, const char *name, const char *tag,
                 const char *const *env)
{
    server_spawn(p, name, tag, a->addr, env != NULL ? env : fast_reg);
    int64_t t = agent_wait(a, name, p->id, 1, 10000);
    if (t < 0) {
        fprintf(stderr, "%s did not register within 10 s\n", tag);
    }
    CHECK(t >= 0);
}

/* Calls service n times; returns the number of distinct tags among want[] that answered. */
static int
call_tags(rclient *c, const char *service, int n, const char *const *want, size_t nwant)
{
    int seen[8] = {0};
    for (int i = 0; i < n; i++) {
        char tag[16], detail[256];
        int32_t code = 0;
        int rc =
            echo_call(c->cli, service, NULL, i, tag, sizeof(tag), &code, detail, sizeof(detail));
        if (rc != 0) {
            fprintf(stderr, "call %d: %s %d %s\n", i, cm_err_name(rc), (int)code, detail);
        }
        CHECK_EQ_INT(rc, 0);
        for (size_t k = 0; k < nwant && k < 8; k++) {
            seen[k] |= strcmp(tag, want[k]) == 0;
        }
    }
    int distinct = 0;
    for (size_t k = 0; k < nwant && k < 8; k++) {
        distinct += seen[k];
    }
    return distinct;
}

/* Waits until the client's cache holds (want 1) or no longer holds (want 0) the node tagged
 * tag. Returns the time it took, or -1 after max_ms. */
static int64_t
cache_wait(rclient *c, const char *service, const char *tag, int want, uint64_t max_ms)
{
    uint64_t t0 = now_ms();
    for (;;) {
        if (cache_has(c, service, tag) == want) {
            return (int64_t)(now_ms() - t0);
        }
        if (now_ms() - t0 > max_ms) {
            return -1;
        }
        sleep_ms(20);
    }
}

/* ---- discovery, SIGKILL, SIGTERM ---- */

static void
test_discover_kill_term(void)
{
    char name[96];
    svc_name(name, sizeof(name), "echo");
    server_proc s1, s2, s3;
    spawn_registered(&s1, &agent, name, "s1", NULL);
    spawn_registered(&s2, &agent, name, "s2", NULL);
    spawn_registered(&s3, &agent, name, "s3", NULL);
    rclient c;
    rclient_open(&c, agent.addr, NULL);
    const char *tags[] = {"s1", "s2", "s3"};
    CHECK_EQ_INT(call_tags(&c, name, 30, tags, 3), 3);

    /* SIGKILL: no deregistration. The calls go on, one at a time: only the call in flight at
     * the kill may fail (it may have been processed, so it is not retried). */
    load *l = load_start(c.cli, name, NULL, 1, 0);
    sleep_ms(300);
    uint64_t tk = now_ms();
    server_signal(&s1, SIGKILL);
    /* Both measured from the kill. */
    int64_t t_agent = -1, t_cache = -1;
    while (now_ms() - tk < TTL_MS + 1000 + SLACK_MS && (t_agent < 0 || t_cache < 0)) {
        if (t_agent < 0 && !agent_has(&agent, name, s1.id)) {
            t_agent = (int64_t)(now_ms() - tk);
        }
        if (t_cache < 0 && !cache_has(&c, name, s1.tag)) {
            t_cache = (int64_t)(now_ms() - tk);
        }
        sleep_ms(20);
    }
    sleep_ms(300);
    load_stop(l);
    load_sum all = load_sum_between(l, 0, UINT64_MAX, 100, NULL);
    load_sum before =
        load_sum_between(l, tk, tk + (t_cache > 0 ? (uint64_t)t_cache : 0), 100, NULL);
    printf("SIGKILL: the agent dropped s1 after %lld ms, the client's cache after %lld ms "
           "(bound: TTL %u + watch lag 1000 + slack %u); %zu calls, %zu failed, longest %llu ms; "
           "before the cache dropped it: %zu calls, %zu retried after a refused connection\n",
           (long long)t_agent, (long long)t_cache, TTL_MS, SLACK_MS, all.calls, all.failed,
           (unsigned long long)all.max_ms, before.calls, before.slow);
    load_print_failures(l);
    CHECK(t_agent >= 0);
    CHECK(t_cache >= 0);
    CHECK(all.failed <= 1);
    CHECK(all.max_ms < 5000 + 1000);
    /* Passive health: the dead node is tried again only after each ejection back-off (1 s,
     * 2 s, ...), not on every third call. A retried call takes the 100 ms back-off. */
    CHECK(before.slow <= 6);
    load_free(l);

    /* SIGTERM: deregistered before the process exits. */
    l = load_start(c.cli, name, NULL, 1, 0);
    sleep_ms(300);
    int st = server_signal(&s2, SIGTERM);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(!agent_has(&agent, name, s2.id));
    int64_t t_term = cache_wait(&c, name, s2.tag, 0, 2000);
    sleep_ms(300);
    load_stop(l);
    all = load_sum_between(l, 0, UINT64_MAX, 100, NULL);
    printf("SIGTERM: gone from the agent at exit, from the client's cache %lld ms later; "
           "%zu calls, %zu failed\n",
           (long long)t_term, all.calls, all.failed);
    load_print_failures(l);
    CHECK(t_term >= 0);
    CHECK(all.failed <= 1);
    CHECK_EQ_INT(call_tags(&c, name, 10, tags + 2, 1), 1);
    load_free(l);

    rclient_close(&c);
    server_kill(&s3);
}

/* ---- the order of a graceful stop ---- */

/* SIGTERM: deregister, go on serving for the deregister wait (callers' watches drop the node
 * meanwhile), then stop accepting and exit. Regression: the server stopped accepting and closed
 * its connections right after deregistering, failing the calls of clients whose watch had not
 * caught up yet (fault-injection's SIGTERM under load). */
static void
test_sigterm_order(void)
{
    char name[96];
    svc_name(name, sizeof(name), "order");
    const char *const env[] = {fast_reg[0], fast_reg[1], "ECHO_DEREGISTER_WAIT_MS=1500", NULL};
    server_proc s;
    spawn_registered(&s, &agent, name, "ord", env);
    cm_client *cli;
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &cli), 0);
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = s.addr;
    o.max_attempts = 1;
    CHECK_EQ_INT(echo_call(cli, name, &o, 1, NULL, 0, NULL, NULL, 0), 0);
    uint64_t t0 = now_ms();
    kill(s.pid, SIGTERM);
    CHECK(agent_wait(&agent, name, s.id, 0, 1000) >= 0);
    uint64_t t_dereg = now_ms() - t0;
    /* Deregistered, still serving, over the pooled connection and a new one. */
    CHECK_EQ_INT(echo_call(cli, name, &o, 2, NULL, 0, NULL, NULL, 0), 0);
    cm_client *fresh;
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &fresh), 0);
    CHECK_EQ_INT(echo_call(fresh, name, &o, 3, NULL, 0, NULL, NULL, 0), 0);
    cm_client_free(fresh);
    uint64_t t_served = now_ms() - t0;
    int st = server_wait(&s);
    uint64_t t_exit = now_ms() - t0;
    printf("SIGTERM: deregistered after %llu ms, still serving at %llu ms, exited at %llu ms "
           "(deregister wait 1500 ms)\n",
           (unsigned long long)t_dereg, (unsigned long long)t_served, (unsigned long long)t_exit);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(t_served < 1500);
    CHECK(t_exit >= 1500);
    /* Gone: refused. */
    CHECK(echo_call(cli, name, &o, 4, NULL, 0, NULL, NULL, 0) < 0);
    cm_client_free(cli);
}

/* ---- RegisterCheck ---- */

static void
test_register_check(void)
{
    char name[96], file[128], set[160];
    svc_name(name, sizeof(name), "check");
    snprintf(file, sizeof(file), "/tmp/cm-rel-check-%d", (int)getpid());
    snprintf(set, sizeof(set), "ECHO_CHECK_FILE=%s", file);
    const char *const env[] = {fast_reg[0], fast_reg[1], fast_reg[2], set, NULL};
    unlink(file);
    server_proc s;
    spawn_registered(&s, &agent, name, "chk", env);
    rclient c;
    rclient_open(&c, agent.addr, NULL);

    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    fclose(f);
    int64_t t_off = agent_wait(&agent, name, s.id, 0, INTERVAL_MS + SLACK_MS);
    /* Deregistered, still serving. */
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = s.addr;
    CHECK_EQ_INT(echo_call(c.cli, name, &o, 1, NULL, 0, NULL, NULL, 0), 0);
    unlink(file);
    int64_t t_on = agent_wait(&agent, name, s.id, 1, INTERVAL_MS + SLACK_MS);
    printf("RegisterCheck: deregistered %lld ms after failing, registered %lld ms after "
           "recovering (interval %u ms)\n",
           (long long)t_off, (long long)t_on, INTERVAL_MS);
    CHECK(t_off >= 0);
    CHECK(t_on >= 0);
    const char *tags[] = {"chk"};
    CHECK_EQ_INT(call_tags(&c, name, 3, tags, 1), 1);
    rclient_close(&c);
    CHECK_EQ_INT(server_signal(&s, SIGTERM), 0);
}

/* ---- the agent loses its state ---- */

static void
test_agent_restart(void)
{
    SKIP_IF_REAL(&agent, "agent restart");
    char name[96];
    svc_name(name, sizeof(name), "restart");
    server_proc s1, s2;
    spawn_registered(&s1, &agent, name, "r1", NULL);
    spawn_registered(&s2, &agent, name, "r2", NULL);
    agent_control(&agent, "/_test/restart");
    CHECK(!agent_has(&agent, name, s1.id));
    /* Back at the next refresh: its TTL pass finds no check, so it registers in full. */
    int64_t t1 = agent_wait(&agent, name, s1.id, 1, INTERVAL_MS + SLACK_MS);
    int64_t t2 = agent_wait(&agent, name, s2.id, 1, INTERVAL_MS + SLACK_MS);
    printf("agent restart: registered again after %lld and %lld ms (interval %u ms)\n",
           (long long)t1, (long long)t2, INTERVAL_MS);
    CHECK(t1 >= 0);
    CHECK(t2 >= 0);
    CHECK_EQ_INT(server_signal(&s1, SIGTERM), 0);
    CHECK_EQ_INT(server_signal(&s2, SIGTERM), 0);
}

/* Seconds since the epoch of the logged requests under prefix, with their HTTP path. */
static size_t
request_times(const test_agent *a, const char *prefix, double *at, char (*paths)[160], size_t max)
{
    char q[256];
    snprintf(q, sizeof(q), "/_test/requests?prefix=%s", prefix);
    cJSON *log = agent_json(a, q);
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, log)
    {
        if (n < max) {
            at[n] = cJSON_GetObjectItem(e, "time")->valuedouble;
            snprintf(paths[n], 160, "%s", cJSON_GetObjectItem(e, "path")->valuestring);
            n++;
        }
    }
    cJSON_Delete(log);
    return n;
}

/* A refresh that fails is retried with back-off (100 ms, 600 ms, ...), not only at the next
 * interval. Regression: the retry timer fired but did nothing for a service that had been
 * registered, although the log said "retrying in 100 ms". */
static void
test_refresh_retry(void)
{
    SKIP_IF_REAL(&agent, "refresh retry");
    char name[96];
    svc_name(name, sizeof(name), "retry");
    const char *const env[] = {"MICRO_REGISTER_TTL=12", "MICRO_REGISTER_INTERVAL=3",
                               "ECHO_DEREGISTER_WAIT_MS=300", NULL};
    server_proc s;
    spawn_registered(&s, &agent, name, "rt", env);
    agent_control(&agent, "/_test/clear");
    /* The next refresh's TTL pass and the full register it falls back to both fail. */
    agent_control(&agent, "/_test/fail?status=500&count=2&prefix=/v1/agent/");
    double at[64];
    char paths[64][160];
    size_t n = 0;
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < 3000 + 4000) {
        n = request_times(&agent, "/v1/agent/", at, paths, 64);
        if (n >= 3) {
            break;
        }
        sleep_ms(100);
    }
    for (size_t i = 0; i < n; i++) {
        printf("  %.3f %s\n", at[i] - at[0], paths[i]);
    }
    CHECK(n >= 3);
    CHECK(strncmp(paths[0], "/v1/agent/check/pass/", 21) == 0);
    CHECK_EQ_STR(paths[1], "/v1/agent/service/register");
    CHECK_EQ_STR(paths[2], "/v1/agent/service/register");
    printf("refresh retry: registered again %.0f ms after the failure (interval 3000 ms)\n",
           (at[2] - at[1]) * 1000);
    CHECK((at[2] - at[1]) * 1000 < 1500);
    CHECK(agent_wait(&agent, name, s.id, 1, 2000) >= 0);
    CHECK_EQ_INT(server_signal(&s, SIGTERM), 0);
}

/* ---- the agent is not up when the service starts ---- */

static void
test_agent_down_at_start(void)
{
    SKIP_IF_REAL(&agent, "agent down at start");
    char name[96];
    svc_name(name, sizeof(name), "late");
    int port = free_port();
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    server_proc s;
    server_spawn(&s, name, "late", addr, fast_reg);
    /* It serves at once. */
    rclient c;
    rclient_open(&c, addr, NULL);
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = s.addr;
    CHECK_EQ_INT(echo_call(c.cli, name, &o, 1, NULL, 0, NULL, NULL, 0), 0);
    sleep_ms(1500);
    CHECK(kill(s.pid, 0) == 0);
    test_agent late;
    agent_spawn(&late, port, NULL);
    int64_t t = agent_wait(&late, name, s.id, 1, INTERVAL_MS + SLACK_MS);
    printf("agent down at start: registered %lld ms after the agent came up\n", (long long)t);
    CHECK(t >= 0);
    const char *tags[] = {"late"};
    CHECK_EQ_INT(call_tags(&c, name, 3, tags, 1), 1);
    rclient_close(&c);
    CHECK_EQ_INT(server_signal(&s, SIGTERM), 0);
    agent_stop(&late);
}

/* ---- the agent goes down after discovery: the cache keeps serving ---- */

static void
test_stale_cache(void)
{
    SKIP_IF_REAL(&agent, "agent down after discovery");
    char name[96];
    svc_name(name, sizeof(name), "stale");
    test_agent own;
    agent_spawn(&own, 0, NULL);
    server_proc s1, s2;
    spawn_registered(&s1, &own, name, "st1", NULL);
    spawn_registered(&s2, &own, name, "st2", NULL);
    /* A short cache TTL: the outage outlasts it, so the stale entry is served past its TTL. */
    rclient_opts co = {.cache_ttl_ms = 1500};
    rclient c;
    rclient_open(&c, own.addr, &co);
    const char *tags[] = {"st1", "st2"};
    CHECK_EQ_INT(call_tags(&c, name, 4, tags, 2), 2);

    kill(own.pid, SIGKILL);
    int st;
    waitpid(own.pid, &st, 0);
    uint64_t tk = now_ms();
    load *l = load_start(c.cli, name, NULL, 1, 500);
    sleep_ms(4000);
    load_stop(l);
    load_sum all = load_sum_between(l, 0, UINT64_MAX, 500, NULL);
    load_sum late1 = load_sum_between(l, tk + 2000, UINT64_MAX, 500, "st1");
    load_sum late2 = load_sum_between(l, tk + 2000, UINT64_MAX, 500, "st2");
    printf("agent down: %zu calls in 4 s from the stale cache, %zu failed, %zu slow; past the "
           "cache TTL st1 answered %zu, st2 %zu\n",
           all.calls, all.failed, all.slow, late1.calls, late2.calls);
    load_print_failures(l);
    CHECK(all.calls > 20);
    CHECK_EQ_INT(all.failed, 0);
    CHECK(late1.calls > 0 && late2.calls > 0);
    load_free(l);
    rclient_close(&c);

    /* The agent comes back (empty): both register again. */
    agent_spawn(&own, own.port, NULL);
    CHECK(agent_wait(&own, name, s1.id, 1, INTERVAL_MS + SLACK_MS) >= 0);
    CHECK(agent_wait(&own, name, s2.id, 1, INTERVAL_MS + SLACK_MS) >= 0);
    CHECK_EQ_INT(server_signal(&s1, SIGTERM), 0);
    CHECK_EQ_INT(server_signal(&s2, SIGTERM), 0);
    agent_stop(&own);
}

/* ---- the watch: a new instance shows without waiting for the cache TTL ---- */

static void
test_watch_new_instance(void)
{
    char name[96];
    svc_name(name, sizeof(name), "watch");
    server_proc s1, s2;
    spawn_registered(&s1, &agent, name, "w1", NULL);
    rclient c;
    rclient_open(&c, agent.addr, NULL); /* cache TTL 60 s */
    const char *tags[] = {"w1", "w2"};
    CHECK_EQ_INT(call_tags(&c, name, 3, tags, 2), 1);
    spawn_registered(&s2, &agent, name, "w2", NULL);
    int64_t t = cache_wait(&c, name, s2.tag, 1, SLACK_MS);
    printf("watch: the new instance was in the client's cache %lld ms after it registered "
           "(cache TTL 60 s)\n",
           (long long)t);
    CHECK(t >= 0);
    CHECK_EQ_INT(call_tags(&c, name, 4, tags, 2), 2);
    rclient_close(&c);
    CHECK_EQ_INT(server_signal(&s1, SIGTERM), 0);
    CHECK_EQ_INT(server_signal(&s2, SIGTERM), 0);
}

/* ---- a slow agent does not slow the calls ---- */

static void
test_slow_agent(void)
{
    SKIP_IF_REAL(&agent, "slow agent");
    char name[96];
    svc_name(name, sizeof(name), "slow");
    /* A TTL that outlives a 2 s delay on every TTL pass. */
    const char *const env[] = {"MICRO_REGISTER_TTL=8", "MICRO_REGISTER_INTERVAL=1",
                               "ECHO_DEREGISTER_WAIT_MS=300", NULL};
    server_proc s1, s2;
    spawn_registered(&s1, &agent, name, "sl1", env);
    spawn_registered(&s2, &agent, name, "sl2", env);
    /* A cache TTL well inside the slow period: entries expire and are refreshed while every
     * registry request takes 2 s. */
    rclient_opts co = {.cache_ttl_ms = 1000};
    rclient c;
    rclient_open(&c, agent.addr, &co);
    const char *tags[] = {"sl1", "sl2"};
    CHECK_EQ_INT(call_tags(&c, name, 4, tags, 2), 2);
    agent_control(&agent, "/_test/delay?ms=2000");
    load *l = load_start(c.cli, name, NULL, 1, 1000);
    sleep_ms(5000);
    load_stop(l);
    agent_control(&agent, "/_test/delay?ms=0");
    load_sum all = load_sum_between(l, 0, UINT64_MAX, 500, NULL);
    printf("slow agent (2 s per request): %zu calls, %zu failed, %zu took 500 ms or more, the "
           "longest %llu ms\n",
           all.calls, all.failed, all.slow, (unsigned long long)all.max_ms);
    load_print_failures(l);
    CHECK(all.calls > 20);
    CHECK_EQ_INT(all.failed, 0);
    CHECK_EQ_INT(all.slow, 0);
    load_free(l);
    rclient_close(&c);
    CHECK_EQ_INT(server_signal(&s1, SIGTERM), 0);
    CHECK_EQ_INT(server_signal(&s2, SIGTERM), 0);
}

int
main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    agent_start(&agent, 1, NULL);
    if (agent.real) {
        printf("against the real agent at %s\n", agent.addr);
    }
    RUN(test_discover_kill_term);
    RUN(test_sigterm_order);
    RUN(test_register_check);
    RUN(test_agent_restart);
    RUN(test_refresh_retry);
    RUN(test_agent_down_at_start);
    RUN(test_stale_cache);
    RUN(test_watch_new_instance);
    RUN(test_slow_agent);
    agent_stop(&agent);
    TEST_DONE();
}
