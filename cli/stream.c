/* cmicro stream NAME Endpoint.Method: a stream with the JSON codec. Each line of stdin is sent
 * as a message (as it is, after a check that it is JSON); the end of stdin ends the sending side
 * with go-micro's EOS; each message received is printed on a line as it arrives, by a thread of
 * its own. A go-micro server whose handler has read this side's end sends no EOS of its own:
 * once stdin is over, the stream ends when the server ends it or closes, or after --idle MS
 * (default 2000; 0: wait for the server) without a message. Exit status: 0 when it ended so, 1
 * for a go-micro error (as JSON on stderr) or a failure, 2 for a usage error or a line that is
 * not JSON. */
#define _POSIX_C_SOURCE 200809L /* getline */

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct reader {
    cm_stream *st;
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
    int rc;           /* how receiving ended: CM_EOF, CM_EREMOTE, ... */
    uint64_t last_ns; /* when the last message arrived (or the stream opened) */
} reader;

static void
read_all(void *arg)
{
    reader *r = arg;
    int rc;
    do {
        ProtobufCBinaryData *m = NULL;
        rc = cm_stream_recv(r->st, (void **)&m);
        if (rc == 0) {
            cli_print_reply(m);
            cm_message_free(NULL, m);
        }
        uv_mutex_lock(&r->mu);
        r->last_ns = uv_hrtime();
        r->rc = rc;
        r->done = rc < 0;
        uv_cond_signal(&r->cv);
        uv_mutex_unlock(&r->mu);
    } while (rc == 0);
}

/* Waits for the reader. Once this side has ended, a go-micro server whose handler read that end
 * sends nothing more and keeps the connection open: after idle_ms without a message (0: never)
 * the stream is over. 1 when it ended that way. */
static int
wait_reader(reader *r, uint64_t idle_ms)
{
    int idled = 0;
    uv_mutex_lock(&r->mu);
    while (!r->done) {
        if (idle_ms == 0) {
            uv_cond_wait(&r->cv, &r->mu);
            continue;
        }
        uint64_t idle_ns = idle_ms * 1000000u, since = uv_hrtime() - r->last_ns;
        if (since >= idle_ns) {
            idled = 1;
            break;
        }
        uv_cond_timedwait(&r->cv, &r->mu, idle_ns - since);
    }
    uv_mutex_unlock(&r->mu);
    if (idled) {
        cm_stream_cancel(r->st);
    }
    return idled;
}

/* Sends the JSON lines of stdin, then ends the sending side. 0, 2 for a line that is not JSON,
 * or 1 when the stream ended under the sender (the reader says why). */
static int
send_lines(cm_stream *st)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            line[--n] = '\0';
        }
        if (n == 0) {
            continue;
        }
        if (cli_check_json("message", line) < 0) {
            rc = 2;
            break;
        }
        ProtobufCBinaryData msg = {(size_t)n, (uint8_t *)line};
        rc = cm_stream_send(st, &msg) < 0 ? 1 : 0;
    }
    free(line);
    if (rc == 0) {
        cm_stream_close_send(st);
    } else if (rc == 2) {
        cm_stream_cancel(st);
    }
    return rc;
}

/* --idle MS, taken out of the arguments (the rest are call options). */
static int
idle_opt(int *argc, char **argv, uint64_t *idle_ms)
{
    for (int i = 2; i < *argc; i++) {
        if (strcmp(argv[i], "--idle") != 0) {
            continue;
        }
        if (i + 1 >= *argc) {
            fprintf(stderr, "cmicro: --idle needs a value\n");
            return -1;
        }
        *idle_ms = strtoull(argv[i + 1], NULL, 10);
        memmove(&argv[i], &argv[i + 2], (size_t)(*argc - i - 2) * sizeof(char *));
        *argc -= 2;
        return 0;
    }
    return 0;
}

int
cmd_stream(cm_service *svc, int argc, char **argv)
{
    uint64_t idle_ms = 2000;
    cm_md *md = cm_md_new();
    cm_call_opts o;
    cm_call_opts_init(&o);
    o.content_type = CM_CT_JSON;
    o.md = md;
    if (md == NULL || idle_opt(&argc, argv, &idle_ms) < 0 ||
        cli_call_opts(argc - 2, argv + 2, &o, md) < 0) {
        cm_md_free(md);
        return 2;
    }
    cm_stream *st = NULL;
    cm_error *err = NULL;
    int rc =
        cm_client_stream(cm_service_client(svc), argv[0], argv[1], NULL, NULL, &o, NULL, &st, &err);
    cm_md_free(md);
    if (rc < 0) {
        cli_print_error(err, rc);
        cm_error_free(err);
        return 1;
    }
    reader r;
    memset(&r, 0, sizeof r);
    r.st = st;
    r.last_ns = uv_hrtime();
    uv_mutex_init(&r.mu);
    uv_cond_init(&r.cv);
    uv_thread_t th;
    if (uv_thread_create(&th, read_all, &r) != 0) {
        cm_stream_free(st);
        fprintf(stderr, "cmicro: cannot start the reader thread\n");
        return 1;
    }
    int sent = send_lines(st);
    int idled = sent == 0 && wait_reader(&r, idle_ms);
    uv_thread_join(&th);
    uv_cond_destroy(&r.cv);
    uv_mutex_destroy(&r.mu);
    int status = sent == 2 ? 2 : 0;
    /* Once this side ended, a go-micro server sends no EOS of its own: it goes quiet, or closes. */
    int ended =
        r.rc == CM_EOF || idled || (sent == 0 && r.rc == CM_ECLOSED && cm_stream_error(st) == NULL);
    if (sent != 2 && !ended) {
        cli_print_error(cm_stream_error(st), r.rc);
        status = 1;
    }
    cm_stream_free(st);
    return status;
}
