/* The C peer of the broker interop tests (broker_interop.py), the counterpart of go/gbroker:
 *   broker-peer encode          go-micro's broker message encoding of the messages gbroker encode
 *                               prints, one per line (base64 of the JSON)
 *   broker-peer pub BROKER TOPIC COUNT CONTENT_TYPE
 *                               publishes COUNT events SayRequest{name: "msg-<i>"} encoded with
 *                               the codec of CONTENT_TYPE, with the header go-micro's client sets
 *                               (Content-Type, Micro-Topic, Micro-ID) and X-Seq; prints a line
 *                               NODE-ERROR <node id> <address> <error> for each node a publish
 *                               did not reach, then PUBLISHED <n>; exits 3 when a node failed
 *   broker-peer sub BROKER TOPIC QUEUE COUNT
 *                               subscribes (QUEUE "-": none), prints READY, then one JSON line per
 *                               event decoded with the codec its Content-Type names, and exits
 *                               after COUNT events or 40 s
 * BROKER is "nats" (MICRO_BROKER_ADDRESS: the server) or "http" (the registry from
 * MICRO_REGISTRY, Consul at CONSUL_HTTP_ADDR in the tests). */
#include "hello.pb-c.h"

#include <cmicro/broker.h>
#include <cmicro/codec.h>
#include <cmicro/log.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>
#include <uv.h>

static cm_loop *L;
static int count, got, done_flag, status_seen, node_errors;

static int
encode(void)
{
    cm_md *h1 = cm_md_new(), *h2 = cm_md_new(), *h4 = cm_md_new();
    cm_md_set(h1, "Micro-Topic", "events");
    cm_md_set(h1, "Content-Type", "application/json");
    cm_md_set(h1, "Micro-ID", "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
    cm_md_set(h4, "b", "<a href=\"x\">&amp;</a>");
    cm_md_set(h4, "a", "tab\tbs\\ \b\f\x01\x1f\x7f");
    cm_md_set(h4, "Z", "\xc3\xa9 \xc3\xbc \xe2\x80\xa8 \xe2\x80\xa9 \xf0\x9f\x98\x80");
    cm_md_set(h4, "bad", "\xff\xc3(");
    const char *b4 = "hello world, a longer body that crosses several base64 quanta!!";
    struct {
        cm_md *h;
        const char *body;
        size_t len;
    } msgs[] = {{h1, "{\"name\":\"x\"}\n", 13},
                {h2, "", 0},
                {NULL, "\x00\x01\x02\xfe\xff", 5},
                {h4, b4, strlen(b4)}};
    for (size_t i = 0; i < 4; i++) {
        cm_buf out = {0}, b64 = {0};
        if (cm_broker_msg_encode(msgs[i].h, (const uint8_t *)msgs[i].body, msgs[i].len, &out) < 0) {
            return 1;
        }
        static const char tab[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (size_t k = 0; k < out.len; k += 3) {
            uint32_t v = (uint32_t)out.data[k] << 16 |
                         (k + 1 < out.len ? (uint32_t)out.data[k + 1] << 8 : 0) |
                         (k + 2 < out.len ? out.data[k + 2] : 0);
            char q[4] = {tab[v >> 18], tab[(v >> 12) & 63],
                         k + 1 < out.len ? tab[(v >> 6) & 63] : '=',
                         k + 2 < out.len ? tab[v & 63] : '='};
            cm_buf_append(&b64, q, 4);
        }
        printf("%.*s\n", (int)b64.len, (const char *)b64.data);
        cm_buf_free(&out);
        cm_buf_free(&b64);
    }
    cm_md_free(h1);
    cm_md_free(h2);
    cm_md_free(h4);
    return 0;
}

static void
on_closed(void *arg)
{
    (void)arg;
    cm_loop_stop(L);
}

static void
on_connect(int status, void *arg)
{
    (void)arg;
    status_seen = status;
    done_flag = 1;
    cm_loop_stop(L);
}

static cm_broker *
connect_broker(const char *name)
{
    cm_broker *b = NULL;
    cm_broker_opts o;
    cm_broker_opts_init(&o);
    o.timeout_ms = 15000; /* loaded CI machines */
    int rc = cm_broker_new(L, name, &o, &b);
    if (rc == 0) {
        rc = cm_broker_connect(b, on_connect, NULL);
    }
    if (rc == 0) {
        cm_loop_run(L);
        rc = status_seen;
    }
    if (rc < 0) {
        fprintf(stderr, "broker-peer: connect %s: %s (%s)\n", name, cm_strerror(rc),
                b ? cm_broker_why(b) : "");
        exit(1);
    }
    return b;
}

static void
on_published(int status, const cm_broker_node_err *errs, size_t nerrs, void *arg)
{
    cm_broker *b = arg;
    for (size_t i = 0; i < nerrs; i++) {
        printf("NODE-ERROR %s %s %s\n", errs[i].node_id, errs[i].address,
               cm_err_name(errs[i].status));
        node_errors++;
    }
    if (status < 0 && nerrs == 0) {
        fprintf(stderr, "broker-peer: publish: %s (%s)\n", cm_strerror(status), cm_broker_why(b));
        exit(1);
    }
    if (++got == count) {
        cm_loop_stop(L);
    }
    if (got > count) {
        fprintf(stderr, "broker-peer: publish callback %d of %d (status %s)\n", got, count,
                cm_err_name(status));
    }
}

static int
pub(const char *name, const char *topic, const char *ct)
{
    cm_broker *b = connect_broker(name);
    const cm_codec_ops *codec = cm_codec_find(ct);
    if (codec == NULL) {
        fprintf(stderr, "broker-peer: no codec for %s\n", ct);
        return 1;
    }
    for (int i = 0; i < count; i++) {
        char text[32], seq[16], id[37];
        snprintf(text, sizeof(text), "msg-%d", i);
        snprintf(seq, sizeof(seq), "%d", i);
        SayRequest req = SAY_REQUEST__INIT;
        req.name = text;
        cm_buf body = {0};
        uuid_t u;
        uuid_generate_random(u);
        uuid_unparse_lower(u, id);
        cm_md *h = cm_md_new();
        cm_md_set(h, "Content-Type", ct);
        cm_md_set(h, "Micro-Topic", topic);
        cm_md_set(h, "Micro-ID", id);
        cm_md_set(h, "X-Seq", seq);
        int rc = codec->marshal(&say_request__descriptor, &req, &body);
        if (rc == 0) {
            rc = cm_broker_publish(b, topic, h, body.data, body.len, on_published, b);
        }
        cm_md_free(h);
        cm_buf_free(&body);
        if (rc < 0) {
            fprintf(stderr, "broker-peer: publish: %s (%s)\n", cm_strerror(rc), cm_broker_why(b));
            return 1;
        }
    }
    cm_loop_run(L);
    printf("PUBLISHED %d\n", got);
    fflush(stdout);
    cm_broker_close(b, on_closed, NULL);
    cm_loop_run(L);
    if (got != count) {
        fprintf(stderr, "broker-peer: %d publish callbacks for %d publishes\n", got, count);
        return 1;
    }
    return node_errors > 0 ? 3 : 0;
}

static int
on_event(const cm_broker_msg *m, void *arg)
{
    (void)arg;
    const char *ct = cm_md_get(m->header, "Content-Type");
    const cm_codec_ops *codec = cm_codec_find(ct != NULL ? ct : CM_CT_PROTOBUF);
    SayRequest *req = NULL;
    char err[128] = "";
    int rc = codec == NULL ? CM_ECONTENTTYPE
                           : codec->unmarshal(&say_request__descriptor, m->body, m->body_len, NULL,
                                              (void **)&req, err, sizeof(err));
    if (rc < 0) {
        printf("{\"error\":\"%s\"}\n", cm_err_name(rc));
    } else {
        const char *id = cm_md_get(m->header, "Micro-ID");
        const char *seq = cm_md_get(m->header, "X-Seq");
        const char *tp = cm_md_get(m->header, "Micro-Topic");
        printf("{\"name\":\"%s\",\"content_type\":\"%s\",\"topic\":\"%s\",\"id\":\"%s\","
               "\"seq\":\"%s\"}\n",
               req->name, ct ? ct : "", tp ? tp : "", id ? id : "", seq ? seq : "");
        protobuf_c_message_free_unpacked(&req->base, NULL);
    }
    fflush(stdout);
    if (++got == count) {
        cm_loop_stop(L);
    }
    return rc;
}

static void
on_ready(int status, void *arg)
{
    (void)arg;
    if (status < 0) {
        fprintf(stderr, "broker-peer: subscribe: %s\n", cm_strerror(status));
        exit(1);
    }
    printf("READY\n");
    fflush(stdout);
}

static void
on_timeout(uv_timer_t *t)
{
    (void)t;
    cm_loop_stop(L);
}

static int
sub(const char *name, const char *topic, const char *queue)
{
    cm_broker *b = connect_broker(name);
    cm_broker_sub_opts so;
    cm_broker_sub_opts_init(&so);
    so.queue = strcmp(queue, "-") != 0 ? queue : NULL;
    so.ready = on_ready;
    cm_broker_sub *s = NULL;
    int rc = cm_broker_subscribe(b, topic, &so, on_event, NULL, &s);
    if (rc < 0) {
        fprintf(stderr, "broker-peer: subscribe: %s (%s)\n", cm_strerror(rc), cm_broker_why(b));
        return 1;
    }
    uv_timer_t t;
    uv_timer_init(cm_loop_uv(L), &t);
    uv_timer_start(&t, on_timeout, 40000, 0);
    cm_loop_run(L);
    uv_close((uv_handle_t *)&t, NULL);
    cm_broker_close(b, on_closed, NULL);
    cm_loop_run(L);
    return got == count ? 0 : 1;
}

int
main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "encode") == 0) {
        return encode();
    }
    if (cm_loop_new(&L) < 0) {
        return 1;
    }
    int rc = 2;
    if (argc == 6 && strcmp(argv[1], "pub") == 0) {
        count = atoi(argv[4]);
        rc = pub(argv[2], argv[3], argv[5]);
    } else if (argc == 6 && strcmp(argv[1], "sub") == 0) {
        count = atoi(argv[5]);
        rc = sub(argv[2], argv[3], argv[4]);
    } else {
        fprintf(stderr, "usage: broker-peer encode | pub BROKER TOPIC COUNT CT | "
                        "sub BROKER TOPIC QUEUE COUNT\n");
    }
    cm_loop_free(L);
    return rc;
}
