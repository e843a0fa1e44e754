/* An LD_PRELOAD heap-allocation counter for the benchmark. It counts malloc, calloc, realloc,
 * posix_memalign/aligned_alloc/memalign and free calls (all threads) and, on SIGUSR2, appends
 * one line "allocs=N frees=M" to the file named by MALLOC_COUNT_OUT. The load generator sends
 * that signal at the start and at the end of its measured window, so the difference divided by
 * the calls is the allocations per call on the path the window exercised.
 *
 *   MALLOC_COUNT_OUT=/tmp/counts LD_PRELOAD=.../libmalloc_count.so echo-cmicro
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t a, size_t n);
extern void __libc_free(void *p);

/* The build hides symbols by default; these must be seen to interpose on libc's. */
#define EXPORT __attribute__((visibility("default")))

static atomic_ulong allocs, frees;
static int out_fd = -1;

EXPORT void *
malloc(size_t n)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_malloc(n);
}

EXPORT void *
calloc(size_t n, size_t m)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_calloc(n, m);
}

EXPORT void *
realloc(void *p, size_t n)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_realloc(p, n);
}

EXPORT void *
memalign(size_t a, size_t n)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_memalign(a, n);
}

EXPORT void *
aligned_alloc(size_t a, size_t n)
{
    return memalign(a, n);
}

EXPORT int
posix_memalign(void **out, size_t a, size_t n)
{
    void *p = memalign(a, n);
    if (!p) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}

EXPORT void
free(void *p)
{
    if (p) {
        atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
    }
    __libc_free(p);
}

/* Formats v in decimal at the end of buf; returns the start. Async-signal-safe. */
static char *
fmt_u(char *end, unsigned long v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

static void
on_snap(int sig)
{
    (void)sig;
    if (out_fd < 0) {
        return;
    }
    char line[96], a[24], f[24];
    char *as = fmt_u(a + sizeof(a), atomic_load(&allocs));
    char *fs = fmt_u(f + sizeof(f), atomic_load(&frees));
    size_t n = 0;
    memcpy(line + n, "allocs=", 7);
    n += 7;
    memcpy(line + n, as, (size_t)(a + sizeof(a) - as));
    n += (size_t)(a + sizeof(a) - as);
    memcpy(line + n, " frees=", 7);
    n += 7;
    memcpy(line + n, fs, (size_t)(f + sizeof(f) - fs));
    n += (size_t)(f + sizeof(f) - fs);
    line[n++] = '\n';
    ssize_t w = write(out_fd, line, n);
    (void)w;
}

__attribute__((constructor)) static void
init(void)
{
    const char *path = getenv("MALLOC_COUNT_OUT");
    if (!path) {
        return;
    }
    out_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_snap;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
}
