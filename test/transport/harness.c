/* The transport tests' helpers (harness.h): the loop, a helper thread, raw blocking sockets and
 * an echo server. Compiled once per suite. */
#include "harness.h"

#include <signal.h>

cm_loop *CL;
uv_loop_t *L;

/* ---- running the loop ---- */

static void
on_guard(uv_timer_t *h)
{
    *(int *)h->data = 1;
}

void
run_until(volatile int *flag, uint64_t ms)
{
    int expired = 0;
    uv_timer_t guard;
    uv_timer_init(L, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, on_guard, ms, 0);
    while (!*flag && !expired) {
        uv_run(L, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(L, UV_RUN_NOWAIT);
    CHECK(*flag);
}

void
run_for(uint64_t ms)
{
    int never = 0, expired = 0;
    uv_timer_t guard;
    uv_timer_init(L, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, on_guard, ms, 0);
    while (!never && !expired) {
        uv_run(L, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(L, UV_RUN_NOWAIT);
}

/* ---- a helper thread ---- */

static void
on_worker_async(uv_async_t *a)
{
    ((worker *)a->data)->finished = 1;
}

static void
worker_main(void *p)
{
    worker *w = p;
    w->fn(w->arg);
    uv_async_send(&w->async);
}

void
worker_start(worker *w, void (*fn)(void *), void *arg)
{
    memset(w, 0, sizeof(*w));
    w->fn = fn;
    w->arg = arg;
    uv_async_init(L, &w->async, on_worker_async);
    w->async.data = w;
    CHECK(uv_thread_create(&w->th, worker_main, w) == 0);
}

void
worker_wait(worker *w, uint64_t ms)
{
    run_until(&w->finished, ms);
    uv_thread_join(&w->th);
    uv_close((uv_handle_t *)&w->async, NULL);
    uv_run(L, UV_RUN_NOWAIT);
}

void
in_thread(void (*fn)(void *), void *arg)
{
    worker w;
    worker_start(&w, fn, arg);
    worker_wait(&w, 30000);
}

/* ---- raw blocking sockets (helper thread only) ---- */

int
raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int
raw_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

void
raw_send_str(int fd, const char *s)
{
    CHECK(raw_send(fd, s, strlen(s)) == 0);
}

size_t
raw_read_all(int fd, char *buf, size_t cap, int *eof)
{
    size_t len = 0;
    *eof = 0;
    while (len + 1 < cap) {
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0) {
            *eof = 1;
            break;
        }
        if (r < 0) {
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    return len;
}

const char *
raw_header(const char *head, const char *key, char *val, size_t cap)
{
    size_t kn = strlen(key);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, key, kn) == 0 && line[kn] == ':') {
            const char *v = line + kn + 1;
            while (*v == ' ') {
                v++;
            }
            const char *e = strstr(v, "\r\n");
            size_t n = (size_t)(e - v);
            if (n >= cap) {
                n = cap - 1;
            }
            memcpy(val, v, n);
            val[n] = '\0';
            return val;
        }
    }
    return NULL;
}

size_t
raw_read_response(int fd, char *buf, size_t cap, size_t *have)
{
    for (;;) {
        buf[*have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            char v[32];
            size_t head = (size_t)(end - buf) + 4;
            size_t body = raw_header(buf, "Content-Length", v, sizeof(v)) ? strtoul(v, 0, 10) : 0;
            if (*have >= head + body) {
                return head + body;
            }
        }
        if (*have + 1 >= cap) {
            return 0;
        }
        ssize_t r = recv(fd, buf + *have, cap - 1 - *have, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return 0;
        }
        *have += (size_t)r;
    }
}

void
raw_consume(char *buf, size_t *have, size_t n)
{
    memmove(buf, buf + n, *have - n);
    *have -= n;
    buf[*have] = '\0';
}

char *
strdupf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    CHECK(s != NULL);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- an echo server ---- */

char *
render(const cm_msg *m)
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

void
echo_reply(server *s, cm_tconn *c, const cm_msg *req, int seq)
{
    char sq[16];
    snprintf(sq, sizeof(sq), "%d", seq);
    const char *xt = cm_msg_header(req, "x-TEST");
    const char *ct = cm_msg_header(req, "content-type");
    char *r = render(req);
    cm_hdr h[] = {{"X-Seq", sq},
                  {"X-Echo", xt ? xt : "(none)"},
                  {"Content-Type", ct ? ct : ""},
                  {"Content-Length", "999"},
                  {"Connection", "keep-alive"},
                  {"X-Render", r}};
    cm_msg rsp = {h, 6, req->body, req->body_len};
    s->reply_rc = cm_tconn_reply(c, &rsp, 0);
    free(r);
}

static void
on_later(uv_timer_t *h)
{
    server *s = h->data;
    int n = s->nheld;
    s->nheld = 0;
    for (int i = 0; i < n; i++) {
        echo_reply(s, s->held[i], s->held_req[i], s->held_seq[i]);
    }
}

void
on_request(cm_tconn *c, int status, const cm_msg *req, void *user)
{
    server *s = user;
    if (status < 0) {
        /* A request the transport refused: answer with the code, as the RPC layer would with
         * its own error; the transport closes after this reply. */
        CHECK(req == NULL);
        s->refused++;
        s->last_refusal = status;
        cm_hdr h = {"X-Refused", cm_err_name(status)};
        cm_msg rsp = {&h, 1, NULL, 0};
        s->reply_rc = cm_tconn_reply(c, &rsp, 0);
        return;
    }
    s->seen++;
    free(s->last);
    s->last = render(req);
    CHECK(cm_tconn_peer(c)[0] != '\0');
    CHECK(strncmp(cm_tconn_local(c), "127.0.0.1:", 10) == 0);
    if (s->mode == REPLY_NOW) {
        echo_reply(s, c, req, s->seen);
        return;
    }
    CHECK(s->nheld < MAX_HELD);
    s->held[s->nheld] = c;
    s->held_req[s->nheld] = req;
    s->held_seq[s->nheld] = s->seen;
    s->nheld++;
    if (s->mode == REPLY_LATER) {
        uv_timer_start(&s->later, on_later, 1, 0);
    }
}

void
server_start(server *s, const cm_transport_opts *o)
{
    memset(s, 0, sizeof(*s));
    CHECK_EQ_INT(cm_transport_new(CL, "http", o, &s->t), 0);
    CHECK_EQ_INT(cm_transport_listen(s->t, "127.0.0.1:0", on_request, s, &s->l), 0);
    CHECK_EQ_INT(cm_listener_addr(s->l, s->addr, sizeof(s->addr)), 0);
    CHECK(strncmp(s->addr, "127.0.0.1:", 10) == 0);
    s->port = atoi(s->addr + 10);
    CHECK(s->port > 0);
    uv_timer_init(L, &s->later);
    s->later.data = s;
}

void
set_flag(void *arg)
{
    (*(int *)arg)++;
}

void
server_stop(server *s)
{
    int ldone = 0, tdone = 0;
    cm_listener_close(s->l, set_flag, &ldone);
    CHECK_EQ_INT(ldone, 0);
    run_until(&ldone, 5000);
    for (int i = 0; i < s->nheld; i++) {
        cm_msg empty = {NULL, 0, NULL, 0};
        CHECK_EQ_INT(cm_tconn_reply(s->held[i], &empty, 0), CM_ECLOSED);
    }
    s->nheld = 0;
    uv_close((uv_handle_t *)&s->later, NULL);
    cm_transport_close(s->t, set_flag, &tdone);
    CHECK_EQ_INT(tdone, 0);
    run_until(&tdone, 5000);
    free(s->last);
}

void
harness_init(void)
{
    CHECK_EQ_INT(cm_loop_new(&CL), 0);
    L = cm_loop_uv(CL);
    signal(SIGPIPE, SIG_IGN);
}

void
harness_done(void)
{
    uv_run(L, UV_RUN_NOWAIT);
    cm_loop_free(CL);
}
