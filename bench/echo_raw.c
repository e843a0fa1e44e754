/* The physical limit: a raw libuv TCP server that answers go-micro's echo request with exactly
 * the bytes cmicro's server answers (status line, Content-Length, Content-Type, the request's
 * body). It parses just enough to frame a request: the end of the header block and
 * Content-Length. One loop, one thread, buffers kept per connection, uv_try_write of header and
 * body together (writev). It stops on SIGINT or SIGTERM.
 *
 *   echo-raw [PORT]      prints "listening 127.0.0.1:PORT" once it accepts
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define RBUF_CAP (256 * 1024)

typedef struct conn {
    uv_tcp_t tcp;
    uv_write_t wreq;
    char *rbuf;
    size_t rlen;
    char *wbuf; /* what uv_try_write could not take */
    int writing;
} conn;

static uv_tcp_t server;
static uv_signal_t sigs[2];

static void
on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    free(c->rbuf);
    free(c->wbuf);
    free(c);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = h->data;
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(RBUF_CAP - c->rlen));
}

static void
on_write(uv_write_t *w, int status)
{
    conn *c = w->data;
    c->writing = 0;
    free(c->wbuf);
    c->wbuf = NULL;
    if (status < 0 && !uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}

/* Answers every complete request in the buffer; returns the bytes used, or -1 to close. */
static ssize_t
serve(conn *c)
{
    size_t used = 0;
    for (;;) {
        char *p = c->rbuf + used;
        size_t n = c->rlen - used;
        char *end = memmem(p, n, "\r\n\r\n", 4);
        if (!end) {
            return n == RBUF_CAP ? -1 : (ssize_t)used;
        }
        size_t hlen = (size_t)(end - p) + 4;
        size_t clen = 0;
        for (char *q = p; q < end; q++) {
            if (*q == '\n' && (size_t)(end - q) > 16 && strncasecmp(q + 1, "Content-Length:", 15) == 0) {
                clen = strtoul(q + 16, NULL, 10);
            }
        }
        if (hlen + clen > RBUF_CAP) {
            return -1;
        }
        if (n < hlen + clen) {
            return (ssize_t)used;
        }
        char hdr[128];
        int hn = snprintf(hdr, sizeof(hdr),
                          clen ? "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                                 "Content-Type: application/protobuf\r\n\r\n"
                               : "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
                          clen);
        uv_buf_t b[2] = {uv_buf_init(hdr, (unsigned)hn), uv_buf_init(p + hlen, (unsigned)clen)};
        size_t want = (size_t)hn + clen;
        int w = c->writing ? UV_EAGAIN : uv_try_write((uv_stream_t *)&c->tcp, b, clen ? 2 : 1);
        if (w < 0 && w != UV_EAGAIN) {
            return -1;
        }
        size_t done = w > 0 ? (size_t)w : 0;
        if (done < want) {
            /* Rare: copy what is left and queue it. */
            size_t left = want - done;
            char *copy = malloc(left);
            if (!copy || c->writing) {
                free(copy);
                return -1;
            }
            char all[128 + RBUF_CAP];
            memcpy(all, hdr, (size_t)hn);
            memcpy(all + hn, p + hlen, clen);
            memcpy(copy, all + done, left);
            c->wbuf = copy;
            c->writing = 1;
            uv_buf_t rest = uv_buf_init(copy, (unsigned)left);
            if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &rest, 1, on_write) < 0) {
                return -1;
            }
        }
        used += hlen + clen;
    }
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn *c = s->data;
    if (nread < 0) {
        if (!uv_is_closing((uv_handle_t *)s)) {
            uv_close((uv_handle_t *)s, on_closed);
        }
        return;
    }
    c->rlen += (size_t)nread;
    ssize_t used = serve(c);
    if (used < 0) {
        uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    if (used > 0) {
        memmove(c->rbuf, c->rbuf + used, c->rlen - (size_t)used);
        c->rlen -= (size_t)used;
    }
}

static void
on_connection(uv_stream_t *srv, int status)
{
    if (status < 0) {
        return;
    }
    conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->rbuf = malloc(RBUF_CAP))) {
        free(c);
        return;
    }
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    c->wreq.data = c;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void
close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, h->type == UV_TCP && h != (uv_handle_t *)&server ? on_closed : NULL);
    }
}

static void
on_signal(uv_signal_t *s, int sig)
{
    (void)sig;
    uv_walk(s->loop, close_walk, NULL);
}

int
main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    uv_loop_t *loop = uv_default_loop();
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(loop, &server);
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&sa, 0);
    if (r == 0) {
        r = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    }
    if (r < 0) {
        fprintf(stderr, "echo-raw: listen: %s\n", uv_strerror(r));
        return 1;
    }
    int len = sizeof(sa);
    uv_tcp_getsockname(&server, (struct sockaddr *)&sa, &len);
    uv_signal_init(loop, &sigs[0]);
    uv_signal_start_oneshot(&sigs[0], on_signal, SIGINT);
    uv_signal_init(loop, &sigs[1]);
    uv_signal_start_oneshot(&sigs[1], on_signal, SIGTERM);
    printf("listening 127.0.0.1:%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
