/* Helpers of the Consul tests: the agent (the real one named by CONSUL_HTTP_ADDR, else the
 * Python test agent started on a free port), blocking HTTP to its control endpoints, running the
 * loop until something happened, stderr capture, and an independent hex(zlib(...)) decoder.
 * Compiled once (harness.c) and linked by the tests that use it (test/consul/meson.build). */
#ifndef CM_TEST_CONSUL_HARNESS_H
#define CM_TEST_CONSUL_HARNESS_H

#include "logcap.h"
#include "test.h"
#include <uv.h>

#include <cmicro/cmicro.h>
#include <cmicro/registry.h>

/* The rest is what the tests that include this header use themselves. */
#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct test_agent {
    int real; /* CONSUL_HTTP_ADDR names a real agent: control steps are skipped */
    pid_t pid;
    int port;
    char addr[256];
} test_agent;

#define SKIP_IF_REAL(a, what)                                                                      \
    do {                                                                                           \
        if ((a)->real) {                                                                           \
            printf("SKIP: %s (needs the test agent's control endpoints)\n", what);                 \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* A port nothing listens on right now. */
int free_port(void);

/* Starts the Python agent on port (0: any) with extra arguments (NULL-terminated, may be
 * NULL). */
void agent_spawn(test_agent *a, int port, const char *const *extra);

/* The agent of a test: CONSUL_HTTP_ADDR's when set (and allow_real), else a new Python one. */
void agent_start(test_agent *a, int allow_real, const char *const *extra);

void agent_stop(test_agent *a);

/* A blocking request to the agent (never while a registry call must make progress). Returns
 * the HTTP status; the body (owned, NUL-terminated) in *out when out is not NULL. */
long agent_http(const test_agent *a, const char *method, const char *path, const char *body,
                char **out);

/* GET path as JSON (NULL when not 200). */
cJSON *agent_json(const test_agent *a, const char *path);

void agent_control(const test_agent *a, const char *path);

/* ---- the loop ---- */

/* Runs the loop until *flag is non-zero or ms passed. Returns *flag. */
int run_until(cm_loop *l, volatile int *flag, uint64_t ms);

void run_for(cm_loop *l, uint64_t ms);

/* Set around each initiating call: a callback that runs inside it breaks the contract. */
extern int in_call;

typedef struct result {
    int done;
    int status;
    cm_reg_service_list *list; /* owned copy */
} result;

void on_status(int status, void *user);

void on_list(int status, const cm_reg_service_list *l, void *user);

int reg_sync(cm_loop *l, cm_registry *r, const cm_reg_service *s, uint64_t ttl_ms);

int dereg_sync(cm_loop *l, cm_registry *r, const cm_reg_service *s);

/* get_service (name) or list_services (NULL); *out owned when status 0. */
int get_sync(cm_loop *l, cm_registry *r, const char *name, cm_reg_service_list **out);

size_t count_nodes(const cm_reg_service_list *l);

const cm_node *find_node(const cm_reg_service_list *l, const char *id);

void closed_cb(void *arg);

void close_registry(cm_loop *l, cm_registry *r);

cm_registry *new_registry(cm_loop *l, const char *addresses, const char *token,
                          uint64_t timeout_ms);

/* ---- log capture (test/common/logcap.c) ---- */

typedef struct capture {
    int unused;
} capture;

void capture_start(capture *c);

/* Stops capturing, echoes what was caught, returns it (owned). */
char *capture_end(capture *c);

/* ---- an independent decoder of go-micro's tags: hex, then zlib, then the caller's JSON ---- */

/* The inflated payload of a "x-<hex>" tag, NUL-terminated (owned), or NULL. */
char *tag_payload(const char *tag);

#endif
