/* Publishes COUNT greetings (default 5) on the topic "greetings" and says how each went.
 *   pubsub-publisher [COUNT]
 * Its service never runs: the broker connects at the first publish. */
#include "pubsub.cmicro.h"

#include <stdio.h>
#include <stdlib.h>

int
main(int argc, char **argv)
{
    long count = argc > 1 ? atol(argv[1]) : 5;
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "pubsub.publisher";
    o.log_config = 0;
    cm_service *svc;
    int rc = cm_service_new(&o, &svc);
    if (rc < 0) {
        fprintf(stderr, "pubsub-publisher: %s (%s)\n", cm_strerror(rc), cm_service_why());
        return 1;
    }
    cm_md *md = cm_md_new();
    cm_md_set(md, "X-From", "pubsub-publisher");
    cm_publish_opts po = {.md = md};
    int failed = 0;
    for (long i = 1; i <= count; i++) {
        char text[64];
        snprintf(text, sizeof text, "hello number %ld", i);
        Pubsub__Greeting g = PUBSUB__GREETING__INIT;
        g.text = text;
        g.seq = i;
        cm_error *err = NULL;
        rc = pubsub_greeting_publish(cm_service_client(svc), "greetings", &g, &po, &err);
        if (rc == 0) {
            printf("published #%ld\n", i);
        } else {
            printf("publish #%ld failed: %s\n", i, err ? err->detail : cm_strerror(rc));
            failed++;
        }
        cm_error_free(err);
    }
    cm_md_free(md);
    cm_service_free(svc);
    return failed ? 1 : 0;
}
