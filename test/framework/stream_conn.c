/* What a stream's connection carries besides its stream, written raw (HTTP/1.1, JSON) to a C
 * server: (a) the frames of another Micro-Stream id, (b) an EOS for an id no stream has and (c)
 * a unary call are dropped, unanswered, and the stream goes on, answering in order; its EOS
 * ends it and the connection closes. go-micro's server drops (b) too, and serves (a) and (c),
 * but answers them under the first request's headers (the stream's Micro-Stream), so no caller
 * can tell their replies from the stream's (README, Streams; interop-stream-conn-go). */
#include "rpctest.pb-c.h"
#include "test.h"

#include <arpa/inet.h>
#include <cmicro/cmicro.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

static atomic_int echo_ends, unary_calls;

static int
echo(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)req;
    (void)user;
    cm_stream *st = rsp;
    int rc;
    for (;;) {
        Rpctest__Req *in;
        if ((rc = cm_stream_recv(st, (void **)&in)) < 0) {
            break;
        }
        Rpctest__Rsp out = RPCTEST__RSP__INIT;
        out.n = in->n;
        rc = cm_stream_send(st, &out);
        cm_message_free(&rpctest__req__descriptor, in);
        if (rc < 0) {
            break;
        }
    }
    atomic_fetch_add(&echo_ends, 1);
    return rc == CM_EOF ? 0 : rc;
}

static int
unary(cm_ctx *ctx, const void *req, void *rsp, void *user)
{
    (void)ctx;
    (void)user;
    atomic_fetch_add(&unary_calls, 1);
    ((Rpctest__Rsp *)rsp)->n = ((const Rpctest__Req *)req)->n + 1;
    return 0;
}

/* ---- the raw connection ---- */

static int
dial(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    CHECK(colon != NULL);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK_EQ_INT(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {2, 0};
    CHECK_EQ_INT(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    return fd;
}

/* Writes one go-micro message: stream "" for none; eos adds Micro-Error: EOS. */
static void
send_msg(int fd, const char *ep, const char *id, const char *stream, int eos, const char *body)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Micro-Service: rpctest\r\nMicro-Endpoint: %s\r\nMicro-Method: %s\r\n"
                     "Micro-Id: %s\r\n%s%s%s%sContent-Length: %zu\r\n\r\n%s",
                     ep, ep, id, stream[0] ? "Micro-Stream: " : "", stream, stream[0] ? "\r\n" : "",
                     eos ? "Micro-Error: EOS\r\n" : "", strlen(body), body);
    CHECK(n > 0 && (size_t)n < sizeof buf);
    CHECK_EQ_INT(write(fd, buf, (size_t)n), n);
}

/* Reads the next response (head and body) into buf: its length, 0 when the peer closed, -1 when
 * nothing came in 2 s. */
static int
read_msg(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    char *end = NULL;
    while ((end = strstr(buf, "\r\n\r\n")) == NULL || len < (size_t)(end - buf) + 4) {
        ssize_t r = recv(fd, buf + len, 1, 0); /* byte by byte: never past this message */
        if (r <= 0) {
            return r == 0 ? 0 : -1;
        }
        len += (size_t)r;
        buf[len] = '\0';
        CHECK(len + 1 < cap);
    }
    const char *cl = strstr(buf, "Content-Length: ");
    size_t want = len + (cl ? (size_t)atoi(cl + 16) : 0);
    CHECK(want + 1 < cap);
    while (len < want) {
        ssize_t r = recv(fd, buf + len, want - len, 0);
        if (r <= 0) {
            return r == 0 ? 0 : -1;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    return (int)len;
}

/* The next response is stream 1's answer to n. */
static void
expect_answer(int fd, int n)
{
    char buf[4096] = "";
    CHECK(read_msg(fd, buf, sizeof buf) > 0);
    CHECK(strstr(buf, "Micro-Stream: 1\r\n") != NULL);
    char want[32], quoted[32];
    snprintf(want, sizeof want, "\"n\":%d}", n);
    snprintf(quoted, sizeof quoted, "\"n\":\"%d\"", n);
    if (strstr(buf, want) == NULL && strstr(buf, quoted) == NULL) {
        fprintf(stderr, "want %s in:\n%s\n", want, buf);
        CHECK(0);
    }
}

static cm_server *S;
static uv_sem_t stopped;

static void
on_stopped(void *arg)
{
    (void)arg;
    uv_sem_post(&stopped);
}

static void
do_stop(void *arg)
{
    (void)arg;
    CHECK_EQ_INT(cm_server_stop(S, on_stopped, NULL), 0);
}

/* Opens stream 1 on a new connection and checks that it answers. */
static int
open_one(void)
{
    int fd = dial(cm_server_address(S));
    send_msg(fd, "Test.Echo", "1", "1", 0, "{}"); /* the opening: its body is discarded */
    send_msg(fd, "Test.Echo", "1", "1", 0, "{\"n\":2}");
    expect_answer(fd, 2);
    return fd;
}

/* Stream 1 answers n, then its EOS ends its handler and the connection closes with nothing
 * more on it. */
static void
answer_then_end(int fd, int n)
{
    int ends = atomic_load(&echo_ends);
    char body[32];
    snprintf(body, sizeof body, "{\"n\":%d}", n);
    send_msg(fd, "Test.Echo", "1", "1", 0, body);
    expect_answer(fd, n);
    send_msg(fd, "Test.Echo", "1", "1", 1, "");
    char buf[4096] = "";
    CHECK_EQ_INT(read_msg(fd, buf, sizeof buf), 0);
    close(fd);
    CHECK_EQ_INT(atomic_load(&echo_ends), ends + 1);
}

/* (b) An EOS for an id no stream has: dropped (go-micro drops it too). */
static void
test_unknown_eos(void)
{
    int fd = open_one();
    send_msg(fd, "Test.Echo", "99", "99", 1, "");
    answer_then_end(fd, 3);
}

/* (a) The frames of another stream, its opening and a message: dropped. */
static void
test_other_stream(void)
{
    int fd = open_one();
    send_msg(fd, "Test.Echo", "2", "2", 0, "{}");
    send_msg(fd, "Test.Echo", "2", "2", 0, "{\"n\":100}");
    answer_then_end(fd, 4);
}

/* (c) A unary call on the stream's connection: not served. */
static void
test_unary_on_stream(void)
{
    int fd = open_one();
    send_msg(fd, "Test.Unary", "7", "", 0, "{\"n\":41}");
    answer_then_end(fd, 5);
    CHECK_EQ_INT(atomic_load(&unary_calls), 0);
}

int
main(void)
{
    setenv("CMICRO_QUIET", "1", 1);
    signal(SIGPIPE, SIG_IGN);
    cm_loop *loop;
    CHECK_EQ_INT(cm_loop_new(&loop), 0);
    cm_server_opts o;
    cm_server_opts_init(&o);
    o.name = "rpctest";
    o.address = "127.0.0.1:0";
    cm_server *s;
    CHECK_EQ_INT(cm_server_new(loop, &o, &s), 0);
    S = s;
    CHECK_EQ_INT(uv_sem_init(&stopped, 0), 0);
    cm_handler h = {"Test.Echo",
                    &rpctest__req__descriptor,
                    &rpctest__rsp__descriptor,
                    echo,
                    CM_HANDLER_STREAM,
                    NULL,
                    NULL,
                    NULL};
    CHECK_EQ_INT(cm_server_handle(s, &h, NULL), 0);
    cm_handler u = {
        "Test.Unary", &rpctest__req__descriptor, &rpctest__rsp__descriptor, unary, 0, NULL, NULL,
        NULL};
    CHECK_EQ_INT(cm_server_handle(s, &u, NULL), 0);
    CHECK_EQ_INT(cm_server_start(s), 0);
    CHECK_EQ_INT(cm_loop_start(loop), 0);

    RUN(test_unknown_eos);
    RUN(test_other_stream);
    RUN(test_unary_on_stream);
    CHECK_EQ_INT(atomic_load(&echo_ends), 3);
    CHECK_EQ_INT(atomic_load(&unary_calls), 0);

    CHECK_EQ_INT(cm_loop_post(loop, do_stop, NULL), 0);
    uv_sem_wait(&stopped);
    cm_loop_stop(loop);
    cm_server_free(s);
    uv_sem_destroy(&stopped);
    cm_loop_free(loop);
    TEST_DONE();
}
