/* The log facade: a level threshold, a handler, and the default stderr writer. */
#include "core_int.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#define LINE_MAX_BYTES 1024

static const char *const level_names[] = {"trace", "debug", "info", "warn",
                                          "error", "fatal", "off"};

static uv_once_t init_once = UV_ONCE_INIT;
static uv_mutex_t handler_mu;
static atomic_int threshold = CM_LOG_INFO;
static cm_log_handler handler = cm_log_stderr; /* under handler_mu */
static void *handler_user;                     /* under handler_mu */

static void
init(void)
{
    if (uv_mutex_init(&handler_mu) != 0) {
        abort();
    }
    cm_log_level lvl;
    const char *env = getenv("MICRO_LOG_LEVEL");
    if (env && *env && cm_log_level_parse(env, &lvl) == 0) {
        atomic_store(&threshold, (int)lvl);
    }
}

int
cm_log_level_parse(const char *s, cm_log_level *out)
{
    if (s == NULL) {
        return CM_EINVAL;
    }
    for (int i = CM_LOG_TRACE; i <= CM_LOG_OFF; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (cm_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = CM_LOG_WARN;
        return 0;
    }
    return CM_EINVAL;
}

const char *
cm_log_level_name(cm_log_level level)
{
    if ((int)level < CM_LOG_TRACE || level > CM_LOG_OFF) {
        return "?";
    }
    return level_names[level];
}

void
cm_log_set_level(cm_log_level level)
{
    uv_once(&init_once, init);
    atomic_store(&threshold, (int)level);
}

cm_log_level
cm_log_get_level(void)
{
    uv_once(&init_once, init);
    return (cm_log_level)atomic_load(&threshold);
}

int
cm_log_enabled(cm_log_level level)
{
    uv_once(&init_once, init);
    return level < CM_LOG_OFF && (int)level >= atomic_load(&threshold);
}

void
cm_log_set_handler(cm_log_handler h, void *user)
{
    uv_once(&init_once, init);
    uv_mutex_lock(&handler_mu);
    handler = h ? h : cm_log_stderr;
    handler_user = h ? user : NULL;
    uv_mutex_unlock(&handler_mu);
}

void
cm_log_stderr(cm_log_level level, const char *module, const char *msg, void *user)
{
    (void)user;
    char ts[32] = "";
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) == 0) {
        time_t secs = (time_t)tv.tv_sec;
        struct tm tm;
        if (gmtime_r(&secs, &tm) != NULL) {
            size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)(tv.tv_usec / 1000));
        }
    }
    char up[8];
    const char *name = cm_log_level_name(level);
    size_t i = 0;
    for (; name[i] && i < sizeof up - 1; i++) {
        up[i] = (char)(name[i] - 'a' + 'A');
    }
    up[i] = '\0';
    /* One fprintf per line: stdio locks the stream, so lines of threads never interleave. */
    fprintf(stderr, "%s %-5s [%s] %s\n", ts, up, module ? module : "cmicro", msg);
}

void
cm_log(cm_log_level level, const char *module, const char *fmt, ...)
{
    if (!cm_log_enabled(level)) {
        return;
    }
    char line[LINE_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= sizeof line) {
        memcpy(line + sizeof line - 4, "...", 4);
    }
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
        line[--len] = '\0';
    }
    uv_mutex_lock(&handler_mu);
    cm_log_handler h = handler;
    void *user = handler_user;
    uv_mutex_unlock(&handler_mu);
    h(level, module, line, user);
}
