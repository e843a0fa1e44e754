/* libFuzzer harness: HTTP requests as the server reads them (transport/http.c over
 * http_parser, the read buffer of http_server.c), then what the framework's server does with a
 * request's headers and body. Chunked bodies, trailers, pipelined requests, limits and reads
 * cut anywhere: the whole input and the same input cut in three reads must parse alike. Each
 * request's headers are also written back as a reply header block (cm__http_put_headers),
 * which must parse as a response. */
#include "echo.pb-c.h"
#include "framework_int.h"
#include "http_common.h"

#include <strings.h>

/* The reply header block a server would write for a message with these headers. */
static void
check_reply_headers(const cm_msg *m)
{
    cm__http_buf b = {0};
    static const char status[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n";
    log_str(&b, status, sizeof(status) - 1);
    FUZZ_CHECK(cm__http_put_headers(&b, m,
                                    CM__HTTP_SKIP_HOST | CM__HTTP_SKIP_CLEN | CM__HTTP_SKIP_TE |
                                        CM__HTTP_SKIP_CONN) == 0);
    log_str(&b, "\r\n", 2);
    cm__http_in in;
    cm__http_in_init(&in, HTTP_RESPONSE, SIZE_MAX / 4, 0);
    int complete = 0;
    ptrdiff_t n = cm__http_in_execute(&in, b.p, b.len, &complete, 1);
    if (n < 0 || !complete || (size_t)n != b.len) {
        fprintf(stderr, "unparsable reply header block (%s):\n%.*s\n", cm__http_in_error(&in),
                (int)b.len, b.p);
        FUZZ_CHECK(!"the header writer made a block the parser refuses");
    }
    cm__http_in_free(&in);
    cm__http_buf_free(&b);
}

static const char *
header2(const cm_msg *m, const char *a, const char *b)
{
    const char *v = cm_msg_header(m, a);
    return v && v[0] ? v : cm_msg_header(m, b);
}

/* framework/server.c's on_request, up to the handler: routing headers, codec, body. */
static void
serve(const cm_msg *req)
{
    const char *ct = cm_msg_header(req, "Content-Type");
    const char *conn = cm_msg_header(req, "Connection");
    int close_after = conn != NULL && strcasecmp(conn, "close") == 0;
    (void)close_after;
    const char *ep = header2(req, "Micro-Endpoint", "X-Micro-Endpoint");
    if (ep == NULL || ep[0] == '\0') {
        ep = header2(req, "Micro-Method", "X-Micro-Method");
    }
    (void)header2(req, "Micro-Service", "X-Micro-Service");
    const char *to = cm_msg_header(req, "Timeout");
    if (to != NULL && to[0] != '\0') {
        char *end = NULL;
        (void)strtoull(to, &end, 10);
    }
    /* Metadata: canonical keys of the headers that are not the framework's. */
    for (size_t i = 0; i < req->nhdrs; i++) {
        char key[256];
        if (!cm__is_framework_header(req->hdrs[i].key)) {
            (void)cm__canonical_key(req->hdrs[i].key, key, sizeof(key));
        }
    }
    const cm_codec_ops *codec = cm_codec_find(ct && ct[0] ? ct : CM_CT_PROTOBUF);
    if (codec == NULL) {
        return;
    }
    cm__arena arena;
    cm__arena_init(&arena);
    void *msg = NULL;
    char reason[160] = "";
    int rc = codec->unmarshal(&cmicro__test__v1__echo_request__descriptor, req->body,
                              req->body_len, &arena.pbc, &msg, reason, sizeof(reason));
    FUZZ_CHECK(rc == 0 || rc == CM_ECODEC);
    if (rc == 0) {
        cm_buf out = {0};
        FUZZ_CHECK(codec->marshal(&cmicro__test__v1__echo_request__descriptor, msg, &out) == 0);
        cm_buf_free(&out);
    }
    cm__arena_fini(&arena);
}

static void
on_request(cm__http_in *in, cm__http_buf *log, uint64_t h)
{
    (void)h;
    log_msg(log, &in->msg);
    check_reply_headers(&in->msg);
    serve(&in->msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    http_check_splits(HTTP_REQUEST, 0, 0, data, size, on_request);
    return 0;
}
