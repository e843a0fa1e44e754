/* libFuzzer harness: the HTTP server's connection state machine (transport/http/http_server.c)
 * over a real loopback connection. The input is the byte stream of a client: it is written in
 * pieces whose sizes come from the input's hash (so seeds stay plain captured requests), with
 * the server's loop turning between pieces, then the client shuts down its writing side. The
 * server answers each request at once or a loop turn later (also from the hash), with small
 * limits so that the refusal paths run. Checked: no crash or sanitizer report; what comes back
 * parses as a sequence of HTTP responses, no more 200s than requests were delivered; the server
 * closes the connection by itself (half-close handled, nothing left hanging); every connection is
 * gone afterwards. */
#include "fuzz.h"
#include "http_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static cm_loop *loop;
static cm_transport *tr;
static cm_listener *lis;
static int port;
static int later;             /* answer a turn later */
static cm_tconn *held;        /* the request waiting for its later answer */
static uint64_t delivered;    /* requests (and refusals) given to the callback, this input */

static void
answer(cm_tconn *c)
{
    static const cm_hdr h[] = {{"Content-Type", "application/protobuf"}};
    cm_msg rsp = {h, 1, (const uint8_t *)"ok", 2};
    int rc = cm_tconn_reply(c, &rsp, 0);
    FUZZ_CHECK(rc == 0 || rc == CM_ECLOSED);
}

static void
on_request(cm_tconn *c, int status, const cm_msg *req, void *user)
{
    (void)user;
    if (status < 0) {
        FUZZ_CHECK(req == NULL && (status == CM_ETOOBIG || status == CM_EHDRTOOBIG));
        delivered++; /* answered with a 200 carrying the error, as the RPC layer does */
        static const cm_hdr h[] = {{"Micro-Error", "too big"}};
        cm_msg rsp = {h, 1, NULL, 0};
        int rc = cm_tconn_reply(c, &rsp, 1);
        FUZZ_CHECK(rc == 0 || rc == CM_ECLOSED);
        return;
    }
    FUZZ_CHECK(req != NULL && req->body != NULL);
    delivered++;
    if (later && held == NULL) {
        held = c;
        return;
    }
    answer(c);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cm_log_set_level(CM_LOG_OFF);
    cm_transport_opts o;
    cm_transport_opts_init(&o);
    o.max_header_bytes = 4096;
    o.max_body_bytes = 8192;
    if (cm_loop_new(&loop) < 0 || cm_transport_new(loop, "http", &o, &tr) < 0 ||
        cm_transport_listen(tr, "127.0.0.1:0", on_request, NULL, &lis) < 0) {
        abort();
    }
    char addr[64];
    cm_listener_addr(lis, addr, sizeof addr);
    port = atoi(strrchr(addr, ':') + 1);
    return 0;
}

static void
turn(int n)
{
    for (int i = 0; i < n; i++) {
        uv_run(cm_loop_uv(loop), UV_RUN_NOWAIT);
        if (held != NULL) {
            cm_tconn *c = held;
            held = NULL;
            answer(c);
        }
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

/* What the server sent parses as responses; returns how many were 200. */
static uint64_t
check_responses(const cm__http_buf *got)
{
    cm__http_in in;
    cm__http_in_init(&in, HTTP_RESPONSE, 1 << 20, 1 << 20);
    uint64_t ok = 0;
    size_t pos = 0;
    while (pos < got->len) {
        int complete = 0;
        ptrdiff_t n = cm__http_in_execute(&in, got->p + pos, got->len - pos, &complete, 1);
        FUZZ_CHECK(n >= 0);
        pos += (size_t)n;
        if (!complete) {
            break; /* 100 Continue is an interim head: http_parser reads past it */
        }
        ok += cm_msg_header(&in.msg, ":status") == NULL;
    }
    cm__http_in_free(&in);
    return ok;
}

/* A client socket connected to the server. It closes with a reset (SO_LINGER 0), so that a long
 * run leaves no TIME_WAIT behind to use up the ephemeral ports; a connect that fails anyway (the
 * ports used up by other processes) waits a little and tries again, for up to a second. */
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
    later = (int)(h & 1);
    delivered = 0;
    int fd = client_connect();
    cm__http_buf got = {0};
    int closed = 0;
    for (size_t pos = 0; pos < size && !closed;) {
        size_t piece = 1 + (size_t)((h >> (pos % 48)) % 97);
        piece = piece < size - pos ? piece : size - pos;
        ssize_t n = send(fd, data + pos, piece, MSG_NOSIGNAL);
        if (n <= 0) {
            break; /* the server closed (a refusal): the rest is not for it */
        }
        pos += (size_t)n;
        turn(2);
        closed = drain(fd, &got);
    }
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 2000 && !closed; i++) {
        turn(1);
        closed = drain(fd, &got);
        if (!closed && i > 50) {
            usleep(100);
        }
    }
    FUZZ_CHECK(closed); /* a half-closed connection is answered, then closed */
    close(fd);
    uint64_t oks = check_responses(&got);
    if (getenv("FUZZ_HTTP_SERVER_TRACE")) {
        fprintf(stderr, "delivered %llu, 200s %llu, bytes back %zu\n", (unsigned long long)delivered, (unsigned long long)oks, got.len);
    }
    FUZZ_CHECK(oks <= delivered);
    cm__http_buf_free(&got);
    cm_listener_stats st;
    for (int i = 0; i < 1000; i++) {
        turn(1);
        cm_listener_get_stats(lis, &st);
        if (st.active == 0) {
            break;
        }
    }
    FUZZ_CHECK(st.active == 0);
    return 0;
}
