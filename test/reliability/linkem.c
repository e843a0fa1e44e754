/* A link emulator in userspace ("netem without sch_netem") for the lossy-link test (netem.sh) on
 * kernels built without sch_netem: it joins two network namespaces with a TUN device in each and
 * forwards IP packets between them, both ways, with a random delay and random loss.
 *
 *   linkem --ns-b PID --addr-a ADDR/PREFIX --addr-b ADDR/PREFIX [--dev-a NAME] [--dev-b NAME]
 *          [--delay-ms MS] [--jitter-ms MS] [--loss PERCENT] [--seed N] [--duration S]
 *
 * Device A (default cmtunA) is created in linkem's own network namespace, device B (default
 * cmtunB) in the namespace of process PID (entered with setns through /proc/PID/ns/net; the TUN
 * descriptor keeps working after switching back, the device stays where it was created). Both
 * are TUN devices (IFF_TUN | IFF_NO_PI: raw IP packets, no ARP), given their address and prefix
 * and set up by linkem, so a packet the kernel of A routes to B's address leaves through A's
 * device, is read here and written into B's device, and the other way round.
 *
 * Each packet read is lost with probability PERCENT/100, or else written to the other device
 * after MS +- JITTER (uniform, in whole milliseconds, at least 0). As with netem, packets leave
 * in the order of their due times, so jitter reorders them. At most 1000 packets wait per
 * direction (netem's default limit); a packet beyond that is dropped and counted as capped.
 * The random numbers come from a generator seeded with --seed (default 1).
 *
 * Once both devices are up it prints one line starting with "ready" on stdout. It stops on
 * SIGTERM or SIGINT, or after --duration seconds, and then prints per direction:
 *   a->b received=N forwarded=N lost=N capped=N failed=N unsent=N
 * where received = forwarded + lost + capped + failed (a write the other device refused) +
 * unsent (still waiting at the stop). The devices go when linkem exits.
 *
 * Exit status: 0 after a clean stop; 1 on an error (described on stderr); 2 on a usage error;
 * 3 when this system cannot give linkem its devices (no /dev/net/tun, TUNSETIFF or setns
 * refused): the caller may treat that as "not available here". It refuses to run in the
 * initial network namespace (that of PID 1, where /proc/1/ns/net is readable) and when both
 * namespaces are the same.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define QUEUE_LIMIT 1000
#define MAX_PACKET 65535
#define READ_BURST 64

enum { EXIT_USAGE = 2, EXIT_UNAVAILABLE = 3 };

typedef struct link_end {
    const char *dev;
    struct in_addr addr;
    int prefix;
    int fd;
} link_end;

typedef struct packet {
    uint64_t due_ms;
    uint64_t seq; /* arrival order: equal due times leave in it */
    size_t len;
    unsigned char data[];
} packet;

typedef struct direction {
    const char *name;
    int in_fd, out_fd;
    uv_poll_t poll; /* in_fd readable; initialised when polling is set */
    int polling;
    uv_timer_t timer;          /* the first packet due */
    packet *heap[QUEUE_LIMIT]; /* a min-heap on (due_ms, seq) */
    size_t queued;
    uint64_t seq;
    uint64_t received, forwarded, lost, capped, failed;
} direction;

static struct {
    long ns_b;
    link_end a, b;
    uint64_t delay_ms, jitter_ms;
    double loss_pct;
    uint64_t seed;
    double duration_s;
} cfg = {0, {"cmtunA", {0}, 0, -1}, {"cmtunB", {0}, 0, -1}, 0, 0, 0, 1, 0};

static uv_loop_t loop;
static direction dirs[2];
static uv_signal_t sigterm_h, sigint_h;
static uv_timer_t stop_timer;
static int exit_status;
static uint64_t rng;
static unsigned char buf[MAX_PACKET];

/* splitmix64: small, fast, and good enough for loss and jitter. */
static uint64_t
rand_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double
rand_unit(void)
{
    return (double)(rand_u64() >> 11) * 0x1.0p-53;
}

static uint64_t
draw_delay_ms(void)
{
    if (cfg.jitter_ms == 0) {
        return cfg.delay_ms;
    }
    uint64_t span = 2 * cfg.jitter_ms + 1;
    int64_t d = (int64_t)cfg.delay_ms + (int64_t)(rand_u64() % span) - (int64_t)cfg.jitter_ms;
    return d > 0 ? (uint64_t)d : 0;
}

/* ---- the queue of one direction ---- */

static int
before(const packet *x, const packet *y)
{
    return x->due_ms < y->due_ms || (x->due_ms == y->due_ms && x->seq < y->seq);
}

static void
heap_swap(direction *d, size_t i, size_t j)
{
    packet *t = d->heap[i];
    d->heap[i] = d->heap[j];
    d->heap[j] = t;
}

static void
heap_push(direction *d, packet *p)
{
    size_t i = d->queued++;
    d->heap[i] = p;
    while (i > 0 && before(d->heap[i], d->heap[(i - 1) / 2])) {
        heap_swap(d, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static packet *
heap_pop(direction *d)
{
    packet *top = d->heap[0];
    d->heap[0] = d->heap[--d->queued];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < d->queued && before(d->heap[l], d->heap[m])) {
            m = l;
        }
        if (r < d->queued && before(d->heap[r], d->heap[m])) {
            m = r;
        }
        if (m == i) {
            return top;
        }
        heap_swap(d, i, m);
        i = m;
    }
}

/* ---- forwarding ---- */

static void
close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/* Closes every handle, so that uv_run returns. */
static void
stop(int status)
{
    if (status != 0) {
        exit_status = status;
    }
    for (int i = 0; i < 2; i++) {
        if (dirs[i].polling) {
            close_handle((uv_handle_t *)&dirs[i].poll);
        }
        close_handle((uv_handle_t *)&dirs[i].timer);
    }
    close_handle((uv_handle_t *)&sigterm_h);
    close_handle((uv_handle_t *)&sigint_h);
    close_handle((uv_handle_t *)&stop_timer);
}

static void on_due(uv_timer_t *t);

static void
arm_timer(direction *d)
{
    if (d->queued == 0 || uv_is_closing((uv_handle_t *)&d->timer)) {
        return;
    }
    uint64_t now = uv_now(&loop), due = d->heap[0]->due_ms;
    uv_timer_start(&d->timer, on_due, due > now ? due - now : 0, 0);
}

static void
on_due(uv_timer_t *t)
{
    direction *d = t->data;
    uint64_t now = uv_now(&loop);
    while (d->queued > 0 && d->heap[0]->due_ms <= now) {
        packet *p = heap_pop(d);
        ssize_t n = write(d->out_fd, p->data, p->len);
        if (n == (ssize_t)p->len) {
            d->forwarded++;
        } else {
            d->failed++;
        }
        free(p);
    }
    arm_timer(d);
}

static void
on_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    direction *d = h->data;
    if (status < 0) {
        fprintf(stderr, "linkem: %s: poll: %s\n", d->name, uv_strerror(status));
        stop(1);
        return;
    }
    uv_update_time(&loop);
    for (int i = 0; i < READ_BURST; i++) {
        ssize_t n = read(d->in_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n < 0) {
            fprintf(stderr, "linkem: %s: read: %s\n", d->name, strerror(errno));
            stop(1);
            return;
        }
        d->received++;
        if (rand_unit() * 100.0 < cfg.loss_pct) {
            d->lost++;
            continue;
        }
        packet *p = d->queued < QUEUE_LIMIT ? malloc(sizeof(*p) + (size_t)n) : NULL;
        if (p == NULL) {
            d->capped++;
            continue;
        }
        p->due_ms = uv_now(&loop) + draw_delay_ms();
        p->seq = d->seq++;
        p->len = (size_t)n;
        memcpy(p->data, buf, (size_t)n);
        heap_push(d, p);
    }
    arm_timer(d);
}

static void
on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    stop(0);
}

static void
on_stop_timer(uv_timer_t *t)
{
    (void)t;
    stop(0);
}

/* ---- setup ---- */

/* Creates a TUN device NAME in the current network namespace; returns its non-blocking fd. */
static int
tun_create(const char *name, int *fd_out)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "linkem: cannot open /dev/net/tun: %s\n", strerror(errno));
        return EXIT_UNAVAILABLE;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    memcpy(ifr.ifr_name, name, strlen(name));
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        fprintf(stderr, "linkem: cannot create TUN device %s: %s\n", name, strerror(errno));
        close(fd);
        return EXIT_UNAVAILABLE;
    }
    *fd_out = fd;
    return 0;
}

static int
set_addr(int s, const char *dev, unsigned long req, uint32_t addr_be)
{
    struct ifreq ifr;
    struct sockaddr_in sin;
    memset(&ifr, 0, sizeof(ifr));
    memset(&sin, 0, sizeof(sin));
    memcpy(ifr.ifr_name, dev, strlen(dev));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = addr_be;
    memcpy(&ifr.ifr_addr, &sin, sizeof(sin));
    return ioctl(s, req, &ifr);
}

/* Gives END's device its address and prefix and sets it up, in the current namespace. */
static int
configure(const link_end *end)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        fprintf(stderr, "linkem: socket: %s\n", strerror(errno));
        return 1;
    }
    uint32_t mask = end->prefix == 0 ? 0 : htonl(UINT32_MAX << (32 - end->prefix));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, end->dev, strlen(end->dev));
    const char *what = "address";
    int rc = set_addr(s, end->dev, SIOCSIFADDR, end->addr.s_addr);
    if (rc == 0) {
        what = "netmask";
        rc = set_addr(s, end->dev, SIOCSIFNETMASK, mask);
    }
    if (rc == 0) {
        what = "flags";
        rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    }
    if (rc == 0) {
        what = "up";
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    if (rc < 0) {
        fprintf(stderr, "linkem: %s: cannot set %s: %s\n", end->dev, what, strerror(errno));
    }
    close(s);
    return rc < 0 ? 1 : 0;
}

/* The identity of a namespace, "net:[inode]", read from a /proc/.../ns/net link; "" if unreadable
 * (stat on another process's namespace may be refused where readlink is not). */
static void
ns_id(const char *path, char *id, size_t size)
{
    ssize_t n = readlink(path, id, size - 1);
    id[n > 0 ? n : 0] = '\0';
}

/* Creates and configures both devices: A here, B in the namespace of cfg.ns_b. */
static int
setup_devices(void)
{
    char path_b[64];
    snprintf(path_b, sizeof(path_b), "/proc/%ld/ns/net", cfg.ns_b);
    int own = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int nsb = open(path_b, O_RDONLY | O_CLOEXEC);
    int rc = 1;
    if (own < 0 || nsb < 0) {
        fprintf(stderr, "linkem: cannot open %s: %s\n", own < 0 ? "/proc/self/ns/net" : path_b,
                strerror(errno));
        goto out;
    }
    char id_own[64], id_init[64], id_b[64];
    ns_id("/proc/self/ns/net", id_own, sizeof(id_own));
    ns_id("/proc/1/ns/net", id_init, sizeof(id_init));
    ns_id(path_b, id_b, sizeof(id_b));
    if (id_own[0] == '\0' || strcmp(id_own, id_init) == 0) {
        fprintf(stderr, "linkem: refusing to run in the initial network namespace\n");
        goto out;
    }
    if (strcmp(id_own, id_b) == 0) {
        fprintf(stderr, "linkem: process %ld is in linkem's own network namespace\n", cfg.ns_b);
        goto out;
    }
    if ((rc = tun_create(cfg.a.dev, &cfg.a.fd)) != 0 || (rc = configure(&cfg.a)) != 0) {
        goto out;
    }
    if (setns(nsb, CLONE_NEWNET) < 0) {
        fprintf(stderr, "linkem: cannot enter %s: %s\n", path_b, strerror(errno));
        rc = EXIT_UNAVAILABLE;
        goto out;
    }
    rc = tun_create(cfg.b.dev, &cfg.b.fd);
    if (rc == 0) {
        rc = configure(&cfg.b);
    }
    if (setns(own, CLONE_NEWNET) < 0) {
        fprintf(stderr, "linkem: cannot return to its own namespace: %s\n", strerror(errno));
        rc = 1;
    }
out:
    if (own >= 0) {
        close(own);
    }
    if (nsb >= 0) {
        close(nsb);
    }
    return rc;
}

static int
parse_end(const char *v, link_end *end)
{
    char host[INET_ADDRSTRLEN];
    const char *slash = strchr(v, '/');
    if (slash == NULL || (size_t)(slash - v) >= sizeof(host)) {
        return -1;
    }
    memcpy(host, v, (size_t)(slash - v));
    host[slash - v] = '\0';
    char *endp;
    long prefix = strtol(slash + 1, &endp, 10);
    if (inet_pton(AF_INET, host, &end->addr) != 1 || *endp != '\0' || endp == slash + 1 ||
        prefix < 1 || prefix > 32) {
        return -1;
    }
    end->prefix = (int)prefix;
    return 0;
}

static int
parse_num(const char *v, double lo, double hi, double *out)
{
    char *endp;
    errno = 0;
    double x = strtod(v, &endp);
    if (errno != 0 || endp == v || *endp != '\0' || !(x >= lo && x <= hi)) {
        return -1;
    }
    *out = x;
    return 0;
}

static int
parse_args(int argc, char **argv)
{
    int have_a = 0, have_b = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        double x = 0;
        int rc = 0;
        if (strcmp(a, "--ns-b") == 0) {
            rc = parse_num(v, 1, 4194304, &x);
            cfg.ns_b = (long)x;
        } else if (strcmp(a, "--dev-a") == 0 || strcmp(a, "--dev-b") == 0) {
            rc = strlen(v) == 0 || strlen(v) >= IFNAMSIZ ? -1 : 0;
            (strcmp(a, "--dev-a") == 0 ? &cfg.a : &cfg.b)->dev = v;
        } else if (strcmp(a, "--addr-a") == 0) {
            rc = parse_end(v, &cfg.a);
            have_a = 1;
        } else if (strcmp(a, "--addr-b") == 0) {
            rc = parse_end(v, &cfg.b);
            have_b = 1;
        } else if (strcmp(a, "--delay-ms") == 0 || strcmp(a, "--jitter-ms") == 0) {
            rc = parse_num(v, 0, 3600000, &x);
            *(strcmp(a, "--delay-ms") == 0 ? &cfg.delay_ms : &cfg.jitter_ms) = (uint64_t)x;
        } else if (strcmp(a, "--loss") == 0) {
            rc = parse_num(v, 0, 100, &cfg.loss_pct);
        } else if (strcmp(a, "--seed") == 0) {
            rc = parse_num(v, 0, 1e15, &x);
            cfg.seed = (uint64_t)x;
        } else if (strcmp(a, "--duration") == 0) {
            rc = parse_num(v, 0, 86400, &cfg.duration_s);
        } else {
            rc = -1;
        }
        if (rc < 0) {
            fprintf(stderr, "linkem: bad option %s %s\n", a, v);
            return -1;
        }
    }
    if (argc % 2 == 0 || cfg.ns_b == 0 || !have_a || !have_b || strcmp(cfg.a.dev, cfg.b.dev) == 0) {
        return -1;
    }
    return 0;
}

static void
print_counters(const direction *d)
{
    printf("%s received=%" PRIu64 " forwarded=%" PRIu64 " lost=%" PRIu64 " capped=%" PRIu64
           " failed=%" PRIu64 " unsent=%zu\n",
           d->name, d->received, d->forwarded, d->lost, d->capped, d->failed, d->queued);
}

static int
run(void)
{
    int rc = uv_loop_init(&loop);
    if (rc < 0) {
        fprintf(stderr, "linkem: uv_loop_init: %s\n", uv_strerror(rc));
        return 1;
    }
    dirs[0].name = "a->b";
    dirs[0].in_fd = cfg.a.fd;
    dirs[0].out_fd = cfg.b.fd;
    dirs[1].name = "b->a";
    dirs[1].in_fd = cfg.b.fd;
    dirs[1].out_fd = cfg.a.fd;
    for (int i = 0; i < 2; i++) {
        direction *d = &dirs[i];
        uv_timer_init(&loop, &d->timer);
        d->timer.data = d;
        rc = uv_poll_init(&loop, &d->poll, d->in_fd);
        d->poll.data = d;
        d->polling = rc == 0;
        if (rc == 0) {
            rc = uv_poll_start(&d->poll, UV_READABLE, on_readable);
        }
        if (rc < 0) {
            fprintf(stderr, "linkem: uv_poll on %s: %s\n", d->name, uv_strerror(rc));
            exit_status = 1;
        }
    }
    uv_signal_init(&loop, &sigterm_h);
    uv_signal_init(&loop, &sigint_h);
    uv_timer_init(&loop, &stop_timer);
    uv_signal_start(&sigterm_h, on_signal, SIGTERM);
    uv_signal_start(&sigint_h, on_signal, SIGINT);
    if (cfg.duration_s > 0) {
        uv_timer_start(&stop_timer, on_stop_timer, (uint64_t)(cfg.duration_s * 1000.0), 0);
    }
    if (exit_status != 0) {
        stop(exit_status);
    } else {
        printf("ready a=%s b=%s delay=%" PRIu64 "ms jitter=%" PRIu64 "ms loss=%g%% seed=%" PRIu64
               "\n",
               cfg.a.dev, cfg.b.dev, cfg.delay_ms, cfg.jitter_ms, cfg.loss_pct, cfg.seed);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&loop);
    if (rc < 0) {
        fprintf(stderr, "linkem: uv_loop_close: %s\n", uv_strerror(rc));
        exit_status = 1;
    }
    for (int i = 0; i < 2; i++) {
        print_counters(&dirs[i]);
        while (dirs[i].queued > 0) {
            free(dirs[i].heap[--dirs[i].queued]);
        }
    }
    return exit_status;
}

int
main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0) {
        fprintf(stderr, "usage: linkem --ns-b PID --addr-a ADDR/PREFIX --addr-b ADDR/PREFIX "
                        "[--dev-a NAME] [--dev-b NAME] [--delay-ms MS] [--jitter-ms MS] "
                        "[--loss PERCENT] [--seed N] [--duration S]\n");
        return EXIT_USAGE;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    rng = cfg.seed;
    int rc = setup_devices();
    if (rc == 0) {
        rc = run();
    }
    if (cfg.a.fd >= 0) {
        close(cfg.a.fd);
    }
    if (cfg.b.fd >= 0) {
        close(cfg.b.fd);
    }
    return rc;
}
