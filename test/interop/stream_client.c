/* The C caller of the stream interop tests: the commands of go/gmicro/stream.go's stream-client
 * on stdin, one "RESULT <json>" line each, with the same JSON:
 *
 *   count CODEC N PAD        Streamer.Count of N messages with PAD bytes each: in order, then EOS
 *   fail CODEC N CODE        Streamer.Count failing with CODE after N messages
 *   sum CODEC N              Streamer.Sum of seqs 1..N ended by close-send (go-micro's EOS)
 *   sumlast CODEC N          the same ended by a message marked last, as go-micro callers do
 *   chat CODEC N             N round trips of Streamer.Chat with metadata X-Tenant: acme
 *   deadline CODEC MS        Streamer.Count sending every 50 ms with a stream deadline of MS
 *   quit
 */
#include "echo_common.h"
#include "stream.cmicro.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Interop__Stream__Msg Msg;

static const char *service;
static cm_client *client;

static void
put_error(cJSON *res, int rc, const cm_error *err)
{
    cJSON *e = cJSON_AddObjectToObject(res, "error");
    if (err != NULL) {
        cJSON_AddStringToObject(e, "id", err->id);
        cJSON_AddNumberToObject(e, "code", err->code);
        cJSON_AddStringToObject(e, "detail", err->detail);
        cJSON_AddStringToObject(e, "status", err->status);
    } else {
        cJSON_AddStringToObject(e, "detail", cm_strerror(rc));
    }
}

static void
put(cJSON *res, const char *key, double v)
{
    cJSON_ReplaceItemInObject(res, key, cJSON_CreateNumber(v));
}

static void
put_bool(cJSON *res, const char *key, int v)
{
    cJSON_ReplaceItemInObject(res, key, cJSON_CreateBool(v));
}

/* Receives until an error: n, in_order (seqs 0, 1, ...), eof, error. */
static void
recv_all(cJSON *res, cm_stream *st)
{
    int n = 0, in_order = 1, rc;
    Msg *m;
    while ((rc = interop_stream_streamer_count_recv(st, &m)) == 0) {
        in_order = in_order && m->seq == n;
        n++;
        interop_stream_streamer_count_free(m);
    }
    put(res, "n", n);
    put_bool(res, "in_order", in_order);
    put_bool(res, "eof", rc == CM_EOF);
    if (rc != CM_EOF) {
        put_error(res, rc, cm_stream_error(st));
    }
}

static void
count(cJSON *res, const cm_call_opts *o, const char *cmd, int a1, int a2)
{
    Msg req = INTEROP__STREAM__MSG__INIT;
    req.count = a1;
    req.text = (char *)"t";
    uint8_t *pad = NULL;
    if (strcmp(cmd, "count") == 0) {
        pad = calloc(1, (size_t)a2 + 1);
        req.pad.data = pad;
        req.pad.len = (size_t)a2;
    } else if (strcmp(cmd, "fail") == 0) {
        req.fail_code = a2;
    } else {
        req.count = 1000;
        req.sleep_ms = 50;
    }
    cm_stream *st;
    cm_error *err = NULL;
    int rc = interop_stream_streamer_count(client, service, &req, o, &st, &err);
    free(pad);
    if (rc < 0) {
        put_error(res, rc, err);
        cm_error_free(err);
        return;
    }
    recv_all(res, st);
    cJSON *n = cJSON_GetObjectItem(res, "n");
    put_bool(res, "ok",
             cJSON_IsTrue(cJSON_GetObjectItem(res, "eof")) &&
                 cJSON_IsTrue(cJSON_GetObjectItem(res, "in_order")) && n->valuedouble == req.count);
    cm_stream_free(st);
}

/* Sum of seqs 1..n, ended by close-send or (last) by a message marked last. */
static void
sum(cJSON *res, const cm_call_opts *o, int n, int last)
{
    cm_stream *st;
    cm_error *err = NULL;
    int rc = interop_stream_streamer_sum(client, service, o, &st, &err);
    if (rc < 0) {
        put_error(res, rc, err);
        cm_error_free(err);
        return;
    }
    for (int i = 1; rc == 0 && i <= n; i++) {
        Msg m = INTEROP__STREAM__MSG__INIT;
        m.seq = i;
        m.last = last && i == n;
        rc = interop_stream_streamer_sum_send(st, &m);
    }
    if (rc == 0 && !last) {
        rc = interop_stream_streamer_sum_close_send(st);
    }
    Msg *m = NULL;
    if (rc == 0) {
        rc = interop_stream_streamer_sum_recv(st, &m);
    }
    if (rc < 0) {
        put_error(res, rc, cm_stream_error(st));
    } else {
        put(res, "sum", (double)m->seq);
        put(res, "count", m->count);
        put_bool(res, "ok", 1);
        interop_stream_streamer_sum_free(m);
    }
    cm_stream_free(st);
}

static void
chat(cJSON *res, const cm_call_opts *o, int n)
{
    cm_call_opts co = *o;
    cm_md *md = cm_md_new();
    cm_md_set(md, "X-Tenant", "acme");
    co.md = md;
    cm_stream *st;
    cm_error *err = NULL;
    int rc = interop_stream_streamer_chat(client, service, &co, &st, &err);
    cm_md_free(md);
    if (rc < 0) {
        put_error(res, rc, err);
        cm_error_free(err);
        return;
    }
    int got = 0, in_order = 1;
    for (int i = 0; rc == 0 && i < n; i++) {
        char text[32], want[48];
        snprintf(text, sizeof text, "m%d", i);
        snprintf(want, sizeof want, "m%d|acme", i);
        Msg m = INTEROP__STREAM__MSG__INIT;
        m.seq = i;
        m.text = text;
        Msg *r;
        rc = interop_stream_streamer_chat_send(st, &m);
        if (rc == 0) {
            rc = interop_stream_streamer_chat_recv(st, &r);
        }
        if (rc == 0) {
            if (r->seq != 2 * i || strcmp(r->text, want) != 0) {
                in_order = 0;
                cJSON_AddStringToObject(res, "text", r->text);
            }
            got++;
            interop_stream_streamer_chat_free(r);
        }
    }
    if (rc < 0) {
        put_error(res, rc, cm_stream_error(st));
    }
    put(res, "n", got);
    put_bool(res, "in_order", in_order);
    put_bool(res, "ok", rc == 0 && in_order);
    cm_stream_free(st);
}

static void
run(cJSON *res, const char *cmd, const char *ct, int a1, int a2)
{
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.content_type = ct;
    if (strcmp(cmd, "count") == 0 || strcmp(cmd, "fail") == 0) {
        count(res, &o, cmd, a1, a2);
    } else if (strcmp(cmd, "deadline") == 0) {
        o.timeout_ms = (uint64_t)a1;
        count(res, &o, cmd, 0, 0);
        put_bool(res, "ok", 0);
    } else if (strcmp(cmd, "sum") == 0 || strcmp(cmd, "sumlast") == 0) {
        sum(res, &o, a1, strcmp(cmd, "sumlast") == 0);
    } else if (strcmp(cmd, "chat") == 0) {
        chat(res, &o, a1);
    } else {
        put_error(res, CM_EINVAL, NULL);
    }
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: stream-client NAME < commands\n");
        return 2;
    }
    service = argv[1];
    const char *reg = getenv("MICRO_REGISTRY");
    interop_require_netns_for(reg && reg[0] ? reg : "mdns");
    cm_service_opts so;
    cm_service_opts_init(&so);
    so.name = "cmicro.interop.stream-client";
    cm_service *svc;
    int rc = cm_service_new(&so, &svc);
    if (rc < 0) {
        fprintf(stderr, "stream-client: %s\n", cm_strerror(rc));
        return 1;
    }
    client = cm_service_client(svc);
    char line[256];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        char cmd[32] = "", codec[32] = "";
        int a1 = 0, a2 = 0;
        if (sscanf(line, "%31s %31s %d %d", cmd, codec, &a1, &a2) < 1) {
            continue;
        }
        if (strcmp(cmd, "quit") == 0) {
            break;
        }
        cJSON *res = cJSON_CreateObject();
        cJSON_AddStringToObject(res, "cmd", cmd);
        cJSON_AddBoolToObject(res, "ok", 0);
        cJSON_AddNumberToObject(res, "n", 0);
        cJSON_AddBoolToObject(res, "in_order", 0);
        cJSON_AddBoolToObject(res, "eof", 0);
        cJSON_AddNumberToObject(res, "sum", 0);
        cJSON_AddNumberToObject(res, "count", 0);
        uint64_t t0 = cm_now_ms();
        const char *ct = strcmp(codec, "json") == 0    ? CM_CT_JSON
                         : strcmp(codec, "proto") == 0 ? CM_CT_PROTOBUF
                                                       : NULL;
        if (ct == NULL) {
            put_error(res, CM_EINVAL, NULL);
        } else {
            run(res, cmd, ct, a1, a2);
        }
        cJSON_AddNumberToObject(res, "ms", (double)(cm_now_ms() - t0));
        char *text = cJSON_PrintUnformatted(res);
        printf("RESULT %s\n", text ? text : "{}");
        fflush(stdout);
        free(text);
        cJSON_Delete(res);
    }
    cm_service_free(svc);
    return 0;
}
