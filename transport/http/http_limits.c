/* cmicro: connection counts per client address, for max_conns_per_ip. A small chained hash
 * table keyed by the address text; an entry goes away when its count drops to zero.
 *
 * The listeners bound with reuse_port to one address (the loops of one server, each with its
 * own listener) share one table, so that the cap holds for the address whichever loop the kernel
 * hands a connection to: the table of an address is found by the bound address text in a
 * process-wide list, and counted by reference. Each table has its own lock (taken once per
 * accepted and per closed connection). */
#include "http_int.h"

#include <stdlib.h>
#include <string.h>

#define IPCOUNT_BUCKETS 256

typedef struct ipent {
    struct ipent *next;
    unsigned n;
    char ip[64];
} ipent;

struct cm__ipcount {
    uv_mutex_t mu;
    ipent *b[IPCOUNT_BUCKETS];
    cm__ipcount *next; /* the shared tables (under shared_mu) */
    unsigned refs;     /* listeners using it (under shared_mu) */
    char key[64];      /* the bound address of a shared table; "" for a private one */
};

static uv_once_t shared_once = UV_ONCE_INIT;
static uv_mutex_t shared_mu;
static cm__ipcount *shared;

static void
shared_init(void)
{
    if (uv_mutex_init(&shared_mu) != 0) {
        abort(); /* as libuv does when a mutex cannot be made */
    }
}

static ipent **
slot(cm__ipcount *t, const char *ip)
{
    uint64_t h = 14695981039346656037u;
    for (const char *p = ip; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211u;
    }
    ipent **pp = &t->b[h % IPCOUNT_BUCKETS];
    while (*pp != NULL && strcmp((*pp)->ip, ip) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

static cm__ipcount *
table_new(const char *key)
{
    cm__ipcount *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    if (uv_mutex_init(&t->mu) != 0) {
        free(t);
        return NULL;
    }
    t->refs = 1;
    snprintf(t->key, sizeof(t->key), "%s", key ? key : "");
    return t;
}

cm__ipcount *
cm__ipcount_open(const char *key)
{
    if (key == NULL || key[0] == '\0') {
        return table_new(NULL);
    }
    uv_once(&shared_once, shared_init);
    uv_mutex_lock(&shared_mu);
    cm__ipcount *t = shared;
    while (t != NULL && strcmp(t->key, key) != 0) {
        t = t->next;
    }
    if (t != NULL) {
        t->refs++;
    } else if ((t = table_new(key)) != NULL) {
        t->next = shared;
        shared = t;
    }
    uv_mutex_unlock(&shared_mu);
    return t;
}

static void
table_free(cm__ipcount *t)
{
    for (size_t i = 0; i < IPCOUNT_BUCKETS; i++) {
        while (t->b[i] != NULL) {
            ipent *e = t->b[i];
            t->b[i] = e->next;
            free(e);
        }
    }
    uv_mutex_destroy(&t->mu);
    free(t);
}

void
cm__ipcount_close(cm__ipcount *t)
{
    if (t == NULL) {
        return;
    }
    if (t->key[0] == '\0') {
        table_free(t);
        return;
    }
    uv_mutex_lock(&shared_mu);
    int last = --t->refs == 0;
    if (last) {
        cm__ipcount **pp = &shared;
        while (*pp != t) {
            pp = &(*pp)->next;
        }
        *pp = t->next;
    }
    uv_mutex_unlock(&shared_mu);
    if (last) {
        table_free(t);
    }
}

int
cm__ipcount_add(cm__ipcount *t, const char *ip, unsigned max)
{
    int rc = 0;
    uv_mutex_lock(&t->mu);
    ipent **pp = slot(t, ip);
    if (*pp == NULL) {
        ipent *e = calloc(1, sizeof(*e));
        if (e != NULL) {
            strncpy(e->ip, ip, sizeof(e->ip) - 1);
            *pp = e;
        }
    }
    if (*pp == NULL) {
        rc = CM_ENOMEM;
    } else if (max > 0 && (*pp)->n >= max) {
        rc = CM_ESTATE;
    } else {
        (*pp)->n++;
    }
    uv_mutex_unlock(&t->mu);
    return rc;
}

void
cm__ipcount_del(cm__ipcount *t, const char *ip)
{
    uv_mutex_lock(&t->mu);
    ipent **pp = slot(t, ip);
    ipent *e = *pp;
    if (e != NULL && --e->n == 0) {
        *pp = e->next;
        free(e);
    }
    uv_mutex_unlock(&t->mu);
}
