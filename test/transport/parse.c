/* The HTTP transport's message parser and writers, without sockets: every split of a request
 * parses identically, limits stop the parser, header writing follows go-micro's rules. */
#include "http_int.h"
#include "test.h"

#include <stdarg.h>

/* Renders a parsed message as text, so that two parses compare with one strcmp. */
static char *
dump(const cm_msg *m)
{
    cm__http_buf b = {0};
    for (size_t i = 0; i < m->nhdrs; i++) {
        CHECK(cm__http_buf_append(&b, m->hdrs[i].key, strlen(m->hdrs[i].key)) == 0);
        CHECK(cm__http_buf_append(&b, "=", 1) == 0);
        CHECK(cm__http_buf_append(&b, m->hdrs[i].val, strlen(m->hdrs[i].val)) == 0);
        CHECK(cm__http_buf_append(&b, "\n", 1) == 0);
    }
    CHECK(cm__http_buf_append(&b, "body=", 5) == 0);
    CHECK(cm__http_buf_append(&b, m->body, m->body_len) == 0);
    CHECK(cm__http_buf_append(&b, "", 1) == 0);
    return b.p;
}

/* Feeds the pieces of data cut at the given offsets; returns the dumps of the messages. */
static int
parse_pieces(cm__http_in *in, const char *data, size_t len, const size_t *cuts, size_t ncuts,
             char **out, int maxout, int status_header)
{
    /* Bytes are kept like a connection keeps them: what the parser did not take stays. */
    char buf[4096];
    size_t have = 0, from = 0;
    int nmsg = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : len;
        CHECK(have + (to - from) <= sizeof(buf));
        memcpy(buf + have, data + from, to - from);
        have += to - from;
        from = to;
        size_t pos = 0;
        while (pos < have) {
            int complete;
            ptrdiff_t n = cm__http_in_execute(in, buf + pos, have - pos, &complete, status_header);
            if (n < 0) {
                return (int)n;
            }
            pos += (size_t)n;
            if (complete) {
                CHECK(nmsg < maxout);
                out[nmsg++] = dump(&in->msg);
            }
        }
        have = 0;
    }
    return nmsg;
}

static const char two_requests[] = "POST / HTTP/1.1\r\n"
                                   "Host: 127.0.0.1:8080\r\n"
                                   "User-Agent: Go-http-client/1.1\r\n"
                                   "Transfer-Encoding: chunked\r\n"
                                   "Content-Type: application/json\r\n"
                                   "Micro-Endpoint: Greeter.Hello\r\n"
                                   "X-Empty:\r\n"
                                   "X-Dup: one\r\n"
                                   "X-Dup: two\r\n"
                                   "\r\n"
                                   "5\r\nhello\r\n"
                                   "7;ext=1\r\n, world\r\n"
                                   "0\r\n"
                                   "X-Trailer: dropped\r\n"
                                   "\r\n"
                                   "PUT /any/path?q=1 HTTP/1.1\r\n"
                                   "host: x\r\n"
                                   "content-length: 3\r\n"
                                   "\r\n"
                                   "abc";

static const char *expect_first = "Host=127.0.0.1:8080\n"
                                  "User-Agent=Go-http-client/1.1\n"
                                  "Transfer-Encoding=chunked\n"
                                  "Content-Type=application/json\n"
                                  "Micro-Endpoint=Greeter.Hello\n"
                                  "X-Empty=\n"
                                  "X-Dup=one\n"
                                  "X-Dup=two\n"
                                  "body=hello, world";
/* A request that is not a POST carries its method and target as pseudo headers. */
static const char *expect_second =
    "host=x\ncontent-length=3\n:method=PUT\n:path=/any/path?q=1\nbody=abc";

static void
check_two(char **got, int n)
{
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(got[0], expect_first);
    CHECK_EQ_STR(got[1], expect_second);
    free(got[0]);
    free(got[1]);
}

static void
test_every_split(void)
{
    size_t len = sizeof(two_requests) - 1;
    cm__http_in in;
    char *got[4];

    cm__http_in_init(&in, HTTP_REQUEST, 65536, 1 << 20);
    check_two(got, parse_pieces(&in, two_requests, len, NULL, 0, got, 4, 0));
    cm__http_in_free(&in);

    /* One cut anywhere, on a fresh parser each time and on one parser kept across all. */
    cm__http_in kept;
    cm__http_in_init(&kept, HTTP_REQUEST, 65536, 1 << 20);
    for (size_t i = 1; i < len; i++) {
        cm__http_in_init(&in, HTTP_REQUEST, 65536, 1 << 20);
        check_two(got, parse_pieces(&in, two_requests, len, &i, 1, got, 4, 0));
        cm__http_in_free(&in);
        check_two(got, parse_pieces(&kept, two_requests, len, &i, 1, got, 4, 0));
    }
    /* Byte by byte. */
    size_t cuts[sizeof(two_requests)];
    for (size_t i = 0; i + 1 < len; i++) {
        cuts[i] = i + 1;
    }
    check_two(got, parse_pieces(&kept, two_requests, len, cuts, len - 1, got, 4, 0));
    /* Two cuts, a stride apart, everywhere. */
    for (size_t i = 1; i + 7 < len; i += 3) {
        size_t c2[2] = {i, i + 7};
        check_two(got, parse_pieces(&kept, two_requests, len, c2, 2, got, 4, 0));
    }
    cm__http_in_free(&kept);
}

/* A message parses alike whole and cut anywhere, including header names that only start with
 * Transfer-Encoding, which http_parser takes for one. */
static void
test_whole_and_cut_agree(void)
{
    static const char *const msgs[] = {
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encodingx: y\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding-X: chunked\r\nContent-Length: 1\r\n\r\nz",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTRANSFER-ENCODINGS: gzip\r\n\r\nhi",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nX-Transfer-Encoding: y\r\n\r\nabc",
    };
    for (size_t m = 0; m < sizeof(msgs) / sizeof(msgs[0]); m++) {
        size_t len = strlen(msgs[m]);
        int rsp = msgs[m][0] == 'H';
        enum http_parser_type type = rsp ? HTTP_RESPONSE : HTTP_REQUEST;
        cm__http_in in;
        char *got[2];
        cm__http_in_init(&in, type, 65536, 1 << 20);
        int whole = parse_pieces(&in, msgs[m], len, NULL, 0, got, 2, rsp);
        cm__http_in_free(&in);
        for (int i = 0; i < whole; i++) {
            free(got[i]);
        }
        CHECK_EQ_INT(whole, m == 3 ? 1 : CM_EPROTO);
        for (size_t cut = 1; cut < len; cut++) {
            cm__http_in_init(&in, type, 65536, 1 << 20);
            int n = parse_pieces(&in, msgs[m], len, &cut, 1, got, 2, rsp);
            cm__http_in_free(&in);
            for (int i = 0; i < n; i++) {
                free(got[i]);
            }
            CHECK_EQ_INT(n, whole);
        }
    }
}

static void
test_limits(void)
{
    cm__http_in in;
    char *got[2];
    char big[2048];
    int n;

    /* The header limit counts the whole block: request line, keys, values. */
    n = snprintf(big, sizeof(big), "POST / HTTP/1.1\r\nX-Long: %0300d\r\n\r\n", 0);
    cm__http_in_init(&in, HTTP_REQUEST, 300, 1000);
    CHECK_EQ_INT(parse_pieces(&in, big, (size_t)n, NULL, 0, got, 2, 0), CM_ETOOBIG);
    CHECK_EQ_INT(in.limit, 431);
    cm__http_in_free(&in);
    cm__http_in_init(&in, HTTP_REQUEST, 400, 1000);
    CHECK_EQ_INT(parse_pieces(&in, big, (size_t)n, NULL, 0, got, 2, 0), 1);
    free(got[0]);
    cm__http_in_free(&in);

    /* Content-Length over the body limit is refused before any body byte. */
    const char *cl = "POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n";
    cm__http_in_init(&in, HTTP_REQUEST, 1000, 1000);
    CHECK_EQ_INT(parse_pieces(&in, cl, strlen(cl), NULL, 0, got, 2, 0), CM_ETOOBIG);
    CHECK_EQ_INT(in.limit, 413);
    CHECK_EQ_INT(in.limit_size, 1001);
    CHECK_EQ_INT(in.limit_chunked, 0);
    cm__http_in_free(&in);

    /* Chunks are summed as they arrive. */
    const char *ch = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "4\r\nabcd\r\n4\r\nefgh\r\n";
    cm__http_in_init(&in, HTTP_REQUEST, 1000, 7);
    CHECK_EQ_INT(parse_pieces(&in, ch, strlen(ch), NULL, 0, got, 2, 0), CM_ETOOBIG);
    CHECK_EQ_INT(in.limit, 413);
    CHECK_EQ_INT(in.limit_size, 8);
    CHECK_EQ_INT(in.limit_chunked, 1);
    cm__http_in_free(&in);
    cm__http_in_init(&in, HTTP_REQUEST, 1000, 8);
    CHECK_EQ_INT(parse_pieces(&in, ch, strlen(ch), NULL, 0, got, 2, 0), 0);
    cm__http_in_free(&in);

    /* Malformed input is a protocol error, not a limit. */
    const char *bad = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    cm__http_in_init(&in, HTTP_REQUEST, 1000, 1000);
    CHECK_EQ_INT(parse_pieces(&in, bad, strlen(bad), NULL, 0, got, 2, 0), CM_EPROTO);
    CHECK_EQ_INT(in.limit, 0);
    CHECK_EQ_STR(cm__http_in_error(&in), "invalid character in chunk size header");
    cm__http_in_free(&in);
}

static void
test_responses(void)
{
    cm__http_in in;
    char *got[2];

    /* A non-200 status becomes the ":status" pseudo header, a 200 does not. */
    const char *r404 = "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!";
    cm__http_in_init(&in, HTTP_RESPONSE, 1000, 1000);
    CHECK_EQ_INT(parse_pieces(&in, r404, strlen(r404), NULL, 0, got, 2, 1), 1);
    CHECK_EQ_STR(got[0], "Content-Length=5\n:status=404\nbody=nope!");
    CHECK_EQ_STR(cm_msg_header(&in.msg, ":STATUS"), "404");
    free(got[0]);
    const char *r200 = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    CHECK_EQ_INT(parse_pieces(&in, r200, strlen(r200), NULL, 0, got, 2, 1), 1);
    CHECK_EQ_STR(got[0], "Content-Length=0\nbody=");
    CHECK(in.keep_alive);
    free(got[0]);
    cm__http_in_free(&in);

    /* A body delimited by the close ends at EOF (len 0). */
    const char *eof = "HTTP/1.1 200 OK\r\n\r\nuntil close";
    cm__http_in_init(&in, HTTP_RESPONSE, 1000, 1000);
    CHECK_EQ_INT(parse_pieces(&in, eof, strlen(eof), NULL, 0, got, 2, 1), 0);
    int complete;
    CHECK_EQ_INT(cm__http_in_execute(&in, "", 0, &complete, 1), 0);
    CHECK(complete);
    CHECK_EQ_INT(in.msg.body_len, 11);
    cm__http_in_free(&in);

    /* EOF inside a Content-Length body is an error. */
    const char *cut = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    cm__http_in_init(&in, HTTP_RESPONSE, 1000, 1000);
    CHECK_EQ_INT(parse_pieces(&in, cut, strlen(cut), NULL, 0, got, 2, 1), 0);
    CHECK(cm__http_in_execute(&in, "", 0, &complete, 1) < 0);
    CHECK(!complete);
    cm__http_in_free(&in);
}

static void
test_writers(void)
{
    cm_hdr h[] = {
        {"Content-Type", "application/json"},
        {"host", "evil"},
        {"content-length", "99"},
        {"Transfer-Encoding", "chunked"},
        {"Connection", "close"},
        {"user-agent", "x"},
        {"Trailer", "x"},
        {"X-Multi", "a\r\nInjected: yes\nb"},
        {"X-Ctl", "\x7f\x01\tx\xff"}, /* what a strict parser refuses goes out as spaces */
        {"Bad Key", "v"},
        {":status", "404"},
        {"", "v"},
        /* http_parser would take it for Transfer-Encoding (found by test/fuzz http-request) */
        {"Transfer-Encoding-Hint", "x"},
        {"X-Transfer-Encoding", "kept"},
    };
    cm_msg m = {h, sizeof(h) / sizeof(h[0]), NULL, 0};
    cm__http_buf b = {0};
    CHECK(cm__http_put_headers(&b, &m,
                               CM__HTTP_SKIP_HOST | CM__HTTP_SKIP_CLEN | CM__HTTP_SKIP_TE |
                                   CM__HTTP_SKIP_UA | CM__HTTP_SKIP_TRAILER) == 0);
    CHECK(cm__http_buf_append(&b, "", 1) == 0);
    CHECK_EQ_STR(b.p, "Content-Type: application/json\r\nConnection: close\r\n"
                      "X-Multi: a  Injected: yes b\r\nX-Ctl:   \tx\xff\r\n"
                      "X-Transfer-Encoding: kept\r\n");
    b.len = 0;
    CHECK(cm__http_put_u64(&b, 0) == 0);
    CHECK(cm__http_put_u64(&b, 18446744073709551615ull) == 0);
    CHECK(cm__http_buf_append(&b, "", 1) == 0);
    CHECK_EQ_STR(b.p, "018446744073709551615");
    cm__http_buf_free(&b);
}

static void
test_addresses(void)
{
    char host[64];
    int port, br;
    CHECK_EQ_INT(cm__http_split_addr("127.0.0.1:8080", host, sizeof(host), &port, &br), 0);
    CHECK_EQ_STR(host, "127.0.0.1");
    CHECK_EQ_INT(port, 8080);
    CHECK_EQ_INT(br, 0);
    CHECK_EQ_INT(cm__http_split_addr("[::1]:0", host, sizeof(host), &port, &br), 0);
    CHECK_EQ_STR(host, "::1");
    CHECK_EQ_INT(port, 0);
    CHECK_EQ_INT(br, 1);
    CHECK_EQ_INT(cm__http_split_addr(":65535", host, sizeof(host), &port, &br), 0);
    CHECK_EQ_STR(host, "");
    CHECK_EQ_INT(port, 65535);
    const char *bad[] = {"",       "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:8x",
                         "::1:80", "[::1:80", "host:-1",  "h:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(cm__http_split_addr(bad[i], host, sizeof(host), &port, &br), CM_EADDR);
    }
    struct sockaddr_storage ss;
    char out[64];
    CHECK_EQ_INT(cm__http_ip_addr("10.1.2.3", 77, &ss), 0);
    CHECK_EQ_INT(cm__http_format_addr((struct sockaddr *)&ss, out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "10.1.2.3:77");
    CHECK_EQ_INT(cm__http_ip_addr("fe80::1", 80, &ss), 0);
    CHECK_EQ_INT(cm__http_format_addr((struct sockaddr *)&ss, out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "[fe80::1]:80");
    CHECK_EQ_INT(cm__http_format_addr((struct sockaddr *)&ss, out, 8), CM_EINVAL);
    CHECK_EQ_INT(cm__http_ip_addr("example.com", 80, &ss), CM_EADDR);
}

static void
set_flag(void *arg)
{
    (*(int *)arg)++;
}

static void
test_generic(void)
{
    cm_transport_opts o;
    cm_transport_opts_init(&o);
    CHECK_EQ_INT(o.max_header_bytes, 65536);
    CHECK_EQ_INT(o.max_body_bytes, 4 * 1024 * 1024);
    CHECK_EQ_INT(o.pool_size, 100);
    CHECK_EQ_INT(o.pool_ttl_ms, 60000);
    CHECK_EQ_INT(o.dial_timeout_ms, 5000);

    cm_hdr h[] = {{"Micro-Id", "1"}, {"micro-id", "2"}, {"X", ""}};
    cm_msg m = {h, 3, NULL, 0};
    CHECK_EQ_STR(cm_msg_header(&m, "MICRO-ID"), "1");
    CHECK_EQ_STR(cm_msg_header(&m, "x"), "");
    CHECK(cm_msg_header(&m, "Micro") == NULL);

    cm_loop *cl;
    CHECK_EQ_INT(cm_loop_new(&cl), 0);
    uv_loop_t *loop = cm_loop_uv(cl);
    cm_transport *t = NULL;
    CHECK_EQ_INT(cm_transport_new(cl, "nope", NULL, &t), CM_ENOTFOUND);
    CHECK_EQ_INT(cm_transport_new(cl, NULL, NULL, &t), 0);
    CHECK_EQ_STR(cm_transport_name(t), "http");
    int done = 0;
    cm_transport_close(t, set_flag, &done);
    CHECK_EQ_INT(done, 0); /* never from inside the call */
    while (!done) {
        uv_run(loop, UV_RUN_ONCE);
    }
    CHECK_EQ_INT(done, 1);
    cm_loop_free(cl);
}

/* A whole message in one buffer against the same bytes fed one at a time: same messages, same
 * errors, same limits, same keep-alive. */
static void
same_as_parser(const char *msg, size_t len, enum http_parser_type type, size_t max_hdr,
               size_t max_body)
{
    cm__http_in whole, bytes;
    char *a[4] = {0}, *b[4] = {0};
    size_t cuts[4096];
    CHECK(len < sizeof(cuts));
    for (size_t i = 0; i + 1 < len; i++) {
        cuts[i] = i + 1;
    }
    int sh = type == HTTP_RESPONSE;
    cm__http_in_init(&whole, type, max_hdr, max_body);
    cm__http_in_init(&bytes, type, max_hdr, max_body);
    int na = parse_pieces(&whole, msg, len, NULL, 0, a, 4, sh);
    int nb = parse_pieces(&bytes, msg, len, cuts, len ? len - 1 : 0, b, 4, sh);
    if (na != nb) {
        fprintf(stderr, "whole and byte-wise parses differ on: %.*s\n", (int)len, msg);
    }
    CHECK_EQ_INT(na, nb);
    for (int i = 0; i < na && i < nb; i++) {
        CHECK_EQ_STR(a[i], b[i]);
    }
    for (int i = 0; i < 4; i++) {
        free(a[i]);
        free(b[i]);
    }
    CHECK_EQ_INT(whole.limit, bytes.limit);
    if (na > 0) {
        CHECK_EQ_INT(whole.keep_alive, bytes.keep_alive);
        CHECK_EQ_INT(whole.parser.status_code, bytes.parser.status_code);
    }
    cm__http_in_free(&whole);
    cm__http_in_free(&bytes);
}

#define GM_REQ                                                                                     \
    "POST / HTTP/1.1\r\n"                                                                          \
    "Host: 127.0.0.1:8080\r\n"                                                                     \
    "User-Agent: Go-http-client/1.1\r\n"                                                           \
    "Content-Length: 5\r\n"                                                                        \
    "Accept: application/protobuf\r\n"                                                             \
    "Content-Type: application/protobuf\r\n"                                                       \
    "Micro-Endpoint: Bench.Echo\r\n"                                                               \
    "Micro-Id: 1\r\n"                                                                              \
    "Micro-Method: Bench.Echo\r\n"                                                                 \
    "Micro-Service: bench\r\n"                                                                     \
    "Timeout: 5000000000\r\n"                                                                      \
    "\r\n"                                                                                         \
    "\n\003abc"

static void
test_whole_and_bytewise(void)
{
    static const char pipelined[] = GM_REQ GM_REQ;
    static const char *const requests[] = {
        GM_REQ,
        pipelined,
        "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST / HTTP/1.1\r\ncontent-length: 3\r\nX-Utf8: \xc3\xa9t\xc3\xa9\r\n\r\nabc",
        "POST / HTTP/1.1\r\nX-Tab: a\tb\r\nX-Ows:  \t v\r\nContent-Length: 1\r\n\r\nz",
        "POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz",
        "POST / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
        "POST / HTTP/1.1\r\nProxy-Connection: close\r\n\r\n",
        "POST / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nX-Empty:\r\nX-B: b\r\n\r\n",
        "POST / HTTP/1.1\r\nX-Trailing: b \r\n\r\n",
        "POST / HTTP/1.1\r\nX-Ctl: a\001b\r\n\r\n",
        "POST / HTTP/1.1\r\nX-Del: a\177b\r\n\r\n",
        "POST / HTTP/1.1\r\nX-Cr: a\rb\r\n\r\n",
        "POST / HTTP/1.1\r\nX Space: b\r\n\r\n",
        "POST / HTTP/1.1\r\n: novalue\r\n\r\n",
        "POST / HTTP/1.1\r\nX-Fold: a\r\n  b\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
        "POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\nab",
        "POST / HTTP/1.1\r\nContent-Length: 2x\r\n\r\nab",
        "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\nab",
        "POST / HTTP/1.1\nHost: x\n\n",
        "POST /path HTTP/1.1\r\nContent-Length: 1\r\n\r\nz",
        "POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nz",
        "GET / HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        same_as_parser(requests[i], strlen(requests[i]), HTTP_REQUEST, 65536, 1 << 20);
    }
    /* The header limit at its edge, and the body limit at its edge. */
    const char *edge = "POST / HTTP/1.1\r\nX-A: 0123456789\r\nContent-Length: 4\r\n\r\nabcd";
    for (size_t max = 40; max < 80; max++) {
        same_as_parser(edge, strlen(edge), HTTP_REQUEST, max, 1000);
    }
    for (size_t max = 2; max < 6; max++) {
        same_as_parser(edge, strlen(edge), HTTP_REQUEST, 1000, max);
    }
    static const char *const responses[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: application/protobuf\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nMicro-Error: {\"code\":500}\r\n\r\n",
        /* Two responses back to back in one buffer. */
        ("HTTP/1.1 200 Fine by me\r\nContent-Length: 1\r\n\r\nz"
         "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny"),
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nz",
        "HTTP/1.1 200 OK\r\nX-Ctl: \x02\r\nContent-Length: 1\r\n\r\nz",
        "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nz",
    };
    for (size_t i = 0; i < sizeof(responses) / sizeof(responses[0]); i++) {
        same_as_parser(responses[i], strlen(responses[i]), HTTP_RESPONSE, 65536, 1 << 20);
    }
}

/* ---- the lent read buffer ---- */

/* One read into the lent buffer that leaves `left` bytes unparsed, then those bytes parsed from
 * the connection's own buffer. Returns 1 when the leftover needed a new allocation. */
static int
lend_cycle(cm__http_rbuf *rb, char *shared, size_t cap, size_t left)
{
    uv_buf_t b;
    cm__http_rbuf_lend(rb, shared, cap, &b);
    CHECK(rb->borrowed && b.base == shared && b.len == cap);
    memset(b.base, 'x', left + 10);
    cm__http_rbuf_filled(rb, left + 10, b.len);
    rb->pos = 10; /* the parser took 10 bytes */
    char *spare = rb->spare;
    CHECK_EQ_INT(cm__http_rbuf_settle(rb), 0);
    CHECK(!rb->borrowed && rb->len - rb->pos == left && rb->p != shared);
    CHECK(rb->p[0] == 'x' && rb->p[left - 1] == 'x');
    int fresh = rb->p != spare;
    rb->pos = rb->len; /* parsed later (on_idle, or after the reply) */
    cm__http_rbuf_drained(rb);
    CHECK(rb->p == NULL && rb->spare != NULL);
    return fresh;
}

/* A connection that keeps having a few bytes left allocates once per size it grows to, not once
 * per read; with nothing left it holds no more than its spare; more than 4 KiB waiting unparsed
 * makes the next read append to its own buffer instead of borrowing. */
static void
test_rbuf_lend(void)
{
    enum { CAP = 64 * 1024 };
    char *shared = malloc(CAP);
    CHECK(shared != NULL);
    cm__http_rbuf rb = {0};
    int fresh = 0;
    for (int i = 0; i < 50; i++) {
        fresh += lend_cycle(&rb, shared, CAP, 100);
    }
    CHECK_EQ_INT(fresh, 1);
    fresh = 0;
    for (int i = 0; i < 50; i++) {
        fresh += lend_cycle(&rb, shared, CAP, 700 + (size_t)(i % 2) * 2000);
    }
    CHECK_EQ_INT(fresh, 2); /* 700, then 2,700: the spare grows twice */
    /* A read that leaves nothing: the spare of at most 4 KiB stays, nothing else. */
    uv_buf_t b;
    cm__http_rbuf_lend(&rb, shared, CAP, &b);
    cm__http_rbuf_filled(&rb, 10, b.len);
    rb.pos = rb.len;
    CHECK_EQ_INT(cm__http_rbuf_settle(&rb), 0);
    CHECK(rb.p == NULL && rb.cap == 0 && rb.spare != NULL && rb.spare_cap <= 4096);
    /* 5,000 bytes left: the next read does not borrow, it appends. */
    cm__http_rbuf_lend(&rb, shared, CAP, &b);
    memset(b.base, 'y', 5000);
    cm__http_rbuf_filled(&rb, 5000, b.len);
    CHECK_EQ_INT(cm__http_rbuf_settle(&rb), 0);
    cm__http_rbuf_lend(&rb, shared, CAP, &b);
    CHECK(!rb.borrowed && b.base == rb.p + 5000);
    cm__http_rbuf_filled(&rb, 0, b.len);
    CHECK_EQ_INT(cm__http_rbuf_settle(&rb), 0);
    CHECK(rb.len == 5000 && rb.p[4999] == 'y');
    cm__http_rbuf_free(&rb);
    free(shared);
}

int
main(void)
{
    RUN(test_every_split);
    RUN(test_whole_and_cut_agree);
    RUN(test_limits);
    RUN(test_responses);
    RUN(test_whole_and_bytewise);
    RUN(test_writers);
    RUN(test_addresses);
    RUN(test_generic);
    RUN(test_rbuf_lend);
    TEST_DONE();
}
