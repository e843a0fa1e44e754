/* The cmicro client under load: N asynchronous calls in flight (closed loop) to Bench.Echo, by
 * service name through a memory registry and the cached selector, over pooled connections: the
 * client's cached hot path. Bounded like loadgen (a warm-up, then --duration seconds or
 * --max-requests answers) and printing the same key=value line. With --snap 1 it sends itself
 * SIGUSR2 at the start and the end of the window, for the malloc_count preload library.
 * Responses are borrowed (cm_call_opts.borrow_response) unless --owned 1 asks for owned ones.
 *
 *   client-cmicro --addr 127.0.0.1:PORT [--conns N] [--payload B] [--warmup S] [--duration S]
 *                 [--max-requests N] [--snap 0|1] [--owned 0|1] [--label NAME]
 */
#include "echo.pb-c.h"
#include <uv.h>

#include <cmicro/cmicro.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bench {
    cm_loop *loop;
    cm_registry *reg;
    cm_selector *sel;
    cm_client *client;
    cm_reg_service *svc;
    Bench__EchoMsg req;
    int nconns;
    size_t payload;
    double warmup_s, duration_s;
    uint64_t max_requests;
    int snap;
    cm_call_opts opts;
    const char *label;
    int phase; /* 1 warm-up, 2 measuring, 3 stopping */
    uint64_t t_phase, t_end;
    uint32_t *lat;
    uint64_t nlat, lat_cap;
    uint64_t errors, bad;
    int outstanding;
    uv_timer_t timer;
} bench;

typedef struct slot {
    bench *b;
    uint64_t t0;
} slot;

static void start_call(slot *s);

static void
stop(bench *b)
{
    if (b->phase == 3) {
        return;
    }
    b->phase = 3;
    b->t_end = uv_hrtime();
    if (b->snap) {
        kill(getpid(), SIGUSR2);
    }
    uv_timer_stop(&b->timer);
}

static void
on_done(int status, void *rsp, const cm_error *err, void *user)
{
    slot *s = user;
    bench *b = s->b;
    uint64_t now = uv_hrtime();
    b->outstanding--;
    if (status < 0) {
        if (b->errors++ < 3) {
            fprintf(stderr, "client-cmicro: %s: %s\n", cm_strerror(status),
                    err && err->detail ? err->detail : "");
        }
    } else {
        const Bench__EchoMsg *m = rsp;
        if (m->payload.len != b->payload) {
            b->bad++;
        }
        if (!b->opts.borrow_response) {
            cm_message_free(&bench__echo_msg__descriptor, rsp);
        }
    }
    if (b->phase == 2 && s->t0 >= b->t_phase) {
        uint64_t d = now - s->t0;
        if (b->nlat < b->lat_cap) {
            b->lat[b->nlat++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
        }
        if (b->nlat >= b->max_requests) {
            stop(b);
        }
    }
    if (b->phase == 3) {
        if (b->outstanding == 0) {
            uv_close((uv_handle_t *)&b->timer, NULL);
            cm_loop_stop(b->loop);
        }
        return;
    }
    start_call(s);
}

static void
start_call(slot *s)
{
    bench *b = s->b;
    s->t0 = uv_hrtime();
    int rc = cm_client_call_async(b->client, "bench", "Bench.Echo", &bench__echo_msg__descriptor,
                                  &b->req, &bench__echo_msg__descriptor, &b->opts, on_done, s);
    if (rc < 0) {
        fprintf(stderr, "client-cmicro: call: %s\n", cm_strerror(rc));
        exit(2);
    }
    b->outstanding++;
}

static void
on_timer(uv_timer_t *t)
{
    bench *b = t->data;
    if (b->phase == 1) {
        b->phase = 2;
        b->t_phase = uv_hrtime();
        if (b->snap) {
            kill(getpid(), SIGUSR2);
        }
        uv_timer_start(&b->timer, on_timer, (uint64_t)(b->duration_s * 1000), 0);
    } else {
        stop(b);
    }
}

static void
on_registered(int status, void *user)
{
    bench *b = user;
    if (status < 0) {
        fprintf(stderr, "client-cmicro: register: %s\n", cm_strerror(status));
        exit(2);
    }
    slot *slots = calloc((size_t)b->nconns, sizeof(slot));
    if (!slots) {
        exit(2);
    }
    b->phase = 1;
    uv_timer_init(cm_loop_uv(b->loop), &b->timer);
    b->timer.data = b;
    uv_timer_start(&b->timer, on_timer, (uint64_t)(b->warmup_s * 1000), 0);
    for (int i = 0; i < b->nconns; i++) {
        slots[i].b = b;
        start_call(&slots[i]);
    }
}

static void
noop(int sig)
{
    (void)sig;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double
pct_us(const bench *b, double p)
{
    if (!b->nlat) {
        return 0;
    }
    uint64_t i = (uint64_t)(p * (double)b->nlat);
    return b->lat[i < b->nlat ? i : b->nlat - 1] / 1000.0;
}

int
main(int argc, char **argv)
{
    static bench b;
    const char *addr = NULL;
    b.nconns = 64;
    b.payload = 64;
    b.warmup_s = 1;
    b.duration_s = 3;
    b.max_requests = 10000000;
    b.label = "client-cmicro";
    cm_call_opts_init(&b.opts);
    b.opts.borrow_response = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--addr")) {
            addr = v;
        } else if (!strcmp(a, "--conns")) {
            b.nconns = atoi(v);
        } else if (!strcmp(a, "--payload")) {
            b.payload = strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--warmup")) {
            b.warmup_s = atof(v);
        } else if (!strcmp(a, "--duration")) {
            b.duration_s = atof(v);
        } else if (!strcmp(a, "--max-requests")) {
            b.max_requests = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--snap")) {
            b.snap = atoi(v);
        } else if (!strcmp(a, "--owned")) {
            b.opts.borrow_response = !atoi(v);
        } else if (!strcmp(a, "--label")) {
            b.label = v;
        }
    }
    if (!addr || strncmp(addr, "127.", 4) != 0 || b.nconns < 1 || b.duration_s <= 0 ||
        b.duration_s > 600 || b.warmup_s < 0 || b.warmup_s > 600 || b.max_requests == 0) {
        fprintf(stderr, "usage: client-cmicro --addr 127.x.x.x:PORT [--conns N] [--payload B] "
                        "[--warmup S] [--duration S] [--max-requests N] [--snap 0|1]\n"
                        "       [--owned 0|1] [--label NAME]\n");
        return 2;
    }
    struct sigaction old;
    if (b.snap && sigaction(SIGUSR2, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
        signal(SIGUSR2, noop); /* malloc_count, when preloaded, has installed its own */
    }
    uint8_t *data = malloc(b.payload + 1);
    for (size_t i = 0; i < b.payload; i++) {
        data[i] = (uint8_t)('a' + i % 26);
    }
    bench__echo_msg__init(&b.req);
    b.req.payload.data = data;
    b.req.payload.len = b.payload;
    b.lat_cap = (uint64_t)(2e6 * b.duration_s) + 1000;
    if (b.lat_cap > b.max_requests) {
        b.lat_cap = b.max_requests;
    }
    b.lat = malloc(b.lat_cap * sizeof(uint32_t));

    int rc = cm_loop_new(&b.loop);
    cm_registry_opts ro;
    cm_registry_opts_init(&ro);
    cm_registry_opts_set(&ro, "namespace", "bench");
    if (rc == 0) {
        rc = cm_registry_new(b.loop, "memory", &ro, &b.reg);
    }
    if (rc == 0) {
        rc = cm_selector_new(b.loop, b.reg, NULL, &b.sel);
    }
    cm_client_opts co;
    cm_client_opts_init(&co);
    co.selector = b.sel;
    if (rc == 0) {
        rc = cm_client_new(b.loop, &co, &b.client);
    }
    b.svc = cm_reg_service_new("bench", "latest");
    if (rc == 0 && (!b.svc || !cm_reg_service_add_node(b.svc, "bench-1", addr, NULL))) {
        rc = CM_ENOMEM;
    }
    if (rc == 0) {
        rc = cm_registry_register_service(b.reg, b.svc, 0, on_registered, &b);
    }
    if (rc < 0) {
        fprintf(stderr, "client-cmicro: setup: %s\n", cm_strerror(rc));
        return 2;
    }
    cm_loop_run(b.loop);

    double window = (double)(b.t_end - b.t_phase) / 1e9;
    qsort(b.lat, b.nlat, sizeof(uint32_t), cmp_u32);
    printf("label=%s conns=%d payload=%zu rate=0 calls=%" PRIu64 " window_s=%.3f rps=%.0f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%" PRIu64
           " bad=%" PRIu64 "\n",
           b.label, b.nconns, b.payload, b.nlat, window, window > 0 ? (double)b.nlat / window : 0,
           pct_us(&b, 0.5), pct_us(&b, 0.9), pct_us(&b, 0.99), pct_us(&b, 0.999),
           b.nlat ? b.lat[b.nlat - 1] / 1000.0 : 0, b.errors, b.bad);
    cm_client_free(b.client);
    cm_selector_free(b.sel);
    cm_registry_close(b.reg, NULL, NULL);
    cm_reg_service_free(b.svc);
    cm_loop_free(b.loop);
    free(b.lat);
    free(data);
    return b.errors || b.bad || b.nlat == 0;
}
