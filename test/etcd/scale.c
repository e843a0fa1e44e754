/* The etcd backend at scale, run by hand (not part of a suite):
 *   test-etcd-scale ENDPOINTS [NODES [SERVICES [IN_FLIGHT]]]
 * A child process registers NODES nodes (default 10000) across SERVICES services (default 100),
 * IN_FLIGHT (default 64) at a time; this process watches everything (one watcher, as a client
 * caching all services would) and times each node from the start of its register call to its
 * create event here (p50, p99, max), then prints its own memory growth (VmRSS) over the run.
 * The nodes are deregistered at the end. */
#include "etcd_int.h"

#include <cmicro/cmicro.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t *sent; /* shared: when each node's register started, in µs */
static uint64_t *lat;
static size_t nodes = 10000, services = 100, in_flight = 64;
static size_t seen, next_reg, done_reg, failed;
static cm_registry *reg;
static cm_loop *loop;

static uint64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static long
rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kb;
}

static cm_reg_service *
node_svc(size_t i)
{
    char name[64], id[64], addr[32];
    snprintf(name, sizeof(name), "scale.svc%zu", i % services);
    snprintf(id, sizeof(id), "n%zu", i);
    snprintf(addr, sizeof(addr), "10.%zu.%zu.%zu:8080", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    cm_reg_service *s = cm_reg_service_new(name, "latest");
    cm_md *md = cm_md_new();
    cm_md_set(md, "registry", "etcd");
    cm_md_set(md, "protocol", "mucp");
    cm_md_set(md, "transport", "http");
    cm_value v = {.name = "Request", .type = "Request"};
    cm_reg_service_add_endpoint(s, "Svc.Call", &v, &v, NULL);
    cm_reg_service_add_node(s, id, addr, md);
    cm_md_free(md);
    return s;
}

static void start_next(void);

static void
on_reg(int status, void *user)
{
    (void)user;
    failed += status != 0;
    done_reg++;
    start_next();
}

static void
start_next(void)
{
    while (next_reg < nodes && next_reg - done_reg < in_flight) {
        size_t i = next_reg++;
        cm_reg_service *s = node_svc(i);
        sent[i] = now_us();
        if (cm_registry_register_service(reg, s, 300000, on_reg, NULL) < 0) {
            failed++;
            done_reg++;
        }
        cm_reg_service_free(s);
    }
}

static void
run_registrar(const char *endpoints, int dereg)
{
    cm_loop_new(&loop);
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    o.addresses = endpoints;
    o.timeout_ms = 30000;
    if (cm_registry_new(loop, "etcd", &o, &reg) < 0) {
        _exit(2);
    }
    if (dereg) {
        for (size_t i = 0; i < nodes; i++) {
            cm_reg_service *s = node_svc(i);
            cm_registry_deregister_service(reg, s, on_reg, NULL);
            cm_reg_service_free(s);
            if (i % 256 == 255) {
                while (done_reg < i) {
                    uv_run(cm_loop_uv(loop), UV_RUN_ONCE);
                }
            }
        }
        next_reg = nodes;
    } else {
        start_next();
    }
    while (done_reg < nodes) {
        uv_run(cm_loop_uv(loop), UV_RUN_ONCE);
    }
    fprintf(stderr, "registrar: %zu calls, %zu failed\n", nodes, failed);
    _exit(failed > 0);
}

static void
on_event(cm_watch_action a, const cm_reg_service *svc, void *user)
{
    (void)user;
    if (a != CM_WATCH_CREATE || svc->nnodes != 1 || svc->nodes[0].id[0] != 'n') {
        return;
    }
    size_t i = strtoul(svc->nodes[0].id + 1, NULL, 10);
    if (i < nodes && lat[i] == 0 && sent[i] != 0) {
        lat[i] = now_us() - sent[i] + 1;
        seen++;
    }
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static pid_t
spawn(const char *endpoints, int dereg)
{
    pid_t pid = fork();
    if (pid == 0) {
        run_registrar(endpoints, dereg);
    }
    return pid;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test-etcd-scale ENDPOINTS [NODES [SERVICES [IN_FLIGHT]]]\n");
        return 2;
    }
    nodes = argc > 2 ? strtoul(argv[2], NULL, 10) : nodes;
    services = argc > 3 ? strtoul(argv[3], NULL, 10) : services;
    in_flight = argc > 4 ? strtoul(argv[4], NULL, 10) : in_flight;
    sent = mmap(NULL, nodes * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                -1, 0);
    lat = calloc(nodes, sizeof(uint64_t));
    if (sent == MAP_FAILED || lat == NULL) {
        return 1;
    }
    memset(sent, 0, nodes * sizeof(uint64_t));
    cm_loop_new(&loop);
    cm_registry_opts o;
    cm_registry_opts_init(&o);
    o.addresses = argv[1];
    cm_registry *w = NULL;
    cm_watcher *wt = NULL;
    if (cm_registry_new(loop, "etcd", &o, &w) < 0 ||
        cm_registry_watch(w, NULL, on_event, NULL, &wt) < 0) {
        return 1;
    }
    uint64_t t0 = now_us();
    while (now_us() - t0 < 500000) {
        uv_run(cm_loop_uv(loop), UV_RUN_NOWAIT);
        usleep(1000);
    }
    long rss0 = rss_kb();
    uint64_t start = now_us();
    pid_t pid = spawn(argv[1], 0);
    int st = 0;
    while (seen < nodes && now_us() - start < 300000000u) {
        uv_run(cm_loop_uv(loop), UV_RUN_ONCE);
    }
    uint64_t took = now_us() - start;
    waitpid(pid, &st, 0);
    long rss1 = rss_kb();
    qsort(lat, nodes, sizeof(uint64_t), cmp_u64);
    size_t base = nodes - seen; /* zeros (never seen) sort first */
    printf("nodes %zu, services %zu, in flight %zu: %zu creates seen in %.1f s\n", nodes, services,
           in_flight, seen, (double)took / 1e6);
    if (seen > 0) {
        printf("register -> watcher: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
               (double)lat[base + seen / 2] / 1000.0, (double)lat[base + seen * 99 / 100] / 1000.0,
               (double)lat[nodes - 1] / 1000.0);
    }
    printf("watcher process VmRSS: %ld kB before, %ld kB after (+%ld kB)\n", rss0, rss1,
           rss1 - rss0);
    pid = spawn(argv[1], 1);
    waitpid(pid, &st, 0);
    cm_watcher_stop(wt);
    return seen == nodes ? 0 : 1;
}
