/* Log capture for tests: a cm_log handler that appends to a buffer under a mutex (lines may come
 * from the loop thread and workers). */
#include "logcap.h"

#include <cmicro/cmicro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t mu;
static cm_buf text;
static cm_log_level saved_level;

static void
init(void)
{
    if (uv_mutex_init(&mu) != 0) {
        abort();
    }
}

static void
on_line(cm_log_level level, const char *module, const char *msg, void *user)
{
    (void)level;
    (void)user;
    uv_mutex_lock(&mu);
    int ok = cm_buf_append(&text, "[", 1) == 0 &&
             cm_buf_append(&text, module, strlen(module)) == 0 &&
             cm_buf_append(&text, "] ", 2) == 0 && cm_buf_append(&text, msg, strlen(msg)) == 0 &&
             cm_buf_append(&text, "\n", 1) == 0;
    uv_mutex_unlock(&mu);
    if (!ok) {
        abort();
    }
}

void
logcap_start(void)
{
    uv_once(&once, init);
    uv_mutex_lock(&mu);
    text.len = 0;
    uv_mutex_unlock(&mu);
    saved_level = cm_log_get_level();
    cm_log_set_level(CM_LOG_DEBUG);
    cm_log_set_handler(on_line, NULL);
}

char *
logcap_end(void)
{
    cm_log_set_handler(NULL, NULL);
    cm_log_set_level(saved_level);
    uv_mutex_lock(&mu);
    char *out = malloc(text.len + 1);
    if (out == NULL) {
        abort();
    }
    memcpy(out, text.data ? (const char *)text.data : "", text.len);
    out[text.len] = '\0';
    cm_buf_free(&text);
    uv_mutex_unlock(&mu);
    for (const char *p = out; *p;) {
        size_t n = strcspn(p, "\n");
        fprintf(stderr, "   captured: %.*s\n", (int)n, p);
        p += n + (p[n] == '\n');
    }
    return out;
}

int
logcap_count(const char *s, const char *line)
{
    int n = 0;
    size_t len = strlen(line);
    while (*s) {
        size_t l = strcspn(s, "\n");
        n += l == len && strncmp(s, line, len) == 0;
        s += l + (s[l] == '\n');
    }
    return n;
}
