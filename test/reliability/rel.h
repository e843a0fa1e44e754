/* Helpers of the reliability tests: echo-server processes (echo_server.c), a client assembled
 * from the public parts (loop, Consul registry, selector, client) so that its cache can be
 * inspected, a load driver recording every call, and the Consul agent of test/consul/harness.h.
 * Compiled once (rel.c) and linked by the tests that use it (test/reliability/meson.build).
 *
 * Every wait is bounded; every child process dies with the test (PR_SET_PDEATHSIG). */
#ifndef CM_TEST_RELIABILITY_H
#define CM_TEST_RELIABILITY_H

#include "consul/harness.h"
#include "rpctest.pb-c.h"
#include <uv.h>

#include <stdatomic.h>
#include <time.h>

uint64_t now_ms(void);

void sleep_ms(uint64_t ms);

/* ---- echo-server processes ---- */

typedef struct server_proc {
    pid_t pid;
    char addr[64]; /* the listen address, 127.0.0.1:port */
    char id[160];  /* the node id */
    char tag[16];  /* what the server answers in Rsp.header */
    uint64_t started;
} server_proc;

/* Starts echo-server NAME with tag, the Consul agent at agent_addr (NULL: the memory
 * registry), and extra "KEY=VALUE" settings (NULL-terminated, may be NULL). Waits (10 s at most)
 * for its "listening" line. */
void server_spawn(server_proc *p, const char *name, const char *tag, const char *agent_addr,
                  const char *const *env);

/* Waits (10 s at most) for the server to exit; returns waitpid's status. */
int server_wait(server_proc *p);

/* Sends sig; for SIGKILL and SIGTERM waits for the exit and returns waitpid's status, else -1. */
int server_signal(server_proc *p, int sig);

void server_kill(server_proc *p);

/* ---- the agent's view ---- */

/* Whether the agent lists node id of service name as passing. */
int agent_has(const test_agent *a, const char *name, const char *id);

/* Waits until agent_has() is want; returns the time it took, or -1 after max_ms. */
int64_t agent_wait(const test_agent *a, const char *name, const char *id, int want,
                   uint64_t max_ms);

/* ---- a client from the public parts ---- */

typedef struct rclient {
    cm_loop *loop;
    cm_registry *reg;
    cm_selector *sel;
    cm_client *cli;
} rclient;

typedef struct rclient_opts {
    uint64_t cache_ttl_ms;       /* 0: the selector's default (60 s) */
    int max_attempts;            /* 0: the client's default (6) */
    uint64_t timeout_ms;         /* 0: 5 s */
    uint64_t attempt_timeout_ms; /* 0: 2 s */
} rclient_opts;

/* A client on a loop of its own thread: round robin over the nodes the Consul agent at
 * agent_addr names. */
void rclient_open(rclient *c, const char *agent_addr, const rclient_opts *o);

/* Whether the client's cache holds the node tagged tag for service. */
int cache_has(rclient *c, const char *service, const char *tag);

void rclient_close(rclient *c);

/* One blocking call of Echo.Call on service (or at address when service is NULL... the service
 * name is still sent). Returns the status; the responder's tag in tag (when 0), the error's code
 * and detail (when < 0). */
int echo_call(cm_client *cli, const char *service, const cm_call_opts *opts, int64_t n, char *tag,
              size_t tlen, int32_t *code, char *detail, size_t dlen);

/* ---- the load driver: threads of sequential calls, every call recorded ---- */

typedef struct call_ev {
    uint64_t t0, t1; /* start and end, cm_now_ms() */
    int status;
    int32_t code;
    char tag[16]; /* responder on success */
} call_ev;

#define LOAD_MAX_THREADS 16
#define LOAD_MAX_EVENTS (1u << 20)
#define LOAD_MAX_DETAILS 64

typedef struct load {
    cm_client *cli;
    const char *service;
    cm_call_opts opts;
    int nthreads;
    unsigned pause_us; /* between two calls of a thread */
    atomic_int stop;
    atomic_llong seq;
    uv_thread_t th[LOAD_MAX_THREADS];
    uv_mutex_t mu;
    call_ev *evs;
    size_t nevs;
    char details[LOAD_MAX_DETAILS][300];
    size_t ndetails;
} load;

/* Starts nthreads threads calling service (opts may be NULL). */
load *load_start(cm_client *cli, const char *service, const cm_call_opts *opts, int nthreads,
                 unsigned pause_us);

/* Stops the threads (each finishes its call in flight). */
void load_stop(load *l);

void load_free(load *l);

/* What happened to the calls that ended in [from, to). */
typedef struct load_sum {
    size_t calls, ok, failed;
    uint64_t max_ms;     /* the longest call */
    size_t slow;         /* calls of slow_ms or more */
    uint64_t first_fail; /* end time of the first / last failure (0: none) */
    uint64_t last_fail;
} load_sum;

load_sum load_sum_between(const load *l, uint64_t from, uint64_t to, uint64_t slow_ms,
                          const char *tag);

void load_print_failures(const load *l);

#endif
