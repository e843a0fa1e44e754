/* Test helper: registers one node with the mdns backend on its own loop, prints "ready" on
 * stdout and serves until SIGTERM, then deregisters (goodbye), closes the registry and exits 0.
 *   mdns-server SERVICE VERSION NODE_ID ADDRESS [key=value]... [-e N]
 * -e N adds N generated endpoints (mdns_test.h). */
#include "mdns_test.h"
#include <uv.h>

#include <sys/prctl.h>

typedef struct server {
    cm_loop *loop;
    cm_registry *reg;
    cm_reg_service *svc;
    uv_signal_t sig;
    int exit_code;
} server;

static void
registered(int status, void *user)
{
    server *s = user;
    if (status != 0) {
        fprintf(stderr, "mdns-server: register: %s\n", cm_strerror(status));
        s->exit_code = 1;
        cm_loop_stop(s->loop);
        return;
    }
    printf("ready\n");
    fflush(stdout);
}

static void
closed(void *arg)
{
    server *s = arg;
    cm_loop_stop(s->loop);
}

static void
deregistered(int status, void *user)
{
    server *s = user;
    if (status != 0) {
        fprintf(stderr, "mdns-server: deregister: %s\n", cm_strerror(status));
        s->exit_code = 1;
    }
    cm_registry_close(s->reg, closed, s);
}

static void
on_term(uv_signal_t *h, int signum)
{
    (void)signum;
    server *s = h->data;
    uv_close((uv_handle_t *)&s->sig, NULL);
    int rc = cm_registry_deregister_service(s->reg, s->svc, deregistered, s);
    if (rc != 0) {
        fprintf(stderr, "mdns-server: deregister: %s\n", cm_strerror(rc));
        s->exit_code = 1;
        cm_registry_close(s->reg, closed, s);
    }
}

int
main(int argc, char **argv)
{
    require_private_netns();
    if (argc < 5) {
        fprintf(stderr, "usage: %s SERVICE VERSION NODE_ID ADDRESS [key=value]... [-e N]\n",
                argv[0]);
        return 2;
    }
    /* Never outlive the test that started us. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    server s = {0};
    CHECK(cm_loop_new(&s.loop) == 0);
    CHECK(cm_registry_new(s.loop, "mdns", NULL, &s.reg) == 0);
    s.svc = cm_reg_service_new(argv[1], argv[2]);
    cm_md *md = cm_md_new();
    CHECK(s.svc != NULL && md != NULL);
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "-e") == 0 && i + 1 < argc) {
            gen_endpoints(s.svc, (unsigned)atoi(argv[++i]));
            continue;
        }
        char *eq = strchr(argv[i], '=');
        CHECK(eq != NULL);
        *eq = '\0';
        CHECK(cm_md_set(md, argv[i], eq + 1) == 0);
    }
    CHECK(cm_reg_service_add_node(s.svc, argv[3], argv[4], md) != NULL);
    cm_md_free(md);
    uv_signal_init(cm_loop_uv(s.loop), &s.sig);
    s.sig.data = &s;
    uv_signal_start(&s.sig, on_term, SIGTERM);
    CHECK(cm_registry_register_service(s.reg, s.svc, 0, registered, &s) == 0);
    cm_loop_run(s.loop);
    cm_reg_service_free(s.svc);
    cm_loop_free(s.loop);
    return s.exit_code;
}
