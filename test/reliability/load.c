/* A load generator for echo-server (echo_server.c): threads of blocking Echo.Call calls to one
 * address, at a fixed total rate or as fast as they go, with a progress line per interval.
 *
 *   cm-load --address HOST:PORT [--concurrency N] [--duration S] [--rate CALLS_PER_S]
 *           [--timeout MS] [--attempt-timeout MS] [--attempts N] [--idempotent]
 *           [--report S] [--max-errors N] [--payload BYTES]
 *
 * Progress (stdout, one line per --report seconds, for that interval):
 *   t=5.0 calls=1234 errors=0 rate=246.8 p50_ms=0.40 p99_ms=2.10 max_ms=5.00
 * and at the end, for the whole run:
 *   total calls=N errors=E timeouts=T rate=R max_ms=M
 * The first failures are described on stderr. Exit status 1 when errors exceed --max-errors or a
 * call outlived its timeout by more than a second (a hang), else 0.
 */
#include "rpctest.pb-c.h"
#include <uv.h>

#include <cmicro/cmicro.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 64
#define BUCKET_US 50
#define NBUCKETS 8192 /* 50 us steps up to ~410 ms, then one overflow bucket */

typedef struct stats {
    uint64_t calls, errors, timeouts, max_us;
    uint64_t hist[NBUCKETS + 1];
} stats;

static struct {
    const char *address;
    int concurrency;
    double duration_s;
    double rate;
    uint64_t timeout_ms, attempt_timeout_ms;
    int attempts;
    int idempotent;
    double report_s;
    uint64_t max_errors;
    size_t payload;
} cfg = {NULL, 4, 10, 0, 5000, 2000, 6, 0, 5, 0, 0};

static cm_client *client;
static char *payload;
static uint64_t start_us;
static atomic_uint_fast64_t next_slot;
static atomic_uint_fast64_t seq;
static atomic_int stopping;
static uv_mutex_t mu;
static stats interval_st, total_st;
static int printed_errors;

static uint64_t
now_us(void)
{
    return uv_hrtime() / 1000u;
}

static void
record(stats *s, uint64_t us, int rc)
{
    s->calls++;
    s->errors += rc != 0;
    s->timeouts += rc == CM_ETIMEDOUT;
    s->max_us = us > s->max_us ? us : s->max_us;
    uint64_t b = us / BUCKET_US;
    s->hist[b < NBUCKETS ? b : NBUCKETS]++;
}

static double
percentile_ms(const stats *s, double q)
{
    uint64_t want = (uint64_t)(q * (double)s->calls), seen = 0;
    for (size_t b = 0; b <= NBUCKETS; b++) {
        seen += s->hist[b];
        if (seen > want) {
            return b == NBUCKETS ? (double)s->max_us / 1000.0
                                 : (double)((b + 1) * BUCKET_US) / 1000.0;
        }
    }
    return (double)s->max_us / 1000.0;
}

static void
worker(void *arg)
{
    (void)arg;
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.address = cfg.address;
    o.timeout_ms = cfg.timeout_ms;
    o.attempt_timeout_ms = cfg.attempt_timeout_ms;
    o.max_attempts = cfg.attempts;
    o.idempotent = cfg.idempotent;
    uint64_t end_us = start_us + (uint64_t)(cfg.duration_s * 1e6);
    while (!atomic_load(&stopping)) {
        if (cfg.rate > 0) {
            /* A fixed total rate: each call takes the next slot of the schedule. */
            uint64_t k = atomic_fetch_add(&next_slot, 1);
            uint64_t at = start_us + (uint64_t)((double)k * 1e6 / cfg.rate);
            if (at >= end_us) {
                break;
            }
            uint64_t now = now_us();
            if (at > now) {
                usleep((useconds_t)(at - now));
            }
        } else if (now_us() >= end_us) {
            break;
        }
        Rpctest__Req req = RPCTEST__REQ__INIT;
        req.n = (int64_t)atomic_fetch_add(&seq, 1);
        req.name = payload;
        Rpctest__Rsp *rsp = NULL;
        cm_error *err = NULL;
        uint64_t t0 = now_us();
        int rc = cm_client_call(client, "cm.load.echo", "Echo.Call", &rpctest__req__descriptor,
                                &req, &rpctest__rsp__descriptor, (void **)&rsp, &o, &err);
        uint64_t us = now_us() - t0;
        if (rc == 0 && rsp->n != req.n) {
            rc = CM_EPROTO;
        }
        uv_mutex_lock(&mu);
        record(&interval_st, us, rc);
        record(&total_st, us, rc);
        if (rc != 0 && printed_errors < 20) {
            printed_errors++;
            fprintf(stderr, "cm-load: call failed after %.1f ms: %s: %s\n", (double)us / 1000.0,
                    cm_err_name(rc), err != NULL ? err->detail : "");
        }
        uv_mutex_unlock(&mu);
        cm_message_free(&rpctest__rsp__descriptor, rsp);
        cm_error_free(err);
    }
}

static int
usage(void)
{
    fprintf(stderr, "usage: cm-load --address HOST:PORT [--concurrency N] [--duration S] "
                    "[--rate CALLS_PER_S] [--timeout MS] [--attempt-timeout MS] [--attempts N] "
                    "[--idempotent] [--report S] [--max-errors N] [--payload BYTES]\n");
    return 2;
}

static int
parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--idempotent") == 0) {
            cfg.idempotent = 1;
            continue;
        }
        if (v == NULL) {
            return -1;
        }
        i++;
        if (strcmp(a, "--address") == 0) {
            cfg.address = v;
        } else if (strcmp(a, "--concurrency") == 0) {
            cfg.concurrency = atoi(v);
        } else if (strcmp(a, "--duration") == 0) {
            cfg.duration_s = atof(v);
        } else if (strcmp(a, "--rate") == 0) {
            cfg.rate = atof(v);
        } else if (strcmp(a, "--timeout") == 0) {
            cfg.timeout_ms = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--attempt-timeout") == 0) {
            cfg.attempt_timeout_ms = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--attempts") == 0) {
            cfg.attempts = atoi(v);
        } else if (strcmp(a, "--report") == 0) {
            cfg.report_s = atof(v);
        } else if (strcmp(a, "--max-errors") == 0) {
            cfg.max_errors = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--payload") == 0) {
            cfg.payload = strtoul(v, NULL, 10);
        } else {
            return -1;
        }
    }
    if (cfg.address == NULL || cfg.concurrency < 1 || cfg.concurrency > MAX_THREADS ||
        cfg.duration_s <= 0 || cfg.report_s <= 0 || cfg.timeout_ms == 0 || cfg.attempts < 1) {
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0) {
        return usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    payload = calloc(1, cfg.payload + 1);
    if (payload == NULL) {
        return 1;
    }
    memset(payload, 'x', cfg.payload);
    uv_mutex_init(&mu);
    int rc = cm_client_new(NULL, NULL, &client);
    if (rc < 0) {
        fprintf(stderr, "cm-load: %s\n", cm_strerror(rc));
        return 1;
    }
    uv_thread_t th[MAX_THREADS];
    start_us = now_us();
    for (int i = 0; i < cfg.concurrency; i++) {
        uv_thread_create(&th[i], worker, NULL);
    }
    uint64_t end_us = start_us + (uint64_t)(cfg.duration_s * 1e6);
    uint64_t last_us = start_us;
    for (;;) {
        uint64_t now = now_us();
        uint64_t next = last_us + (uint64_t)(cfg.report_s * 1e6);
        if (next > end_us) {
            next = end_us;
        }
        if (now < next) {
            usleep((useconds_t)(next - now > 200000 ? 200000 : next - now));
            continue;
        }
        uv_mutex_lock(&mu);
        stats s = interval_st;
        memset(&interval_st, 0, sizeof(interval_st));
        uv_mutex_unlock(&mu);
        double span = (double)(now - last_us) / 1e6;
        printf("t=%.1f calls=%" PRIu64 " errors=%" PRIu64 " rate=%.1f p50_ms=%.2f p99_ms=%.2f "
               "max_ms=%.2f\n",
               (double)(now - start_us) / 1e6, s.calls, s.errors,
               span > 0 ? (double)s.calls / span : 0.0, percentile_ms(&s, 0.5),
               percentile_ms(&s, 0.99), (double)s.max_us / 1000.0);
        last_us = now;
        if (now >= end_us) {
            break;
        }
    }
    atomic_store(&stopping, 1);
    for (int i = 0; i < cfg.concurrency; i++) {
        uv_thread_join(&th[i]);
    }
    double secs = (double)(now_us() - start_us) / 1e6;
    printf("total calls=%" PRIu64 " errors=%" PRIu64 " timeouts=%" PRIu64 " rate=%.1f "
           "max_ms=%.2f\n",
           total_st.calls, total_st.errors, total_st.timeouts, (double)total_st.calls / secs,
           (double)total_st.max_us / 1000.0);
    int hang = total_st.max_us > (cfg.timeout_ms + 1000) * 1000;
    if (hang) {
        fprintf(stderr, "cm-load: a call took %.1f ms, past its %" PRIu64 " ms timeout\n",
                (double)total_st.max_us / 1000.0, cfg.timeout_ms);
    }
    cm_client_free(client);
    uv_mutex_destroy(&mu);
    free(payload);
    return total_st.errors > cfg.max_errors || hang ? 1 : 0;
}
