/* The C peer of the broker interop tests on cmicro's events API (cm_publish, cm_service_subscribe
 * on a service), with broker_peer.c's command line and output:
 *   events-peer pub BROKER TOPIC COUNT CONTENT_TYPE
 *                               publishes COUNT events SayRequest{name: "msg-<i>"} with metadata
 *                               X-Seq, then prints PUBLISHED <n>; exits 3 when a publish failed
 *                               (PUBLISH-ERROR <detail> for each)
 *   events-peer sub BROKER TOPIC QUEUE COUNT
 *                               subscribes (QUEUE "-": none), prints READY once the subscription
 *                               is live, then one JSON line per event, and exits after COUNT
 *                               events, SIGTERM or 40 s
 * BROKER is "nats" (MICRO_BROKER_ADDRESS: the server; the service registers in a memory
 * registry) or "http" (the registry from MICRO_REGISTRY: Consul, or mDNS in a namespace). */
#include "hello.pb-c.h"

#include <cmicro/cmicro.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static cm_service *svc;
static atomic_int got;
static int count;

static cm_service *
make_service(const char *broker)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "events-peer";
    o.address = "127.0.0.1:0";
    o.broker = broker;
    o.log_config = 0;
    if (strcmp(broker, "nats") == 0) {
        o.registry = "memory";
    }
    cm_service *s = NULL;
    int rc = cm_service_new(&o, &s);
    if (rc < 0) {
        fprintf(stderr, "events-peer: %s (%s)\n", cm_strerror(rc), cm_service_why());
        exit(1);
    }
    return s;
}

static int
pub(const char *broker, const char *topic, const char *ct)
{
    svc = make_service(broker);
    int failed = 0;
    for (int i = 0; i < count; i++) {
        char text[32], seq[16];
        snprintf(text, sizeof text, "msg-%d", i);
        snprintf(seq, sizeof seq, "%d", i);
        SayRequest req = SAY_REQUEST__INIT;
        req.name = text;
        cm_md *md = cm_md_new();
        cm_md_set(md, "X-Seq", seq);
        cm_publish_opts o = {.content_type = ct, .md = md};
        cm_error *err = NULL;
        int rc =
            cm_publish(cm_service_client(svc), topic, &say_request__descriptor, &req, &o, &err);
        if (rc < 0) {
            printf("PUBLISH-ERROR %s\n", err ? err->detail : cm_strerror(rc));
            failed++;
        }
        cm_error_free(err);
        cm_md_free(md);
    }
    printf("PUBLISHED %d\n", count - failed);
    fflush(stdout);
    cm_service_free(svc);
    return failed ? 3 : 0;
}

static int
on_event(cm_ctx *ctx, const void *msg, void *user)
{
    (void)user;
    const SayRequest *req = msg;
    const char *id = cm_ctx_get(ctx, "Micro-ID");
    const char *seq = cm_ctx_get(ctx, "X-Seq");
    const char *tp = cm_ctx_get(ctx, "Micro-Topic");
    printf("{\"name\":\"%s\",\"content_type\":\"%s\",\"topic\":\"%s\",\"id\":\"%s\","
           "\"seq\":\"%s\"}\n",
           req->name, cm_ctx_content_type(ctx), tp ? tp : "", id ? id : "", seq ? seq : "");
    fflush(stdout);
    if (atomic_fetch_add(&got, 1) + 1 == count) {
        cm_service_stop(svc);
    }
    return 0;
}

/* READY when the framework says the subscription is live; every line on stderr as well. */
static void
on_log(cm_log_level level, const char *module, const char *msg, void *user)
{
    cm_log_stderr(level, module, msg, user);
    if (strcmp(module, "event") == 0 && strncmp(msg, "subscribed to ", 14) == 0) {
        printf("READY\n");
        fflush(stdout);
    }
}

static void
on_timeout(uv_timer_t *t)
{
    (void)t;
    cm_service_stop(svc);
}

static int
sub(const char *broker, const char *topic, const char *queue)
{
    cm_log_set_handler(on_log, NULL);
    svc = make_service(broker);
    cm_subscriber s = {.topic = topic,
                       .queue = strcmp(queue, "-") != 0 ? queue : NULL,
                       .message = &say_request__descriptor,
                       .fn = on_event};
    int rc = cm_service_subscribe(svc, &s, NULL);
    uv_timer_t t;
    uv_timer_init(cm_loop_uv(cm_service_loop(svc)), &t);
    uv_timer_start(&t, on_timeout, 40000, 0);
    uv_unref((uv_handle_t *)&t);
    if (rc == 0) {
        rc = cm_service_run(svc);
    }
    if (rc < 0) {
        fprintf(stderr, "events-peer: %s\n", cm_strerror(rc));
    }
    cm_service_free(svc);
    return rc < 0 || atomic_load(&got) < count ? 1 : 0;
}

int
main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "pub") == 0) {
        count = atoi(argv[4]);
        return pub(argv[2], argv[3], argv[5]);
    }
    if (argc == 6 && strcmp(argv[1], "sub") == 0) {
        count = atoi(argv[5]);
        return sub(argv[2], argv[3], argv[4]);
    }
    fprintf(stderr,
            "usage: events-peer pub BROKER TOPIC COUNT CT | sub BROKER TOPIC QUEUE COUNT\n");
    return 2;
}
