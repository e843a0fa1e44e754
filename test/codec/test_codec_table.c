/* The codec table (exact Content-Type matching, registration) and cm_buf. */
#include "test.h"

#include <cmicro/codec.h>

static int
dummy_marshal(const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out)
{
    (void)desc;
    (void)msg;
    return cm_buf_append(out, "dummy", 5);
}

static int
dummy_unmarshal(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                ProtobufCAllocator *alloc, void **out, char *err, size_t errlen)
{
    (void)desc;
    (void)data;
    (void)len;
    (void)alloc;
    (void)out;
    (void)err;
    (void)errlen;
    return CM_ENOTSUP;
}

static const cm_codec_ops dummy_codec = {
    .abi_version = CM_ABI_VERSION,
    .name = "dummy",
    .content_type = "application/x-dummy",
    .marshal = dummy_marshal,
    .unmarshal = dummy_unmarshal,
};

static const cm_codec_ops dummy_json = {
    .abi_version = CM_ABI_VERSION,
    .name = "dummy-json",
    .content_type = "application/json",
    .marshal = dummy_marshal,
    .unmarshal = dummy_unmarshal,
};

static void
test_builtins(void)
{
    CHECK(cm_codec_find("application/protobuf") == &cm_codec_proto);
    CHECK(cm_codec_find("application/json") == &cm_codec_json);
    CHECK(cm_codec_find("application/octet-stream") == &cm_codec_bytes);
    CHECK_EQ_STR(cm_codec_proto.name, "proto");
    CHECK_EQ_STR(cm_codec_json.name, "json");
    CHECK_EQ_STR(cm_codec_bytes.name, "bytes");
    CHECK_EQ_STR(cm_codec_json.content_type, CM_CT_JSON);
    CHECK_EQ_INT(cm_codec_json.abi_version, CM_ABI_VERSION);
}

static void
test_exact_match(void)
{
    static const char buf[] = "application/protobufXYZ";

    /* go-micro matches the whole header value: parameters and case changes are unknown. */
    CHECK(cm_codec_find("application/json; charset=utf-8") == NULL);
    CHECK(cm_codec_find("application/json ") == NULL);
    CHECK(cm_codec_find("Application/JSON") == NULL);
    CHECK(cm_codec_find("application/jso") == NULL);
    CHECK(cm_codec_find("application/grpc") == &cm_codec_grpc);
    CHECK(cm_codec_find("application/grpc+proto") == &cm_codec_grpc_proto);
    CHECK(cm_codec_find("application/grpc+json") == &cm_codec_grpc_json);
    CHECK(cm_codec_find("application/proto-rpc") == &cm_codec_proto_rpc);
    CHECK(cm_codec_find("application/json-rpc") == &cm_codec_json_rpc);
    CHECK(cm_codec_find("application/grpc-web") == NULL);
    CHECK(cm_codec_find("") == NULL);
    CHECK(cm_codec_find(NULL) == NULL);
    CHECK(cm_codec_findn(buf, 20) == &cm_codec_proto);
    CHECK(cm_codec_findn(buf, 19) == NULL);
    CHECK(cm_codec_findn(buf, 23) == NULL);
    CHECK(cm_codec_findn("application/json", 16) == &cm_codec_json);
    CHECK(cm_codec_findn(NULL, 0) == NULL);
}

static void
test_register(void)
{
    cm_codec_ops bad = dummy_codec;
    cm_buf b = {0};

    CHECK(cm_codec_find("application/x-dummy") == NULL);
    CHECK_EQ_INT(cm_codec_register(&dummy_codec), 0);
    CHECK(cm_codec_find("application/x-dummy") == &dummy_codec);
    CHECK(cm_codec_find("application/x-dumm") == NULL);
    CHECK_EQ_INT(cm_codec_find("application/x-dummy")->marshal(NULL, NULL, &b), 0);
    CHECK_EQ_INT(b.len, 5);
    cm_buf_free(&b);
    /* Registering the same content type again replaces, it does not add. */
    CHECK_EQ_INT(cm_codec_register(&dummy_codec), 0);

    CHECK_EQ_INT(cm_codec_register(NULL), CM_EINVAL);
    bad.abi_version = CM_ABI_VERSION + 1;
    CHECK_EQ_INT(cm_codec_register(&bad), CM_EINVAL);
    bad = dummy_codec;
    bad.marshal = NULL;
    CHECK_EQ_INT(cm_codec_register(&bad), CM_EINVAL);
    bad = dummy_codec;
    bad.unmarshal = NULL;
    CHECK_EQ_INT(cm_codec_register(&bad), CM_EINVAL);
    bad = dummy_codec;
    bad.content_type = NULL;
    CHECK_EQ_INT(cm_codec_register(&bad), CM_EINVAL);
    bad = dummy_codec;
    bad.content_type = "";
    CHECK_EQ_INT(cm_codec_register(&bad), CM_EINVAL);

    /* Replacing a built-in, then putting it back. */
    CHECK_EQ_INT(cm_codec_register(&dummy_json), 0);
    CHECK(cm_codec_find("application/json") == &dummy_json);
    CHECK(cm_codec_find("application/protobuf") == &cm_codec_proto);
    CHECK_EQ_INT(cm_codec_register(&cm_codec_json), 0);
    CHECK(cm_codec_find("application/json") == &cm_codec_json);
}

static void
test_buf(void)
{
    cm_buf b = {0};
    size_t i;

    CHECK_EQ_INT(cm_buf_append(&b, NULL, 0), 0);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_INT(cm_buf_append(&b, "abc", 3), 0);
    CHECK_EQ_INT(b.len, 3);
    CHECK(b.cap >= 3);
    CHECK(memcmp(b.data, "abc", 3) == 0);
    for (i = 0; i < 10000; i++) {
        CHECK_EQ_INT(cm_buf_append(&b, "0123456789", 10), 0);
    }
    CHECK_EQ_INT(b.len, 100003);
    CHECK(memcmp(b.data + 100003 - 10, "0123456789", 10) == 0);
    CHECK_EQ_INT(cm_buf_reserve(&b, 1000000), 0);
    CHECK(b.cap - b.len >= 1000000);
    CHECK_EQ_INT(b.len, 100003);
    /* An impossible size fails and leaves the buffer as it was. */
    CHECK_EQ_INT(cm_buf_reserve(&b, SIZE_MAX - 10), CM_ENOMEM);
    CHECK_EQ_INT(b.len, 100003);
    CHECK(memcmp(b.data, "abc0123456789", 13) == 0);
    cm_buf_free(&b);
    CHECK(b.data == NULL);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_INT(b.cap, 0);
    cm_buf_free(&b);
}

int
main(void)
{
    RUN(test_builtins);
    RUN(test_exact_match);
    RUN(test_register);
    RUN(test_buf);
    TEST_DONE();
}
