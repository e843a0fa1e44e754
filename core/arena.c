/* The per-call arena: bump allocation from chunks; reset keeps the first chunk so a steady
 * stream of similar calls allocates nothing. */
#include "core_int.h"

#include <stdint.h>
#include <stdlib.h>

#define CHUNK_MIN 512u

struct cm__chunk {
    cm__chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    max_align_t data[];
};

static void *
pbc_alloc(void *data, size_t n)
{
    return cm__arena_alloc(data, n);
}

static void
pbc_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

void
cm__arena_init(cm__arena *a)
{
    a->head = NULL;
    a->pbc.alloc = pbc_alloc;
    a->pbc.free = pbc_free;
    a->pbc.allocator_data = a;
}

void *
cm__arena_alloc(cm__arena *a, size_t n)
{
    const size_t align = _Alignof(max_align_t);
    if (n > SIZE_MAX / 4) {
        return NULL;
    }
    n = (n + align - 1) & ~(align - 1);
    if (n == 0) {
        n = align;
    }
    cm__chunk *c = a->head;
    if (c == NULL || c->size - c->used < n) {
        size_t size = n > CHUNK_MIN ? n : CHUNK_MIN;
        if (c != NULL && size < 2 * c->size && n <= 2 * c->size) {
            size = 2 * c->size;
        }
        cm__chunk *nc = malloc(sizeof(*nc) + size);
        if (nc == NULL) {
            return NULL;
        }
        nc->size = size;
        nc->used = 0;
        nc->next = c;
        a->head = c = nc;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

void
cm__arena_reset(cm__arena *a, size_t keep)
{
    cm__chunk *c = a->head;
    if (c == NULL) {
        return;
    }
    /* Keep the largest (newest) chunk, unless it is over keep bytes. */
    cm__chunk *rest = c->next;
    while (rest != NULL) {
        cm__chunk *next = rest->next;
        free(rest);
        rest = next;
    }
    if (c->size > keep) {
        free(c);
        a->head = NULL;
        return;
    }
    c->next = NULL;
    c->used = 0;
}

void
cm__arena_fini(cm__arena *a)
{
    cm__chunk *c = a->head;
    while (c != NULL) {
        cm__chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}
