/* Endpoint metadata from rpc comments: a service built from described.proto's stubs publishes
 * "description", "example" and "scopes" for Notes.Add and nothing for Notes.Plain, read back from
 * the memory registry as a caller would see them. */
#include "described.cmicro.h"
#include "test.h"

#include <uv.h>

static int
add(cm_ctx *ctx, const Described__AddRequest *req, Described__AddReply *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    rsp->id = 1;
    return 0;
}

static void
run(void *arg)
{
    CHECK_EQ_INT(cm_service_run(arg), 0);
}

typedef struct seen {
    cm_registry *reg;
    const char *name;
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
    cm_reg_service_list *list;
} seen;

static void
on_list(int status, const cm_reg_service_list *l, void *user)
{
    seen *s = user;
    CHECK_EQ_INT(status, 0);
    uv_mutex_lock(&s->mu);
    s->list = cm_reg_service_list_dup(l);
    s->done = 1;
    uv_cond_signal(&s->cv);
    uv_mutex_unlock(&s->mu);
}

/* On the probe's loop thread: registry functions run there. */
static void
start_lookup(void *arg)
{
    seen *s = arg;
    CHECK_EQ_INT(cm_registry_get_service(s->reg, s->name, on_list, s), 0);
}

static void
close_registry(void *arg)
{
    cm_registry_close(arg, NULL, NULL);
}

/* The service as the memory registry (shared within the process) has it, seen from a registry
 * of our own on a loop of our own. */
static cm_reg_service_list *
lookup(const char *name)
{
    cm_loop *loop;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    seen s;
    memset(&s, 0, sizeof s);
    s.name = name;
    CHECK_EQ_INT(cm_registry_new(loop, "memory", NULL, &s.reg), 0);
    uv_mutex_init(&s.mu);
    uv_cond_init(&s.cv);
    CHECK_EQ_INT(cm_loop_start(loop), 0);
    CHECK_EQ_INT(cm_loop_post(loop, start_lookup, &s), 0);
    uv_mutex_lock(&s.mu);
    while (!s.done) {
        uv_cond_wait(&s.cv, &s.mu);
    }
    uv_mutex_unlock(&s.mu);
    CHECK_EQ_INT(cm_loop_post(loop, close_registry, s.reg), 0);
    cm_loop_free(loop);
    uv_cond_destroy(&s.cv);
    uv_mutex_destroy(&s.mu);
    return s.list;
}

int
main(void)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "described";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.deregister_wait_ms = 10;
    cm_service *svc;
    CHECK_EQ_INT(cm_service_new(&o, &svc), 0);
    static const described_notes_handlers h = {.add = add, .plain = add};
    CHECK_EQ_INT(described_notes_register(cm_service_server(svc), &h), 0);
    uv_thread_t t;
    CHECK_EQ_INT(uv_thread_create(&t, run, svc), 0);

    cm_reg_service_list *l = NULL;
    for (int i = 0; i < 200; i++) {
        cm_reg_service_list_free(l);
        l = lookup("described");
        if (l->n > 0) {
            break;
        }
        uv_sleep(10);
    }
    CHECK(l->n == 1);
    const cm_reg_service *s = l->items[0];
    CHECK_EQ_INT(s->nendpoints, 2);
    const cm_endpoint *addp = &s->endpoints[0], *plain = &s->endpoints[1];
    CHECK_EQ_STR(addp->name, "Notes.Add");
    CHECK_EQ_STR(cm_md_get(addp->metadata, "description"), "Add stores a note and returns its id.");
    CHECK_EQ_STR(cm_md_get(addp->metadata, "example"), "{\"text\": \"buy milk\"}");
    CHECK_EQ_STR(cm_md_get(addp->metadata, "scopes"), "notes:write,notes:admin");
    CHECK_EQ_INT(cm_md_count(addp->metadata), 3);
    CHECK_EQ_STR(plain->name, "Notes.Plain");
    CHECK_EQ_INT(cm_md_count(plain->metadata), 0);
    cm_reg_service_list_free(l);

    cm_service_stop(svc);
    uv_thread_join(&t);
    cm_service_free(svc);
    TEST_DONE();
}
