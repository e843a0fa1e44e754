/* cmicro: connection counts per client address, for max_conns_per_ip. A small chained hash
 * table keyed by the address text; an entry goes away when its count drops to zero. */
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
    ipent *b[IPCOUNT_BUCKETS];
};

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

int
cm__ipcount_add(cm__ipcount **tp, const char *ip, unsigned max)
{
    if (*tp == NULL && (*tp = calloc(1, sizeof(**tp))) == NULL) {
        return CM_ENOMEM;
    }
    ipent **pp = slot(*tp, ip);
    if (*pp == NULL) {
        ipent *e = calloc(1, sizeof(*e));
        if (e == NULL) {
            return CM_ENOMEM;
        }
        strncpy(e->ip, ip, sizeof(e->ip) - 1);
        *pp = e;
    }
    if (max > 0 && (*pp)->n >= max) {
        return CM_ESTATE;
    }
    (*pp)->n++;
    return 0;
}

void
cm__ipcount_del(cm__ipcount *t, const char *ip)
{
    if (t == NULL) {
        return;
    }
    ipent **pp = slot(t, ip);
    ipent *e = *pp;
    if (e != NULL && --e->n == 0) {
        *pp = e->next;
        free(e);
    }
}

void
cm__ipcount_free(cm__ipcount *t)
{
    for (size_t i = 0; t != NULL && i < IPCOUNT_BUCKETS; i++) {
        while (t->b[i] != NULL) {
            ipent *e = t->b[i];
            t->b[i] = e->next;
            free(e);
        }
    }
    free(t);
}
