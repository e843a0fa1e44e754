/* go-micro's Debug.Health and Debug.Stats endpoints, so that go-micro's tooling can ask a C
 * service. Served on every service, and not published in the registry (go-micro's internal
 * handlers), so that a service's registration stays the one a go-micro v4 service makes. */
#include "debug.pb-c.h"
#include "framework_int.h"

#include <dirent.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int
debug_health(cm_ctx *ctx, const void *req, void *vrsp, void *user)
{
    (void)req;
    Debug__HealthResponse *rsp = vrsp;
    rsp->status = cm_ctx_strdup(ctx, cm__server_stopping(user) ? "stopping" : "ok");
    return rsp->status ? 0 : CM_ENOMEM;
}

/* Resident memory in bytes, from /proc; 0 when unknown. */
static uint64_t
rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) {
        resident = 0;
    }
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Threads of the process; 0 when unknown. */
static uint64_t
thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) {
        return 0;
    }
    uint64_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

static int
debug_stats(cm_ctx *ctx, const void *req, void *vrsp, void *user)
{
    (void)ctx;
    (void)req;
    Debug__StatsResponse *rsp = vrsp;
    cm_server_stats st;
    cm_server_get_stats(user, &st);
    uint64_t now = (uint64_t)time(NULL);
    uint64_t started = cm__server_started_unix(user);
    rsp->timestamp = now;
    rsp->started = started;
    rsp->uptime = now >= started ? now - started : 0;
    rsp->memory = rss_bytes();
    rsp->threads = thread_count();
    rsp->gc = 0; /* no garbage collector */
    rsp->requests = st.calls;
    rsp->errors = st.errors;
    return 0;
}

int
cm__debug_handle(cm_server *s)
{
    cm_handler health = {"Debug.Health",
                         &debug__health_request__descriptor,
                         &debug__health_response__descriptor,
                         debug_health,
                         CM_HANDLER_INLINE | CM_HANDLER_INTERNAL,
                         NULL,
                         NULL,
                         NULL};
    cm_handler stats = {"Debug.Stats",
                        &debug__stats_request__descriptor,
                        &debug__stats_response__descriptor,
                        debug_stats,
                        CM_HANDLER_INTERNAL,
                        NULL,
                        NULL,
                        NULL};
    int rc = cm_server_handle(s, &health, s);
    return rc < 0 ? rc : cm_server_handle(s, &stats, s);
}
