/* The log facade: MICRO_LOG_LEVEL at first use, level filtering, the user's handler, the default
 * stderr line (timestamp, level, module), long lines cut, and the library's own lines going
 * through the facade only once: a failure returned to the caller is not logged above debug. */
#include "test.h"

#include <cmicro/cmicro.h>
#include <fcntl.h>
#include <unistd.h>

typedef struct line {
    cm_log_level level;
    char module[32];
    char msg[1100];
} line;

static line lines[64];
static int nlines;

static void
capture(cm_log_level level, const char *module, const char *msg, void *user)
{
    CHECK(user == (void *)&lines);
    CHECK(nlines < 64);
    lines[nlines].level = level;
    snprintf(lines[nlines].module, sizeof lines[nlines].module, "%s", module);
    snprintf(lines[nlines].msg, sizeof lines[nlines].msg, "%s", msg);
    nlines++;
}

static void
test_env_level(void)
{
    /* Read once, at the first use; go-micro's spelling. */
    CHECK_EQ_INT(cm_log_get_level(), CM_LOG_WARN);
    CHECK(!cm_log_enabled(CM_LOG_INFO));
    CHECK(cm_log_enabled(CM_LOG_WARN));
    CHECK(cm_log_enabled(CM_LOG_FATAL));
}

static void
test_parse(void)
{
    cm_log_level l;
    const char *names[] = {"trace", "debug", "info", "warn", "error", "fatal", "off"};
    for (int i = 0; i < 7; i++) {
        CHECK_EQ_INT(cm_log_level_parse(names[i], &l), 0);
        CHECK_EQ_INT(l, i);
        CHECK_EQ_STR(cm_log_level_name(l), names[i]);
    }
    CHECK_EQ_INT(cm_log_level_parse("WARNING", &l), 0);
    CHECK_EQ_INT(l, CM_LOG_WARN);
    CHECK_EQ_INT(cm_log_level_parse("verbose", &l), CM_EINVAL);
    CHECK_EQ_INT(cm_log_level_parse(NULL, &l), CM_EINVAL);
}

static void
test_filter_and_hook(void)
{
    cm_log_set_handler(capture, &lines);
    nlines = 0;
    cm_log_set_level(CM_LOG_INFO);
    cm_log(CM_LOG_DEBUG, "test", "dropped %d", 1);
    cm_log(CM_LOG_INFO, "test", "kept %d", 2);
    cm_log(CM_LOG_ERROR, "registry.consul", "kept %s\n", "three");
    CHECK_EQ_INT(nlines, 2);
    CHECK_EQ_INT(lines[0].level, CM_LOG_INFO);
    CHECK_EQ_STR(lines[0].module, "test");
    CHECK_EQ_STR(lines[0].msg, "kept 2");
    CHECK_EQ_STR(lines[1].module, "registry.consul");
    CHECK_EQ_STR(lines[1].msg, "kept three"); /* the trailing newline is the handler's to add */

    cm_log_set_level(CM_LOG_OFF);
    cm_log(CM_LOG_FATAL, "test", "nothing");
    CHECK_EQ_INT(nlines, 2);
    CHECK(!cm_log_enabled(CM_LOG_FATAL));

    /* A line over 1 KiB is cut and marked. */
    cm_log_set_level(CM_LOG_TRACE);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cm_log(CM_LOG_TRACE, "test", "%s", big);
    CHECK_EQ_INT(nlines, 3);
    size_t n = strlen(lines[2].msg);
    CHECK_EQ_INT(n, 1023);
    CHECK_EQ_STR(lines[2].msg + n - 3, "...");
}

static void
test_default_writer(void)
{
    /* The default handler writes one line to stderr: read it back through a pipe. */
    int fds[2];
    CHECK_EQ_INT(pipe(fds), 0);
    fflush(stderr);
    int saved = dup(2);
    CHECK(saved >= 0);
    CHECK(dup2(fds[1], 2) == 2);
    cm_log_set_handler(NULL, NULL);
    cm_log_set_level(CM_LOG_INFO);
    cm_log(CM_LOG_WARN, "selector", "serving %d cached nodes", 3);
    fflush(stderr);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    close(fds[1]);
    char buf[256] = {0};
    ssize_t got = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    CHECK(got > 0);
    /* "2026-12-06T04:36:17.123Z WARN  [selector] serving 3 cached nodes\n" */
    CHECK_EQ_INT(strlen(buf), 25 + strlen("WARN  [selector] serving 3 cached nodes\n"));
    CHECK(buf[4] == '-' && buf[10] == 'T' && buf[19] == '.' && buf[23] == 'Z');
    CHECK_EQ_STR(buf + 25, "WARN  [selector] serving 3 cached nodes\n");
}

static void
test_returned_failure_not_logged(void)
{
    /* A bad environment variable: cm_service_new returns CM_EINVAL and says why through
     * cm_service_why(); the facade sees it at debug at most. */
    cm_log_set_handler(capture, &lines);
    cm_log_set_level(CM_LOG_TRACE);
    nlines = 0;
    setenv("MICRO_SELECTOR", "fastest", 1);
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.registry = "memory";
    cm_service *s = NULL;
    CHECK_EQ_INT(cm_service_new(&o, &s), CM_EINVAL);
    CHECK_EQ_STR(cm_service_why(), "MICRO_SELECTOR=fastest: use random or roundrobin");
    for (int i = 0; i < nlines; i++) {
        CHECK(lines[i].level <= CM_LOG_DEBUG);
    }
    unsetenv("MICRO_SELECTOR");

    /* An env var that code overrides is said once, at info. */
    nlines = 0;
    setenv("MICRO_SERVER_NAME", "from.env", 1);
    o.name = "from.code";
    o.log_config = 0; /* off in code: no configuration line at start */
    CHECK_EQ_INT(cm_service_new(&o, &s), 0);
    CHECK_EQ_STR(cm_service_why(), "");
    int said = 0;
    for (int i = 0; i < nlines; i++) {
        said += strcmp(lines[i].msg, "MICRO_SERVER_NAME=from.env ignored: the option is set in "
                                     "code") == 0 &&
                lines[i].level == CM_LOG_INFO;
    }
    CHECK_EQ_INT(said, 1);
    cm_service_free(s);
    unsetenv("MICRO_SERVER_NAME");
}

int
main(void)
{
    setenv("MICRO_LOG_LEVEL", "warn", 1);
    RUN(test_env_level);
    RUN(test_parse);
    RUN(test_filter_and_hook);
    RUN(test_default_writer);
    RUN(test_returned_failure_not_logged);
    TEST_DONE();
}
