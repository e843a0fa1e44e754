/* libFuzzer harness: a server's streams (framework/stream*.c over the transport's stream mode in
 * transport/http/http_server.c) on a real loopback connection. A cm_server serves Fuzz.Echo, a
 * bidi stream handler on raw bytes that answers every message it receives; the input is a
 * client's byte stream (a first request that opens the stream, then messages, EOS, messages for
 * other stream ids, unary calls, garbage), written in pieces whose sizes come from the input's
 * hash with the loop turning between them, then a half-close. Checked: no crash or sanitizer
 * report; what comes back parses as HTTP responses; the server closes the connection by itself;
 * no call stays in flight and no connection is left. */
#include "fuzz.h"
#include "http_int.h"

#include <cmicro/cmicro.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static cm_loop *loop;
static cm_server *srv;
static int port;

static int
echo(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    for (;;) {
        void *m;
        int rc = cm_stream_recv(st, &m);
        if (rc == CM_EOF) {
            return 0;
        }
        if (rc < 0) {
            return rc;
        }
        rc = cm_stream_send(st, m);
        cm_message_free(NULL, m);
        if (rc < 0) {
            return rc;
        }
    }
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cm_log_set_level(CM_LOG_OFF);
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.address = "127.0.0.1:0";
    o.workers = 2;
    o.transport_opts.max_header_bytes = 4096;
    o.transport_opts.max_body_bytes = 8192;
    cm_handler h = {"Fuzz.Echo", NULL, NULL, echo, CM_HANDLER_STREAM, NULL, NULL, NULL};
    if (cm_loop_new(&loop) < 0 || cm_server_new(loop, &o, &srv) < 0 ||
        cm_server_handle(srv, &h, NULL) < 0 || cm_server_start(srv) < 0) {
        abort();
    }
    port = atoi(strrchr(cm_server_address(srv), ':') + 1);
    return 0;
}

static void
turn(int n)
{
    for (int i = 0; i < n; i++) {
        uv_run(cm_loop_uv(loop), UV_RUN_NOWAIT);
    }
}

/* Reads what the server sent so far into out; 1 once it closed. */
static int
drain(int fd, cm__http_buf *out)
{
    char b[4096];
    for (;;) {
        ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (n > 0) {
            FUZZ_CHECK(cm__http_buf_append(out, b, (size_t)n) == 0);
            continue;
        }
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

static void
check_responses(const cm__http_buf *got)
{
    cm__http_in in;
    cm__http_in_init(&in, HTTP_RESPONSE, 1 << 20, 1 << 20);
    size_t pos = 0;
    while (pos < got->len) {
        int complete = 0;
        ptrdiff_t n = cm__http_in_execute(&in, got->p + pos, got->len - pos, &complete, 1);
        FUZZ_CHECK(n >= 0);
        pos += (size_t)n;
        if (!complete) {
            break;
        }
    }
    cm__http_in_free(&in);
}

static int
client_connect(void)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int tries = 0; tries < 100; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        FUZZ_CHECK(fd >= 0);
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            return fd;
        }
        close(fd);
        turn(1);
        usleep(10000);
    }
    FUZZ_CHECK(!"cannot connect to the server");
    return -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t h = fuzz_hash(data, size);
    int fd = client_connect();
    cm__http_buf got = {0};
    int closed = 0;
    for (size_t pos = 0; pos < size && !closed;) {
        size_t piece = 1 + (size_t)((h >> (pos % 48)) % 97);
        piece = piece < size - pos ? piece : size - pos;
        ssize_t n = send(fd, data + pos, piece, MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        pos += (size_t)n;
        turn(2);
        closed = drain(fd, &got);
    }
    shutdown(fd, SHUT_WR);
    /* The handler runs on a worker thread: give it real time as well as loop turns. */
    for (int i = 0; i < 4000 && !closed; i++) {
        turn(1);
        closed = drain(fd, &got);
        if (!closed && i > 50) {
            usleep(500);
        }
    }
    FUZZ_CHECK(closed); /* the stream ends with the client's half-close, then the connection */
    close(fd);
    if (getenv("FUZZ_STREAM_TRACE")) {
        fprintf(stderr, "%.*s\n----\n", (int)got.len, got.p);
    }
    check_responses(&got);
    cm__http_buf_free(&got);
    cm_server_stats st;
    for (int i = 0; i < 4000; i++) {
        turn(1);
        cm_server_get_stats(srv, &st);
        if (st.active == 0 && st.inflight == 0) {
            break;
        }
        usleep(100);
    }
    FUZZ_CHECK(st.active == 0 && st.inflight == 0);
    return 0;
}
