/* The C echo caller of the interop suite: reads one command per line on stdin, runs it against
 * service NAME with one client (one selector cache) for its whole life, and prints one
 * "RESULT <json>" line per command, exactly as go/gmicro/echo_client.go does:
 *   echo CODEC               Echo.Call with the rich request; "equal": the echo equals it
 *   fail CODEC CODE          Echo.Fail; "error": what came back
 *   empty CODEC              Echo.Empty (a proto request of zero bytes)
 *   md CODEC                 Echo.Call cmd:md with metadata X-User-Id: 42, x-tenant: acme
 *   sleep CODEC MS TIMEOUT   Echo.Call cmd:sleep (the callee sleeps MS) with a TIMEOUT ms
 *                            deadline
 *   rr CODEC N               N calls of Echo.Call cmd:who; "counts": answers per instance
 *   relay CODEC BAD          Echo.Call cmd:relay; "md": the last hop's metadata and the via-*
 *                            entries; BAD 1 sends a malformed Traceparent, 2 one of 8 KiB
 *   quit
 * CODEC is proto or json. Usage: echo-client NAME (registry, selector: MICRO_* env). */
#include "echo_common.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *service;

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
set_ok(cJSON *res, int ok)
{
    cJSON_ReplaceItemInObject(res, "ok", cJSON_CreateBool(ok));
}

/* One call of Echo.Call; fills res on failure. Returns the response or NULL. */
static echo_response *
call(cm_client *c, cJSON *res, const echo_request *req, const cm_call_opts *o)
{
    echo_response *rsp = NULL;
    cm_error *err = NULL;
    int rc = cmicro_test_v1_echo_call(c, service, req, &rsp, o, &err);
    if (rc < 0) {
        set_ok(res, 0);
        put_error(res, rc, err);
    }
    cm_error_free(err);
    return rc < 0 ? NULL : rsp;
}

static void
run(cm_client *c, cJSON *res, const char *cmd, const char *ct, int a1, int a2)
{
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.content_type = ct;
    /* The request each encoding can carry (see rich_request). */
    int json = strcmp(ct, CM_CT_JSON) == 0                                           ? 1
               : strcmp(ct, CM_CT_GRPC_JSON) == 0 || strcmp(ct, CM_CT_JSON_RPC) == 0 ? 2
                                                                                     : 0;
    echo_request req = CMICRO__TEST__V1__ECHO_REQUEST__INIT;
    if (strcmp(cmd, "echo") == 0) {
        const echo_request *rich = rich_request(json);
        echo_response *rsp = call(c, res, rich, &o);
        if (rsp != NULL) {
            set_ok(res, 1);
            cJSON_AddStringToObject(res, "instance", rsp->message);
            cJSON_AddBoolToObject(res, "equal",
                                  rsp->status == CMICRO__TEST__V1__STATUS__STATUS_OK &&
                                      echo_request_equal(rich, rsp->echo));
        }
        cmicro_test_v1_echo_call_free(rsp);
    } else if (strcmp(cmd, "fail") == 0) {
        req.message = FAIL_DETAIL;
        req.i32 = a1;
        echo_response *rsp = NULL;
        cm_error *err = NULL;
        int rc = cmicro_test_v1_echo_fail(c, service, &req, &rsp, &o, &err);
        set_ok(res, rc == 0);
        if (rc < 0) {
            put_error(res, rc, err);
        }
        cmicro_test_v1_echo_fail_free(rsp);
        cm_error_free(err);
    } else if (strcmp(cmd, "empty") == 0) {
        Cmicro__Test__V1__EmptyRequest ereq = CMICRO__TEST__V1__EMPTY_REQUEST__INIT;
        Cmicro__Test__V1__EmptyResponse *rsp = NULL;
        cm_error *err = NULL;
        int rc = cmicro_test_v1_echo_empty(c, service, &ereq, &rsp, &o, &err);
        set_ok(res, rc == 0);
        if (rc < 0) {
            put_error(res, rc, err);
        }
        cmicro_test_v1_echo_empty_free(rsp);
        cm_error_free(err);
    } else if (strcmp(cmd, "md") == 0) {
        cm_md *md = cm_md_new();
        if (md == NULL || cm_md_set(md, "X-User-Id", "42") < 0 ||
            cm_md_set(md, "x-tenant", "acme") < 0) {
            exit(1);
        }
        o.md = md;
        req.message = CMD_MD;
        echo_response *rsp = call(c, res, &req, &o);
        if (rsp != NULL) {
            set_ok(res, 1);
            cJSON_AddStringToObject(res, "instance", rsp->message);
            cJSON *m = cJSON_AddObjectToObject(res, "md");
            for (size_t i = 0; rsp->echo != NULL && i < rsp->echo->n_str_map; i++) {
                cJSON_AddStringToObject(m, rsp->echo->str_map[i]->key,
                                        rsp->echo->str_map[i]->value);
            }
        }
        cmicro_test_v1_echo_call_free(rsp);
        cm_md_free(md);
    } else if (strcmp(cmd, "relay") == 0) {
        static char huge[8192];
        memset(huge, 'f', sizeof huge - 1);
        cm_md *md = cm_md_new();
        if (md == NULL) {
            exit(1);
        }
        if (a1 == 1) {
            cm_md_set(md, "Traceparent", "00-ZZZ-not-a-trace-01");
        } else if (a1 == 2) {
            cm_md_set(md, "Traceparent", huge);
        }
        o.md = md;
        req.message = CMD_RELAY;
        echo_response *rsp = call(c, res, &req, &o);
        if (rsp != NULL) {
            set_ok(res, 1);
            cJSON *m = cJSON_AddObjectToObject(res, "md");
            for (size_t i = 0; rsp->echo != NULL && i < rsp->echo->n_str_map; i++) {
                cJSON_AddStringToObject(m, rsp->echo->str_map[i]->key,
                                        rsp->echo->str_map[i]->value);
            }
        }
        cmicro_test_v1_echo_call_free(rsp);
        cm_md_free(md);
    } else if (strcmp(cmd, "sleep") == 0) {
        req.message = CMD_SLEEP;
        req.i32 = a1;
        o.timeout_ms = (uint64_t)a2;
        o.attempt_timeout_ms = (uint64_t)a2;
        echo_response *rsp = call(c, res, &req, &o);
        if (rsp != NULL) {
            set_ok(res, 1);
        }
        cmicro_test_v1_echo_call_free(rsp);
    } else if (strcmp(cmd, "rr") == 0) {
        cJSON *counts = cJSON_AddObjectToObject(res, "counts");
        int failures = 0;
        req.message = CMD_WHO;
        for (int i = 0; i < a1; i++) {
            echo_response *rsp = call(c, res, &req, &o);
            if (rsp == NULL) {
                failures++;
                continue;
            }
            cJSON *n = cJSON_GetObjectItemCaseSensitive(counts, rsp->message);
            if (n == NULL) {
                cJSON_AddNumberToObject(counts, rsp->message, 1);
            } else {
                cJSON_SetNumberValue(n, n->valuedouble + 1);
            }
            cmicro_test_v1_echo_call_free(rsp);
        }
        if (failures > 0) {
            cJSON_AddNumberToObject(res, "failures", failures);
        }
        set_ok(res, failures == 0);
    } else {
        set_ok(res, 0);
        cJSON *e = cJSON_AddObjectToObject(res, "error");
        cJSON_AddStringToObject(e, "detail", "unknown command");
    }
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: echo-client NAME < commands\n");
        return 2;
    }
    service = argv[1];
    const char *reg = getenv("MICRO_REGISTRY");
    interop_require_netns_for(reg && reg[0] ? reg : "mdns");
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "cmicro.interop.echo-client";
    cm_service *svc;
    int rc = cm_service_new(&o, &svc);
    if (rc < 0) {
        fprintf(stderr, "echo-client: %s\n", cm_strerror(rc));
        return 1;
    }
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
        uint64_t t0 = cm_now_ms();
        /* The codec names of the commands and their content types. */
        static const char *const codecs[][2] = {
            {"proto", CM_CT_PROTOBUF},      {"json", CM_CT_JSON},
            {"grpc", CM_CT_GRPC},           {"grpc+proto", CM_CT_GRPC_PROTO},
            {"grpc+json", CM_CT_GRPC_JSON}, {"proto-rpc", CM_CT_PROTO_RPC},
            {"json-rpc", CM_CT_JSON_RPC}};
        const char *ct = NULL;
        for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++) {
            if (strcmp(codec, codecs[i][0]) == 0) {
                ct = codecs[i][1];
            }
        }
        if (ct == NULL) {
            cJSON *e = cJSON_AddObjectToObject(res, "error");
            cJSON_AddStringToObject(e, "detail", "bad codec");
        } else {
            run(cm_service_client(svc), res, cmd, ct, a1, a2);
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
