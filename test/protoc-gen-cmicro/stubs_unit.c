/* The generated stubs without a network: the cm_* functions they call are replaced here, so
 * the test sees exactly what the stubs pass to the framework.
 *
 *  - registration: endpoints, descriptors, flags, the user pointer, NULL slots skipped, the
 *    thunks calling the typed slot with the table's user;
 *  - registry shapes: every handler's request/response Value tree, printed as go-micro's JSON,
 *    must equal golden/values.json, which go-micro v4 itself produced for the same protos
 *    (oracle/, regen-values.sh);
 *  - client stubs: endpoint and descriptors of the call, response ownership, the async
 *    trampoline, and no leak when the call fails at once (ASan).
 */
#include "echo.cmicro.h"
#include "hello.cmicro.h"
#include "naming.cmicro.h"
#include "test.h"

/* ---- the framework, replaced ---- */

#define MAX_HANDLERS 32

static cm_handler handlers[MAX_HANDLERS];
static void *handler_users[MAX_HANDLERS];
static size_t nhandlers;
static int handle_fail_at = -1; /* the index whose cm_server_handle fails */

int
cm_server_handle(cm_server *s, const cm_handler *h, void *user)
{
    (void)s;
    if ((int)nhandlers == handle_fail_at) {
        return CM_EEXIST;
    }
    CHECK(nhandlers < MAX_HANDLERS);
    handlers[nhandlers] = *h;
    handler_users[nhandlers] = user;
    nhandlers++;
    return 0;
}

static struct {
    const char *service;
    const char *endpoint;
    const ProtobufCMessageDescriptor *req_desc;
    const void *req;
    const ProtobufCMessageDescriptor *rsp_desc;
    cm_call_cb cb;
    void *user;
    int fail; /* return this instead of answering */
} last_call;

/* A response as the client would return it: a default message of desc, from malloc. */
static void *
new_message(const ProtobufCMessageDescriptor *desc)
{
    void *m = malloc(desc->sizeof_message);
    CHECK(m != NULL);
    protobuf_c_message_init(desc, m);
    return m;
}

int
cm_client_call(cm_client *c, const char *service, const char *endpoint,
               const ProtobufCMessageDescriptor *req_desc, const void *req,
               const ProtobufCMessageDescriptor *rsp_desc, void **rsp, const cm_call_opts *opts,
               cm_error **err)
{
    (void)c;
    (void)opts;
    (void)err;
    last_call.service = service;
    last_call.endpoint = endpoint;
    last_call.req_desc = req_desc;
    last_call.req = req;
    last_call.rsp_desc = rsp_desc;
    if (last_call.fail != 0) {
        return last_call.fail;
    }
    *rsp = new_message(rsp_desc);
    return 0;
}

int
cm_client_call_async(cm_client *c, const char *service, const char *endpoint,
                     const ProtobufCMessageDescriptor *req_desc, const void *req,
                     const ProtobufCMessageDescriptor *rsp_desc, const cm_call_opts *opts,
                     cm_call_cb cb, void *user)
{
    (void)c;
    (void)opts;
    last_call.service = service;
    last_call.endpoint = endpoint;
    last_call.req_desc = req_desc;
    last_call.req = req;
    last_call.rsp_desc = rsp_desc;
    last_call.cb = cb;
    last_call.user = user;
    return last_call.fail;
}

void
cm_message_free(const ProtobufCMessageDescriptor *desc, void *msg)
{
    CHECK(msg == NULL || ((ProtobufCMessage *)msg)->descriptor == desc);
    free(msg);
}

/* ---- typed handlers ---- */

static int slot_calls;
static void *slot_user;

#define HANDLER(name, Req, Rsp)                                                                    \
    static int name(cm_ctx *ctx, const Req *req, Rsp *rsp, void *user)                            \
    {                                                                                              \
        (void)ctx;                                                                                 \
        CHECK(req != NULL && rsp != NULL);                                                         \
        slot_calls++;                                                                              \
        slot_user = user;                                                                          \
        return 0;                                                                                  \
    }

HANDLER(echo_any, Cmicro__Test__V1__EchoRequest, Cmicro__Test__V1__EchoResponse)
HANDLER(echo_empty, Cmicro__Test__V1__EmptyRequest, Cmicro__Test__V1__EmptyResponse)
HANDLER(say, SayRequest, SayResponse)
HANDLER(place_order, Acme__ShopV2__PlaceOrderRequest, Acme__ShopV2__PlaceOrderResponse)
HANDLER(get_status, Google__Protobuf__Empty, Acme__ShopV2__Order__LineItem)
HANDLER(order_default, Acme__ShopV2__Order, Acme__ShopV2__Order)
HANDLER(geo_user, Acme__ShopV2__Geo, Google__Protobuf__Empty)
HANDLER(lower_case, Acme__ShopV2__Planet, Acme__ShopV2__Planet)

/* ---- registry shapes as go-micro's JSON ---- */

static void
put_value(FILE *f, const cm_value_desc *v)
{
    fprintf(f, "{\"name\":\"%s\",\"type\":\"%s\",\"values\":", v->name, v->type);
    if (v->nvalues == 0) {
        CHECK(v->values == NULL);
        fputs("null", f);
    } else {
        fputc('[', f);
        for (size_t i = 0; i < v->nvalues; i++) {
            if (i > 0) {
                fputc(',', f);
            }
            put_value(f, &v->values[i]);
        }
        fputc(']', f);
    }
    fputc('}', f);
}

static char *
shapes_json(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    CHECK(f != NULL);
    for (size_t i = 0; i < nhandlers; i++) {
        fprintf(f, "{\"name\":\"%s\",\"request\":", handlers[i].endpoint);
        put_value(f, handlers[i].request_value);
        fputs(",\"response\":", f);
        put_value(f, handlers[i].response_value);
        fputs("}\n", f);
    }
    CHECK(fclose(f) == 0);
    return text;
}

static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0;

    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    len = (size_t)ftell(f);
    rewind(f);
    text = malloc(len + 1);
    CHECK(text != NULL);
    CHECK(fread(text, 1, len, f) == len);
    text[len] = '\0';
    fclose(f);
    return text;
}

/* ---- tests ---- */

static const char *golden_values;
static int fake_server;
#define SERVER ((cm_server *)&fake_server)

static void
test_register_all(void)
{
    cmicro_test_v1_echo_handlers eh = {.call = echo_any, .fail = echo_any, .empty = echo_empty,
                                       .user = &slot_calls, .flags = CM_HANDLER_INLINE};
    hello_handlers hh = {.say = say, .user = NULL};
    acme_shop_v2_order_book_handlers oh = {
        .place_order = place_order,
        .get_httpstatus = get_status,
        .flags_ = order_default,
        .user_ = geo_user,
        .lower_case = lower_case,
    };
    acme_shop_v2_nothing_handlers nh = {.user = NULL};

    nhandlers = 0;
    CHECK_EQ_INT(cmicro_test_v1_echo_register(SERVER, &eh), 0);
    CHECK_EQ_INT(hello_register(SERVER, &hh), 0);
    CHECK_EQ_INT(acme_shop_v2_order_book_register(SERVER, &oh), 0);
    CHECK_EQ_INT(acme_shop_v2_nothing_register(SERVER, &nh), 0);
    CHECK_EQ_INT(nhandlers, 9);

    CHECK_EQ_STR(handlers[0].endpoint, "Echo.Call");
    CHECK(handlers[0].request == &cmicro__test__v1__echo_request__descriptor);
    CHECK(handlers[0].response == &cmicro__test__v1__echo_response__descriptor);
    CHECK_EQ_INT(handlers[0].flags, CM_HANDLER_INLINE);
    CHECK(handler_users[0] == &eh);
    CHECK_EQ_STR(handlers[2].endpoint, "Echo.Empty");
    CHECK(handlers[2].request == &cmicro__test__v1__empty_request__descriptor);
    CHECK_EQ_STR(handlers[3].endpoint, "Hello.Say");
    CHECK_EQ_INT(handlers[3].flags, 0);
    CHECK_EQ_STR(handlers[5].endpoint, "OrderBook.GetHTTPStatus");
    CHECK(handlers[5].request == &google__protobuf__empty__descriptor);
    CHECK(handlers[5].response == &acme__shop_v2__order__line_item__descriptor);
    CHECK_EQ_STR(handlers[8].endpoint, "OrderBook.LowerCase");

    /* Each thunk calls its typed slot with the table's user. */
    Cmicro__Test__V1__EchoRequest req = CMICRO__TEST__V1__ECHO_REQUEST__INIT;
    Cmicro__Test__V1__EchoResponse rsp = CMICRO__TEST__V1__ECHO_RESPONSE__INIT;
    slot_calls = 0;
    CHECK_EQ_INT(handlers[1].fn(NULL, &req, &rsp, handler_users[1]), 0);
    CHECK_EQ_INT(slot_calls, 1);
    CHECK(slot_user == &slot_calls);
    Acme__ShopV2__Geo geo = ACME__SHOP_V2__GEO__INIT;
    Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
    CHECK_EQ_INT(handlers[7].fn(NULL, &geo, &empty, handler_users[7]), 0);
    CHECK_EQ_INT(slot_calls, 2);
    CHECK(slot_user == NULL);

    /* The published shapes are go-micro's. */
    char *got = shapes_json();
    char *want = read_file(golden_values);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "registry shapes differ from %s; generated:\n%s", golden_values, got);
    }
    CHECK(strcmp(got, want) == 0);
    free(got);
    free(want);
}

static void
test_register_partial(void)
{
    cmicro_test_v1_echo_handlers eh = {.fail = echo_any};

    nhandlers = 0;
    CHECK_EQ_INT(cmicro_test_v1_echo_register(SERVER, &eh), 0);
    CHECK_EQ_INT(nhandlers, 1);
    CHECK_EQ_STR(handlers[0].endpoint, "Echo.Fail");
    CHECK_EQ_INT(cmicro_test_v1_echo_register(NULL, &eh), CM_EINVAL);
    CHECK_EQ_INT(cmicro_test_v1_echo_register(SERVER, NULL), CM_EINVAL);

    /* The first error stops the registration and is returned. */
    eh.call = echo_any;
    eh.empty = echo_empty;
    nhandlers = 0;
    handle_fail_at = 1;
    CHECK_EQ_INT(cmicro_test_v1_echo_register(SERVER, &eh), CM_EEXIST);
    CHECK_EQ_INT(nhandlers, 1);
    handle_fail_at = -1;
}

static int async_calls;
static int async_status;

static void
on_say(int status, SayResponse *rsp, const cm_error *err, void *user)
{
    CHECK(err == NULL);
    CHECK(user == &async_calls);
    async_calls++;
    async_status = status;
    hello_say_free(rsp);
}

static void
test_client(void)
{
    SayRequest req = SAY_REQUEST__INIT;
    SayResponse *rsp = NULL;
    cm_error *err = NULL;

    req.name = "BOSSMA";
    memset(&last_call, 0, sizeof(last_call));
    CHECK_EQ_INT(hello_say(NULL, "greeter", &req, &rsp, NULL, &err), 0);
    CHECK_EQ_STR(last_call.service, "greeter");
    CHECK_EQ_STR(last_call.endpoint, "Hello.Say");
    CHECK(last_call.req_desc == &say_request__descriptor);
    CHECK(last_call.req == &req);
    CHECK(last_call.rsp_desc == &say_response__descriptor);
    CHECK(rsp != NULL && rsp->base.descriptor == &say_response__descriptor);
    hello_say_free(rsp);
    hello_say_free(NULL);

    /* rsp NULL: the response is freed by the stub (ASan would report the leak). */
    CHECK_EQ_INT(hello_say(NULL, "greeter", &req, NULL, NULL, NULL), 0);

    last_call.fail = CM_ETIMEDOUT;
    rsp = (SayResponse *)&req; /* overwritten */
    CHECK_EQ_INT(hello_say(NULL, "greeter", &req, &rsp, NULL, &err), CM_ETIMEDOUT);
    CHECK(rsp == NULL);
    last_call.fail = 0;

    /* Asynchronous: the trampoline hands the typed response to the typed callback. */
    CHECK_EQ_INT(hello_say_async(NULL, "greeter", &req, NULL, on_say, &async_calls), 0);
    CHECK_EQ_STR(last_call.endpoint, "Hello.Say");
    CHECK_EQ_INT(async_calls, 0);
    last_call.cb(0, new_message(last_call.rsp_desc), NULL, last_call.user);
    CHECK_EQ_INT(async_calls, 1);
    CHECK_EQ_INT(async_status, 0);

    /* An immediate failure frees the closure and never calls back. */
    last_call.fail = CM_ECODEC;
    CHECK_EQ_INT(hello_say_async(NULL, "greeter", &req, NULL, on_say, &async_calls), CM_ECODEC);
    CHECK_EQ_INT(async_calls, 1);
    last_call.fail = 0;
    CHECK_EQ_INT(hello_say_async(NULL, "greeter", &req, NULL, NULL, NULL), CM_EINVAL);

    /* A stub with a package and a nested response type. */
    Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
    Acme__ShopV2__Order__LineItem *item = NULL;
    CHECK_EQ_INT(acme_shop_v2_order_book_get_httpstatus(NULL, "shop", &e, &item, NULL, NULL), 0);
    CHECK_EQ_STR(last_call.endpoint, "OrderBook.GetHTTPStatus");
    CHECK(item != NULL && item->base.descriptor == &acme__shop_v2__order__line_item__descriptor);
    acme_shop_v2_order_book_get_httpstatus_free(item);
}

int
main(int argc, char **argv)
{
    CHECK(argc == 2);
    golden_values = argv[1];
    RUN(test_register_all);
    RUN(test_register_partial);
    RUN(test_client);
    TEST_DONE();
}
