/* One stream of 1,000,000 small messages, C server to C client in one process: every message
 * arrives, in order, the process's resident memory stays flat (sampled after 100,000 messages
 * and at the end) and the writer never holds more than its window unwritten (the HTTP head of
 * each message counted). Then the same count client to server. */
#include "rpctest.pb-c.h"
#include "test.h"
#include "test_loop.h"

#include <cmicro/cmicro.h>
#include <stdatomic.h>
#include <uv.h>

/* Under AddressSanitizer freed memory sits in its quarantine (RSS says nothing) and every
 * message costs more: a fifth of the messages, and the memory checks are left to ASan. */
#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifdef ASAN
#define N 200000
#define RSS_FLAT(early, end) ((early) > 0)
#else
#define N 1000000
#define RSS_FLAT(early, end) ((early) > 0 && (end) - (early) < 4096)
#endif
#define WINDOW 65536 /* the default */

static atomic_size_t flood_max; /* the most the server's side held unwritten */

static long
rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kib;
}

static int
flood(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    Rpctest__Req *in;
    int rc = cm_stream_recv(st, (void **)&in);
    if (rc < 0) {
        return rc;
    }
    int64_t n = in->n;
    cm_message_free(&rpctest__req__descriptor, in);
    for (int64_t i = 0; i < n && rc == 0; i++) {
        Rpctest__Rsp out = RPCTEST__RSP__INIT;
        out.n = i;
        rc = cm_stream_send(st, &out);
    }
    cm_stream_stats ss;
    cm_stream_get_stats(st, &ss);
    atomic_store(&flood_max, ss.max_queued);
    return rc;
}

static int
drink(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    int64_t want = 0;
    Rpctest__Req *in;
    int rc;
    while ((rc = cm_stream_recv(st, (void **)&in)) == 0) {
        int ok = in->n == want;
        cm_message_free(&rpctest__req__descriptor, in);
        if (!ok) {
            return cm_ctx_error(ctx, 400, "message %lld out of order", (long long)want);
        }
        want++;
    }
    if (rc != CM_EOF) {
        return rc;
    }
    Rpctest__Rsp out = RPCTEST__RSP__INIT;
    out.n = want;
    return cm_stream_send(st, &out);
}

int
main(void)
{
    cm_loop *loop;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.address = "127.0.0.1:0";
    cm_server *s;
    CHECK_EQ_INT(cm_server_new(loop, &o, &s), 0);
    cm_handler h = {"Load.Flood",
                    &rpctest__req__descriptor,
                    &rpctest__rsp__descriptor,
                    flood,
                    CM_HANDLER_STREAM,
                    NULL,
                    NULL,
                    NULL};
    CHECK_EQ_INT(cm_server_handle(s, &h, NULL), 0);
    h.endpoint = "Load.Drink";
    h.fn = drink;
    CHECK_EQ_INT(cm_server_handle(s, &h, NULL), 0);
    CHECK_EQ_INT(cm_server_start(s), 0);
    char addr[128];
    snprintf(addr, sizeof addr, "%s", cm_server_address(s));
    CHECK_EQ_INT(cm_loop_start(loop), 0);
    cm_client *c;
    CHECK_EQ_INT(cm_client_new(NULL, NULL, &c), 0);
    cm_call_opts co;
    cm_call_opts_init(&co);
    co.address = addr;

    /* Server to client. */
    cm_stream *st;
    CHECK_EQ_INT(cm_client_stream(c, "load", "Load.Flood", &rpctest__req__descriptor,
                                  &rpctest__rsp__descriptor, &co, NULL, &st, NULL),
                 0);
    Rpctest__Req req = RPCTEST__REQ__INIT;
    req.n = N;
    CHECK_EQ_INT(cm_stream_send(st, &req), 0);
    uint64_t t0 = cm_now_ms();
    long rss_early = 0;
    for (int64_t i = 0; i < N; i++) {
        Rpctest__Rsp *m;
        int rc = cm_stream_recv(st, (void **)&m);
        if (rc != 0 || m->n != i) {
            fprintf(stderr, "message %lld: rc %d\n", (long long)i, rc);
        }
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(m->n, i);
        cm_message_free(&rpctest__rsp__descriptor, m);
        if (i == N / 10) {
            rss_early = rss_kib();
        }
    }
    void *m;
    CHECK_EQ_INT(cm_stream_recv(st, &m), CM_EOF);
    long rss_end = rss_kib();
    uint64_t ms = cm_now_ms() - t0;
    cm_stream_free(st);
    fprintf(stderr,
            "server to client: %d messages in %llu ms (%.0f/s); RSS %ld KiB after %d, "
            "%ld KiB at the end\n",
            N, (unsigned long long)ms, N * 1000.0 / (double)(ms ? ms : 1), rss_early, N / 10,
            rss_end);
    CHECK(RSS_FLAT(rss_early, rss_end));
    CHECK(atomic_load(&flood_max) > 0 && atomic_load(&flood_max) <= WINDOW);

    /* Client to server. */
    CHECK_EQ_INT(cm_client_stream(c, "load", "Load.Drink", &rpctest__req__descriptor,
                                  &rpctest__rsp__descriptor, &co, NULL, &st, NULL),
                 0);
    t0 = cm_now_ms();
    for (int64_t i = 0; i < N; i++) {
        req.n = i;
        CHECK_EQ_INT(cm_stream_send(st, &req), 0);
        if (i == N / 10) {
            rss_early = rss_kib();
        }
    }
    CHECK_EQ_INT(cm_stream_close_send(st), 0);
    Rpctest__Rsp *total;
    CHECK_EQ_INT(cm_stream_recv(st, (void **)&total), 0);
    CHECK_EQ_INT(total->n, N);
    cm_message_free(&rpctest__rsp__descriptor, total);
    cm_stream_stats ss;
    cm_stream_get_stats(st, &ss);
    CHECK_EQ_INT(ss.sent, N);
    CHECK(ss.max_queued > 0 && ss.max_queued <= WINDOW);
    rss_end = rss_kib();
    ms = cm_now_ms() - t0;
    cm_stream_free(st);
    fprintf(stderr,
            "client to server: %d messages in %llu ms (%.0f/s); RSS %ld KiB after %d, "
            "%ld KiB at the end\n",
            N, (unsigned long long)ms, N * 1000.0 / (double)(ms ? ms : 1), rss_early, N / 10,
            rss_end);
    CHECK(RSS_FLAT(rss_early, rss_end));

    cm_client_free(c);
    test_on_loop(loop, test_free_server, s);
    cm_loop_stop(loop);
    cm_loop_free(loop);
    TEST_DONE();
}
