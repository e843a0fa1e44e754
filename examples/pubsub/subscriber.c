/* A subscriber of the topic "greetings": a service named NAME that prints every greeting it
 * gets. With a QUEUE, it joins that queue group: each greeting reaches one member of the group.
 *   pubsub-subscriber NAME [QUEUE]
 * The broker is go-micro's HTTP broker (its subscriptions in the registry: mDNS by default) unless
 * MICRO_BROKER says "nats". Stops on SIGINT/SIGTERM, or after MAX greetings when the environment
 * sets PUBSUB_MAX (the tests do). */
#include "pubsub.cmicro.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct state {
    cm_service *svc;
    const char *name;
    atomic_long got;
    long max;
} state;

static int
on_greeting(cm_ctx *ctx, const Pubsub__Greeting *g, void *user)
{
    state *st = user;
    const char *from = cm_ctx_get(ctx, "X-From");
    printf("%s got #%lld \"%s\" from %s\n", st->name, (long long)g->seq, g->text,
           from ? from : "?");
    fflush(stdout);
    if (st->max > 0 && atomic_fetch_add(&st->got, 1) + 1 == st->max) {
        cm_service_stop(st->svc);
    }
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: pubsub-subscriber NAME [QUEUE]\n");
        return 2;
    }
    static state st;
    st.name = argv[1];
    st.max = getenv("PUBSUB_MAX") ? atol(getenv("PUBSUB_MAX")) : 0;
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = argv[1];
    int rc = cm_service_new(&o, &st.svc);
    if (rc < 0) {
        fprintf(stderr, "pubsub-subscriber: %s (%s)\n", cm_strerror(rc), cm_service_why());
        return 1;
    }
    static pubsub_greeting_subscriber sub = {.fn = on_greeting, .user = &st};
    sub.queue = argc == 3 ? argv[2] : NULL;
    rc = pubsub_greeting_subscribe(st.svc, "greetings", &sub);
    if (rc == 0) {
        rc = cm_service_run(st.svc);
    }
    if (rc < 0) {
        fprintf(stderr, "pubsub-subscriber: %s\n", cm_strerror(rc));
    }
    cm_service_free(st.svc);
    return rc < 0 ? 1 : 0;
}
