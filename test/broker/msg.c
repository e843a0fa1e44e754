/* The broker message as go-micro's JSON codec writes it: encoding byte for byte (keys sorted, HTML
 * and line-separator escapes, invalid UTF-8, base64), and decoding with Go's leniencies and
 * refusals. The byte-for-byte match with a real Go program is in the interop suite. */
#include "broker_int.h"
#include "test.h"

static char *
enc(const cm_md *h, const char *body, size_t len)
{
    cm_buf out = {0};
    CHECK_EQ_INT(cm_broker_msg_encode(h, (const uint8_t *)body, len, &out), 0);
    char *s = malloc(out.len + 1);
    memcpy(s, out.data, out.len);
    s[out.len] = '\0';
    cm_buf_free(&out);
    return s;
}

static void
test_encode(void)
{
    cm_md *h = cm_md_new();
    cm_md_set(h, "Micro-Topic", "events");
    cm_md_set(h, "Content-Type", "application/json");
    cm_md_set(h, "Micro-ID", "0e4c");
    char *s = enc(h, "hello", 5);
    CHECK_EQ_STR(s, "{\"Header\":{\"Content-Type\":\"application/json\",\"Micro-ID\":\"0e4c\","
                    "\"Micro-Topic\":\"events\"},\"Body\":\"aGVsbG8=\"}");
    free(s);
    cm_md_free(h);

    s = enc(NULL, "", 0);
    CHECK_EQ_STR(s, "{\"Header\":null,\"Body\":\"\"}");
    free(s);
    h = cm_md_new();
    s = enc(h, "ab", 2);
    CHECK_EQ_STR(s, "{\"Header\":{},\"Body\":\"YWI=\"}");
    free(s);

    /* Go's escapes: HTML characters, controls (\b and \f short since Go 1.22), U+2028/9, and
     * invalid UTF-8 as U+FFFD; valid multibyte text as is. */
    cm_md_set(h, "K",
              "<a&b>\"\\\t\b\f\x01\x7f"
              "\xc3\xa9\xe2\x80\xa8\xe2\x80\xa9\xff\xc3"
              "x");
    s = enc(h, "\x00\xff\xfe", 3);
    CHECK_EQ_STR(s, "{\"Header\":{\"K\":\"\\u003ca\\u0026b\\u003e\\\"\\\\\\t\\b\\f\\u0001\x7f"
                    "\xc3\xa9\\u2028\\u2029\\ufffd\\ufffdx\"},\"Body\":\"AP/+\"}");
    free(s);
    cm_md_free(h);

    /* Every byte escaped at its longest (6 bytes), and a key sorted before the others. */
    h = cm_md_new();
    char ctl[41], want[41 * 6 + 64] = "{\"Header\":{\"A\":\"";
    memset(ctl, 1, 40);
    ctl[40] = '\0';
    cm_md_set(h, "b", "<>");
    cm_md_set(h, "A", ctl);
    for (int i = 0; i < 40; i++) {
        strcat(want, "\\u0001");
    }
    strcat(want, "\",\"b\":\"\\u003c\\u003e\"},\"Body\":\"\"}");
    s = enc(h, "", 0);
    CHECK_EQ_STR(s, want);
    free(s);
    cm_md_free(h);
}

static int
dec(const char *json, cm_md **h, uint8_t **body, size_t *len)
{
    char err[128];
    int rc =
        cm_broker_msg_decode((const uint8_t *)json, strlen(json), h, body, len, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "   %s -> %s\n", json, err);
        CHECK(err[0] != '\0');
    }
    return rc;
}

/* Every byte value in each place of a group of four ("QUJD" otherwise): the alphabet's 64 decode
 * to their 6 bits there, every other byte is refused. CR, LF and '=' (skipped, padding) and the
 * bytes JSON escapes are left to the tests below. */
static void
test_base64_bytes(void)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int ok = 0, refused = 0;
    for (int at = 0; at < 4; at++) {
        for (int c = 1; c < 256; c++) {
            if (c < 0x20 || c == '"' || c == '\\' || c == '=') {
                continue;
            }
            char json[32];
            snprintf(json, sizeof(json), "{\"Body\":\"QUJD\"}");
            json[9 + at] = (char)c;
            cm_md *h = NULL;
            uint8_t *body = NULL;
            size_t len = 0;
            int rc =
                cm_broker_msg_decode((const uint8_t *)json, strlen(json), &h, &body, &len, NULL, 0);
            const char *in = c < 128 ? strchr(alphabet, c) : NULL;
            if (in == NULL) {
                CHECK_EQ_INT(rc, CM_ECODEC);
                refused++;
                continue;
            }
            uint32_t v = 0, vals[4] = {16, 20, 9, 3}; /* Q U J D */
            vals[at] = (uint32_t)(in - alphabet);
            for (int i = 0; i < 4; i++) {
                v = v << 6 | vals[i];
            }
            uint8_t want[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
            CHECK_EQ_INT(rc, 0);
            CHECK_EQ_INT(len, 3);
            CHECK(body != NULL && memcmp(body, want, 3) == 0);
            cm_md_free(h);
            free(body);
            ok++;
        }
    }
    CHECK_EQ_INT(ok, 4 * 64);
    CHECK_EQ_INT(refused, 4 * (255 - 31 - 3 - 64));
}

static void
test_decode(void)
{
    cm_md *h;
    uint8_t *body;
    size_t len;
    CHECK_EQ_INT(dec("{\"Header\":{\"Micro-Topic\":\"t\",\"A\":\"\\u003c\\ud83d\\ude00\"},"
                     "\"Body\":\"aGVs\\nbG8=\",\"Other\":[1,{}]}",
                     &h, &body, &len),
                 0);
    CHECK_EQ_STR(cm_md_get(h, "Micro-Topic"), "t");
    CHECK_EQ_STR(cm_md_get(h, "A"), "<\xf0\x9f\x98\x80");
    CHECK_EQ_INT(len, 5);
    CHECK(memcmp(body, "hello", 5) == 0);
    cm_md_free(h);
    free(body);

    /* Field names fold case, as Go's; null and absent fields leave them empty; null as a whole
     * is an empty message. */
    CHECK_EQ_INT(dec(" {\"header\":{\"x\":\"1\"},\"BODY\":null} \n", &h, &body, &len), 0);
    CHECK_EQ_STR(cm_md_get(h, "x"), "1");
    CHECK(body == NULL && len == 0);
    cm_md_free(h);
    CHECK_EQ_INT(dec("null", &h, &body, &len), 0);
    CHECK_EQ_INT(cm_md_count(h), 0);
    cm_md_free(h);
    CHECK_EQ_INT(dec("{\"Header\":null,\"Body\":\"\"}", &h, &body, &len), 0);
    CHECK(body == NULL && len == 0);
    cm_md_free(h);

    /* Whole groups first, then what follows them: line breaks, padding, a bad byte. */
    CHECK_EQ_INT(dec("{\"Body\":\"YWJjZGVm\\r\\nYWI=\"}", &h, &body, &len), 0);
    CHECK_EQ_INT(len, 8);
    CHECK(memcmp(body, "abcdefab", 8) == 0);
    cm_md_free(h);
    free(body);
    h = (cm_md *)1;
    CHECK_EQ_INT(dec("{\"Body\":\"YWJjZGVm$WI=\"}", &h, &body, &len), CM_ECODEC);
    CHECK(h == NULL && body == NULL && len == 0);

    /* CR and LF cannot be in cm_md: they become spaces rather than losing the message. */
    CHECK_EQ_INT(dec("{\"Header\":{\"a\":\"x\\r\\ny\"}}", &h, &body, &len), 0);
    CHECK_EQ_STR(cm_md_get(h, "a"), "x  y");
    cm_md_free(h);

    const char *bad[] = {"",
                         "{",
                         "[]",
                         "\"s\"",
                         "{\"Header\":[]}",
                         "{\"Header\":{\"a\":1}}",
                         "{\"Header\":{\"a\":null}}",
                         "{\"Body\":1}",
                         "{\"Body\":\"abc\"}",
                         "{\"Body\":\"ab=c\"}",
                         "{\"Body\":\"a===\"}",
                         "{\"Body\":\"YWI=YWI=\"}",
                         "{\"Body\":\"$$$$\"}",
                         "{} {}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        h = (cm_md *)1;
        CHECK_EQ_INT(dec(bad[i], &h, &body, &len), CM_ECODEC);
        CHECK(h == NULL && body == NULL && len == 0);
    }
    /* Round trip of every byte value. */
    uint8_t all[256];
    for (int i = 0; i < 256; i++) {
        all[i] = (uint8_t)i;
    }
    for (size_t n = 0; n <= 256; n += 85) {
        cm_buf out = {0};
        CHECK_EQ_INT(cm_broker_msg_encode(NULL, all, n, &out), 0);
        char err[64];
        CHECK_EQ_INT(cm_broker_msg_decode(out.data, out.len, &h, &body, &len, err, sizeof(err)), 0);
        CHECK_EQ_INT(len, n);
        CHECK(n == 0 || memcmp(body, all, n) == 0);
        cm_md_free(h);
        free(body);
        cm_buf_free(&out);
    }
}

/* The decoding into one allocation that the NATS broker uses: the caller's bytes first, then the
 * header and body in the same block, with cm_md_set's rules (a repeated key replaces the first's
 * value; no empty key, ':' in a key or CR/LF). */
static void
test_decode_block(void)
{
    typedef struct mine {
        char c;
        double d;
    } mine;
    const char *json = "{\"Header\":{\"A\":\"1\",\"b:c\":\"x\\ny\",\"a\":\"2\",\"\":\"e\"},"
                       "\"Body\":\"aGVs\\nbG8=\"}";
    cm__broker_dmsg m;
    char err[128];
    CHECK_EQ_INT(cm__broker_msg_decode_block((const uint8_t *)json, strlen(json), sizeof(mine), &m,
                                             err, sizeof(err)),
                 0);
    mine *my = m.block;
    CHECK(my->c == 0 && my->d == 0);
    const uint8_t *lo = m.block, *hi = lo + 4096;
    CHECK((const uint8_t *)m.header >= lo + sizeof(mine) && (const uint8_t *)m.header < hi);
    CHECK(m.body >= lo + sizeof(mine) && m.body < hi);
    CHECK_EQ_INT(m.body_len, 5);
    CHECK(memcmp(m.body, "hello", 5) == 0);
    CHECK_EQ_INT(cm_md_count(m.header), 3);
    const char *k, *v;
    cm_md_at(m.header, 0, &k, &v);
    CHECK_EQ_STR(k, "A");
    CHECK_EQ_STR(v, "2");
    CHECK_EQ_STR(cm_md_get(m.header, "b c"), "x y");
    CHECK_EQ_STR(cm_md_get(m.header, " "), "e");
    free(m.block);

    /* Empty: no header entries, no body. */
    CHECK_EQ_INT(cm__broker_msg_decode_block((const uint8_t *)"null", 4, 0, &m, NULL, 0), 0);
    CHECK(m.block != NULL && m.body == NULL && m.body_len == 0);
    CHECK_EQ_INT(cm_md_count(m.header), 0);
    free(m.block);

    /* A failure leaves nothing. */
    const char *bad = "{\"Header\":{\"a\":\"b\"},\"Body\":\"YWI\"}";
    memset(&m, 0xff, sizeof(m));
    CHECK_EQ_INT(
        cm__broker_msg_decode_block((const uint8_t *)bad, strlen(bad), 8, &m, err, sizeof(err)),
        CM_ECODEC);
    CHECK(m.block == NULL && m.header == NULL && m.body == NULL && m.body_len == 0);
    CHECK_EQ_STR(err, "Body is not standard base64");
}

int
main(void)
{
    RUN(test_encode);
    RUN(test_decode);
    RUN(test_base64_bytes);
    RUN(test_decode_block);
    TEST_DONE();
}
