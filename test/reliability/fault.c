/* Fault injection under load, on loopback only: servers killed (SIGKILL) and stopped (SIGTERM)
 * while several client threads call them, the registry (the Python Consul test agent) killed and
 * restarted, the registry slowed down, a peer that accepts and never answers, and a peer that
 * closes in the middle of its response. Every phase is bounded in time and stops by itself.
 *
 * The bound this file holds the client to (README "Reliability"): after a node dies without
 * deregistering, the client's cache drops it within
 *     TTL (the registration's check turns critical)
 *   + watch lag (the blocking query wakes on that change; well under 1 s)
 * and the traffic leaves it much earlier, at the first refused connection (passive health, one
 * failure ejects it; the call is retried on another node since nothing was sent). Calls that
 * were on the wire to the node when it died fail (they may have been processed); nothing else
 * does, and no call outlives its deadline. */
#include "rel.h"
#include <uv.h>

#define TTL_MS 3000u
#define SLACK_MS 2500u
#define THREADS 6
#define CALL_TIMEOUT_MS 5000u

static const char *const fast_reg[] = {"MICRO_REGISTER_TTL=3", "MICRO_REGISTER_INTERVAL=1", NULL};

static void
svc_name(char *out, size_t len, const char *what)
{
    snprintf(out, len, "cm.fault.%s-%d", what, (int)getpid());
}

static void
spawn_registered(server_proc *p, const test_agent *a, const char *name, const char *tag,
                 const char *const *env)
{
    server_spawn(p, name, tag, a->addr, env != NULL ? env : fast_reg);
    CHECK(agent_wait(a, name, p->id, 1, 10000) >= 0);
}

static void
print_sum(const char *what, const load_sum *s)
{
    printf("  %s: %zu calls, %zu ok, %zu failed, %zu slow, longest %llu ms\n", what, s->calls,
           s->ok, s->failed, s->slow, (unsigned long long)s->max_ms);
}

/* ---- a server dies under load ---- */

static void
test_sigkill_under_load(void)
{
    test_agent agent;
    agent_spawn(&agent, 0, NULL);
    char name[96];
    svc_name(name, sizeof(name), "kill");
    server_proc k[3];
    const char *tags[] = {"k1", "k2", "k3"};
    for (int i = 0; i < 3; i++) {
        spawn_registered(&k[i], &agent, name, tags[i], NULL);
    }
    rclient c;
    rclient_open(&c, agent.addr, NULL);
    load *l = load_start(c.cli, name, NULL, THREADS, 200);
    sleep_ms(1000);
    uint64_t tk = now_ms();
    server_signal(&k[0], SIGKILL);
    int64_t t_cache = -1;
    while (now_ms() - tk < TTL_MS + 1000 + SLACK_MS && t_cache < 0) {
        if (!cache_has(&c, name, "k1")) {
            t_cache = (int64_t)(now_ms() - tk);
        }
        sleep_ms(20);
    }
    sleep_ms(1000);
    load_stop(l);
    uint64_t te = t_cache > 0 ? tk + (uint64_t)t_cache : now_ms();
    load_sum all = load_sum_between(l, 0, UINT64_MAX, 100, NULL);
    load_sum early = load_sum_between(l, 0, tk, 100, NULL);
    load_sum window = load_sum_between(l, tk, te, 100, NULL);
    load_sum after = load_sum_between(l, te, UINT64_MAX, 100, NULL);
    load_sum late = load_sum_between(l, tk + 1500, UINT64_MAX, 100, NULL);
    printf("SIGKILL under load (%d threads): dropped from the client's cache %lld ms after the "
           "kill (bound: TTL %u + watch lag 1000 + slack %u)\n",
           THREADS, (long long)t_cache, TTL_MS, SLACK_MS);
    print_sum("before the kill", &early);
    print_sum("kill to cache drop", &window);
    print_sum("after the cache drop", &after);
    load_print_failures(l);
    CHECK(t_cache >= 0);
    CHECK(early.calls > 50 && after.calls > 50);
    /* No call hangs: each ends by its deadline. */
    CHECK(all.max_ms <= CALL_TIMEOUT_MS + 1000);
    /* Only calls that were on the wire to k1 when it died fail: at most one per thread, and all
     * right at the kill. */
    CHECK(all.failed <= THREADS);
    CHECK_EQ_INT(late.failed, 0);
    /* Passive health: between the kill and the cache drop, k1 is tried again only after each
     * ejection back-off (1 s, 2 s), by the few calls picking it at that moment (retried after
     * 100 ms). Without it a third of the calls would be retried. */
    CHECK(window.slow <= 4 * THREADS);
    CHECK(window.slow * 10 < window.calls);
    load_free(l);
    rclient_close(&c);
    server_kill(&k[1]);
    server_kill(&k[2]);
    agent_stop(&agent);
}

/* ---- a server stops gracefully under load ---- */

static void
test_sigterm_under_load(void)
{
    test_agent agent;
    agent_spawn(&agent, 0, NULL);
    char name[96];
    svc_name(name, sizeof(name), "term");
    server_proc t1, t2;
    spawn_registered(&t1, &agent, name, "t1", NULL);
    spawn_registered(&t2, &agent, name, "t2", NULL);
    rclient c;
    rclient_open(&c, agent.addr, NULL);
    load *l = load_start(c.cli, name, NULL, THREADS, 200);
    sleep_ms(1000);
    uint64_t tk = now_ms();
    int st = server_signal(&t1, SIGTERM);
    uint64_t t_exit = now_ms() - tk;
    sleep_ms(1500);
    load_stop(l);
    load_sum all = load_sum_between(l, 0, UINT64_MAX, 100, NULL);
    load_sum after = load_sum_between(l, tk, UINT64_MAX, 100, NULL);
    printf("SIGTERM under load (%d threads): exited after %llu ms\n", THREADS,
           (unsigned long long)t_exit);
    print_sum("all", &all);
    print_sum("from the signal", &after);
    load_print_failures(l);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(after.calls > 50);
    CHECK(all.max_ms <= CALL_TIMEOUT_MS + 1000);
    /* Deregistered first, then drained: nobody's call fails. */
    CHECK_EQ_INT(all.failed, 0);
    load_free(l);
    rclient_close(&c);
    server_kill(&t2);
    agent_stop(&agent);
}

/* ---- the registry dies and comes back (empty) under load ---- */

static void
test_registry_restart_under_load(void)
{
    test_agent agent;
    agent_spawn(&agent, 0, NULL);
    char name[96];
    svc_name(name, sizeof(name), "reg");
    server_proc r1, r2;
    spawn_registered(&r1, &agent, name, "r1", NULL);
    spawn_registered(&r2, &agent, name, "r2", NULL);
    /* A cache TTL shorter than the outage: the entry is served past it (stale-if-error). */
    rclient_opts co = {.cache_ttl_ms = 2000};
    rclient c;
    rclient_open(&c, agent.addr, &co);
    load *l = load_start(c.cli, name, NULL, 4, 500);
    sleep_ms(1000);
    uint64_t tk = now_ms();
    kill(agent.pid, SIGKILL);
    int st;
    waitpid(agent.pid, &st, 0);
    sleep_ms(4000);
    uint64_t tr = now_ms();
    agent_spawn(&agent, agent.port, NULL);
    int64_t t1 = agent_wait(&agent, name, r1.id, 1, 1000 + SLACK_MS);
    int64_t t2 = agent_wait(&agent, name, r2.id, 1, 1000 + SLACK_MS);
    uint64_t tb = now_ms();
    sleep_ms(2000);
    load_stop(l);
    load_sum down = load_sum_between(l, tk, tr, 500, NULL);
    load_sum back = load_sum_between(l, tr, tb, 500, NULL);
    load_sum after = load_sum_between(l, tb + 1000, UINT64_MAX, 500, NULL);
    load_sum all = load_sum_between(l, 0, UINT64_MAX, 500, NULL);
    printf("registry killed for 4 s under load: both services registered again %lld / %lld ms "
           "after it came back\n",
           (long long)t1, (long long)t2);
    print_sum("registry down", &down);
    print_sum("until registered again", &back);
    print_sum("from 1 s after that", &after);
    load_print_failures(l);
    CHECK(t1 >= 0 && t2 >= 0);
    CHECK(down.calls > 50 && after.calls > 50);
    /* While the registry is down, the calls flow from the cache. */
    CHECK_EQ_INT(down.failed, 0);
    CHECK_EQ_INT(after.failed, 0);
    CHECK_EQ_INT(all.slow, 0);
    /* Known limit (README): the agent comes back empty, and its first answers, until the
     * services register again, are authoritative: "not found". Those calls fail fast, and only
     * in that window (plus the watch's lag): CM_ENOTFOUND, or CM_ENONODE when an answer holds
     * the service with no node to pick yet. */
    for (size_t i = 0; i < l->nevs; i++) {
        const call_ev *e = &l->evs[i];
        if (e->status != 0) {
            CHECK(e->status == CM_ENOTFOUND || e->status == CM_ENONODE);
            CHECK(e->t1 >= tr && e->t1 < tb + 1000);
            CHECK(e->t1 - e->t0 < 500);
        }
    }
    load_free(l);
    rclient_close(&c);
    server_kill(&r1);
    server_kill(&r2);
    agent_stop(&agent);
}

/* ---- the registry answers, slowly ---- */

static void
test_slow_registry_under_load(void)
{
    test_agent agent;
    agent_spawn(&agent, 0, NULL);
    char name[96];
    svc_name(name, sizeof(name), "slow");
    const char *const env[] = {"MICRO_REGISTER_TTL=8", "MICRO_REGISTER_INTERVAL=1", NULL};
    server_proc s1, s2;
    spawn_registered(&s1, &agent, name, "sl1", env);
    spawn_registered(&s2, &agent, name, "sl2", env);
    rclient_opts co = {.cache_ttl_ms = 1000};
    rclient c;
    rclient_open(&c, agent.addr, &co);
    load *l = load_start(c.cli, name, NULL, 4, 500);
    sleep_ms(500);
    agent_control(&agent, "/_test/delay?ms=3000");
    uint64_t t0 = now_ms();
    sleep_ms(6000);
    agent_control(&agent, "/_test/delay?ms=0");
    load_stop(l);
    load_sum slow = load_sum_between(l, t0, UINT64_MAX, 500, NULL);
    printf("registry delayed 3 s per request, cache TTL 1 s:\n");
    print_sum("while slow (500 ms or more counts as slow)", &slow);
    load_print_failures(l);
    CHECK(slow.calls > 50);
    CHECK_EQ_INT(slow.failed, 0);
    CHECK_EQ_INT(slow.slow, 0);
    load_free(l);
    rclient_close(&c);
    server_kill(&s1);
    server_kill(&s2);
    agent_stop(&agent);
}

/* ---- raw peers that misbehave ---- */

enum {
    PEER_OK,            /* answers like a go-micro server */
    PEER_SILENT,        /* reads the request, never answers */
    PEER_CLOSE_BODY,    /* answers headers and part of the body, then closes */
    PEER_CLOSE_HEADERS, /* answers part of the status line and headers, then closes */
    PEER_CLOSE_NOTHING, /* closes once the request is in */
};

#define PEER_CONNS 32

typedef struct raw_peer {
    int lfd;
    char addr[32];
    atomic_int mode;
    atomic_int accepted;
    atomic_int eof_seen; /* connections the client closed */
    atomic_int stop;
    uv_thread_t th;
} raw_peer;

typedef struct peer_conn {
    int fd;
    cm_buf in;
} peer_conn;

/* The length of a complete request at the start of b (headers and Content-Length body), or 0. */
static size_t
request_len(const cm_buf *b, size_t *hdr_len, size_t *body_len)
{
    const char *p = (const char *)b->data;
    const char *end = memmem(p, b->len, "\r\n\r\n", 4);
    if (end == NULL) {
        return 0;
    }
    *hdr_len = (size_t)(end - p) + 4;
    *body_len = 0;
    const char *cl = memmem(p, *hdr_len, "Content-Length:", 15);
    if (cl != NULL) {
        *body_len = strtoul(cl + 15, NULL, 10);
    }
    return b->len >= *hdr_len + *body_len ? *hdr_len + *body_len : 0;
}

static void
write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w <= 0) {
            return;
        }
        c += w;
        n -= (size_t)w;
    }
}

/* Acts on one complete request. Returns 0 to keep the connection, -1 to close it. */
static int
peer_answer(raw_peer *p, peer_conn *pc, size_t hdr_len, size_t body_len)
{
    int mode = atomic_load(&p->mode);
    if (mode == PEER_SILENT) {
        return 0;
    }
    if (mode == PEER_CLOSE_NOTHING) {
        return -1;
    }
    if (mode == PEER_CLOSE_HEADERS) {
        const char *part = "HTTP/1.1 200 OK\r\nContent-Type: applica";
        write_all(pc->fd, part, strlen(part));
        return -1;
    }
    Rpctest__Req *req = rpctest__req__unpack(NULL, body_len, pc->in.data + hdr_len);
    Rpctest__Rsp rsp = RPCTEST__RSP__INIT;
    rsp.msg = "raw";
    rsp.header = "raw";
    rsp.n = req != NULL ? req->n : 0;
    rpctest__req__free_unpacked(req, NULL);
    uint8_t body[256];
    size_t blen = rpctest__rsp__pack(&rsp, body);
    char head[256];
    int hlen = snprintf(head, sizeof(head),
                        "HTTP/1.1 200 OK\r\nContent-Type: application/protobuf\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        mode == PEER_CLOSE_BODY ? blen + 100 : blen);
    write_all(pc->fd, head, (size_t)hlen);
    write_all(pc->fd, body, blen);
    return mode == PEER_CLOSE_BODY ? -1 : 0;
}

static void
peer_thread(void *arg)
{
    raw_peer *p = arg;
    peer_conn conns[PEER_CONNS];
    size_t n = 0;
    while (!atomic_load(&p->stop)) {
        struct pollfd pfd[PEER_CONNS + 1];
        pfd[0] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        for (size_t i = 0; i < n; i++) {
            pfd[i + 1] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
        }
        if (poll(pfd, n + 1, 50) <= 0) {
            continue;
        }
        if ((pfd[0].revents & POLLIN) && n < PEER_CONNS) {
            int fd = accept(p->lfd, NULL, NULL);
            if (fd >= 0) {
                conns[n++] = (peer_conn){.fd = fd};
                atomic_fetch_add(&p->accepted, 1);
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (!(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            peer_conn *pc = &conns[i];
            char buf[4096];
            ssize_t r = read(pc->fd, buf, sizeof(buf));
            int drop = 0;
            if (r <= 0) {
                atomic_fetch_add(&p->eof_seen, 1);
                drop = 1;
            } else {
                CHECK_EQ_INT(cm_buf_append(&pc->in, buf, (size_t)r), 0);
                size_t hl, bl, total;
                while (!drop && (total = request_len(&pc->in, &hl, &bl)) > 0) {
                    drop = peer_answer(p, pc, hl, bl) < 0;
                    memmove(pc->in.data, pc->in.data + total, pc->in.len - total);
                    pc->in.len -= total;
                }
            }
            if (drop) {
                close(pc->fd);
                cm_buf_free(&pc->in);
                conns[i] = conns[--n];
                pfd[i + 1] = pfd[n + 1];
                i--;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        close(conns[i].fd);
        cm_buf_free(&conns[i].in);
    }
}

static void
peer_start(raw_peer *p, int mode)
{
    memset(p, 0, sizeof(*p));
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(p->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    CHECK(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(p->lfd, 64) == 0);
    CHECK(getsockname(p->lfd, (struct sockaddr *)&sa, &len) == 0);
    snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    atomic_store(&p->mode, mode);
    CHECK_EQ_INT(uv_thread_create(&p->th, peer_thread, p), 0);
}

static void
peer_stop(raw_peer *p)
{
    atomic_store(&p->stop, 1);
    uv_thread_join(&p->th);
    close(p->lfd);
}

/* Waits (2 s at most) until *counter reaches want. */
static int
wait_count(atomic_int *counter, int want)
{
    for (int i = 0; i < 200 && atomic_load(counter) < want; i++) {
        sleep_ms(10);
    }
    return atomic_load(counter);
}

typedef struct timed {
    int rc;
    int32_t code;
    char detail[256];
    uint64_t ms;
} timed;

static timed
timed_call(cm_client *cli, const cm_call_opts *o)
{
    timed t = {0};
    uint64_t t0 = now_ms();
    t.rc = echo_call(cli, "cm.fault.raw", o, 7, NULL, 0, &t.code, t.detail, sizeof(t.detail));
    t.ms = now_ms() - t0;
    printf("  -> %s code %d after %llu ms: %s\n", t.rc == 0 ? "ok" : cm_err_name(t.rc), (int)t.code,
           (unsigned long long)t.ms, t.rc == 0 ? "" : t.detail);
    return t;
}

static void
test_silent_peer(void)
{
    raw_peer p;
    peer_start(&p, PEER_SILENT);
    cm_client *cli;
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &cli), 0);
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = p.addr;
    o.attempt_timeout_ms = 300;
    o.timeout_ms = 600;

    /* Not idempotent: no retry could follow a timeout, so the one attempt runs to the call's
     * deadline (not the attempt timeout) and ends as a 408 naming that limit. */
    printf("a peer that accepts and never answers (attempt timeout 300 ms, call 600 ms):\n");
    timed t = timed_call(cli, &o);
    CHECK_EQ_INT(t.rc, CM_ETIMEDOUT);
    CHECK_EQ_INT(t.code, 408);
    CHECK(t.ms >= 550 && t.ms < 600 + SLACK_MS);
    CHECK(strstr(t.detail, p.addr) != NULL);
    CHECK(strstr(t.detail, "call's timeout of 600 ms") != NULL);
    o.timeout_ms = 3000;
    CHECK_EQ_INT(atomic_load(&p.accepted), 1);
    /* The connection was closed, not pooled: the peer sees its end, the next call dials. */
    CHECK_EQ_INT(wait_count(&p.eof_seen, 1), 1);
    t = timed_call(cli, &o);
    CHECK_EQ_INT(t.rc, CM_ETIMEDOUT);
    CHECK_EQ_INT(wait_count(&p.accepted, 2), 2);

    /* Idempotent: retried (300 ms, back-off 100 ms, 300 ms) until the next back-off (600 ms)
     * would pass the call's deadline. */
    o.idempotent = 1;
    o.timeout_ms = 1000;
    t = timed_call(cli, &o);
    CHECK_EQ_INT(t.rc, CM_ETIMEDOUT);
    CHECK(t.ms >= 600 && t.ms < 1000 + SLACK_MS);
    CHECK(wait_count(&p.accepted, 4) >= 4);

    /* A call timeout shorter than the attempt timeout bounds the attempt. */
    o.idempotent = 0;
    o.attempt_timeout_ms = 10000;
    o.timeout_ms = 400;
    t = timed_call(cli, &o);
    CHECK_EQ_INT(t.rc, CM_ETIMEDOUT);
    CHECK(t.ms >= 350 && t.ms < 400 + SLACK_MS);
    int accepted = atomic_load(&p.accepted);
    CHECK_EQ_INT(wait_count(&p.eof_seen, accepted), accepted);
    cm_client_free(cli);
    peer_stop(&p);
}

static void
test_peer_closes_mid_response(void)
{
    raw_peer p;
    peer_start(&p, PEER_OK);
    cm_client *cli;
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &cli), 0);
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = p.addr;
    o.attempt_timeout_ms = 2000;
    o.timeout_ms = 4000;
    printf("a peer that closes in the middle of its response:\n");
    CHECK_EQ_INT(timed_call(cli, &o).rc, 0);
    const int modes[] = {PEER_CLOSE_BODY, PEER_CLOSE_HEADERS, PEER_CLOSE_NOTHING};
    for (int i = 0; i < 3; i++) {
        atomic_store(&p.mode, modes[i]);
        int before = atomic_load(&p.accepted);
        timed t = timed_call(cli, &o);
        /* A clear error at once, not a timeout, and no retry: the request was sent. */
        CHECK_EQ_INT(t.rc, CM_ECLOSED);
        CHECK(strstr(t.detail, "connection closed") != NULL);
        CHECK(strstr(t.detail, p.addr) != NULL);
        CHECK(t.ms < SLACK_MS);
        CHECK(atomic_load(&p.accepted) <= before + 1);
        /* The next call works. */
        atomic_store(&p.mode, PEER_OK);
        CHECK_EQ_INT(timed_call(cli, &o).rc, 0);
    }
    /* Idempotent calls are retried on a new connection. */
    atomic_store(&p.mode, PEER_CLOSE_BODY);
    o.idempotent = 1;
    o.max_attempts = 3;
    int before = atomic_load(&p.accepted);
    timed t = timed_call(cli, &o);
    CHECK_EQ_INT(t.rc, CM_ECLOSED);
    CHECK(strstr(t.detail, "attempt 3 of 3") != NULL);
    CHECK(atomic_load(&p.accepted) >= before + 2);
    atomic_store(&p.mode, PEER_OK);
    CHECK_EQ_INT(timed_call(cli, &o).rc, 0);
    cm_client_free(cli);
    peer_stop(&p);
}

int
main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    RUN(test_silent_peer);
    RUN(test_peer_closes_mid_response);
    RUN(test_sigkill_under_load);
    RUN(test_sigterm_under_load);
    RUN(test_registry_restart_under_load);
    RUN(test_slow_registry_under_load);
    TEST_DONE();
}
