/* The HTTP transport's server side over real sockets on 127.0.0.1: framing, keep-alive,
 * pipelining, limits and malformed input, closing. */
#include "harness.h"

#include <malloc.h>

/* ---- a client transport for the good-path tests ---- */

typedef struct result {
    int done;
    int status;
    unsigned flags;
    char *rendered; /* the response, rendered */
    size_t body_len;
    char *body;
} result;

static void
on_result(int status, unsigned flags, const cm_msg *rsp, void *user)
{
    result *r = user;
    r->done++;
    r->status = status;
    r->flags = flags;
    if (rsp) {
        r->rendered = render(rsp);
        r->body_len = rsp->body_len;
        r->body = malloc(rsp->body_len + 1);
        CHECK(r->body != NULL);
        memcpy(r->body, rsp->body, rsp->body_len);
        r->body[rsp->body_len] = '\0';
    }
}

static void
result_free(result *r)
{
    free(r->rendered);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static void
client_close(cm_transport *t)
{
    int done = 0;
    cm_transport_close(t, set_flag, &done);
    run_until(&done, 5000);
}

static void
test_roundtrip(void)
{
    server s;
    server_start(&s, NULL);
    cm_transport *c;
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &c), 0);

    cm_hdr h[] = {{"X-Test", "hello"}, {"Content-Type", "application/json"}, {"Micro-Id", "7"}};
    cm_msg req = {h, 3, (const uint8_t *)"{\"a\":1}", 7};
    result r = {0};
    CHECK_EQ_INT(cm_transport_roundtrip(c, s.addr, &req, 5000, on_result, &r, NULL), 0);
    CHECK_EQ_INT(r.done, 0);
    run_until(&r.done, 5000);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "{\"a\":1}");

    /* The server got exactly what Go's http.Request.Write sends, headers as given. */
    char *want = strdupf("Host=%s\nUser-Agent=cmicro/0.1\nContent-Length=7\nX-Test=hello\n"
                         "Content-Type=application/json\nMicro-Id=7\nbody={\"a\":1}",
                         s.addr);
    CHECK_EQ_STR(s.last, want);
    free(want);
    /* The reply: Content-Length first and exact, the message's own Content-Length and
     * Connection dropped, lookups case-insensitive on both ends. */
    CHECK(strncmp(r.rendered,
                  "Content-Length=7\nX-Seq=1\nX-Echo=hello\n"
                  "Content-Type=application/json\nX-Render=",
                  strlen("Content-Length=7\nX-Seq=1\nX-Echo=hello\n"
                         "Content-Type=application/json\nX-Render=")) == 0);
    CHECK(strstr(r.rendered, "Connection") == NULL);
    CHECK(strstr(r.rendered, "Content-Length=999") == NULL); /* (the port may hold "999") */
    result_free(&r);

    /* An empty body still carries Content-Length: 0. */
    cm_msg empty = {NULL, 0, NULL, 0};
    CHECK_EQ_INT(cm_transport_roundtrip(c, s.addr, &empty, 5000, on_result, &r, NULL), 0);
    run_until(&r.done, 5000);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_INT(r.body_len, 0);
    CHECK(strstr(s.last, "Content-Length=0\n") != NULL);
    CHECK(strstr(r.rendered, "Content-Length=0\n") != NULL);
    result_free(&r);

    cm_pool_stats ps;
    cm_transport_get_pool_stats(c, &ps);
    CHECK_EQ_INT(ps.dialed, 1);
    CHECK_EQ_INT(ps.reused, 1);
    CHECK_EQ_INT(ps.idle, 1);

    /* Once the listener stops accepting, open connections are still served; new ones are
     * refused. */
    cm_listener_stop_accepting(s.l);
    run_for(10);
    CHECK_EQ_INT(cm_transport_roundtrip(c, s.addr, &req, 5000, on_result, &r, NULL), 0);
    run_until(&r.done, 5000);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.body, "{\"a\":1}");
    result_free(&r);
    cm_transport *c2;
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &c2), 0);
    CHECK_EQ_INT(cm_transport_roundtrip(c2, s.addr, &req, 5000, on_result, &r, NULL), 0);
    run_until(&r.done, 5000);
    CHECK_EQ_INT(r.status, UV_ECONNREFUSED);
    CHECK(r.flags & CM_RT_UNSENT);
    result_free(&r);
    client_close(c2);
    char a[64];
    CHECK_EQ_INT(cm_listener_addr(s.l, a, sizeof(a)), 0);
    CHECK_EQ_STR(a, s.addr);
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.accepted, 1);
    CHECK_EQ_INT(st.requests, 3);
    client_close(c);
    server_stop(&s);
}

/* ---- raw requests ---- */

typedef struct rawjob {
    int port;
    int fail; /* set by the thread: which step went wrong */
} rawjob;

#define T_CHECK(j, cond, step)                                                                     \
    do {                                                                                           \
        if (!(cond) && !(j)->fail) {                                                               \
            fprintf(stderr, "%s:%d: thread check failed: %s\n", __FILE__, __LINE__, #cond);        \
            (j)->fail = (step);                                                                    \
        }                                                                                          \
    } while (0)

static void
job_chunked_empty(void *arg)
{
    rawjob *j = arg;
    int fd = raw_connect(j->port);
    /* Go sends an empty body as chunked. */
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nUser-Agent: Go-http-client/1.1\r\n"
                     "Transfer-Encoding: chunked\r\nX-Test: go\r\n\r\n0\r\n\r\n");
    char buf[4096];
    size_t have = 0;
    size_t n = raw_read_response(fd, buf, sizeof(buf), &have);
    T_CHECK(j, n == have, 1);
    const char *want = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Seq: 1\r\nX-Echo: go\r\n"
                       "Content-Type: \r\nX-Render: Host=x User-Agent=Go-http-client/1.1 "
                       "Transfer-Encoding=chunked X-Test=go body=\r\n\r\n";
    T_CHECK(j, strcmp(buf, want) == 0, 2);
    raw_consume(buf, &have, n);
    /* The connection stays open for the next request. */
    raw_send_str(fd, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Test: again\r\n\r\nhi");
    n = raw_read_response(fd, buf, sizeof(buf), &have);
    T_CHECK(j, n > 0, 3);
    T_CHECK(j, strstr(buf, "X-Seq: 2\r\n") != NULL, 4);
    T_CHECK(j, strstr(buf, "X-Echo: again\r\n") != NULL, 5);
    T_CHECK(j, strcmp(buf + n - 6, "\r\n\r\nhi") == 0, 6);
    close(fd);
}

static void
test_chunked_empty(void)
{
    server s;
    server_start(&s, NULL);
    rawjob j = {s.port, 0};
    in_thread(job_chunked_empty, &j);
    CHECK_EQ_INT(j.fail, 0);
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.accepted, 1);
    CHECK_EQ_INT(st.requests, 2);
    CHECK_EQ_INT(st.rejected, 0);
    server_stop(&s);
}

static const char split_req[] = "POST /split HTTP/1.1\r\n"
                                "Host: 127.0.0.1\r\n"
                                "Transfer-Encoding: chunked\r\n"
                                "X-Test: split\r\n"
                                "Micro-Endpoint: Say.Hello\r\n"
                                "\r\n"
                                "3\r\nabc\r\n"
                                "4\r\ndefg\r\n"
                                "0\r\n\r\n";

static void
job_split(void *arg)
{
    rawjob *j = arg;
    size_t len = sizeof(split_req) - 1;
    /* The target, split anywhere, arrives whole in ":path" (not a POST to "/"). */
    const char *render_want = "X-Render: Host=127.0.0.1 Transfer-Encoding=chunked X-Test=split "
                              "Micro-Endpoint=Say.Hello :method=POST :path=/split "
                              "body=abcdefg\r\n";
    int fd = raw_connect(j->port);
    char buf[4096];
    size_t have = 0;
    for (size_t i = 1; i < len && !j->fail; i++) {
        /* Every few splits on a new connection, the others on one kept connection. */
        if (i % 16 == 0) {
            close(fd);
            fd = raw_connect(j->port);
            have = 0;
        }
        T_CHECK(j, raw_send(fd, split_req, i) == 0, 1);
        usleep(1000);
        T_CHECK(j, raw_send(fd, split_req + i, len - i) == 0, 2);
        size_t n = raw_read_response(fd, buf, sizeof(buf), &have);
        T_CHECK(j, n > 0, 3);
        T_CHECK(j, strstr(buf, render_want) != NULL, 4);
        T_CHECK(j, strcmp(buf + n - 11, "\r\n\r\nabcdefg") == 0, 5);
        raw_consume(buf, &have, n);
    }
    close(fd);
}

static void
test_split(void)
{
    server s;
    server_start(&s, NULL);
    rawjob j = {s.port, 0};
    in_thread(job_split, &j);
    CHECK_EQ_INT(j.fail, 0);
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.requests, sizeof(split_req) - 2);
    CHECK_EQ_INT(st.rejected, 0);
    server_stop(&s);
}

/* ---- 1,000 sequential round trips on one connection ---- */

typedef struct chain {
    cm_transport *t;
    const char *addr;
    int left;
    int ok;
    int failed;
    int done;
    int stop; /* set: no new round trip after the current one */
} chain;

static void chain_next(chain *ch);

static void
on_chain(int status, unsigned flags, const cm_msg *rsp, void *user)
{
    (void)flags;
    chain *ch = user;
    if (status == 0 && rsp->body_len == 4 && memcmp(rsp->body, "ping", 4) == 0) {
        ch->ok++;
    } else {
        fprintf(stderr, "chain: status %d (%s)\n", status, cm_strerror(status));
        ch->failed++;
    }
    chain_next(ch);
}

static void
chain_next(chain *ch)
{
    if (ch->left == 0 || ch->stop) {
        ch->done = 1;
        return;
    }
    ch->left--;
    cm_hdr h[] = {{"Content-Type", "application/octet-stream"}};
    cm_msg req = {h, 1, (const uint8_t *)"ping", 4};
    CHECK_EQ_INT(cm_transport_roundtrip(ch->t, ch->addr, &req, 5000, on_chain, ch, NULL), 0);
}

static void
test_sequential(void)
{
    server s;
    server_start(&s, NULL);
    chain ch = {0};
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &ch.t), 0);
    ch.addr = s.addr;
    ch.left = 1000;
    chain_next(&ch);
    run_until(&ch.done, 30000);
    CHECK_EQ_INT(ch.ok, 1000);
    CHECK_EQ_INT(ch.failed, 0);
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.accepted, 1);
    CHECK_EQ_INT(st.active, 1);
    CHECK_EQ_INT(st.requests, 1000);
    cm_pool_stats ps;
    cm_transport_get_pool_stats(ch.t, &ps);
    CHECK_EQ_INT(ps.dialed, 1);
    CHECK_EQ_INT(ps.reused, 999);
    CHECK_EQ_INT(ps.idle, 1);
    client_close(ch.t);
    run_for(50);
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.active, 0);
    server_stop(&s);
}

/* ---- bad input, while a good client keeps being served ---- */

static void
expect_final(rawjob *j, int fd, const char *want, int step)
{
    static char buf[1 << 16];
    int eof;
    raw_read_all(fd, buf, sizeof(buf), &eof);
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "got:  [%s]\nwant: [%s]\n", buf, want);
    }
    T_CHECK(j, strcmp(buf, want) == 0, step);
    T_CHECK(j, eof, step + 100);
    close(fd);
}

static void
job_bad_inputs(void *arg)
{
    rawjob *j = arg;

    /* A header block over 64 KiB. */
    int fd = raw_connect(j->port);
    size_t big = 70000;
    char *hdr = malloc(big + 64);
    memcpy(hdr, "POST / HTTP/1.1\r\nHost: x\r\nX-Big: ", 33);
    memset(hdr + 33, 'a', big);
    memcpy(hdr + 33 + big, "\r\n\r\n", 4);
    T_CHECK(j, raw_send(fd, hdr, 33 + big + 4) == 0, 1);
    free(hdr);
    expect_final(j, fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Refused: CM_EHDRTOOBIG\r\n\r\n",
                 2);

    /* A Content-Length over 4 MiB, refused before the body. */
    fd = raw_connect(j->port);
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5242880\r\n\r\n");
    expect_final(j, fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Refused: CM_ETOOBIG\r\n\r\n", 3);

    /* Chunks that add up past 4 MiB: 3 MiB, then a 2 MiB chunk header. */
    fd = raw_connect(j->port);
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n300000\r\n");
    size_t three = 3 * 1024 * 1024;
    char *chunk = malloc(three);
    memset(chunk, 'c', three);
    T_CHECK(j, raw_send(fd, chunk, three) == 0, 4);
    free(chunk);
    raw_send_str(fd, "\r\n200000\r\n");
    expect_final(j, fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Refused: CM_ETOOBIG\r\n\r\n", 5);

    /* A bad chunk size. */
    fd = raw_connect(j->port);
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    expect_final(j, fd,
                 "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                 "Content-Length: 38\r\n\r\ninvalid character in chunk size header",
                 6);

    /* Garbage. */
    fd = raw_connect(j->port);
    raw_send_str(fd, "\x01\x02\x03 garbage\r\n\r\n");
    expect_final(j, fd,
                 "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                 "Content-Length: 19\r\n\r\ninvalid HTTP method",
                 7);

    /* A body cut short by the close: nothing is delivered. */
    fd = raw_connect(j->port);
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    usleep(20000);
    close(fd);

    /* Headers cut short by the close. */
    fd = raw_connect(j->port);
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nX-Hal");
    usleep(20000);
    close(fd);

    /* And the server still answers a good request. */
    fd = raw_connect(j->port);
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Test: fine\r\n\r\nok");
    char buf[4096];
    size_t have = 0;
    T_CHECK(j, raw_read_response(fd, buf, sizeof(buf), &have) > 0, 8);
    T_CHECK(j, strstr(buf, "X-Echo: fine\r\n") != NULL, 9);
    close(fd);
}

static void
test_bad_inputs(void)
{
    server s;
    server_start(&s, NULL);
    chain ch = {0};
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &ch.t), 0);
    ch.addr = s.addr;
    ch.left = 1 << 30;

    rawjob j = {s.port, 0};
    worker w;
    worker_start(&w, job_bad_inputs, &j);
    chain_next(&ch);
    run_until(&w.finished, 30000);
    ch.stop = 1;
    run_until(&ch.done, 5000);
    uv_thread_join(&w.th);
    uv_close((uv_handle_t *)&w.async, NULL);
    CHECK_EQ_INT(j.fail, 0);
    CHECK_EQ_INT(ch.failed, 0);
    CHECK(ch.ok > 10); /* the good client was served all along */
    fprintf(stderr, "good round trips during bad input: %d\n", ch.ok);

    run_for(50);
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.rejected, 5);
    CHECK_EQ_INT(st.requests, (uint64_t)ch.ok + 1);
    CHECK_EQ_INT(st.accepted, 9); /* eight raw connections and the good client's one */
    CHECK_EQ_INT(st.active, 1);
    client_close(ch.t);
    server_stop(&s);
}

/* ---- pipelining and Connection: close ---- */

static void
job_pipelined(void *arg)
{
    rawjob *j = arg;
    int fd = raw_connect(j->port);
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nX-Test: p1\r\nContent-Length: 1\r\n\r\nA"
                     "POST / HTTP/1.1\r\nHost: x\r\nX-Test: p2\r\nContent-Length: 1\r\n\r\nB"
                     "POST / HTTP/1.1\r\nHost: x\r\nX-Test: p3\r\nTransfer-Encoding: chunked"
                     "\r\n\r\n1\r\nC\r\n0\r\n\r\n");
    char buf[8192];
    size_t have = 0;
    const char *order[] = {"X-Echo: p1\r\n", "X-Echo: p2\r\n", "X-Echo: p3\r\n"};
    const char *bodies[] = {"A", "B", "C"};
    for (int i = 0; i < 3; i++) {
        size_t n = raw_read_response(fd, buf, sizeof(buf), &have);
        T_CHECK(j, n > 0, 1 + i);
        char save = buf[n];
        buf[n] = '\0';
        T_CHECK(j, strstr(buf, order[i]) != NULL, 10 + i);
        T_CHECK(j, buf[n - 1] == bodies[i][0], 20 + i);
        buf[n] = save;
        raw_consume(buf, &have, n);
    }
    close(fd);
}

static void
test_pipelined(void)
{
    for (int mode = REPLY_NOW; mode <= REPLY_LATER; mode++) {
        server s;
        server_start(&s, NULL);
        s.mode = mode;
        rawjob j = {s.port, 0};
        in_thread(job_pipelined, &j);
        CHECK_EQ_INT(j.fail, 0);
        CHECK_EQ_INT(s.seen, 3);
        server_stop(&s);
    }
}

static void
job_conn_close(void *arg)
{
    rawjob *j = arg;
    /* Connection: close, then HTTP/1.0 without keep-alive: both answered, then closed. */
    const char *reqs[] = {
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nZ",
        "POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nY",
    };
    for (int i = 0; i < 2; i++) {
        int fd = raw_connect(j->port);
        raw_send_str(fd, reqs[i]);
        char buf[4096];
        int eof;
        size_t n = raw_read_all(fd, buf, sizeof(buf), &eof);
        T_CHECK(j, eof, 1 + i);
        T_CHECK(j, strncmp(buf, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", 36) == 0, 3 + i);
        T_CHECK(j, n > 0 && buf[n - 1] == reqs[i][strlen(reqs[i]) - 1], 5 + i);
        close(fd);
    }
}

static void
test_conn_close(void)
{
    server s;
    server_start(&s, NULL);
    rawjob j = {s.port, 0};
    in_thread(job_conn_close, &j);
    CHECK_EQ_INT(j.fail, 0);
    run_for(50);
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.requests, 2);
    CHECK_EQ_INT(st.active, 0);
    server_stop(&s);
}

/* An idle keep-alive connection stays open (longer than the linger time) and still works. */
static void
job_idle(void *arg)
{
    rawjob *j = arg;
    int fd = raw_connect(j->port);
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1");
    char buf[4096];
    size_t have = 0;
    size_t n = raw_read_response(fd, buf, sizeof(buf), &have);
    T_CHECK(j, n > 0, 1);
    raw_consume(buf, &have, n);
    struct timeval tv = {2, 500000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char c;
    ssize_t r = recv(fd, &c, 1, 0);
    T_CHECK(j, r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), 2);
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n2");
    n = raw_read_response(fd, buf, sizeof(buf), &have);
    T_CHECK(j, n > 0 && buf[n - 1] == '2', 3);
    close(fd);
}

static void
test_idle_kept(void)
{
    server s;
    server_start(&s, NULL);
    rawjob j = {s.port, 0};
    in_thread(job_idle, &j);
    CHECK_EQ_INT(j.fail, 0);
    CHECK_EQ_INT(s.seen, 2);
    server_stop(&s);
}

/* ---- a peer that leaves while its request is handled; closing with requests in flight ---- */

static void
job_send_and_leave(void *arg)
{
    rawjob *j = arg;
    int fd = raw_connect(j->port);
    raw_send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nL");
    usleep(20000);
    close(fd);
}

static void
test_peer_leaves(void)
{
    server s;
    server_start(&s, NULL);
    s.mode = REPLY_NEVER;
    rawjob j = {s.port, 0};
    in_thread(job_send_and_leave, &j);
    run_for(50);
    CHECK_EQ_INT(s.nheld, 1);
    /* Its end of file could be a half-close (a client still reading): the connection stays
     * until the reply, which then finds the peer gone, and closes. */
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.active, 1);
    cm_msg rsp = {NULL, 0, (const uint8_t *)"late", 4};
    int rc = cm_tconn_reply(s.held[0], &rsp, 0);
    CHECK(rc == 0 || rc == CM_ECLOSED);
    s.nheld = 0;
    for (int i = 0; i < 100; i++) {
        run_for(10);
        cm_listener_get_stats(s.l, &st);
        if (st.active == 0) {
            break;
        }
    }
    CHECK_EQ_INT(st.active, 0);
    server_stop(&s);
}

static void
test_close_in_flight(void)
{
    server s;
    server_start(&s, NULL);
    s.mode = REPLY_NEVER;
    cm_transport *c;
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &c), 0);
    result r[3] = {{0}};
    cm_msg req = {NULL, 0, (const uint8_t *)"x", 1};
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(cm_transport_roundtrip(c, s.addr, &req, 0, on_result, &r[i], NULL), 0);
    }
    while (s.seen < 3) {
        uv_run(L, UV_RUN_ONCE);
    }
    /* server_stop closes the listener, then replies: each reply returns CM_ECLOSED. */
    server_stop(&s);
    for (int i = 0; i < 3; i++) {
        run_until(&r[i].done, 5000);
        CHECK_EQ_INT(r[i].status, CM_ECLOSED);
        CHECK_EQ_INT(r[i].flags, 0);
        result_free(&r[i]);
    }
    client_close(c);
}

/* ---- big bodies: partial writes on both sides ---- */

static void
test_big_bodies(void)
{
    server s;
    server_start(&s, NULL);
    cm_transport *c;
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &c), 0);
    size_t n = 4 * 1024 * 1024;
    uint8_t *body = malloc(n);
    for (size_t i = 0; i < n; i++) {
        body[i] = (uint8_t)(i * 7 + (i >> 12));
    }
    for (int k = 0; k < 3; k++) {
        result r = {0};
        cm_msg req = {NULL, 0, body, n - (size_t)k};
        CHECK_EQ_INT(cm_transport_roundtrip(c, s.addr, &req, 10000, on_result, &r, NULL), 0);
        run_until(&r.done, 15000);
        CHECK_EQ_INT(r.status, 0);
        CHECK_EQ_INT(r.body_len, n - (size_t)k);
        CHECK(memcmp(r.body, body, n - (size_t)k) == 0);
        result_free(&r);
    }
    /* One byte over the limit is refused by the server: the callback answers with the code. */
    uint8_t *over = malloc(n + 1);
    memcpy(over, body, n);
    over[n] = 0;
    result r = {0};
    cm_msg req = {NULL, 0, over, n + 1};
    CHECK_EQ_INT(cm_transport_roundtrip(c, s.addr, &req, 10000, on_result, &r, NULL), 0);
    run_until(&r.done, 15000);
    CHECK_EQ_INT(r.status, 0);
    CHECK(strstr(r.rendered, "X-Refused=CM_ETOOBIG") != NULL);
    result_free(&r);
    free(over);
    free(body);
    cm_pool_stats ps;
    cm_transport_get_pool_stats(c, &ps);
    CHECK_EQ_INT(ps.dialed, 1);
    CHECK_EQ_INT(ps.idle, 0); /* the refused connection was closed, not pooled */
    client_close(c);
    server_stop(&s);
}

/* ---- addresses ---- */

static void
test_listen_addresses(void)
{
    cm_transport *t;
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &t), 0);
    cm_listener *l;
    char a[64];
    const char *any[] = {":0", "0.0.0.0:0"};
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(cm_transport_listen(t, any[i], on_request, NULL, &l), 0);
        CHECK_EQ_INT(cm_listener_addr(l, a, sizeof(a)), 0);
        CHECK(strncmp(a, "0.0.0.0:", 8) == 0 && atoi(a + 8) > 0);
        CHECK_EQ_INT(cm_listener_addr(l, a, 5), CM_EINVAL);
        int done = 0;
        cm_listener_close(l, set_flag, &done);
        run_until(&done, 5000);
    }
    int r = cm_transport_listen(t, "[::1]:0", on_request, NULL, &l);
    if (r == 0) {
        CHECK_EQ_INT(cm_listener_addr(l, a, sizeof(a)), 0);
        CHECK(strncmp(a, "[::1]:", 6) == 0 && atoi(a + 6) > 0);
        int done = 0;
        cm_listener_stop_accepting(l);
        cm_listener_close(l, set_flag, &done);
        run_until(&done, 5000);
    } else {
        fprintf(stderr, "no IPv6 loopback here (%s); skipped\n", cm_strerror(r));
    }
    const char *bad[] = {
        "", "8080", "1.2.3.4", "example.com:80", "[1.2.3.4]:80", "1.2.3.4:70000", "::1:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(cm_transport_listen(t, bad[i], on_request, NULL, &l), CM_EADDR);
    }
    /* A port in use. */
    CHECK_EQ_INT(cm_transport_listen(t, "127.0.0.1:0", on_request, NULL, &l), 0);
    CHECK_EQ_INT(cm_listener_addr(l, a, sizeof(a)), 0);
    cm_listener *l2;
    CHECK_EQ_INT(cm_transport_listen(t, a, on_request, NULL, &l2), UV_EADDRINUSE);
    int done = 0;
    cm_listener_close(l, set_flag, &done);
    run_until(&done, 5000);
    client_close(t);
}

/* reuse_port: listeners of transports that set it share one address and port (IPv4 and the
 * any address, as a server with several loops binds them); one without it is refused there. */
static void
test_reuse_port(void)
{
    cm_transport_opts o;
    cm_transport_opts_init(&o);
    o.reuse_port = 1;
    cm_transport *t1, *t2, *plain;
    CHECK_EQ_INT(cm_transport_new(CL, NULL, &o, &t1), 0);
    CHECK_EQ_INT(cm_transport_new(CL, NULL, &o, &t2), 0);
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &plain), 0);
    const char *any[] = {"127.0.0.1:0", ":0"};
    for (int i = 0; i < 2; i++) {
        cm_listener *l1, *l2, *l3;
        char a[64], b[64];
        CHECK_EQ_INT(cm_transport_listen(t1, any[i], on_request, NULL, &l1), 0);
        CHECK_EQ_INT(cm_listener_addr(l1, a, sizeof(a)), 0);
        CHECK_EQ_INT(cm_transport_listen(t2, a, on_request, NULL, &l2), 0);
        CHECK_EQ_INT(cm_listener_addr(l2, b, sizeof(b)), 0);
        CHECK_EQ_STR(a, b);
        CHECK_EQ_INT(cm_transport_listen(plain, a, on_request, NULL, &l3), UV_EADDRINUSE);
        int done1 = 0, done2 = 0;
        cm_listener_close(l1, set_flag, &done1);
        cm_listener_close(l2, set_flag, &done2);
        run_until(&done1, 5000);
        run_until(&done2, 5000);
    }
    client_close(t1);
    client_close(t2);
    client_close(plain);
}

/* ---- early replies: written from another thread, finished on the loop ---- */

typedef struct early {
    cm_tconn *conn;
    cm_msg req;
    int seen;
    int rc; /* cm_tconn_reply_early's, on the thread */
    const uint8_t *rbody; /* the reply's body; NULL: the request's (an echo) */
    size_t rlen;
} early;

static void
on_early_request(cm_tconn *c, int status, const cm_msg *req, void *user)
{
    early *e = user;
    CHECK_EQ_INT(status, 0);
    e->conn = c;
    e->req = *req;
    e->seen++;
}

static void
never_msg(void *user, const cm_msg *m)
{
    (void)user;
    (void)m;
    CHECK(0);
}

static void
never_end(void *user, int status)
{
    (void)user;
    (void)status;
    CHECK(0);
}

static void
reply_early_thread(void *arg)
{
    early *e = arg;
    static cm_hdr h = {"X-Early", "1"};
    cm_msg rsp = {&h, 1, e->req.body, e->req.body_len};
    if (e->rbody != NULL) {
        rsp.body = e->rbody;
        rsp.body_len = e->rlen;
    }
    e->rc = cm_tconn_reply_early(e->conn, &rsp);
}

/* One call: the request reaches the callback, a thread writes the echo reply early, then the
 * loop calls cm_tconn_reply. A small reply reaches the client before that call. With held set,
 * the early reply is written while the loop stands still, so that the client (on the loop)
 * reads nothing meanwhile: a big reply fills the socket, and the rest waits for
 * cm_tconn_reply. */
static void
early_call(cm_transport *c, const char *addr, early *e, const uint8_t *body, size_t n, int held)
{
    result r = {0};
    cm_msg req = {NULL, 0, body, n};
    int seen = e->seen;
    CHECK_EQ_INT(cm_transport_roundtrip(c, addr, &req, 15000, on_result, &r, NULL), 0);
    while (e->seen == seen) {
        uv_run(L, UV_RUN_ONCE);
    }
    if (held) {
        reply_early_thread(e);
    } else {
        in_thread(reply_early_thread, e);
    }
    CHECK_EQ_INT(e->rc, 0);
    const uint8_t *want = e->rbody ? e->rbody : body;
    size_t wlen = e->rbody ? e->rlen : n;
    static cm_hdr h2 = {"X-Early", "1"};
    cm_msg again = {&h2, 1, want, wlen};
    CHECK_EQ_INT(cm_tconn_reply_early(e->conn, &again), CM_ENOTSUP); /* once per request */
    static const cm_tstream_cbs cbs = {never_msg, never_end, NULL};
    cm_tstream *ts;
    CHECK_EQ_INT(cm_tconn_stream(e->conn, &cbs, NULL, &ts), CM_ESTATE); /* it is answered */
    if (wlen < 1024) {
        run_until(&r.done, 5000); /* written by the thread alone */
    } else if (held) {
        run_for(200);
        CHECK_EQ_INT(r.done, 0); /* the socket took part of it; the rest is the loop's */
    }
    CHECK_EQ_INT(cm_tconn_reply(e->conn, &again, 0), 0);
    CHECK_EQ_INT(cm_tconn_reply_early(e->conn, &again), CM_ENOTSUP); /* replied */
    run_until(&r.done, 15000);
    CHECK_EQ_INT(r.status, 0);
    CHECK(strstr(r.rendered, "X-Early=1") != NULL);
    CHECK_EQ_INT(r.body_len, wlen);
    CHECK(memcmp(r.body, want, wlen) == 0);
    result_free(&r);
}

static void
test_reply_early(void)
{
    cm_transport *t, *c;
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &t), 0);
    cm_transport_opts co;
    cm_transport_opts_init(&co);
    co.max_body_bytes = 64 * 1024 * 1024;
    CHECK_EQ_INT(cm_transport_new(CL, NULL, &co, &c), 0);
    early e = {0};
    cm_listener *l;
    char addr[64];
    CHECK_EQ_INT(cm_transport_listen(t, "127.0.0.1:0", on_early_request, &e, &l), 0);
    CHECK_EQ_INT(cm_listener_addr(l, addr, sizeof(addr)), 0);
    /* Small, then 4 MiB (the socket takes part of it; the loop writes the rest), then small
     * again on the same connection. */
    size_t big = 4 * 1024 * 1024;
    uint8_t *body = malloc(big);
    CHECK(body != NULL);
    for (size_t i = 0; i < big; i++) {
        body[i] = (uint8_t)(i * 13 + (i >> 10));
    }
    early_call(c, addr, &e, body, 5, 0);
    early_call(c, addr, &e, body, big, 0);
    /* 32 MiB to a small request while the loop stands still: more than the socket buffers of
     * both ends take (loopback's grow to a few MiB). */
    size_t huge = 32 * 1024 * 1024;
    uint8_t *hbody = malloc(huge);
    CHECK(hbody != NULL);
    for (size_t i = 0; i < huge; i++) {
        hbody[i] = (uint8_t)(i * 31 + (i >> 16));
    }
    e.rbody = hbody;
    e.rlen = huge;
    early_call(c, addr, &e, body, 5, 1);
    e.rbody = NULL;
    free(hbody);
    early_call(c, addr, &e, body, 0, 1);
    cm_pool_stats ps;
    cm_transport_get_pool_stats(c, &ps);
    CHECK_EQ_INT(ps.dialed, 1);
    /* A reply whose body is not the one the early reply announced: the connection closes. */
    result r = {0};
    cm_msg req = {NULL, 0, body, 3};
    CHECK_EQ_INT(cm_transport_roundtrip(c, addr, &req, 5000, on_result, &r, NULL), 0);
    while (e.seen < 5) {
        uv_run(L, UV_RUN_ONCE);
    }
    reply_early_thread(&e);
    CHECK_EQ_INT(e.rc, 0);
    cm_msg shorter = {NULL, 0, body, 2};
    CHECK_EQ_INT(cm_tconn_reply(e.conn, &shorter, 0), CM_ECLOSED);
    run_until(&r.done, 5000);
    CHECK_EQ_INT(r.status, 0); /* the client read the early reply before the close */
    CHECK_EQ_INT(r.body_len, 3);
    result_free(&r);
    /* A connection closed while its request is with the callback: the early reply finds it
     * closed (it writes nothing: the client sees the close), and cm_tconn_reply says so. */
    CHECK_EQ_INT(cm_transport_roundtrip(c, addr, &req, 5000, on_result, &r, NULL), 0);
    while (e.seen < 6) {
        uv_run(L, UV_RUN_ONCE);
    }
    int done = 0;
    cm_listener_close(l, set_flag, &done);
    in_thread(reply_early_thread, &e);
    CHECK_EQ_INT(e.rc, 0);
    cm_msg rsp = {NULL, 0, NULL, 0};
    CHECK_EQ_INT(cm_tconn_reply(e.conn, &rsp, 0), CM_ECLOSED);
    run_until(&done, 5000);
    run_until(&r.done, 5000);
    CHECK_EQ_INT(r.status, CM_ECLOSED);
    result_free(&r);
    free(body);
    client_close(c);
    client_close(t);
}

/* ---- memory per connection ---- */

#define MEM_CONNS 48

typedef struct memjob {
    server *s;
    int fail;
    size_t idle_bytes; /* heap per idle keep-alive connection, after a request */
    size_t held_bytes; /* heap per connection whose request is with the handler */
} memjob;

static size_t
heap_used(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0; /* the test is skipped */
#endif
}

/* Opens MEM_CONNS connections that each make a request, and measures the heap they hold. */
static void
job_memory(void *arg)
{
    memjob *j = arg;
    int fds[MEM_CONNS];
    char buf[4096];
    /* A first connection: what the listener allocates once (its read buffer) is not counted. */
    int warm = raw_connect(j->s->port);
    raw_send_str(warm, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    if (j->s->mode == REPLY_NOW) {
        size_t have = 0;
        T_CHECK(j, raw_read_response(warm, buf, sizeof(buf), &have) > 0, 2);
    }
    usleep(50000);
    size_t before = heap_used();
    for (int i = 0; i < MEM_CONNS; i++) {
        fds[i] = raw_connect(j->s->port);
        raw_send_str(fds[i],
                     "POST / HTTP/1.1\r\nHost: x\r\nX-Test: m\r\nContent-Length: 2\r\n\r\nhi");
        if (j->s->mode == REPLY_NOW) {
            size_t have = 0;
            T_CHECK(j, raw_read_response(fds[i], buf, sizeof(buf), &have) > 0, 1);
        }
    }
    for (int i = 0; i < 500 && __atomic_load_n(&j->s->nheld, __ATOMIC_RELAXED) <
                                   (j->s->mode == REPLY_NOW ? 0 : MEM_CONNS + 1);
         i++) {
        usleep(10000);
    }
    usleep(50000); /* the last read callbacks finish */
    size_t after = heap_used();
    size_t per = after > before ? (after - before) / MEM_CONNS : 0;
    *(j->s->mode == REPLY_NOW ? &j->idle_bytes : &j->held_bytes) = per;
    for (int i = 0; i < MEM_CONNS; i++) {
        close(fds[i]);
    }
    close(warm);
}

/* A connection holds no read buffer while it has nothing unparsed (reads go to a buffer of the
 * loop's), no timer and no write or shutdown request of its own, and no parser while it is idle
 * (the listener's pool lends one for each request): an idle keep-alive connection costs about
 * 0.5 KiB, one whose request is with the handler about 1.7 KiB (19.6 KiB with a read buffer of
 * its own, 2 KiB for both with a parser of its own). */
static void
test_memory_per_conn(void)
{
    if (heap_used() == 0) {
        printf("  (skipped: this allocator does not report mallinfo2)\n");
        return;
    }
    memjob j = {NULL, 0, 0, 0};
    const int modes[] = {REPLY_NOW, REPLY_NEVER};
    for (int i = 0; i < 2; i++) {
        server s;
        server_start(&s, NULL);
        s.mode = modes[i];
        j.s = &s;
        in_thread(job_memory, &j);
        CHECK_EQ_INT(j.fail, 0);
        server_stop(&s);
    }
    printf("  heap per connection: idle %zu B, request held %zu B\n", j.idle_bytes, j.held_bytes);
    CHECK(j.idle_bytes > 0 && j.idle_bytes < 768);
    CHECK(j.held_bytes > 0 && j.held_bytes < 2048);
}

/* ---- call slots (max_calls) ---- */

/* Sends a request tagged tag (X-Test) on a new connection to port; returns the connection. */
static int
send_tagged(int port, const char *method, const char *tag, int n)
{
    int fd = raw_connect(port);
    char *req = strdupf("%s / HTTP/1.1\r\nHost: x\r\nX-Test: %s\r\nContent-Length: %d\r\n\r\n%.*s",
                        method, tag, n, n, "0123456789");
    raw_send_str(fd, req);
    free(req);
    return fd;
}

/* Reads the response on fd and checks that it echoes tag (X-Echo); step numbers the checks. */
static void
expect_echo(rawjob *j, int fd, const char *tag, int step)
{
    char buf[4096], want[32];
    size_t have = 0;
    T_CHECK(j, raw_read_response(fd, buf, sizeof(buf), &have) > 0, step);
    snprintf(want, sizeof(want), "X-Echo: %s\r\n", tag);
    T_CHECK(j, strstr(buf, want) != NULL, 10 + step);
}

/* The client side of test_call_slots: five connections, each with one request (X-Test a0, a1,
 * a2, x, a3, sent in that order); "x" closes before it is answered. */
static void
job_call_slots(void *arg)
{
    rawjob *j = arg;
    const char *tags[] = {"a0", "a1", "a2", "x", "a3"};
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = send_tagged(j->port, "POST", tags[i], 1);
        usleep(50000); /* the server reads them in this order */
    }
    close(fds[3]);
    for (int i = 0; i < 5; i++) {
        if (i != 3) {
            expect_echo(j, fds[i], tags[i], 1 + i);
            close(fds[i]);
        }
    }
}

/* Turns the loop until s has seen n requests, then for 200 ms more: no other one comes. */
static void
expect_seen(server *s, int n)
{
    for (int i = 0; i < 500 && s->seen < n; i++) {
        run_for(10);
    }
    CHECK_EQ_INT(s->seen, n);
    run_for(200);
    CHECK_EQ_INT(s->seen, n);
}

/* Replies the oldest held request. */
static void
reply_oldest(server *s)
{
    CHECK(s->nheld > 0);
    echo_reply(s, s->held[0], s->held_req[0], s->held_seq[0]);
    s->nheld--;
    memmove(s->held, s->held + 1, (size_t)s->nheld * sizeof(s->held[0]));
    memmove(s->held_req, s->held_req + 1, (size_t)s->nheld * sizeof(s->held_req[0]));
    memmove(s->held_seq, s->held_seq + 1, (size_t)s->nheld * sizeof(s->held_seq[0]));
}

/* A server with max_calls slots that holds its requests, and the raw clients of job on a thread. */
static void
slots_start(server *s, unsigned max_calls, rawjob *j, worker *w, void (*job)(void *))
{
    cm_transport_opts o;
    cm_transport_opts_init(&o);
    o.max_calls = max_calls;
    server_start(s, &o);
    s->mode = REPLY_NEVER;
    *j = (rawjob){s->port, 0};
    worker_start(w, job, j);
}

/* With max_calls 2, two requests are with the callback and the others wait unread; each reply
 * lets in the connection that waited longest, one that closed meanwhile included. */
static void
test_call_slots(void)
{
    server s;
    rawjob j;
    worker w;
    slots_start(&s, 2, &j, &w, job_call_slots);
    expect_seen(&s, 2);
    run_for(200); /* every request was sent: still two */
    CHECK_EQ_INT(s.seen, 2);
    const char *next[] = {"a2", "x", "a3"};
    for (int i = 0; i < 3; i++) {
        reply_oldest(&s);
        expect_seen(&s, 3 + i);
        CHECK_EQ_STR(cm_msg_header(s.held_req[1], "X-Test"), next[i]);
    }
    while (s.nheld > 0) {
        reply_oldest(&s);
    }
    worker_wait(&w, 10000);
    CHECK_EQ_INT(j.fail, 0);
    cm_listener_stats st;
    cm_listener_get_stats(s.l, &st);
    CHECK_EQ_INT(st.requests, 5);
    server_stop(&s);
}

/* The client side of test_slot_not_kept: "a" takes the one slot, then "b" sends half a header
 * block and "c" a whole request, both while the slot is taken. */
static void
job_slot_not_kept(void *arg)
{
    rawjob *j = arg;
    int a = raw_connect(j->port), b = raw_connect(j->port), c = raw_connect(j->port);
    raw_send_str(a, "POST / HTTP/1.1\r\nHost: x\r\nX-Test: a\r\nContent-Length: 0\r\n\r\n");
    usleep(100000);
    raw_send_str(b, "POST / HTTP/1.1\r\nHo");
    usleep(50000);
    raw_send_str(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Test: c\r\nContent-Length: 0\r\n\r\n");
    char buf[4096];
    size_t have = 0;
    T_CHECK(j, raw_read_response(a, buf, sizeof(buf), &have) > 0, 1);
    have = 0;
    T_CHECK(j, raw_read_response(c, buf, sizeof(buf), &have) > 0, 2);
    T_CHECK(j, strstr(buf, "X-Echo: c\r\n") != NULL, 3);
    close(a);
    close(b);
    close(c);
}

/* A slot kept for a waiting connection whose bytes do not make a request goes on to the next
 * one at once (not when its header deadline passes). */
static void
test_slot_not_kept(void)
{
    server s;
    rawjob j;
    worker w;
    slots_start(&s, 1, &j, &w, job_slot_not_kept);
    expect_seen(&s, 1);
    run_for(100); /* "b" and "c" wait */
    CHECK_EQ_INT(s.seen, 1);
    reply_oldest(&s); /* the slot is kept for "b", which has no request: "c" gets it */
    expect_seen(&s, 2);
    CHECK_EQ_STR(cm_msg_header(s.held_req[0], "X-Test"), "c");
    reply_oldest(&s);
    worker_wait(&w, 10000);
    CHECK_EQ_INT(j.fail, 0);
    server_stop(&s);
}

/* The client side of test_get_slots: "a" (a POST) takes the one slot, then six GETs (g0 to g5)
 * and a POST "p" come, each on a connection of its own. */
static void
job_get_slots(void *arg)
{
    rawjob *j = arg;
    const char *tags[] = {"a", "g0", "g1", "g2", "g3", "g4", "g5", "p"};
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = send_tagged(j->port, tags[i][0] == 'g' ? "GET" : "POST", tags[i], 0);
        usleep(50000); /* the server reads them in this order */
    }
    for (int i = 0; i < 8; i++) {
        expect_echo(j, fds[i], tags[i], 1 + i);
        close(fds[i]);
    }
}

/* Every slot taken, a GET is taken all the same, up to four beyond max_calls (health probes
 * answered under saturation); the fifth waits in line with the POSTs, and none of them gets in
 * until the count is below max_calls again. */
static void
test_get_slots(void)
{
    server s;
    rawjob j;
    worker w;
    slots_start(&s, 1, &j, &w, job_get_slots);
    expect_seen(&s, 5); /* a, g0 to g3 */
    run_for(300);       /* every request was sent */
    CHECK_EQ_INT(s.seen, 5);
    for (int i = 0; i < 4; i++) {
        reply_oldest(&s); /* a, g0, g1, g2: the GETs left still hold the slot */
    }
    run_for(100);
    CHECK_EQ_INT(s.seen, 5);
    const char *next[] = {"g4", "g5", "p"};
    for (int i = 0; i < 3; i++) {
        reply_oldest(&s);
        expect_seen(&s, 6 + i);
        CHECK_EQ_STR(cm_msg_header(s.held_req[0], "X-Test"), next[i]);
    }
    reply_oldest(&s);
    worker_wait(&w, 10000);
    CHECK_EQ_INT(j.fail, 0);
    server_stop(&s);
}

/* ---- corked stream writes ---- */

#define CORK_MSGS 64

typedef struct corked {
    cm_tconn *conn;  /* the server's connection, once its first request came */
    cm_tstream *sts; /* the server's end */
    int got;         /* messages the client received */
    int bad;         /* ... out of order or with the wrong body */
    int ended;
    size_t len;  /* the body length of each message */
    int written; /* the server's on_written calls */
    int sgot;    /* corked requests the server received, in order */
} corked;

static void
on_cork_request(cm_tconn *c, int status, const cm_msg *req, void *user)
{
    (void)req;
    CHECK_EQ_INT(status, 0);
    corked *k = *(corked **)user; /* the round under way */
    CHECK(k != NULL && k->conn == NULL);
    k->conn = c;
}

static void
cork_srv_msg(void *user, const cm_msg *m)
{
    corked *k = user;
    char want[16];
    snprintf(want, sizeof want, "c%d", k->sgot);
    CHECK(m->body_len == strlen(want) && memcmp(m->body, want, m->body_len) == 0);
    k->sgot++;
}

static void
cork_end(void *user, int status)
{
    (void)status;
    ((corked *)user)->ended = 1;
}

static void
cork_written(void *user)
{
    ((corked *)user)->written++;
}

static void
cork_fill(uint8_t *b, size_t len, int i)
{
    for (size_t k = 0; k < len; k++) {
        b[k] = (uint8_t)(i * 7 + k);
    }
}

static void
cork_cli_msg(void *user, const cm_msg *m)
{
    corked *k = user;
    uint8_t *want = malloc(k->len + 1);
    CHECK(want != NULL);
    cork_fill(want, k->len, k->got);
    char seq[16];
    snprintf(seq, sizeof seq, "%d", k->got);
    const char *h = cm_msg_header(m, "X-Seq");
    if (m->body_len != k->len || memcmp(m->body, want, k->len) != 0 || h == NULL ||
        strcmp(h, seq) != 0) {
        k->bad++;
    }
    k->got++;
    free(want);
}

/* Opens a stream to addr for round k: the client's first message makes the server's request,
 * whose connection becomes the server's end (k->sts). Returns the client's end. */
static cm_tstream *
cork_open(cm_transport *c, const char *addr, corked *k, int count_written)
{
    static const cm_tstream_cbs scbs = {cork_srv_msg, cork_end, cork_written};
    static const cm_tstream_cbs scbs_quiet = {cork_srv_msg, cork_end, NULL};
    static const cm_tstream_cbs ccbs = {cork_cli_msg, cork_end, NULL};
    cm_tstream *cts;
    CHECK_EQ_INT(cm_transport_dial_stream(c, addr, 5000, &ccbs, k, &cts), 0);
    cm_msg first = {NULL, 0, (const uint8_t *)"go", 2};
    CHECK_EQ_INT(cm_tstream_send(cts, &first), 0);
    while (k->conn == NULL) {
        uv_run(L, UV_RUN_ONCE);
    }
    CHECK_EQ_INT(cm_tconn_stream(k->conn, count_written ? &scbs : &scbs_quiet, k, &k->sts), 0);
    return cts;
}

/* The server sends CORK_MSGS messages of len bytes corked: until the uncork they are gathered
 * (counted as queued, none reaches the client), then they go out in order. With the client
 * paused and big messages, the socket takes part of the gathered bytes and the rest is queued
 * without loss. */
static void
cork_round(cm_transport *c, const char *addr, corked **cur, size_t len, int pause_client)
{
    corked k = {0};
    k.len = len;
    *cur = &k;
    cm_tstream *cts = cork_open(c, addr, &k, 1);
    /* The client's side corks too. */
    CHECK_EQ_INT(cm_tstream_cork(cts, 1), 0);
    for (int i = 0; i < 3; i++) {
        char b[16];
        snprintf(b, sizeof b, "c%d", i);
        cm_msg m = {NULL, 0, (const uint8_t *)b, strlen(b)};
        CHECK_EQ_INT(cm_tstream_send(cts, &m), 0);
    }
    CHECK(cm_tstream_queued(cts) > 6);
    CHECK_EQ_INT(cm_tstream_cork(cts, 0), 0);
    CHECK_EQ_INT(cm_tstream_queued(cts), 0);
    while (k.sgot < 3) {
        uv_run(L, UV_RUN_ONCE);
    }
    if (pause_client) {
        cm_tstream_pause(cts, 1);
    }
    uint8_t *body = malloc(len);
    CHECK(body != NULL);
    CHECK_EQ_INT(cm_tstream_cork(k.sts, 1), 0);
    size_t sent = 0;
    for (int i = 0; i < CORK_MSGS; i++) {
        char seq[16];
        snprintf(seq, sizeof seq, "%d", i);
        cm_hdr h = {"X-Seq", seq};
        cork_fill(body, len, i);
        cm_msg m = {&h, 1, body, len};
        CHECK_EQ_INT(cm_tstream_send(k.sts, &m), 0);
        sent += len;
    }
    CHECK(cm_tstream_queued(k.sts) > sent); /* gathered: the bodies and their heads */
    run_for(50);
    CHECK_EQ_INT(k.got, 0);
    CHECK_EQ_INT(cm_tstream_cork(k.sts, 0), 0);
    free(body);
    if (pause_client) {
        CHECK(cm_tstream_queued(k.sts) > 0); /* more than the socket takes at once */
        run_for(100);
        CHECK_EQ_INT(k.got, 0);
        cm_tstream_pause(cts, 0);
    } else {
        CHECK_EQ_INT(cm_tstream_queued(k.sts), 0); /* one write took them all */
    }
    uint64_t t0 = uv_now(L);
    while (k.got < CORK_MSGS && uv_now(L) - t0 < 10000) {
        uv_run(L, UV_RUN_ONCE);
    }
    CHECK_EQ_INT(k.got, CORK_MSGS);
    CHECK_EQ_INT(k.bad, 0);
    CHECK_EQ_INT(cm_tstream_queued(k.sts), 0);
    CHECK(pause_client ? k.written > 0 : k.written == 0);
    CHECK_EQ_INT(k.ended, 0);
    cm_tstream_close(cts);
    cm_tstream_close(k.sts);
    run_for(50);
    *cur = NULL;
}

/* A stream closed while corked writes what it gathered first: the server's three messages
 * reach the client before the end, and so do the client's three. */
static void
close_corked_round(cm_transport *c, const char *addr, corked **cur, int server_closes)
{
    corked k = {0};
    k.len = 10;
    *cur = &k;
    cm_tstream *cts = cork_open(c, addr, &k, 0);
    cm_tstream *from = server_closes ? k.sts : cts;
    CHECK_EQ_INT(cm_tstream_cork(from, 1), 0);
    uint8_t body[10];
    for (int i = 0; i < 3; i++) {
        char seq[16];
        snprintf(seq, sizeof seq, server_closes ? "%d" : "c%d", i);
        cm_hdr h = {"X-Seq", seq};
        cork_fill(body, sizeof body, i);
        cm_msg m = {&h, 1, server_closes ? body : (const uint8_t *)seq,
                    server_closes ? sizeof body : strlen(seq)};
        CHECK_EQ_INT(cm_tstream_send(from, &m), 0);
    }
    cm_tstream_close(from);    /* no uncork */
    run_until(&k.ended, 5000); /* the other side's end, after the messages */
    CHECK_EQ_INT(server_closes ? k.got : k.sgot, 3);
    CHECK_EQ_INT(k.bad, 0);
    cm_tstream_close(server_closes ? cts : k.sts);
    run_for(50);
    *cur = NULL;
}

static void
test_stream_cork(void)
{
    cm_transport *t, *c;
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &t), 0);
    CHECK_EQ_INT(cm_transport_new(CL, NULL, NULL, &c), 0);
    corked *cur = NULL;
    cm_listener *l;
    char addr[64];
    CHECK_EQ_INT(cm_transport_listen(t, "127.0.0.1:0", on_cork_request, &cur, &l), 0);
    CHECK_EQ_INT(cm_listener_addr(l, addr, sizeof(addr)), 0);
    cork_round(c, addr, &cur, 64, 0);
    cork_round(c, addr, &cur, 256 * 1024, 1); /* 16 MiB gathered */
    cork_round(c, addr, &cur, 100, 0);        /* the connection's buffer kept or trimmed */
    close_corked_round(c, addr, &cur, 1);
    close_corked_round(c, addr, &cur, 0);
    int done = 0;
    cm_listener_close(l, set_flag, &done);
    run_until(&done, 5000);
    client_close(c);
    client_close(t);
}

int
main(void)
{
    harness_init();
    RUN(test_roundtrip);
    RUN(test_chunked_empty);
    RUN(test_split);
    RUN(test_sequential);
    RUN(test_bad_inputs);
    RUN(test_pipelined);
    RUN(test_conn_close);
    RUN(test_idle_kept);
    RUN(test_peer_leaves);
    RUN(test_close_in_flight);
    RUN(test_big_bodies);
    RUN(test_listen_addresses);
    RUN(test_reuse_port);
    RUN(test_reply_early);
    RUN(test_memory_per_conn);
    RUN(test_call_slots);
    RUN(test_get_slots);
    RUN(test_slot_not_kept);
    RUN(test_stream_cork);
    harness_done();
    TEST_DONE();
}
