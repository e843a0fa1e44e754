/* The broker tests' helpers (harness.h). */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

cm_loop *L;
static uv_timer_t poll_timer;
static volatile int *wait_ptr;
static int wait_target;
static uint64_t wait_deadline;

void
harness_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    CHECK_EQ_INT(cm_loop_new(&L), 0);
    uv_timer_init(cm_loop_uv(L), &poll_timer);
}

static void
poll_cb(uv_timer_t *t)
{
    (void)t;
    if ((wait_ptr != NULL && *wait_ptr >= wait_target) || cm_now_ms() >= wait_deadline) {
        cm_loop_stop(L);
    }
}

int
wait_until(volatile int *p, int target, uint64_t ms)
{
    wait_ptr = p;
    wait_target = target;
    wait_deadline = cm_now_ms() + ms;
    if (p == NULL || *p < target) {
        uv_timer_start(&poll_timer, poll_cb, 1, 1);
        cm_loop_run(L);
        uv_timer_stop(&poll_timer);
    }
    return p != NULL && *p >= target;
}

int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static int
port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

pid_t
natsd_start(int port)
{
    const char *prog = getenv("NATS_SERVER");
    if (prog == NULL || prog[0] == '\0') {
        prog = access("/usr/sbin/nats-server", X_OK) == 0 ? "/usr/sbin/nats-server"
                                                          : "/usr/bin/nats-server";
    }
    if (access(prog, X_OK) != 0) {
        return 0;
    }
    char portarg[16];
    snprintf(portarg, sizeof(portarg), "%d", port);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(prog, prog, "-a", "127.0.0.1", "-p", portarg, "--no_advertise", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !port_open(port); i++) {
        usleep(10000);
    }
    CHECK(port_open(port));
    return pid;
}

void
natsd_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
}

static int connect_status;
static int connect_done;

static void
on_connect(int status, void *arg)
{
    (void)arg;
    connect_status = status;
    connect_done++;
}

cm_broker *
broker_up(const char *name, const cm_broker_opts *o)
{
    cm_broker *b = NULL;
    CHECK_EQ_INT(cm_broker_new(L, name, o, &b), 0);
    connect_done = 0;
    CHECK_EQ_INT(cm_broker_connect(b, on_connect, NULL), 0);
    CHECK(connect_done == 0); /* never from inside the call */
    CHECK(wait_until(&connect_done, 1, 10000));
    if (connect_status != 0) {
        fprintf(stderr, "connect: %s: %s\n", cm_strerror(connect_status), cm_broker_why(b));
    }
    CHECK_EQ_INT(connect_status, 0);
    return b;
}

static int closed;

static void
on_closed(void *arg)
{
    (void)arg;
    closed++;
}

void
broker_down(cm_broker *b)
{
    closed = 0;
    cm_broker_close(b, on_closed, NULL);
    CHECK_EQ_INT(closed, 0);
    CHECK(wait_until(&closed, 1, 10000));
}
