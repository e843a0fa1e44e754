/* What the two HTTP harnesses share: a connection's read path without a socket. The input is
 * fed once whole and once cut into three reads at places derived from the data, through the
 * same read buffer (cm__http_rbuf) and parser loop the server and client use; both runs must see
 * the same messages and end the same way. */
#ifndef CM_TEST_FUZZ_HTTP_COMMON_H
#define CM_TEST_FUZZ_HTTP_COMMON_H

#include "fuzz.h"
#include "http_int.h"

#include <string.h>

/* Called with each complete message; returns its rendering, appended to the run's log. */
typedef void (*http_msg_fn)(cm__http_in *in, cm__http_buf *log, uint64_t h);

typedef struct http_run {
    cm__http_buf log; /* every message rendered, then the end state */
    int result;       /* 0: input used up, else the error that stopped the parser */
    int limit;
} http_run;

static void
log_str(cm__http_buf *b, const void *p, size_t n)
{
    FUZZ_CHECK(cm__http_buf_append(b, p, n) == 0);
}

/* Renders a parsed message: headers in order, then the body (the check compares runs). */
static void
log_msg(cm__http_buf *b, const cm_msg *m)
{
    for (size_t i = 0; i < m->nhdrs; i++) {
        log_str(b, m->hdrs[i].key, strlen(m->hdrs[i].key));
        log_str(b, "=", 1);
        log_str(b, m->hdrs[i].val, strlen(m->hdrs[i].val));
        log_str(b, "\n", 1);
    }
    FUZZ_CHECK(m->body != NULL);
    log_str(b, "body=", 5);
    log_str(b, m->body, m->body_len);
    log_str(b, "\n", 1);
}

/* Feeds data in pieces ending at cuts (ascending), like reads from a socket. eof: one more
 * execute with length 0 at the end, as the client does when the peer closes. */
static void
http_feed(http_run *run, enum http_parser_type type, size_t max_hdr, size_t max_body,
          int status_header, const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts,
          int eof, http_msg_fn on_msg, uint64_t h)
{
    cm__http_in in;
    cm__http_rbuf rb = {0};
    cm__http_in_init(&in, type, max_hdr, max_body);
    memset(run, 0, sizeof(*run));
    size_t from = 0;
    int stopped = 0;
    for (size_t k = 0; k <= ncuts && !stopped; k++) {
        size_t to = k < ncuts ? cuts[k] : size;
        while (from < to && !stopped) {
            uv_buf_t buf;
            cm__http_rbuf_alloc(&rb, &buf);
            FUZZ_CHECK(buf.base != NULL && buf.len > 0);
            size_t n = to - from < buf.len ? to - from : buf.len;
            memcpy(buf.base, data + from, n);
            cm__http_rbuf_filled(&rb, n, buf.len);
            from += n;
            while (rb.pos < rb.len) {
                int complete;
                ptrdiff_t used =
                    cm__http_in_execute(&in, rb.p + rb.pos, rb.len - rb.pos, &complete,
                                        status_header);
                if (used < 0) {
                    run->result = (int)used;
                    run->limit = in.limit;
                    stopped = 1;
                    break;
                }
                FUZZ_CHECK((size_t)used <= rb.len - rb.pos);
                rb.pos += (size_t)used;
                if (complete) {
                    on_msg(&in, &run->log, h);
                    cm__http_in_trim(&in);
                } else {
                    FUZZ_CHECK(rb.pos == rb.len); /* the parser takes all it can */
                }
            }
        }
    }
    if (!stopped && eof) {
        int complete;
        ptrdiff_t used = cm__http_in_execute(&in, "", 0, &complete, status_header);
        if (used < 0) {
            run->result = (int)used;
            run->limit = in.limit;
        } else if (complete) {
            on_msg(&in, &run->log, h);
        }
    }
    cm__http_rbuf_free(&rb);
    cm__http_in_free(&in);
}

/* Whether two runs ended alike. The header limit counts the bytes http_parser hands to the
 * callbacks, which it does early for a token cut by the end of a read: a block that is both
 * over the limit and malformed is refused as too big (431) or as malformed (400) depending on
 * the cuts. Either way the request is refused, after the same messages. */
static int
same_end(const http_run *a, const http_run *b)
{
    if (a->result == b->result) {
        return a->limit == b->limit;
    }
    return (a->result == CM_EPROTO && b->result == CM_ETOOBIG && b->limit == 431) ||
           (b->result == CM_EPROTO && a->result == CM_ETOOBIG && a->limit == 431);
}

/* Runs data whole and in three pieces; the messages and the ends must match. */
static void
http_check_splits(enum http_parser_type type, int status_header, int eof, const uint8_t *data,
                  size_t size, http_msg_fn on_msg)
{
    uint64_t h = fuzz_hash(data, size);
    /* Small limits half of the time, so that the limit paths run on small inputs too. */
    size_t max_hdr = (h & 1) ? 65536 : 64 + (h >> 8) % 1024;
    size_t max_body = (h & 2) ? 4 * 1024 * 1024 : (h >> 20) % 2048;
    size_t cuts[2] = {0, 0};
    if (size > 0) {
        cuts[0] = (size_t)((h >> 32) % (size + 1));
        cuts[1] = (size_t)((h >> 48) % (size + 1));
        if (cuts[0] > cuts[1]) {
            size_t t = cuts[0];
            cuts[0] = cuts[1];
            cuts[1] = t;
        }
    }
    http_run whole, split;
    http_feed(&whole, type, max_hdr, max_body, status_header, data, size, NULL, 0, eof, on_msg,
              h);
    http_feed(&split, type, max_hdr, max_body, status_header, data, size, cuts, 2, eof, on_msg,
              h);
    if (whole.log.len != split.log.len ||
        (whole.log.len > 0 && memcmp(whole.log.p, split.log.p, whole.log.len) != 0) ||
        !same_end(&whole, &split)) {
        fprintf(stderr,
                "whole (end %d, limit %d):\n%.*s\nsplit at %zu, %zu (end %d, limit %d):\n%.*s\n",
                whole.result, whole.limit, (int)whole.log.len, whole.log.p, cuts[0], cuts[1],
                split.result, split.limit, (int)split.log.len, split.log.p);
        FUZZ_CHECK(!"a split read parses differently");
    }
    cm__http_buf_free(&whole.log);
    cm__http_buf_free(&split.log);
}

#endif
