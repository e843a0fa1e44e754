/* The floor of the pub/sub benchmark (bench/broker.sh): plain libnats, the payload as the NATS
 * message (no go-micro envelope), with pubsub-cmicro's command line and output:
 *
 *   pubsub-nats-raw sub URL COUNT            READY once subscribed, then RESULT n= rate=
 *                                            p50_us= p99_us= after COUNT messages, IDLE_MS
 *                                            (default 3000) without one, or 60 s
 *   pubsub-nats-raw pub URL COUNT SIZE RATE  PUBLISHED <ok> <failed>
 *
 * The first 8 bytes of the payload are the publish time (CLOCK_REALTIME ns, little-endian). */
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOPIC "bench.pubsub"

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int want;
static uint64_t *lat;
static atomic_int got;
static uint64_t first_sent = UINT64_MAX, last_recv; /* the subscription's one thread */

static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    uint64_t now = now_ns(), sent = 0;
    if (natsMsg_GetDataLength(msg) >= 8) {
        memcpy(&sent, natsMsg_GetData(msg), 8);
    }
    first_sent = sent < first_sent ? sent : first_sent;
    last_recv = now;
    int i = atomic_load(&got);
    if (i < want) {
        lat[i] = now > sent ? now - sent : 0;
    }
    atomic_fetch_add(&got, 1);
    natsMsg_Destroy(msg);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int
sub(natsConnection *nc)
{
    const char *idle_env = getenv("IDLE_MS");
    uint64_t idle = (uint64_t)(idle_env != NULL && *idle_env ? atoi(idle_env) : 3000) * 1000000u;
    lat = calloc((size_t)want + 1, sizeof(*lat));
    natsSubscription *s = NULL;
    if (natsConnection_Subscribe(&s, nc, TOPIC, on_msg, NULL) != NATS_OK ||
        natsSubscription_SetPendingLimits(s, -1, -1) != NATS_OK ||
        natsConnection_Flush(nc) != NATS_OK) {
        fprintf(stderr, "pubsub-nats-raw: subscribe: %s\n", nats_GetLastError(NULL));
        return 1;
    }
    printf("READY\n");
    fflush(stdout);
    uint64_t start = now_ns(), before = 0;
    for (;;) {
        nats_Sleep(50);
        int n = atomic_load(&got);
        uint64_t now = now_ns();
        if (n >= want || now - start > 60000000000u) {
            break;
        }
        if (n > 0 && n == (int)before && now - last_recv > idle) {
            break;
        }
        before = (uint64_t)n;
    }
    natsSubscription_Unsubscribe(s);
    natsSubscription_Destroy(s);
    int n = atomic_load(&got);
    n = n > want ? want : n;
    double p50 = 0, p99 = 0, rate = 0;
    if (n > 0) {
        qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
        p50 = (double)lat[(size_t)n * 50 / 100] / 1e3;
        p99 = (double)lat[(size_t)n * 99 / 100] / 1e3;
        rate = last_recv > first_sent ? (double)n * 1e9 / (double)(last_recv - first_sent) : 0;
    }
    printf("RESULT n=%d rate=%.0f p50_us=%.1f p99_us=%.1f\n", n, rate, p50, p99);
    free(lat);
    return 0;
}

static int
pub(natsConnection *nc, int count, size_t size, int rate)
{
    uint8_t *payload = calloc(1, size);
    int ok = 0, failed = 0;
    uint64_t t0 = now_ns();
    for (int i = 0; i < count; i++) {
        if (rate > 0) {
            uint64_t due = t0 + (uint64_t)i * 1000000000u / (uint64_t)rate, now = now_ns();
            if (due > now) {
                struct timespec ts = {(time_t)((due - now) / 1000000000u),
                                      (long)((due - now) % 1000000000u)};
                nanosleep(&ts, NULL);
            }
        }
        uint64_t t = now_ns();
        memcpy(payload, &t, 8);
        if (natsConnection_Publish(nc, TOPIC, payload, (int)size) == NATS_OK) {
            ok++;
        } else {
            failed++;
        }
    }
    natsConnection_FlushTimeout(nc, 10000);
    printf("PUBLISHED %d %d\n", ok, failed);
    free(payload);
    return 0;
}

int
main(int argc, char **argv)
{
    int is_sub = argc == 4 && strcmp(argv[1], "sub") == 0;
    int is_pub = argc == 6 && strcmp(argv[1], "pub") == 0;
    if (!is_sub && !is_pub) {
        fprintf(stderr, "usage: pubsub-nats-raw sub URL COUNT | pub URL COUNT SIZE RATE\n");
        return 2;
    }
    natsConnection *nc = NULL;
    if (natsConnection_ConnectTo(&nc, argv[2]) != NATS_OK) {
        fprintf(stderr, "pubsub-nats-raw: connect %s: %s\n", argv[2], nats_GetLastError(NULL));
        return 1;
    }
    int rc;
    if (is_sub) {
        want = atoi(argv[3]);
        rc = sub(nc);
    } else {
        rc = pub(nc, atoi(argv[3]), (size_t)atoi(argv[4]), atoi(argv[5]));
    }
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
