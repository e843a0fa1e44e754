/* Helpers shared by the mDNS tests: the network-namespace guard, a deterministic endpoint
 * generator (large enough TXT payloads), running a loop until a condition, and helper
 * processes. */
#ifndef CM_MDNS_TEST_H
#define CM_MDNS_TEST_H

#include "test.h"
#include <uv.h>

#include <cmicro/registry.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Refuses to open an mDNS socket outside the private namespace run-netns.sh makes: the marker
 * must be set, this namespace must differ from the one the wrapper started in, and no interface
 * but loopback may be up (the property that matters: multicast cannot leave the host). Runs
 * before any socket is opened. */
static inline void
require_private_netns(void)
{
    const char *mark = getenv("CMICRO_TEST_NETNS");
    const char *parent = getenv("CMICRO_TEST_PARENT_NETNS");
    char self[64] = "";
    ssize_t n = readlink("/proc/self/ns/net", self, sizeof self - 1);
    const char *why = NULL;
    if (mark == NULL || strcmp(mark, "1") != 0) {
        why = "CMICRO_TEST_NETNS is not set";
    } else if (n <= 0 || parent == NULL || parent[0] == '\0' || strcmp(self, parent) == 0) {
        why = "this is the network namespace the wrapper started in";
    }
    struct ifaddrs *all = NULL;
    if (why == NULL && getifaddrs(&all) != 0) {
        why = "cannot list the interfaces";
    }
    for (struct ifaddrs *i = all; why == NULL && i != NULL; i = i->ifa_next) {
        if ((i->ifa_flags & IFF_UP) && !(i->ifa_flags & IFF_LOOPBACK)) {
            why = "an interface other than loopback is up";
            fprintf(stderr, "interface %s is up\n", i->ifa_name);
        }
    }
    freeifaddrs(all);
    if (why != NULL) {
        fprintf(stderr,
                "FAIL: mDNS tests run only inside a private network namespace with "
                "loopback alone (%s); use test/mdns/run-netns.sh\n",
                why);
        exit(1);
    }
}

static inline uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A small deterministic generator, so that the helper and the test agree on endpoints. */
static inline uint32_t
gen_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* The name of endpoint i of a generated set: random hex resists compression, so a few dozen
 * endpoints need several 255-character TXT strings. */
static inline void
gen_endpoint_name(unsigned i, char *out, size_t len)
{
    uint32_t s = 0x9e3779b9u ^ (i * 2654435761u);
    uint32_t a = gen_next(&s), b = gen_next(&s);
    snprintf(out, len, "Handler%u.Method_%08x%08x", i, a, b);
}

/* Adds n generated endpoints to svc (request with two fields, response with one). */
static inline void
gen_endpoints(cm_reg_service *svc, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        char name[64], f1[32], f2[32];
        gen_endpoint_name(i, name, sizeof name);
        uint32_t s = 0x12345u + i;
        snprintf(f1, sizeof f1, "f_%08x", gen_next(&s));
        snprintf(f2, sizeof f2, "g_%08x", gen_next(&s));
        cm_value fields[2] = {{f1, "string", NULL, 0}, {f2, "int64", NULL, 0}};
        cm_value req = {"Request", "Request", fields, 2};
        cm_value rsp = {"Response", "Response", fields, 1};
        cm_md *md = cm_md_new();
        CHECK(md != NULL);
        if (i % 3 == 0) {
            CHECK(cm_md_set(md, "stream", "true") == 0);
        }
        CHECK(cm_reg_service_add_endpoint(svc, name, &req, &rsp, md) != NULL);
        cm_md_free(md);
    }
}

/* Runs the loop until *flag is non-zero or ms pass; returns *flag. */
static inline void
tick_cb(uv_timer_t *t)
{
    (void)t;
}

static inline int
run_until(cm_loop *l, volatile int *flag, uint64_t ms)
{
    uv_loop_t *uv = cm_loop_uv(l);
    uv_timer_t tick;
    uv_timer_init(uv, &tick);
    uv_timer_start(&tick, tick_cb, 5, 5);
    uint64_t end = now_ms() + ms;
    while (!*flag && now_ms() < end) {
        uv_run(uv, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(uv, UV_RUN_NOWAIT);
    return *flag;
}

/* Runs the loop for ms milliseconds. */
static inline void
run_for(cm_loop *l, uint64_t ms)
{
    int never = 0;
    run_until(l, &never, ms);
}

/* A helper process with its stdout readable through fd. */
typedef struct child {
    pid_t pid;
    int fd;
} child;

/* Starts argv[0] with stdout on a pipe; waits for its first line, which must start with
 * "ready". */
static inline child
spawn_ready(char *const argv[])
{
    int p[2];
    CHECK(pipe(p) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    child c = {0, p[0]};
    int rc = posix_spawn(&c.pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    CHECK_EQ_INT(rc, 0);
    char line[128];
    size_t n = 0;
    uint64_t end = now_ms() + 5000;
    while (n < sizeof line - 1 && now_ms() < end) {
        struct pollfd pfd = {c.fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        ssize_t k = read(c.fd, line + n, 1);
        if (k <= 0) {
            break;
        }
        if (line[n] == '\n') {
            break;
        }
        n++;
    }
    line[n] = '\0';
    if (strncmp(line, "ready", 5) != 0) {
        fprintf(stderr, "helper %s did not become ready (said \"%s\")\n", argv[0], line);
        kill(c.pid, SIGKILL);
        CHECK(0);
    }
    return c;
}

/* Sends sig and waits for the exit; returns the wait status. */
static inline int
stop_child(child *c, int sig)
{
    int status = 0;
    kill(c->pid, sig);
    uint64_t end = now_ms() + 5000;
    pid_t r;
    while ((r = waitpid(c->pid, &status, WNOHANG)) == 0 && now_ms() < end) {
        usleep(10000);
    }
    if (r == 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &status, 0);
        fprintf(stderr, "helper %d did not exit within 5 s\n", (int)c->pid);
        CHECK(0);
    }
    close(c->fd);
    return status;
}

#endif
