/* cmicro core internals, shared by every module of the library. Not installed. */
#ifndef CMICRO_CORE_INT_H
#define CMICRO_CORE_INT_H

#include <cmicro/buf.h>
#include <cmicro/error.h>
#include <cmicro/log.h>
#include <cmicro/loop.h>
#include <cmicro/md.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* ---- loop ---- */

/* Non-zero while some thread runs the loop. */
int cm__loop_running(const cm_loop *l);
/* Stops and joins the loop's own thread, if cm_loop_start() started one; the loop can then be
 * run again on another thread. Not on the loop thread. */
void cm__loop_stop_join(cm_loop *l);
/* Takes the loop for the calling thread, which runs it next with cm_loop_run(): stops and joins
 * the loop's own thread first; from then on cm_loop_start() answers CM_ESTATE. 0, or CM_ESTATE
 * when a caller has it already. cm__loop_unclaim() gives it back without running it. */
int cm__loop_claim(cm_loop *l);
void cm__loop_unclaim(cm_loop *l);

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

/* ---- metadata ---- */

struct cm_md {
    char **kv; /* key, value, key, value, ... */
    size_t n;  /* pairs */
    size_t cap;
};

/* Makes md a cm_md over n pairs that the caller holds: kv[2i] a key, kv[2i+1] its value, keys
 * distinct without case and valid for cm_md_set. Read it only: it is never cm_md_free'd nor
 * changed, and lives as long as md, kv and the strings. Returns md. */
cm_md *cm__md_view(cm_md *md, char **kv, size_t n);

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

/* A table of backends by name (backends.c): the built-ins in its initialiser, then those the
 * application registers. Any thread. */
#define CM__BACKENDS_MAX 16
typedef struct cm__backends {
    const char *names[CM__BACKENDS_MAX]; /* borrowed from the ops tables */
    const void *ops[CM__BACKENDS_MAX];
    size_t n;
} cm__backends;

/* Adds ops under name, or replaces the backend of that name. 0 or CM_ENOMEM (the table is full). */
int cm__backends_add(cm__backends *t, const char *name, const void *ops);
/* The backend of that name, or NULL. */
const void *cm__backends_find(cm__backends *t, const char *name);

/* n random bytes from getrandom(2), drawn 256 at a time per thread (trace.c). 0 or -errno. */
int cm__random_bytes(uint8_t *out, size_t n);

#endif
