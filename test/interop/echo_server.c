/* The C echo server of the interop suite: service Echo of test/proto/echo.proto, the same
 * behaviour as go/gmicro/echo_server.go:
 *   Echo.Call   echoes the request in echo, status OK, message = the instance name; or runs a
 *               command: cmd:sleep (sleep i32 ms), cmd:md (the call's metadata in
 *               echo.str_map), cmd:who (the instance name only)
 *   Echo.Fail   the go-micro error {id: service name, code: i32 or 400, detail: message}
 *   Echo.Empty  an empty response
 * Configured like any cm_service (MICRO_SERVER_NAME, MICRO_SERVER_ADDRESS, MICRO_REGISTRY, ...)
 * plus INTEROP_INSTANCE (the name answers carry), INTEROP_VERSION and INTEROP_METADATA
 * ("k=v,k=v", node metadata). Serves until SIGTERM. */
#include "echo_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *instance = "c";

static int
call(cm_ctx *ctx, const echo_request *req, echo_response *rsp, void *user)
{
    (void)user;
    rsp->message = (char *)instance;
    if (strcmp(req->message, CMD_SLEEP) == 0) {
        struct timespec ts = {req->i32 / 1000, (long)(req->i32 % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    } else if (strcmp(req->message, CMD_MD) == 0) {
        const cm_msg *h = cm_ctx_headers(ctx);
        echo_request *e = cm_ctx_alloc(ctx, sizeof(*e));
        Cmicro__Test__V1__EchoRequest__StrMapEntry **map =
            cm_ctx_alloc(ctx, (h->nhdrs + 1) * sizeof(*map));
        if (e == NULL || map == NULL) {
            return CM_ENOMEM;
        }
        cmicro__test__v1__echo_request__init(e);
        for (size_t i = 0; i < h->nhdrs; i++) {
            Cmicro__Test__V1__EchoRequest__StrMapEntry *m = cm_ctx_alloc(ctx, sizeof(*m));
            if (m == NULL) {
                return CM_ENOMEM;
            }
            cmicro__test__v1__echo_request__str_map_entry__init(m);
            m->key = (char *)h->hdrs[i].key;
            m->value = (char *)h->hdrs[i].val;
            map[e->n_str_map++] = m;
        }
        e->str_map = map;
        rsp->echo = e;
    } else if (strcmp(req->message, CMD_WHO) != 0) {
        /* The request outlives the response's encoding: answer with it as it is. */
        rsp->status = CMICRO__TEST__V1__STATUS__STATUS_OK;
        rsp->echo = (echo_request *)req;
    }
    return 0;
}

static int
fail(cm_ctx *ctx, const echo_request *req, echo_response *rsp, void *user)
{
    (void)rsp;
    (void)user;
    return cm_ctx_error(ctx, req->i32 != 0 ? req->i32 : 400, "%s", req->message);
}

static int
empty(cm_ctx *ctx, const Cmicro__Test__V1__EmptyRequest *req,
      Cmicro__Test__V1__EmptyResponse *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)rsp;
    (void)user;
    return 0;
}

/* "k=v,k=v" into md. */
static int
parse_metadata(cm_md *md, const char *s)
{
    char *copy = strdup(s);
    char *save = NULL;
    int rc = copy ? 0 : CM_ENOMEM;
    for (char *kv = copy ? strtok_r(copy, ",", &save) : NULL; kv && rc == 0;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (eq != NULL && eq != kv) {
            *eq = '\0';
            rc = cm_md_set(md, kv, eq + 1);
        }
    }
    free(copy);
    return rc;
}

int
main(void)
{
    const char *reg = getenv("MICRO_REGISTRY");
    interop_require_netns_for(reg && reg[0] ? reg : "mdns");
    const char *e = getenv("INTEROP_INSTANCE");
    if (e != NULL && e[0] != '\0') {
        instance = e;
    }
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.version = getenv("INTEROP_VERSION");
    cm_md *md = cm_md_new();
    if (md == NULL) {
        return 1;
    }
    const char *mds = getenv("INTEROP_METADATA");
    if (mds != NULL && parse_metadata(md, mds) < 0) {
        fprintf(stderr, "echo-server: bad INTEROP_METADATA\n");
        return 1;
    }
    o.metadata = md;
    cm_service *svc;
    int rc = cm_service_new(&o, &svc);
    cm_md_free(md);
    if (rc < 0) {
        fprintf(stderr, "echo-server: %s\n", cm_strerror(rc));
        return 1;
    }
    static const cmicro_test_v1_echo_handlers handlers = {
        .call = call, .fail = fail, .empty = empty};
    rc = cmicro_test_v1_echo_register(cm_service_server(svc), &handlers);
    if (rc == 0) {
        rc = cm_service_run(svc);
    }
    if (rc < 0) {
        fprintf(stderr, "echo-server: %s\n", cm_strerror(rc));
    }
    cm_service_free(svc);
    return rc < 0 ? 1 : 0;
}
