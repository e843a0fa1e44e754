/* The C echo server of the interop suite: service Echo of test/proto/echo.proto, the same
 * behaviour as go/gmicro/echo_server.go:
 *   Echo.Call   echoes the request in echo, status OK, message = the instance name; or runs a
 *               command: cmd:sleep (sleep i32 ms), cmd:md (the call's metadata in
 *               echo.str_map), cmd:who (the instance name only), cmd:relay (see
 *               echo_common.h)
 *   Echo.Fail   the go-micro error {id: service name, code: i32 or 400, detail: message}
 *   Echo.Empty  an empty response
 * Configured like any cm_service (MICRO_SERVER_NAME, MICRO_SERVER_ADDRESS, MICRO_REGISTRY, ...)
 * plus INTEROP_INSTANCE (the name answers carry), INTEROP_VERSION and INTEROP_METADATA
 * ("k=v,k=v", node metadata) and INTEROP_RELAY_TO (the next hop of cmd:relay). Serves until
 * SIGTERM. */
#include "echo_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *instance = "c";
static const char *relay_to;
static cm_service *svc;

/* The call's metadata in a new echo request's str_map, with room for extra more entries. */
static echo_request *
md_echo(cm_ctx *ctx, size_t extra)
{
    const cm_msg *h = cm_ctx_headers(ctx);
    echo_request *e = cm_ctx_alloc(ctx, sizeof(*e));
    Cmicro__Test__V1__EchoRequest__StrMapEntry **map =
        cm_ctx_alloc(ctx, (h->nhdrs + extra + 1) * sizeof(*map));
    if (e == NULL || map == NULL) {
        return NULL;
    }
    cmicro__test__v1__echo_request__init(e);
    e->str_map = map;
    for (size_t i = 0; i < h->nhdrs; i++) {
        Cmicro__Test__V1__EchoRequest__StrMapEntry *m = cm_ctx_alloc(ctx, sizeof(*m));
        if (m == NULL) {
            return NULL;
        }
        cmicro__test__v1__echo_request__str_map_entry__init(m);
        m->key = (char *)h->hdrs[i].key;
        m->value = (char *)h->hdrs[i].val;
        map[e->n_str_map++] = m;
    }
    return e;
}

/* cmd:relay: the next hop's answer (or this call's metadata), plus via-<instance>. */
static int
relay(cm_ctx *ctx, echo_response *rsp)
{
    echo_request *e;
    if (relay_to == NULL) {
        e = md_echo(ctx, 1);
    } else {
        echo_request next = CMICRO__TEST__V1__ECHO_REQUEST__INIT;
        next.message = CMD_RELAY;
        cm_call_opts o;
        cm_call_opts_init(&o);
        o.parent = ctx;
        echo_response *got = NULL;
        cm_error *err = NULL;
        int rc = cmicro_test_v1_echo_call(cm_service_client(svc), relay_to, &next, &got, &o, &err);
        if (rc < 0) {
            cm_ctx_set_error(ctx, err ? err : cm_error_internal("echo", "%s", cm_strerror(rc)));
            return CM_EREMOTE;
        }
        size_t n = got->echo ? got->echo->n_str_map : 0;
        e = cm_ctx_alloc(ctx, sizeof(*e));
        Cmicro__Test__V1__EchoRequest__StrMapEntry **map =
            cm_ctx_alloc(ctx, (n + 2) * sizeof(*map));
        if (e == NULL || map == NULL) {
            cmicro_test_v1_echo_call_free(got);
            return CM_ENOMEM;
        }
        cmicro__test__v1__echo_request__init(e);
        e->str_map = map;
        for (size_t i = 0; i < n; i++) {
            Cmicro__Test__V1__EchoRequest__StrMapEntry *m = cm_ctx_alloc(ctx, sizeof(*m));
            if (m == NULL) {
                cmicro_test_v1_echo_call_free(got);
                return CM_ENOMEM;
            }
            cmicro__test__v1__echo_request__str_map_entry__init(m);
            m->key = cm_ctx_strdup(ctx, got->echo->str_map[i]->key);
            m->value = cm_ctx_strdup(ctx, got->echo->str_map[i]->value);
            map[e->n_str_map++] = m;
        }
        cmicro_test_v1_echo_call_free(got);
    }
    Cmicro__Test__V1__EchoRequest__StrMapEntry *via = cm_ctx_alloc(ctx, sizeof(*via));
    if (e == NULL || via == NULL) {
        return CM_ENOMEM;
    }
    cmicro__test__v1__echo_request__str_map_entry__init(via);
    via->key = cm_ctx_sprintf(ctx, "via-%s", instance);
    const char *tp = cm_ctx_get(ctx, "Traceparent");
    via->value = cm_ctx_strdup(ctx, tp ? tp : "");
    e->str_map[e->n_str_map++] = via;
    rsp->echo = e;
    return 0;
}

static int
call(cm_ctx *ctx, const echo_request *req, echo_response *rsp, void *user)
{
    (void)user;
    rsp->message = (char *)instance;
    if (strcmp(req->message, CMD_RELAY) == 0) {
        return relay(ctx, rsp);
    }
    if (strcmp(req->message, CMD_SLEEP) == 0) {
        struct timespec ts = {req->i32 / 1000, (long)(req->i32 % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    } else if (strcmp(req->message, CMD_MD) == 0) {
        rsp->echo = md_echo(ctx, 0);
        if (rsp->echo == NULL) {
            return CM_ENOMEM;
        }
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
    const char *r = getenv("INTEROP_RELAY_TO");
    relay_to = r && r[0] ? r : NULL;
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
