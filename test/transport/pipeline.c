/* The HTTP server's reading under pipelining: six connections each send 300 requests without
 * waiting (bodies up to 9 KB, some chunked, some with "Expect: 100-continue", targets up to
 * 1,000 bytes), cut into random pieces with short pauses; the replies come now or later. Every
 * reply must come back in order with its request's body and its target (truncated to 2048 bytes).
 * This drives the lent read buffer both ways: bytes left unparsed, and more than the lending
 * threshold waiting. */
#include "harness.h"

#include <pthread.h>
#include <time.h>

#define NCONN 6
#define NREQ 300

typedef struct creq {
    char *wire;
    size_t wlen;
    char *path; /* expected :path (truncated) or NULL for POST / */
    char *body;
    size_t blen;
} creq;

typedef struct cjob {
    server *s;
    int fd;
    unsigned seed;
    creq reqs[NREQ];
    int fail;
    int got;
} cjob;

static unsigned
rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

static void
build(cjob *j)
{
    unsigned *sd = &j->seed;
    for (int i = 0; i < NREQ; i++) {
        creq *r = &j->reqs[i];
        unsigned kind = rnd(sd) % 4;
        size_t blen = rnd(sd) % 5 == 0 ? rnd(sd) % 9000 : rnd(sd) % 300;
        r->body = malloc(blen + 1);
        for (size_t k = 0; k < blen; k++) {
            r->body[k] = (char)('a' + (k * 7 + (size_t)i) % 26);
        }
        r->body[blen] = 0;
        r->blen = blen;
        char url[2700];
        if (kind == 0) {
            strcpy(url, "/");
            r->path = NULL;
        } else {
            size_t ul = 2 + rnd(sd) % (rnd(sd) % 3 == 0 ? 2600 : 60);
            url[0] = '/';
            for (size_t k = 1; k < ul; k++) {
                url[k] = (char)('A' + (k + (size_t)i) % 26);
            }
            url[ul] = 0;
            r->path = strndup(url, 2048);
        }
        const char *method = kind == 0 ? "POST" : kind == 1 ? "PUT" : "POST";
        int expect = rnd(sd) % 4 == 0 && blen > 0;
        int chunked = rnd(sd) % 5 == 0;
        cm__http_buf b = {0};
        char head[3072];
        int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: x\r\nX-Test: r%d\r\n%s%s",
                         method, url, i, expect ? "Expect: 100-continue\r\n" : "",
                         chunked ? "Transfer-Encoding: chunked\r\n" : "");
        cm__http_buf_append(&b, head, (size_t)n);
        if (chunked) {
            cm__http_buf_append(&b, "\r\n", 2);
            size_t off = 0;
            while (off < blen) {
                size_t c = 1 + rnd(sd) % 700;
                if (c > blen - off) {
                    c = blen - off;
                }
                n = snprintf(head, sizeof head, "%zx\r\n", c);
                cm__http_buf_append(&b, head, (size_t)n);
                cm__http_buf_append(&b, r->body + off, c);
                cm__http_buf_append(&b, "\r\n", 2);
                off += c;
            }
            cm__http_buf_append(&b, "0\r\n\r\n", 5);
        } else {
            n = snprintf(head, sizeof head, "Content-Length: %zu\r\n\r\n", blen);
            cm__http_buf_append(&b, head, (size_t)n);
            cm__http_buf_append(&b, r->body, blen);
        }
        r->wire = b.p;
        r->wlen = b.len;
    }
}

static void *
writer(void *arg)
{
    cjob *j = arg;
    unsigned sd = j->seed ^ 0x5555;
    for (int i = 0; i < NREQ; i++) {
        creq *r = &j->reqs[i];
        size_t off = 0;
        while (off < r->wlen) {
            unsigned m = rnd(&sd) % 10;
            size_t c = m < 3 ? 1 + rnd(&sd) % 8 : m < 7 ? 1 + rnd(&sd) % 600 : r->wlen - off;
            if (c > r->wlen - off) {
                c = r->wlen - off;
            }
            if (raw_send(j->fd, r->wire + off, c) < 0) {
                return NULL;
            }
            off += c;
            if (rnd(&sd) % 8 == 0) {
                usleep(200);
            }
        }
    }
    return NULL;
}

static const char CONT[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void
job(void *arg)
{
    cjob *j = arg;
    j->fd = raw_connect(j->s->port);
    pthread_t th;
    pthread_create(&th, NULL, writer, j);
    size_t cap = 1 << 20, have = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < NREQ; i++) {
        for (;;) {
            while (have >= sizeof(CONT) - 1 && memcmp(buf, CONT, sizeof(CONT) - 1) == 0) {
                raw_consume(buf, &have, sizeof(CONT) - 1);
            }
            if (have >= sizeof(CONT) - 1 || (have > 0 && memcmp(buf, CONT, have) != 0)) {
                break;
            }
            ssize_t n = recv(j->fd, buf + have, cap - have, 0);
            if (n <= 0) {
                fprintf(stderr, "conn: EOF/timeout before response %d\n", i);
                j->fail = 1;
                goto out;
            }
            have += (size_t)n;
        }
        size_t len = raw_read_response(j->fd, buf, cap, &have);
        if (len == 0) {
            fprintf(stderr, "no response %d\n", i);
            j->fail = 1;
            goto out;
        }
        char val[64];
        char want[16];
        snprintf(want, sizeof want, "r%d", i);
        char save = buf[len];
        buf[len] = 0;
        const char *hend = strstr(buf, "\r\n\r\n");
        if (!raw_header(buf, "X-Echo", val, sizeof val) || strcmp(val, want) != 0) {
            fprintf(stderr, "resp %d: X-Echo %s\n", i, val);
            j->fail = 1;
        }
        creq *r = &j->reqs[i];
        size_t bl = len - (size_t)(hend + 4 - buf);
        if (bl != r->blen || memcmp(hend + 4, r->body, bl) != 0) {
            fprintf(stderr, "resp %d: body mismatch %zu vs %zu\n", i, bl, r->blen);
            j->fail = 1;
        }
        if (r->path) {
            char *needle = strdupf(":path=%s ", r->path);
            if (strstr(buf, needle) == NULL) {
                fprintf(stderr, "resp %d: no :path of %zu bytes\n", i, strlen(r->path));
                j->fail = 1;
            }
            free(needle);
        } else if (strstr(buf, ":path=") != NULL) {
            fprintf(stderr, "resp %d: unexpected path\n", i);
            j->fail = 1;
        }
        buf[len] = save;
        raw_consume(buf, &have, len);
        j->got++;
    }
out:
    shutdown(j->fd, SHUT_RDWR);
    pthread_join(th, NULL);
    close(j->fd);
    free(buf);
}

static void *
job_thread(void *arg)
{
    job(arg);
    return NULL;
}

static void
all_jobs(void *arg)
{
    cjob *js = arg;
    pthread_t th[NCONN];
    for (int i = 0; i < NCONN; i++) {
        pthread_create(&th[i], NULL, job_thread, &js[i]);
    }
    for (int i = 0; i < NCONN; i++) {
        pthread_join(th[i], NULL);
    }
}

static void
run_mode(int mode, unsigned seed)
{
    server s;
    server_start(&s, NULL);
    s.mode = mode;
    static cjob js[NCONN];
    for (int i = 0; i < NCONN; i++) {
        memset(&js[i], 0, sizeof js[i]);
        js[i].s = &s;
        js[i].seed = seed * 31 + (unsigned)i;
        build(&js[i]);
    }
    in_thread(all_jobs, js);
    for (int i = 0; i < NCONN; i++) {
        CHECK_EQ_INT(js[i].fail, 0);
        CHECK_EQ_INT(js[i].got, NREQ);
        for (int k = 0; k < NREQ; k++) {
            free(js[i].reqs[k].wire);
            free(js[i].reqs[k].body);
            free(js[i].reqs[k].path);
        }
    }
    server_stop(&s);
}

static void
test_stress(void)
{
    for (unsigned seed = 1; seed <= 3; seed++) {
        run_mode(REPLY_NOW, seed);
        run_mode(REPLY_LATER, seed);
    }
}

int
main(void)
{
    harness_init();
    RUN(test_stress);
    harness_done();
    TEST_DONE();
}
