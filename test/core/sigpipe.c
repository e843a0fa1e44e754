/* SIGPIPE: a write to a connection the peer has closed must fail with EPIPE, not end the
 * process. The first cm_loop_new sets SIGPIPE to ignored when it has its default action, and
 * leaves an application's own handler alone (checked in a child process, which installs one
 * before its first loop). */
#include "test.h"

#include <cmicro/loop.h>
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void
app_handler(int sig)
{
    (void)sig;
}

/* The child: its own handler stays after cm_loop_new. Exit status 0 when it does. */
static int
child_keeps_handler(void)
{
    signal(SIGPIPE, app_handler);
    cm_loop *l = NULL;
    if (cm_loop_new(&l) != 0) {
        return 2;
    }
    struct sigaction sa;
    sigaction(SIGPIPE, NULL, &sa);
    cm_loop_free(l);
    return sa.sa_handler == app_handler ? 0 : 1;
}

int
main(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        _exit(child_keeps_handler());
    }
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);

    struct sigaction sa;
    CHECK_EQ_INT(sigaction(SIGPIPE, NULL, &sa), 0);
    CHECK(sa.sa_handler == SIG_DFL); /* as the test runner starts us */
    cm_loop *l = NULL;
    CHECK_EQ_INT(cm_loop_new(&l), 0);
    CHECK_EQ_INT(sigaction(SIGPIPE, NULL, &sa), 0);
    CHECK(sa.sa_handler == SIG_IGN);

    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    errno = 0;
    CHECK_EQ_INT(write(sv[0], "x", 1), -1); /* the default action would end the test here */
    CHECK_EQ_INT(errno, EPIPE);
    close(sv[0]);
    cm_loop_free(l);
    TEST_DONE();
}
