/* The broker tests' helpers: a loop to run until a counter is reached, free loopback ports, and
 * a real nats-server started and killed on one. Compiled once (harness.c). */
#ifndef CM_TEST_BROKER_HARNESS_H
#define CM_TEST_BROKER_HARNESS_H

#include "broker_int.h"
#include "test.h"

#include <sys/types.h>
#include <uv.h>

extern cm_loop *L;

/* Makes L. */
void harness_init(void);
/* Runs L until *p >= target or ms pass; returns whether *p got there. p NULL: runs for ms. */
int wait_until(volatile int *p, int target, uint64_t ms);
/* A loopback TCP port nothing listens on (bound and released). */
int free_port(void);

/* nats-server on 127.0.0.1:port (NATS_SERVER, else nats-server from PATH), started and waited for
 * until it accepts connections; 0 when the program is missing (the test then skips). */
pid_t natsd_start(int port);
/* SIGKILL and reap. */
void natsd_kill(pid_t pid);

/* A broker of backend name, connected (checked), with options (may be NULL). */
cm_broker *broker_up(const char *name, const cm_broker_opts *o);
/* Closes b and runs the loop until it is freed. */
void broker_down(cm_broker *b);

#endif
