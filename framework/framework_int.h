/* cmicro framework internals. Not installed. */
#ifndef CMICRO_FRAMEWORK_INT_H
#define CMICRO_FRAMEWORK_INT_H

#include <cmicro/cmicro.h>

/* Non-zero while some thread runs the loop. */
int cm__loop_running(const cm_loop *l);
/* Stops and joins the loop's own thread, if cm_loop_start() started one; the loop can then be
 * run again on another thread. Not on the loop thread. */
void cm__loop_stop_join(cm_loop *l);

/* A closure posted to a loop, in storage of the caller's (a node embedded in an object posts it
 * without allocating). The node must stay valid until fn runs; fn may free it. */
typedef struct cm__post {
    struct cm__post *next;
    void (*fn)(void *arg);
    void *arg;
    int owned; /* malloc'ed by cm_loop_post: freed before fn runs */
} cm__post;

/* Runs fn(arg) on the loop thread, later (never inside this call). Any thread. From the loop
 * thread it makes no system call: the closure runs at the loop's next turn. */
void cm__loop_post_node(cm_loop *l, cm__post *p, void (*fn)(void *arg), void *arg);

/* A client-only service: the client starts its loop's thread at the first call. */
void cm__client_set_autostart(cm_client *c, int on);

/* The server's handlers, sorted by endpoint (go-micro's endpoint order). */
size_t cm__server_handlers(const cm_server *s, const cm_handler **out, size_t max);

/* ---- worker pool: handlers that may block run here ---- */

typedef struct cm__job {
    struct cm__job *next;
    void (*work)(struct cm__job *job); /* on a worker thread */
    void (*done)(struct cm__job *job); /* on the loop thread, after work */
} cm__job;

typedef struct cm__workers cm__workers;

/* Starts n threads. The completions are delivered on loop. 0, CM_ENOMEM or a libuv error. */
int cm__workers_new(uv_loop_t *loop, unsigned n, cm__workers **out);
/* Queues job (any thread). */
void cm__workers_submit(cm__workers *w, cm__job *job);
/* Waits for queued and running jobs, runs their done callbacks on the calling thread (the loop
 * thread or any thread once the loop no longer runs), joins the threads, frees. */
void cm__workers_free(cm__workers *w);

/* ---- per-call arena: bump allocation, freed (reset) when the call completes ---- */

typedef struct cm__chunk cm__chunk;
typedef struct cm__arena {
    cm__chunk *head;
    ProtobufCAllocator pbc; /* allocates from the arena; free is a no-op */
} cm__arena;

void cm__arena_init(cm__arena *a);
void *cm__arena_alloc(cm__arena *a, size_t n);
/* Releases everything but the newest (largest) chunk, which is kept for the next call when it
 * holds at most keep bytes. */
void cm__arena_reset(cm__arena *a, size_t keep);
void cm__arena_fini(cm__arena *a);

/* ---- headers ---- */

/* Writes the canonical MIME form of key ("x-user-id" -> "X-User-Id") into out (len bytes with
 * the NUL); keys with characters outside token chars are copied unchanged. 0 or CM_EINVAL. */
int cm__canonical_key(const char *key, char *out, size_t len);
/* Non-zero for headers that belong to the framework and are never forwarded as metadata. */
int cm__is_framework_header(const char *key);

/* The id used in the errors made by the client. */
#define CM__CLIENT_ERROR_ID "cmicro.client"

/* Frees a raw frame or a protobuf message decoded by a codec with allocator alloc (NULL: malloc). */
void cm__message_free(const ProtobufCMessageDescriptor *desc, void *msg, ProtobufCAllocator *alloc);

#endif
