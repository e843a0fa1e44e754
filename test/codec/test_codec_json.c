/* application/json: Go's encoding/json output byte for byte, jsonpb's input rules, rejects,
 * proto2 presence, and out-of-memory paths. */
#include "codec_fixture.h"

#include "json_int.h"

#include <math.h>

/* What Go's json.Encoder writes for fill_rich(r, 2), except that the oneof member is written
 * directly ("number":0, last like in the C struct) where Go writes "MyKind":{"Number":0}. */
static const char rich_json[] =
    "{\"message\":\"h\xc3\xa9llo \\u003cb\\u003e\\u0026\\t\\\"q\\\"\\\\ \\u2028\\ufffd\\u0001\","
    "\"i32\":-5,\"i64\":9223372036854775807,\"u32\":4294967295,\"u64\":18446744073709551615,"
    "\"s32\":-2147483648,\"s64\":-9223372036854775808,\"f32\":7,\"sf64\":-1,\"dbl\":0.1,"
    "\"flt\":0.1,\"flag\":true,\"payload\":\"AAEC+/8=\",\"status\":1,"
    "\"inner\":{\"name\":\"in\",\"tags\":[\"a\",\"b\"]},"
    "\"rep_i32\":[1,-2,2147483647,-2147483648],\"rep_str\":[\"x\",\"\",\"\xe2\x82\xac\"],"
    "\"rep_inner\":[{},{\"count\":2}],\"rep_status\":[0,2,1],\"rep_bytes\":[\"\",\"aGk=\"],"
    "\"rep_dbl\":[1e+21,1e-7,123456789,-0,1.5e+300,0.1],"
    "\"str_map\":{\"\\u003c\":\"\",\"a\":\"1\",\"b\":\"2\"},"
    "\"inner_map\":{\"j\":{},\"k\":{\"name\":\"v\"}},"
    "\"int_map\":{\"-1\":\"neg\",\"10\":\"ten\",\"2\":\"two\"},"
    "\"bool_map\":{\"false\":0,\"true\":5},\"u64_map\":{\"18446744073709551615\":2},"
    "\"rep_s64\":[-1,-9223372036854775808,9223372036854775807],"
    "\"rep_f64\":[18446744073709551615,0],\"rep_flt\":[3.4028235e+38,1e-45,0.1,-3.5],"
    "\"rep_bool\":[true,false],\"zz_last_declared\":\"z\",\"declared_after\":9,\"number\":0}\n";

static int
marshal_str(const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *b)
{
    int rc;

    b->len = 0;
    rc = cm_codec_json.marshal(desc, msg, b);
    if (rc == 0) {
        CHECK_EQ_INT(cm_buf_append(b, "", 1), 0);
        b->len--;
    }
    return rc;
}

/* Decodes text; on success checks it frees cleanly and returns the message packed. */
static int
decode(const ProtobufCMessageDescriptor *desc, const char *text, cm_buf *packed, char *err,
       size_t errlen)
{
    count_alloc ca;
    void *out = NULL;
    int rc;

    count_alloc_init(&ca);
    err[0] = '\0';
    rc = cm_codec_json.unmarshal(desc, (const uint8_t *)text, strlen(text), &ca.base, &out, err,
                                 errlen);
    if (rc == 0) {
        CHECK(out != NULL);
        *packed = pack_msg(out);
        protobuf_c_message_free_unpacked(out, &ca.base);
    } else {
        CHECK(strlen(err) > 0);
        CHECK(strchr(err, '\n') == NULL);
    }
    CHECK_EQ_INT(ca.live, 0);
    return rc;
}

static void
test_exact_output(void)
{
    EchoRequest r;
    cm_buf b = {0};

    fill_rich(&r, 2);
    CHECK_EQ_INT(marshal_str(ECHO_DESC, &r, &b), 0);
    CHECK_EQ_STR((char *)b.data, rich_json);

    /* The empty message, and a oneof set to its zero value. */
    cmicro__test__v1__echo_request__init(&r);
    CHECK_EQ_INT(marshal_str(ECHO_DESC, &r, &b), 0);
    CHECK_EQ_STR((char *)b.data, "{}\n");
    r.my_kind_case = CMICRO__TEST__V1__ECHO_REQUEST__MY_KIND_TEXT;
    r.text = "";
    CHECK_EQ_INT(marshal_str(ECHO_DESC, &r, &b), 0);
    CHECK_EQ_STR((char *)b.data, "{\"text\":\"\"}\n");

    /* Non-finite floats are written as jsonpb's strings. */
    cmicro__test__v1__echo_request__init(&r);
    r.dbl = NAN;
    r.flt = -INFINITY;
    CHECK_EQ_INT(marshal_str(ECHO_DESC, &r, &b), 0);
    CHECK_EQ_STR((char *)b.data, "{\"dbl\":\"NaN\",\"flt\":\"-Infinity\"}\n");
    cm_buf_free(&b);
}

static void
test_json_round_trip(void)
{
    int which;

    for (which = 0; which <= 3; which++) {
        EchoRequest r;
        cm_buf want, js = {0}, got = {0};
        char err[200];

        fill_rich(&r, which);
        /* Valid UTF-8 only: invalid bytes are written as U+FFFD and cannot come back. */
        r.message = "h\xc3\xa9llo <b>&\t\"q\"\\ \xe2\x80\xa8\x01\x7f";
        want = pack_msg(&r.base);
        CHECK_EQ_INT(marshal_str(ECHO_DESC, &r, &js), 0);
        CHECK_EQ_INT(decode(ECHO_DESC, (char *)js.data, &got, err, sizeof(err)), 0);
        CHECK(buf_eq(&want, &got));
        cm_buf_free(&want);
        cm_buf_free(&js);
        cm_buf_free(&got);
    }
}

/* Map keys are sorted by their text as Go sorts them (so 10 before 2), and when the entries
 * repeat a key the last one is written, as Go keeps the last when it decodes them. */
static void
test_map_order(void)
{
    Cmicro__Test__V1__EchoRequest__StrMapEntry sm[4], *smp[4];
    Cmicro__Test__V1__EchoRequest__IntMapEntry im[4], *imp[4];
    static const char *sk[] = {"b", "a", "\xc3\xa9", "a"}, *sv[] = {"1", "2", "3", "4"};
    static const int32_t ik[] = {2, 10, -1, 2};
    EchoRequest r;
    cm_buf b = {0};
    int i;

    cmicro__test__v1__echo_request__init(&r);
    for (i = 0; i < 4; i++) {
        cmicro__test__v1__echo_request__str_map_entry__init(&sm[i]);
        sm[i].key = (char *)sk[i];
        sm[i].value = (char *)sv[i];
        smp[i] = &sm[i];
        cmicro__test__v1__echo_request__int_map_entry__init(&im[i]);
        im[i].key = ik[i];
        im[i].value = (char *)sv[i];
        imp[i] = &im[i];
    }
    r.n_str_map = 4;
    r.str_map = smp;
    r.n_int_map = 4;
    r.int_map = imp;
    CHECK_EQ_INT(marshal_str(ECHO_DESC, &r, &b), 0);
    CHECK_EQ_STR((char *)b.data, "{\"str_map\":{\"a\":\"4\",\"b\":\"1\",\"\xc3\xa9\":\"3\"},"
                                 "\"int_map\":{\"-1\":\"3\",\"10\":\"2\",\"2\":\"4\"}}\n");
    cm_buf_free(&b);
}

static void
test_go_float_format(void)
{
    static const struct {
        double v;
        int f32;
        const char *want;
    } cases[] = {
        {0, 0, "0"},
        {1, 0, "1"},
        {-1.5, 0, "-1.5"},
        {0.1, 0, "0.1"},
        {100, 0, "100"},
        {1e20, 0, "100000000000000000000"},
        {1e21, 0, "1e+21"},
        {1e-6, 0, "0.000001"},
        {1e-7, 0, "1e-7"},
        {2.5e-7, 0, "2.5e-7"},
        {0.000001234, 0, "0.000001234"},
        {123456789.125, 0, "123456789.125"},
        {12345678901234567890.0, 0, "12345678901234567000"},
        {5e-324, 0, "5e-324"},
        {1.7976931348623157e308, 0, "1.7976931348623157e+308"},
        {1e100, 0, "1e+100"},
        {0.30000000000000004, 0, "0.30000000000000004"},
        {-2.2250738585072014e-308, 0, "-2.2250738585072014e-308"},
        {0.1f, 1, "0.1"},
        {16777216.0f, 1, "16777216"},
        {1e20f, 1, "100000000000000000000"},
        {1e21f, 1, "1e+21"},
        {3.4028234663852886e38, 1, "3.4028235e+38"},
        {1e-45f, 1, "1e-45"},
        {1.17549435e-38f, 1, "1.1754944e-38"},
        {-0.0, 0, "-0"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[40];

        cm__json_format_float(cases[i].v, cases[i].f32, buf);
        CHECK_EQ_STR(buf, cases[i].want);
    }
}

static void
test_string_escapes(void)
{
    EchoRequest r;
    cm_buf b = {0};

    cmicro__test__v1__echo_request__init(&r);
    r.message = "\x01\x08\x0c\x1f\x7f/'\xe2\x80\xa9\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80\xef\xbf\xbd"
                "\xf0\x9f\x98\x80\xe2\x82";
    CHECK_EQ_INT(marshal_str(ECHO_DESC, &r, &b), 0);
    /* Surrogates, overlongs, values above U+10FFFF and a cut sequence become U+FFFD one byte at
     * a time, as in Go; a real U+FFFD and an emoji pass through. */
    CHECK_EQ_STR((char *)b.data,
                 "{\"message\":\"\\u0001\\u0008\\u000c\\u001f\x7f/'\\u2029\\ufffd\\ufffd\\ufffd"
                 "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\xef\xbf\xbd\xf0\x9f\x98\x80"
                 "\\ufffd\\ufffd\"}\n");
    cm_buf_free(&b);
}

static EchoRequest *
decode_echo(const char *text, count_alloc *ca)
{
    void *out = NULL;
    char err[200] = "";
    int rc;

    count_alloc_init(ca);
    rc = cm_codec_json.unmarshal(ECHO_DESC, (const uint8_t *)text, strlen(text), &ca->base, &out,
                                 err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "decode failed: %s\n", err);
    }
    CHECK_EQ_INT(rc, 0);
    return out;
}

static void
test_jsonpb_inputs(void)
{
    static const char text[] =
        " {\"message\":\"m\",\"i64\":\"-9223372036854775808\",\"u64\":\"18446744073709551615\","
        "\"repI32\":[1,\"2\",-3e0,40e-1],\"status\":\"STATUS_FAILED\",\"mode\":\"MODE_LOUD\","
        "\"payload\":\"-_8\",\"repBytes\":[\"aGk\",\"aGk=\",\"\"],\"strMap\":{\"a\":\"b\"},"
        "\"intMap\":{\"-5\":\"x\"},\"boolMap\":{\"true\":\"7\"},"
        "\"u64Map\":{\"18446744073709551615\":\"STATUS_OK\"},\"MyKind\":{\"Nested\":{\"name\":"
        "\"n\"}},\"dbl\":\"NaN\",\"flt\":\"-Infinity\",\"innerMap\":{\"k\":null},"
        "\"repInner\":[null,{\"tags\":null}],\"zzLastDeclared\":\"z\",\"declaredAfter\":1e1,"
        "\"i32\":5.0,\"u32\":\"7\",\"sf32\":-0,\"repStr\":[null],\"inner\":null,\"f32\":null,"
        "\"repDbl\":[\"1.5\",\"Infinity\",2],\"repFlt\":[1e-50]}\n\t ";
    count_alloc ca;
    EchoRequest *r = decode_echo(text, &ca);

    CHECK_EQ_STR(r->message, "m");
    CHECK(r->i64 == INT64_MIN);
    CHECK(r->u64 == UINT64_MAX);
    CHECK_EQ_INT(r->n_rep_i32, 4);
    CHECK(r->rep_i32[0] == 1 && r->rep_i32[1] == 2 && r->rep_i32[2] == -3 && r->rep_i32[3] == 4);
    CHECK_EQ_INT(r->status, CMICRO__TEST__V1__STATUS__STATUS_FAILED);
    CHECK_EQ_INT(r->mode, CMICRO__TEST__V1__ECHO_REQUEST__MODE__MODE_LOUD);
    CHECK_EQ_INT(r->payload.len, 2);
    CHECK(r->payload.data[0] == 0xfb && r->payload.data[1] == 0xff);
    CHECK_EQ_INT(r->n_rep_bytes, 3);
    CHECK(r->rep_bytes[0].len == 2 && memcmp(r->rep_bytes[0].data, "hi", 2) == 0);
    CHECK(r->rep_bytes[1].len == 2 && memcmp(r->rep_bytes[1].data, "hi", 2) == 0);
    CHECK(r->rep_bytes[2].len == 0);
    CHECK_EQ_INT(r->n_str_map, 1);
    CHECK_EQ_STR(r->str_map[0]->key, "a");
    CHECK_EQ_STR(r->str_map[0]->value, "b");
    CHECK_EQ_INT(r->n_int_map, 1);
    CHECK_EQ_INT(r->int_map[0]->key, -5);
    CHECK_EQ_INT(r->n_bool_map, 1);
    CHECK(r->bool_map[0]->key == 1 && r->bool_map[0]->value == 7);
    CHECK(r->n_u64_map == 1 && r->u64_map[0]->key == UINT64_MAX);
    CHECK_EQ_INT(r->u64_map[0]->value, CMICRO__TEST__V1__STATUS__STATUS_OK);
    CHECK_EQ_INT(r->my_kind_case, CMICRO__TEST__V1__ECHO_REQUEST__MY_KIND_NESTED);
    CHECK_EQ_STR(r->nested->name, "n");
    CHECK(isnan(r->dbl));
    CHECK(isinf(r->flt) && r->flt < 0);
    CHECK_EQ_INT(r->n_inner_map, 1);
    CHECK(r->inner_map[0]->value != NULL);
    CHECK_EQ_INT(r->n_rep_inner, 2);
    CHECK(r->rep_inner[0] != NULL && r->rep_inner[1] != NULL && r->rep_inner[1]->n_tags == 0);
    CHECK_EQ_STR(r->zz_last_declared, "z");
    CHECK_EQ_INT(r->declared_after, 10);
    CHECK_EQ_INT(r->i32, 5);
    CHECK_EQ_INT(r->u32, 7);
    CHECK_EQ_INT(r->n_rep_str, 1);
    CHECK_EQ_STR(r->rep_str[0], "");
    CHECK(r->inner == NULL);
    CHECK(r->n_rep_dbl == 3 && r->rep_dbl[0] == 1.5 && isinf(r->rep_dbl[1]));
    CHECK(r->n_rep_flt == 1 && r->rep_flt[0] == 0);
    protobuf_c_message_free_unpacked(&r->base, &ca.base);
    CHECK_EQ_INT(ca.live, 0);
}

static void
test_name_precedence(void)
{
    count_alloc ca;
    EchoRequest *r;

    /* jsonpb: the lowerCamel name wins over the proto name; a repeated key keeps the last. */
    r = decode_echo("{\"repI32\":[2],\"rep_i32\":[1],\"i32\":1,\"i32\":3}", &ca);
    CHECK(r->n_rep_i32 == 1 && r->rep_i32[0] == 2);
    CHECK_EQ_INT(r->i32, 3);
    protobuf_c_message_free_unpacked(&r->base, &ca.base);
    CHECK_EQ_INT(ca.live, 0);

    /* Two members of one oneof: the later field wins and the earlier one is freed. */
    r = decode_echo("{\"nested\":{\"name\":\"x\"},\"text\":\"abc\"}", &ca);
    CHECK_EQ_INT(r->my_kind_case, CMICRO__TEST__V1__ECHO_REQUEST__MY_KIND_NESTED);
    protobuf_c_message_free_unpacked(&r->base, &ca.base);
    CHECK_EQ_INT(ca.live, 0);
    r = decode_echo("{\"text\":\"abc\",\"MyKind\":{\"Number\":\"12\"}}", &ca);
    CHECK_EQ_INT(r->my_kind_case, CMICRO__TEST__V1__ECHO_REQUEST__MY_KIND_NUMBER);
    CHECK_EQ_INT(r->number, 12);
    protobuf_c_message_free_unpacked(&r->base, &ca.base);
    CHECK_EQ_INT(ca.live, 0);

    /* A message member replaced through the wrapper form is freed. */
    r = decode_echo("{\"nested\":{\"name\":\"x\",\"tags\":[\"a\"]},\"MyKind\":{\"Text\":\"t\"}}",
                    &ca);
    CHECK_EQ_INT(r->my_kind_case, CMICRO__TEST__V1__ECHO_REQUEST__MY_KIND_TEXT);
    CHECK_EQ_STR(r->text, "t");
    protobuf_c_message_free_unpacked(&r->base, &ca.base);
    CHECK_EQ_INT(ca.live, 0);

    /* Go writes "MyKind":null for an unset oneof. */
    r = decode_echo("{\"MyKind\":null,\"text\":\"\"}", &ca);
    CHECK_EQ_INT(r->my_kind_case, CMICRO__TEST__V1__ECHO_REQUEST__MY_KIND_TEXT);
    CHECK_EQ_STR(r->text, "");
    protobuf_c_message_free_unpacked(&r->base, &ca.base);
    CHECK_EQ_INT(ca.live, 0);
    r = decode_echo("{\"MyKind\":null}", &ca);
    CHECK_EQ_INT(r->my_kind_case, 0);
    protobuf_c_message_free_unpacked(&r->base, &ca.base);
    CHECK_EQ_INT(ca.live, 0);
}

/* What Go's encoding/json really writes for fill_rich(r, 2): the oneof as a wrapper object in
 * the struct's position (after int_map). It must decode to the same message. */
static void
test_go_writer_form(void)
{
    const char *tail = ",\"number\":0}\n", *split = ",\"bool_map\"";
    const char *at_split = strstr(rich_json, split), *at_tail = strstr(rich_json, tail);
    cm_buf go = {0}, want, got = {0};
    EchoRequest r;
    char err[200];

    CHECK(at_split != NULL && at_tail != NULL && at_split < at_tail);
    CHECK_EQ_INT(cm_buf_append(&go, rich_json, (size_t)(at_split - rich_json)), 0);
    CHECK_EQ_INT(cm_buf_append(&go, ",\"MyKind\":{\"Number\":0}", 22), 0);
    CHECK_EQ_INT(cm_buf_append(&go, at_split, (size_t)(at_tail - at_split)), 0);
    CHECK_EQ_INT(cm_buf_append(&go, "}\n", 3), 0);
    CHECK(strstr((char *)go.data, "\"int_map\":{\"-1\":\"neg\",\"10\":\"ten\",\"2\":\"two\"},"
                                  "\"MyKind\":{\"Number\":0},\"bool_map\"") != NULL);
    CHECK(strstr((char *)go.data, "\"number\"") == NULL);
    fill_rich(&r, 2);
    r.message = "h\xc3\xa9llo <b>&\t\"q\"\\ \xe2\x80\xa8\xef\xbf\xbd\x01"; /* \xff read as U+FFFD */
    want = pack_msg(&r.base);
    CHECK_EQ_INT(decode(ECHO_DESC, (char *)go.data, &got, err, sizeof(err)), 0);
    CHECK(buf_eq(&want, &got));
    cm_buf_free(&want);
    cm_buf_free(&got);
    cm_buf_free(&go);
}

static void
expect_reject(const ProtobufCMessageDescriptor *desc, const char *text, const char *reason)
{
    cm_buf got = {0};
    char err[200];

    if (decode(desc, text, &got, err, sizeof(err)) != CM_ECODEC) {
        fprintf(stderr, "accepted: %s\n", text);
        CHECK(0);
    }
    if (reason != NULL && strstr(err, reason) == NULL) {
        fprintf(stderr, "reason \"%s\" lacks \"%s\"\n", err, reason);
        CHECK(0);
    }
}

static void
test_rejects(void)
{
    cm_buf got = {0};
    char err[200];

    CHECK_EQ_INT(decode(ECHO_DESC, "{\"nope\":1}", &got, err, sizeof(err)), CM_ECODEC);
    CHECK_EQ_STR(err, "unknown field \"nope\" in cmicro.test.v1.EchoRequest");
    expect_reject(ECHO_DESC, "{\"inner\":{\"name\":\"a\",\"x\":1}}",
                  "unknown field \"x\" in cmicro.test.v1.Inner");
    expect_reject(ECHO_DESC, "{\"Message\":\"x\"}", "unknown field");
    expect_reject(ECHO_DESC, "{\"MyKind\":{\"Text\":\"a\",\"Number\":1}}", "unknown field");
    expect_reject(ECHO_DESC, "{\"MyKind\":{\"Inner\":{}}}", "unknown field");
    expect_reject(ECHO_DESC, "{\"MyKind\":1}", "unknown field");
    expect_reject(ECHO_DESC, "{\"inner\":{\"MyKind\":null}}", "unknown field");

    /* Wrong types. */
    expect_reject(ECHO_DESC, "{\"inner\":\"x\"}", "EchoRequest.inner: expected an object");
    expect_reject(ECHO_DESC, "{\"message\":5}", "expected a string");
    expect_reject(ECHO_DESC, "{\"flag\":\"true\"}", "expected a bool");
    expect_reject(ECHO_DESC, "{\"flag\":1}", "expected a bool");
    expect_reject(ECHO_DESC, "{\"rep_i32\":5}", "expected an array");
    expect_reject(ECHO_DESC, "{\"rep_i32\":[[1]]}", "expected an integer");
    expect_reject(ECHO_DESC, "{\"str_map\":[]}", "expected an object");
    expect_reject(ECHO_DESC, "{\"str_map\":{\"a\":1}}", "expected a string");
    expect_reject(ECHO_DESC, "{\"i32\":true}", "expected an integer");
    expect_reject(ECHO_DESC, "{\"i32\":\"\"}", "expected an integer");
    expect_reject(ECHO_DESC, "{\"i32\":\" 1\"}", "expected an integer");
    expect_reject(ECHO_DESC, "{\"dbl\":\"nan\"}", "expected a number");
    expect_reject(ECHO_DESC, "{\"dbl\":{}}", "expected a number");
    expect_reject(ECHO_DESC, "{\"status\":true}", "expected an enum");
    expect_reject(ECHO_DESC, "{\"status\":\"NOPE\"}",
                  "unknown value \"NOPE\" for enum cmicro.test.v1.Status");
    expect_reject(ECHO_DESC, "{\"status\":\"1\"}", "unknown value");
    expect_reject(ECHO_DESC, "{\"status\":1.5}", "not an integer");
    expect_reject(ECHO_DESC, "{\"payload\":5}", "expected a base64 string");
    expect_reject(ECHO_DESC, "{\"payload\":\"a\"}", "invalid base64");
    expect_reject(ECHO_DESC, "{\"payload\":\"@@@@\"}", "invalid base64");
    expect_reject(ECHO_DESC, "{\"payload\":\"aGk==\"}", "invalid base64");
    expect_reject(ECHO_DESC, "{\"payload\":\"a=Gk\"}", "invalid base64");
    expect_reject(ECHO_DESC, "{\"int_map\":{\"x\":\"a\"}}", "invalid integer map key");
    expect_reject(ECHO_DESC, "{\"int_map\":{\"01\":\"a\"}}", "invalid integer map key");
    expect_reject(ECHO_DESC, "{\"int_map\":{\"2147483648\":\"a\"}}", "out of range");
    expect_reject(ECHO_DESC, "{\"bool_map\":{\"1\":1}}", "invalid bool map key");
    expect_reject(ECHO_DESC, "{\"message\":\"a\\u0000b\"}", "NUL");

    /* Numbers out of range or not integers. */
    expect_reject(ECHO_DESC, "{\"i32\":2147483648}", "EchoRequest.i32: value out of range");
    expect_reject(ECHO_DESC, "{\"i32\":-2147483649}", "out of range");
    expect_reject(ECHO_DESC, "{\"i32\":\"-2147483649\"}", "out of range");
    expect_reject(ECHO_DESC, "{\"u32\":-1}", "out of range");
    expect_reject(ECHO_DESC, "{\"u32\":4294967296}", "out of range");
    expect_reject(ECHO_DESC, "{\"i64\":9223372036854775808}", "out of range");
    expect_reject(ECHO_DESC, "{\"u64\":18446744073709551616}", "out of range");
    expect_reject(ECHO_DESC, "{\"u64\":1e20}", "out of range");
    expect_reject(ECHO_DESC, "{\"u64\":100000000000000000000000000000}", "out of range");
    expect_reject(ECHO_DESC, "{\"i32\":1.5}", "not an integer");
    expect_reject(ECHO_DESC, "{\"i32\":1e-1}", "not an integer");
    expect_reject(ECHO_DESC, "{\"flt\":1e39}", "out of range for float");
    expect_reject(ECHO_DESC, "{\"dbl\":1e999}", "out of range for double");
}

static void
test_rejects_syntax(void)
{
    /* Not JSON, or not one object. */
    expect_reject(ECHO_DESC, "{\"message\":\"abc", "unterminated string");
    expect_reject(ECHO_DESC, "{\"message\":\"abc\"", "expected ',' or '}'");
    expect_reject(ECHO_DESC, "{\"i32\":", "unexpected end");
    expect_reject(ECHO_DESC, "{} x", "trailing data");
    expect_reject(ECHO_DESC, "{}{}", "trailing data");
    expect_reject(ECHO_DESC, "{\"i32\":01}", "expected ',' or '}'");
    expect_reject(ECHO_DESC, "{\"i32\":1.}", "bad number");
    expect_reject(ECHO_DESC, "{\"i32\":+1}", "unexpected character");
    expect_reject(ECHO_DESC, "{'i32':1}", "expected a string key");
    expect_reject(ECHO_DESC, "{\"i32\":1,}", "expected a string key");
    expect_reject(ECHO_DESC, "{\"rep_i32\":[1,]}", "unexpected character");
    expect_reject(ECHO_DESC, "{\"message\":\"a\tb\"}", "control character");
    expect_reject(ECHO_DESC, "{\"message\":\"\\x\"}", "bad escape");
    expect_reject(ECHO_DESC, "{\"message\":\"\\u12\"}", "bad escape");
    expect_reject(ECHO_DESC, "{\"flag\":tru}", "unexpected character");
    expect_reject(ECHO_DESC, "[]", "expected a JSON object for cmicro.test.v1.EchoRequest");
    expect_reject(ECHO_DESC, "\"x\"", "got string");
    expect_reject(ECHO_DESC, "5", "got number");
    expect_reject(ECHO_DESC, " ", "unexpected end");
    expect_reject(ECHO_DESC, "\xef\xbb\xbf{}", "unexpected character");
}

static void
test_accepts(void)
{
    count_alloc ca;
    EchoRequest *r;

    /* Whitespace around, null at the top, escapes and bad UTF-8 decoded as Go does. */
    r = decode_echo(" \r\n\t{ \"message\" : \"\\u00e9\\ud83d\\ude00\\ud800x\\/\xff\" } \n", &ca);
    CHECK_EQ_STR(r->message, "\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbdx/\xef\xbf\xbd");
    protobuf_c_message_free_unpacked(&r->base, &ca.base);
    r = decode_echo("null", &ca);
    CHECK_EQ_STR(r->message, "");
    protobuf_c_message_free_unpacked(&r->base, &ca.base);
    {
        void *out = NULL;

        /* An empty body is the default message. */
        CHECK_EQ_INT(cm_codec_json.unmarshal(ECHO_DESC, NULL, 0, NULL, &out, NULL, 0), 0);
        CHECK_EQ_INT(((EchoRequest *)out)->i32, 0);
        protobuf_c_message_free_unpacked(out, NULL);
    }
    CHECK_EQ_INT(ca.live, 0);
}

static void
test_depth(void)
{
    cm_buf text = {0}, got = {0};
    char err[200];
    int i;

    /* Legacy nests itself: 99 levels pass, 101 do not. */
    for (i = 0; i < 101; i++) {
        CHECK_EQ_INT(cm_buf_append(&text, "{\"id\":\"x\",\"child\":", 18), 0);
    }
    CHECK_EQ_INT(cm_buf_append(&text, "null", 4), 0);
    for (i = 0; i < 101; i++) {
        CHECK_EQ_INT(cm_buf_append(&text, "}", 1), 0);
    }
    CHECK_EQ_INT(cm_buf_append(&text, "", 1), 0);
    expect_reject(LEGACY_DESC, (char *)text.data, "nested too deeply");
    /* Drop two levels from each end. */
    memmove(text.data, text.data + 36, text.len - 36);
    text.len -= 36;
    text.data[text.len - 3] = '\0';
    CHECK_EQ_INT(decode(LEGACY_DESC, (char *)text.data, &got, err, sizeof(err)), 0);
    cm_buf_free(&got);
    cm_buf_free(&text);

    /* Deep arrays inside a field hit the parser's limit, not the stack. */
    for (i = 0; i < 100000; i++) {
        CHECK_EQ_INT(cm_buf_append(&text, "[", 1), 0);
    }
    CHECK_EQ_INT(cm_buf_append(&text, "", 1), 0);
    expect_reject(ECHO_DESC, (char *)text.data, "nested too deeply");
    cm_buf_free(&text);
}

static void
test_proto2_presence(void)
{
    Legacy l = CMICRO__TEST__V1__LEGACY__INIT;
    Legacy child = CMICRO__TEST__V1__LEGACY__INIT;
    int32_t vals[] = {3, 4};
    cm_buf b = {0}, want, got = {0};
    char err[200];
    count_alloc ca;
    void *out = NULL;
    Legacy *d;

    /* Unset optionals (defaults included) are omitted; set ones appear even when zero. */
    l.id = "a";
    CHECK_EQ_INT(marshal_str(LEGACY_DESC, &l, &b), 0);
    CHECK_EQ_STR((char *)b.data, "{\"id\":\"a\"}\n");
    l.has_count = 1;
    l.count = 0;
    l.has_on = 1;
    l.label = "";
    l.has_ratio = 1;
    l.ratio = 0.5;
    child.id = "";
    l.child = &child;
    l.n_packed_vals = 2;
    l.packed_vals = vals;
    l.choice_case = CMICRO__TEST__V1__LEGACY__CHOICE_NUM;
    l.num = 0;
    CHECK_EQ_INT(marshal_str(LEGACY_DESC, &l, &b), 0);
    CHECK_EQ_STR((char *)b.data, "{\"id\":\"a\",\"count\":0,\"label\":\"\",\"on\":false,"
                                 "\"child\":{\"id\":\"\"},\"packed_vals\":[3,4],\"ratio\":0.5,"
                                 "\"num\":0}\n");
    want = pack_msg(&l.base);
    CHECK_EQ_INT(decode(LEGACY_DESC, (char *)b.data, &got, err, sizeof(err)), 0);
    CHECK(buf_eq(&want, &got));
    cm_buf_free(&want);
    cm_buf_free(&got);

    /* Decoding keeps the defaults of absent fields and sets has_ for present ones. */
    count_alloc_init(&ca);
    {
        static const char in[] = "{\"id\":\"\",\"blob\":\"\"}";

        CHECK_EQ_INT(cm_codec_json.unmarshal(LEGACY_DESC, (const uint8_t *)in, strlen(in),
                                             &ca.base, &out, err, sizeof(err)),
                     0);
    }
    d = out;
    CHECK_EQ_STR(d->id, "");
    CHECK_EQ_INT(d->has_count, 0);
    CHECK_EQ_INT(d->count, 7);
    CHECK_EQ_STR(d->label, "none");
    CHECK_EQ_INT(d->has_blob, 1);
    CHECK_EQ_INT(d->blob.len, 0);
    protobuf_c_message_free_unpacked(out, &ca.base);
    CHECK_EQ_INT(ca.live, 0);

    expect_reject(LEGACY_DESC, "{}", "required field cmicro.test.v1.Legacy.id not set");
    expect_reject(LEGACY_DESC, "{\"id\":null}", "required field");
    expect_reject(LEGACY_DESC, "{\"id\":\"a\",\"child\":{}}", "required field");
    cm_buf_free(&b);
}

/* Every allocation failing in turn gives CM_ENOMEM and frees the partial message. */
static void
test_out_of_memory(void)
{
    long n;
    int ok = 0;

    for (n = 0; !ok; n++) {
        count_alloc ca;
        void *out = NULL;
        int rc;

        count_alloc_init(&ca);
        ca.fail_at = n;
        rc = cm_codec_json.unmarshal(ECHO_DESC, (const uint8_t *)rich_json, strlen(rich_json),
                                     &ca.base, &out, NULL, 0);
        if (rc == 0) {
            protobuf_c_message_free_unpacked(out, &ca.base);
            ok = 1;
        } else {
            CHECK_EQ_INT(rc, CM_ENOMEM);
        }
        CHECK_EQ_INT(ca.live, 0);
        CHECK(n < 10000);
    }
    CHECK(n > 40);
}

static void
test_marshal_errors(void)
{
    EchoRequest r;
    Inner in = CMICRO__TEST__V1__INNER__INIT;
    cm_buf b = {0};

    /* A failed marshal leaves what was in the buffer before. */
    CHECK_EQ_INT(cm_buf_append(&b, "keep", 4), 0);
    cmicro__test__v1__echo_request__init(&r);
    r.message = "x";
    r.inner = (Inner *)&r; /* wrong type in a submessage */
    CHECK_EQ_INT(cm_codec_json.marshal(ECHO_DESC, &r, &b), CM_ECODEC);
    CHECK_EQ_INT(b.len, 4);
    CHECK_EQ_INT(cm_codec_json.marshal(ECHO_DESC, &in, &b), CM_ECODEC);
    CHECK_EQ_INT(cm_codec_json.marshal(ECHO_DESC, NULL, &b), CM_ECODEC);
    CHECK_EQ_INT(b.len, 4);
    cm_buf_free(&b);
}

static void
test_names(void)
{
    char buf[64];

    cm__json_lower_camel("foo_bar_baz", buf);
    CHECK_EQ_STR(buf, "fooBarBaz");
    cm__json_lower_camel("zz_last_declared", buf);
    CHECK_EQ_STR(buf, "zzLastDeclared");
    cm__json_lower_camel("rep_i32", buf);
    CHECK_EQ_STR(buf, "repI32");
    cm__json_lower_camel("a__b_1c", buf);
    CHECK_EQ_STR(buf, "aB1c");
    cm__json_go_camel("my_kind", buf);
    CHECK_EQ_STR(buf, "MyKind");
    cm__json_go_camel("_under", buf);
    CHECK_EQ_STR(buf, "XUnder");
    cm__json_go_camel("rep_i32", buf);
    CHECK_EQ_STR(buf, "RepI32");
    cm__json_go_camel("foo_1bar", buf);
    CHECK_EQ_STR(buf, "Foo_1Bar");
    cm__json_go_camel("fooBar", buf);
    CHECK_EQ_STR(buf, "FooBar");
}

int
main(void)
{
    RUN(test_exact_output);
    RUN(test_json_round_trip);
    RUN(test_map_order);
    RUN(test_go_float_format);
    RUN(test_string_escapes);
    RUN(test_jsonpb_inputs);
    RUN(test_name_precedence);
    RUN(test_go_writer_form);
    RUN(test_rejects);
    RUN(test_rejects_syntax);
    RUN(test_accepts);
    RUN(test_depth);
    RUN(test_proto2_presence);
    RUN(test_out_of_memory);
    RUN(test_marshal_errors);
    RUN(test_names);
    TEST_DONE();
}
