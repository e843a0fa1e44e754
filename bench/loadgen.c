/* The benchmark's load generator: HTTP/1.1 keep-alive connections speaking go-micro's request
 * format (POST / with the mucp headers and a protobuf EchoMsg body) to an echo server on
 * 127.0.0.1. The same program drives every HTTP/1.1 peer (cmicro, go-micro, raw libuv echo).
 *
 * Closed loop (default): each of N connections keeps one request in flight; latency is measured
 * from the send. Open loop (--rate R): requests are scheduled at a fixed rate and handed to an
 * idle connection (or queued until one is free); latency is measured from the scheduled time, so
 * that a slow server is not hidden by a slower sender (no coordinated omission).
 *
 * Every run is bounded: a warm-up, then a measured window that ends after --duration seconds or
 * --max-requests answers, whichever comes first; then the program closes its connections and
 * exits. It prints one line of key=value pairs.
 *
 *   loadgen --addr 127.0.0.1:8080 [--conns 64] [--payload 64] [--warmup 1] [--duration 3]
 *           [--max-requests 10000000] [--rate 0] [--server-pid PID] [--snap 0|1] [--label name]
 *           [--rsp-body BYTES]
 *
 * --snap 1 sends SIGUSR2 to the server at the start and the end of the window (the
 * malloc_count preload library then writes its counters). --rsp-body says how long a right
 * answer's body is when it is not the echo of the request (nginx's fixed reply); a response of
 * another length counts as bad.
 */
#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define RBUF_CAP (256 * 1024)
#define MAX_CONNS 20000

typedef struct lg lg;

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    lg *g;
    char *rbuf;
    size_t rlen;
    size_t scanned;   /* bytes of rbuf already searched for the end of the header block */
    size_t total;     /* header block + body once known, else 0 */
    uint64_t t0;      /* send time (closed loop) or scheduled time (open loop) of the request */
    int busy;
    int writing; /* a uv_write of the rest of a request is queued */
    int connected;
    struct conn *next_idle;
} conn;

struct lg {
    uv_loop_t *loop;
    struct sockaddr_in addr;
    conn *conns;
    int nconns;
    int nconnected;
    size_t payload;
    double warmup_s;
    double duration_s;
    uint64_t max_requests;
    double rate; /* requests/s; 0: closed loop */
    int server_pid;
    int snap; /* SIGUSR2 to the server at the start and end of the window */
    const char *label;

    char *req;       /* the request bytes, the same for every call */
    size_t req_len;
    size_t rsp_body; /* expected response body length */

    int phase; /* 0 connecting, 1 warm-up, 2 measuring, 3 done */
    uint64_t t_phase;
    uint64_t t_measure_end; /* the end of the window as it happened */
    uint32_t *lat;          /* nanoseconds, one per answer in the window */
    uint64_t nlat;
    uint64_t lat_cap;
    uint64_t errors;
    uint64_t bad;
    uint64_t warm_calls;
    double cpu0;

    /* open loop */
    uv_idle_t idle;
    uint64_t t_sched0;
    uint64_t issued;
    conn *idle_conns;
    uint64_t *queue; /* scheduled times waiting for a connection (a ring) */
    uint64_t qhead, qtail, qcap;
    uint64_t queued_max;

    uv_timer_t timer;
    int closing;
    int nclosed;
};

static void
die(const char *what, int err)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, err ? uv_strerror(err) : "");
    exit(2);
}

/* CPU seconds (user + system) used so far by process pid, all threads; -1 when unknown. */
static double
proc_cpu_s(int pid)
{
    if (pid <= 0) {
        return -1;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) {
        return -1;
    }
    /* Fields after the name: state(3) ... utime(14) stime(15). */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    for (char *t = strtok(p + 1, " "); t; t = strtok(NULL, " ")) {
        field++;
        if (field == 14) {
            ut = strtoull(t, NULL, 10);
        } else if (field == 15) {
            st = strtoull(t, NULL, 10);
            break;
        }
    }
    return (double)(ut + st) / 100.0; /* USER_HZ */
}

static void build_request(lg *g, const char *host_port)
{
    /* EchoMsg{payload = N bytes}: tag 1 (length-delimited) 0x0a, varint length, bytes. */
    size_t n = g->payload;
    uint8_t pre[12];
    size_t pn = 0;
    pre[pn++] = 0x0a;
    size_t v = n;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        pre[pn++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    size_t body = n ? pn + n : 0;
    g->rsp_body = body;
    char hdr[1024];
    int hn = snprintf(hdr, sizeof(hdr),
                      "POST / HTTP/1.1\r\n"
                      "Host: %s\r\n"
                      "User-Agent: Go-http-client/1.1\r\n"
                      "Content-Length: %zu\r\n"
                      "Accept: application/protobuf\r\n"
                      "Content-Type: application/protobuf\r\n"
                      "Micro-Endpoint: Bench.Echo\r\n"
                      "Micro-Id: 1\r\n"
                      "Micro-Method: Bench.Echo\r\n"
                      "Micro-Service: bench\r\n"
                      "Timeout: 5000000000\r\n"
                      "\r\n",
                      host_port, body);
    g->req_len = (size_t)hn + body;
    g->req = malloc(g->req_len);
    if (!g->req) {
        die("out of memory", 0);
    }
    memcpy(g->req, hdr, (size_t)hn);
    if (body) {
        memcpy(g->req + hn, pre, pn);
        for (size_t i = 0; i < n; i++) {
            g->req[(size_t)hn + pn + i] = (char)('a' + i % 26);
        }
    }
}

static void send_on(conn *c, uint64_t t0);
static void finish(lg *g);

static void
on_write(uv_write_t *w, int status)
{
    conn *c = w->data;
    c->writing = 0;
    if (status < 0 && !c->g->closing) {
        die("write", status);
    }
}

static void
send_on(conn *c, uint64_t t0)
{
    lg *g = c->g;
    c->busy = 1;
    c->t0 = t0;
    /* uv_try_write first: the request goes out now and no write request stays pending (the
     * answer may be read before a queued write's callback would have run). */
    uv_buf_t b = uv_buf_init(g->req, (unsigned)g->req_len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
        die("write", n);
    }
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == g->req_len) {
        return;
    }
    if (c->writing) {
        die("write: a previous request is still being written", 0);
    }
    c->writing = 1;
    b = uv_buf_init(g->req + done, (unsigned)(g->req_len - done));
    int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r < 0) {
        die("write", r);
    }
}

/* Parses the response in c->rbuf; 1 when it is complete. */
static int
parse_response(conn *c)
{
    lg *g = c->g;
    if (!c->total) {
        size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
        char *end = NULL;
        for (size_t i = from; i + 4 <= c->rlen; i++) {
            if (c->rbuf[i] == '\r' && memcmp(c->rbuf + i, "\r\n\r\n", 4) == 0) {
                end = c->rbuf + i;
                break;
            }
        }
        c->scanned = c->rlen;
        if (!end) {
            if (c->rlen == RBUF_CAP) {
                die("response header block too large", 0);
            }
            return 0;
        }
        size_t hlen = (size_t)(end - c->rbuf) + 4;
        if (hlen < 12 || memcmp(c->rbuf, "HTTP/1.1 200", 12) != 0) {
            g->errors++;
        }
        size_t clen = 0;
        int have_clen = 0;
        for (char *p = c->rbuf; p < end; p++) {
            if (*p != '\n') {
                continue;
            }
            char *k = p + 1;
            if ((size_t)(end - k) > 15 && strncasecmp(k, "Content-Length:", 15) == 0) {
                clen = strtoul(k + 15, NULL, 10);
                have_clen = 1;
            } else if ((size_t)(end - k) > 12 && strncasecmp(k, "Micro-Error:", 12) == 0) {
                g->errors++;
            }
        }
        if (!have_clen) {
            die("response without Content-Length", 0);
        }
        if (clen != g->rsp_body) {
            g->bad++;
        }
        c->total = hlen + clen;
        if (c->total > RBUF_CAP) {
            die("response too large", 0);
        }
    }
    return c->rlen >= c->total;
}

static void
record(lg *g, uint64_t t0, uint64_t now)
{
    if (g->phase == 1) {
        g->warm_calls++;
        return;
    }
    if (g->phase != 2 || t0 < g->t_phase) {
        return;
    }
    uint64_t d = now - t0;
    if (g->nlat < g->lat_cap) {
        g->lat[g->nlat++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    }
    if (g->nlat >= g->max_requests) {
        g->t_measure_end = now;
        finish(g);
    }
}

static void next_open_loop(lg *g, conn *c, uint64_t now);

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = h->data;
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(RBUF_CAP - c->rlen));
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn *c = s->data;
    lg *g = c->g;
    if (nread < 0) {
        if (!g->closing) {
            die("the server closed a connection", (int)nread);
        }
        return;
    }
    c->rlen += (size_t)nread;
    if (!c->busy) {
        if (nread > 0) {
            die("bytes nobody asked for", 0);
        }
        return;
    }
    if (!parse_response(c)) {
        return;
    }
    if (c->rlen != c->total) {
        die("more bytes than one response", 0);
    }
    uint64_t now = uv_hrtime();
    c->rlen = c->scanned = c->total = 0;
    c->busy = 0;
    uint64_t t0 = c->t0;
    record(g, t0, now);
    if (g->closing || g->phase == 3) {
        return;
    }
    if (g->rate > 0) {
        next_open_loop(g, c, now);
    } else {
        send_on(c, now);
    }
}

/* ---- phases ---- */

static void
on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    c->g->nclosed++;
}

static void
finish(lg *g)
{
    if (g->phase == 3) {
        return;
    }
    g->phase = 3;
    g->closing = 1;
    if (g->snap && g->server_pid > 0) {
        kill(g->server_pid, SIGUSR2);
    }
    uv_timer_stop(&g->timer);
    if (g->rate > 0) {
        uv_idle_stop(&g->idle);
    }
    for (int i = 0; i < g->nconns; i++) {
        uv_close((uv_handle_t *)&g->conns[i].tcp, on_closed);
    }
    uv_close((uv_handle_t *)&g->timer, NULL);
    if (g->rate > 0) {
        uv_close((uv_handle_t *)&g->idle, NULL);
    }
}

static void on_timer(uv_timer_t *t);

static void
start_measuring(lg *g)
{
    g->phase = 2;
    g->t_phase = uv_hrtime();
    g->cpu0 = proc_cpu_s(g->server_pid);
    if (g->snap && g->server_pid > 0) {
        kill(g->server_pid, SIGUSR2);
    }
    uv_timer_start(&g->timer, on_timer, (uint64_t)(g->duration_s * 1000), 0);
}

static void
on_timer(uv_timer_t *t)
{
    lg *g = t->data;
    if (g->phase == 1) {
        start_measuring(g);
    } else if (g->phase == 2) {
        g->t_measure_end = uv_hrtime();
        finish(g);
    }
}

/* ---- open loop ---- */

static void
next_open_loop(lg *g, conn *c, uint64_t now)
{
    (void)now;
    if (g->qhead != g->qtail) {
        uint64_t t0 = g->queue[g->qhead++ % g->qcap];
        send_on(c, t0);
        return;
    }
    c->next_idle = g->idle_conns;
    g->idle_conns = c;
}

static void
on_idle(uv_idle_t *h)
{
    lg *g = h->data;
    if (g->phase == 0 || g->phase == 3) {
        return;
    }
    uint64_t now = uv_hrtime();
    double interval = 1e9 / g->rate;
    for (;;) {
        uint64_t due = g->t_sched0 + (uint64_t)((double)g->issued * interval);
        if (due > now) {
            break;
        }
        g->issued++;
        if (g->idle_conns) {
            conn *c = g->idle_conns;
            g->idle_conns = c->next_idle;
            send_on(c, due);
        } else {
            if (g->qtail - g->qhead == g->qcap) {
                die("open loop: the server falls behind the rate (queue full)", 0);
            }
            g->queue[g->qtail++ % g->qcap] = due;
            if (g->qtail - g->qhead > g->queued_max) {
                g->queued_max = g->qtail - g->qhead;
            }
        }
    }
}

/* ---- connecting ---- */

static void
all_connected(lg *g)
{
    g->phase = 1;
    g->t_phase = uv_hrtime();
    uv_timer_init(g->loop, &g->timer);
    g->timer.data = g;
    if (g->rate > 0) {
        g->t_sched0 = uv_hrtime();
        for (int i = g->nconns - 1; i >= 0; i--) {
            g->conns[i].next_idle = g->idle_conns;
            g->idle_conns = &g->conns[i];
        }
        uv_idle_init(g->loop, &g->idle);
        g->idle.data = g;
        uv_idle_start(&g->idle, on_idle);
    } else {
        for (int i = 0; i < g->nconns; i++) {
            send_on(&g->conns[i], uv_hrtime());
        }
    }
    if (g->warmup_s > 0) {
        uv_timer_start(&g->timer, on_timer, (uint64_t)(g->warmup_s * 1000), 0);
    } else {
        start_measuring(g);
    }
}

static void
on_connect(uv_connect_t *req, int status)
{
    conn *c = req->data;
    if (status < 0) {
        die("connect", status);
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r < 0) {
        die("read_start", r);
    }
    if (++c->g->nconnected == c->g->nconns) {
        all_connected(c->g);
    }
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double
pct_us(const uint32_t *v, uint64_t n, double p)
{
    if (n == 0) {
        return 0;
    }
    uint64_t i = (uint64_t)(p * (double)n);
    if (i >= n) {
        i = n - 1;
    }
    return v[i] / 1000.0;
}

static void
usage(void)
{
    fprintf(stderr, "usage: loadgen --addr HOST:PORT [--conns N] [--payload BYTES] [--warmup S] "
                    "[--duration S] [--max-requests N] [--rate R] [--server-pid PID] "
                    "[--snap 0|1] [--label NAME] [--rsp-body BYTES]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    lg g;
    memset(&g, 0, sizeof(g));
    const char *addr = NULL;
    g.nconns = 64;
    g.payload = 64;
    g.warmup_s = 1;
    g.duration_s = 3;
    g.max_requests = 10000000;
    g.label = "-";
    long rsp_body = -1;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
        }
        if (!strcmp(a, "--addr")) {
            addr = v;
        } else if (!strcmp(a, "--conns")) {
            g.nconns = atoi(v);
        } else if (!strcmp(a, "--payload")) {
            g.payload = strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--warmup")) {
            g.warmup_s = atof(v);
        } else if (!strcmp(a, "--duration")) {
            g.duration_s = atof(v);
        } else if (!strcmp(a, "--max-requests")) {
            g.max_requests = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--rate")) {
            g.rate = atof(v);
        } else if (!strcmp(a, "--server-pid")) {
            g.server_pid = atoi(v);
        } else if (!strcmp(a, "--snap")) {
            g.snap = atoi(v);
        } else if (!strcmp(a, "--label")) {
            g.label = v;
        } else if (!strcmp(a, "--rsp-body")) {
            rsp_body = atol(v);
        } else {
            usage();
        }
    }
    if (!addr || g.nconns < 1 || g.nconns > MAX_CONNS || g.duration_s <= 0 ||
        g.duration_s > 600 || g.warmup_s < 0 || g.warmup_s > 600 || g.max_requests == 0 ||
        g.payload > 1024 * 1024) {
        usage();
    }
    const char *colon = strrchr(addr, ':');
    if (!colon) {
        usage();
    }
    char host[64];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    /* Loopback only: the benchmark never sends traffic off the machine. */
    if (strncmp(host, "127.", 4) != 0) {
        fprintf(stderr, "loadgen: only 127.0.0.0/8 addresses are allowed\n");
        return 2;
    }
    int r = uv_ip4_addr(host, atoi(colon + 1), &g.addr);
    if (r < 0) {
        die("address", r);
    }
    build_request(&g, addr);
    if (rsp_body >= 0) {
        g.rsp_body = (size_t)rsp_body;
    }

    /* Enough room for the window: the rate bounds it in open loop; in closed loop 2 M answers
     * per second is above what one loopback connection set can reach. */
    double per_s = g.rate > 0 ? g.rate * 1.1 + 1000 : 2e6;
    g.lat_cap = (uint64_t)(per_s * g.duration_s) + 1000;
    if (g.lat_cap > g.max_requests) {
        g.lat_cap = g.max_requests;
    }
    g.lat = malloc(g.lat_cap * sizeof(uint32_t));
    g.qcap = 1u << 20;
    g.queue = malloc(g.qcap * sizeof(uint64_t));
    g.conns = calloc((size_t)g.nconns, sizeof(conn));
    if (!g.lat || !g.queue || !g.conns) {
        die("out of memory", 0);
    }
    g.loop = uv_default_loop();
    for (int i = 0; i < g.nconns; i++) {
        conn *c = &g.conns[i];
        c->g = &g;
        c->rbuf = malloc(RBUF_CAP);
        if (!c->rbuf) {
            die("out of memory", 0);
        }
        uv_tcp_init(g.loop, &c->tcp);
        c->tcp.data = c;
        c->creq.data = c;
        c->wreq.data = c;
        r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g.addr, on_connect);
        if (r < 0) {
            die("connect", r);
        }
    }
    uv_run(g.loop, UV_RUN_DEFAULT);
    double cpu1 = proc_cpu_s(g.server_pid);

    double window = (double)(g.t_measure_end - g.t_phase) / 1e9;
    qsort(g.lat, g.nlat, sizeof(uint32_t), cmp_u32);
    double rps = window > 0 ? (double)g.nlat / window : 0;
    double cpu = (g.cpu0 >= 0 && cpu1 >= 0) ? cpu1 - g.cpu0 : -1;
    double per100k = cpu >= 0 && g.nlat ? cpu * 100000.0 / (double)g.nlat : -1;
    printf("label=%s conns=%d payload=%zu rate=%.0f calls=%" PRIu64 " window_s=%.3f rps=%.0f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%" PRIu64
           " bad=%" PRIu64 " cpu_s=%.2f cpu_per_100k=%.3f queued_max=%" PRIu64 "\n",
           g.label, g.nconns, g.payload, g.rate, g.nlat, window, rps, pct_us(g.lat, g.nlat, 0.50),
           pct_us(g.lat, g.nlat, 0.90), pct_us(g.lat, g.nlat, 0.99), pct_us(g.lat, g.nlat, 0.999),
           g.nlat ? g.lat[g.nlat - 1] / 1000.0 : 0, g.errors, g.bad, cpu, per100k, g.queued_max);
    for (int i = 0; i < g.nconns; i++) {
        free(g.conns[i].rbuf);
    }
    free(g.conns);
    free(g.lat);
    free(g.queue);
    free(g.req);
    uv_loop_close(g.loop);
    return g.errors || g.bad || g.nlat == 0;
}
