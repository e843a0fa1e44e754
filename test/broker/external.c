/* A broker backend from outside the library, written against the installed header only:
 * registered with cm_broker_register (ABI and slot checks), picked by MICRO_BROKER, its option
 * keys enforced, and run through connect, subscribe, publish, unsubscribe and close. The backend
 * delivers in process, later on the loop. */
#include <cmicro/broker.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

typedef struct inproc {
    cm_broker *b;
    int connects;
} inproc;

typedef struct pending {
    cm_broker *b;
    char *topic;
    cm_md *header;
    uint8_t *body;
    size_t len;
    cm_broker_publish_cb cb;
    void *arg;
} pending;

static void
connected_later(void *arg)
{
    cm_broker_connected(arg, 0);
}

static void
disconnected_later(void *arg)
{
    cm_broker_disconnected(arg);
}

static int
ext_connect(cm_broker *b)
{
    inproc *p = cm_broker_priv(b);
    p->connects++;
    return cm_loop_post(cm_broker_loop(b), connected_later, b);
}

static void
ext_disconnect(cm_broker *b)
{
    CHECK_EQ_INT(cm_loop_post(cm_broker_loop(b), disconnected_later, b), 0);
}

static void
deliver_later(void *arg)
{
    pending *m = arg;
    for (cm_broker_sub *s = cm_broker_subs(m->b); s != NULL; s = cm_broker_sub_next(s)) {
        if (strcmp(cm_broker_sub_topic(s), m->topic) == 0) {
            cm_broker_deliver(s, m->header, m->body, m->len);
        }
    }
    if (m->cb != NULL) {
        m->cb(0, NULL, 0, m->arg);
    }
    free(m->topic);
    cm_md_free(m->header);
    free(m->body);
    free(m);
}

static int
ext_publish(cm_broker *b, const char *topic, const cm_md *header, const uint8_t *body, size_t len,
            cm_broker_publish_cb cb, void *arg)
{
    /* Through the wire form, as a real backend would. */
    cm_buf wire = {0};
    CHECK_EQ_INT(cm_broker_msg_encode(header, body, len, &wire), 0);
    pending *m = calloc(1, sizeof(*m));
    m->b = b;
    m->topic = strdup(topic);
    m->cb = cb;
    m->arg = arg;
    CHECK_EQ_INT(cm_broker_msg_decode(wire.data, wire.len, &m->header, &m->body, &m->len, NULL, 0),
                 0);
    cm_buf_free(&wire);
    return cm_loop_post(cm_broker_loop(b), deliver_later, m);
}

static void
ready_later(void *arg)
{
    cm_broker_sub_ready(arg, 0);
}

static int
ext_subscribe(cm_broker *b, cm_broker_sub *s)
{
    return cm_loop_post(cm_broker_loop(b), ready_later, s);
}

static void
ext_unsubscribe(cm_broker *b, cm_broker_sub *s)
{
    (void)b;
    (void)s;
}

static int
ext_init(cm_broker *b)
{
    inproc *p = cm_broker_priv(b);
    p->b = b;
    return strcmp(cm_broker_option(b, "mode") ? cm_broker_option(b, "mode") : "ok", "ok") == 0
               ? 0
               : CM_EINVAL;
}

static const char *const ext_keys[] = {"mode", NULL};

static const cm_broker_ops ext_ops = {
    .abi_version = CM_ABI_VERSION,
    .name = "inproc",
    .priv_size = sizeof(inproc),
    .option_keys = ext_keys,
    .init = ext_init,
    .connect = ext_connect,
    .disconnect = ext_disconnect,
    .publish = ext_publish,
    .subscribe = ext_subscribe,
    .unsubscribe = ext_unsubscribe,
};

static cm_loop *L;
static int events, got, readies, published, closed;
static char last_body[32];

static void
stop(void)
{
    cm_loop_stop(L);
}

static void
on_connect(int status, void *arg)
{
    (void)arg;
    CHECK_EQ_INT(status, 0);
    events++;
    stop();
}

static void
on_ready(int status, void *arg)
{
    (void)arg;
    CHECK_EQ_INT(status, 0);
    readies++;
}

static int
on_msg(const cm_broker_msg *m, void *arg)
{
    (void)arg;
    CHECK_EQ_STR(m->topic, "news");
    CHECK_EQ_STR(cm_md_get(m->header, "X-A"), "1");
    memcpy(last_body, m->body, m->body_len);
    last_body[m->body_len] = '\0';
    got++;
    return 0;
}

static int failed;

static int
on_fail(const cm_broker_msg *m, void *arg)
{
    (void)m;
    (void)arg;
    failed++;
    return CM_EINVAL;
}

static void
on_published(int status, const cm_broker_node_err *errs, size_t nerrs, void *arg)
{
    (void)errs;
    (void)arg;
    CHECK_EQ_INT(status, 0);
    CHECK_EQ_INT(nerrs, 0);
    published++;
    stop();
}

static void
on_closed(void *arg)
{
    (void)arg;
    closed++;
    stop();
}

int
main(void)
{
    cm_broker_ops bad = ext_ops;
    bad.abi_version = CM_ABI_VERSION + 1;
    CHECK_EQ_INT(cm_broker_register(&bad), CM_EINVAL);
    bad = ext_ops;
    bad.publish = NULL;
    CHECK_EQ_INT(cm_broker_register(&bad), CM_EINVAL);
    CHECK_EQ_INT(cm_broker_register(NULL), CM_EINVAL);
    CHECK_EQ_INT(cm_broker_register(&ext_ops), 0);
    CHECK(cm_broker_find("inproc") == &ext_ops);
    CHECK(cm_broker_find("http") != NULL && cm_broker_find("nats") != NULL);

    CHECK_EQ_INT(cm_loop_new(&L), 0);
    cm_broker_opts o;
    cm_broker_opts_init(&o);
    cm_broker_opts_set(&o, "other", "x");
    cm_broker *b = NULL;
    setenv("MICRO_BROKER", "inproc", 1);
    CHECK_EQ_INT(cm_broker_new(L, NULL, &o, &b), CM_EINVAL); /* a key the backend did not list */
    cm_broker_opts_init(&o);
    cm_broker_opts_set(&o, "mode", "ok");
    CHECK_EQ_INT(cm_broker_new(L, NULL, &o, &b), 0);
    CHECK_EQ_STR(cm_broker_name(b), "inproc");
    cm_broker_sub *s = NULL;
    CHECK_EQ_INT(cm_broker_subscribe(b, "news", NULL, on_msg, NULL, &s), CM_ESTATE);
    CHECK_EQ_INT(cm_broker_connect(b, on_connect, NULL), 0);
    CHECK_EQ_INT(cm_broker_connect(b, on_connect, NULL), CM_ESTATE);
    CHECK_EQ_INT(events, 0);
    cm_loop_run(L);
    CHECK_EQ_INT(events, 1);

    cm_broker_sub_opts so;
    cm_broker_sub_opts_init(&so);
    so.ready = on_ready;
    CHECK_EQ_INT(cm_broker_subscribe(b, "news", &so, on_msg, NULL, &s), 0);
    cm_md *h = cm_md_new();
    cm_md_set(h, "X-A", "1");
    CHECK_EQ_INT(cm_broker_publish(b, "news", h, (const uint8_t *)"hello", 5, on_published, NULL),
                 0);
    CHECK_EQ_INT(cm_broker_publish(b, "", h, NULL, 0, NULL, NULL), CM_EINVAL);
    cm_loop_run(L);
    CHECK_EQ_INT(readies, 1);
    CHECK_EQ_INT(got, 1);
    CHECK_EQ_STR(last_body, "hello");
    cm_broker_unsubscribe(s);
    /* A handler that fails: logged and counted, as go-micro logs its handler errors. */
    cm_broker_sub *f = NULL;
    CHECK_EQ_INT(cm_broker_subscribe(b, "news", NULL, on_fail, NULL, &f), 0);
    CHECK_EQ_INT(cm_broker_publish(b, "news", h, (const uint8_t *)"again", 5, on_published, NULL),
                 0);
    cm_loop_run(L);
    CHECK_EQ_INT(got, 1);
    CHECK_EQ_INT(failed, 1);
    cm_broker_stats st;
    cm_broker_get_stats(b, &st);
    CHECK_EQ_INT(st.published, 2);
    CHECK_EQ_INT(st.delivered, 2);
    CHECK_EQ_INT(st.handler_errors, 1);
    cm_md_free(h);

    cm_broker_close(b, on_closed, NULL);
    CHECK_EQ_INT(closed, 0);
    cm_loop_run(L);
    CHECK_EQ_INT(closed, 1);
    cm_loop_free(L);
    TEST_DONE();
}
