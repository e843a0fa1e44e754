/* Metadata: a small ordered list of key/value pairs with case-insensitive keys. */
#include "core_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

cm_md *
cm_md_new(void)
{
    return calloc(1, sizeof(cm_md));
}

void
cm_md_free(cm_md *md)
{
    if (md == NULL) {
        return;
    }
    for (size_t i = 0; i < 2 * md->n; i++) {
        free(md->kv[i]);
    }
    free(md->kv);
    free(md);
}

cm_md *
cm__md_view(cm_md *md, char **kv, size_t n)
{
    md->kv = kv;
    md->n = md->cap = n;
    return md;
}

static int
valid(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

static ptrdiff_t
find(const cm_md *md, const char *key)
{
    for (size_t i = 0; i < md->n; i++) {
        if (strcasecmp(md->kv[2 * i], key) == 0) {
            return (ptrdiff_t)i;
        }
    }
    return -1;
}

int
cm_md_set(cm_md *md, const char *key, const char *val)
{
    if (md == NULL || key == NULL || val == NULL || key[0] == '\0' || !valid(key) ||
        !valid(val) || strchr(key, ':') != NULL) {
        return CM_EINVAL;
    }
    char *v = strdup(val);
    if (v == NULL) {
        return CM_ENOMEM;
    }
    ptrdiff_t i = find(md, key);
    if (i >= 0) {
        free(md->kv[2 * i + 1]);
        md->kv[2 * i + 1] = v;
        return 0;
    }
    if (md->n == md->cap) {
        size_t cap = md->cap ? 2 * md->cap : 4;
        char **kv = realloc(md->kv, 2 * cap * sizeof(char *));
        if (kv == NULL) {
            free(v);
            return CM_ENOMEM;
        }
        md->kv = kv;
        md->cap = cap;
    }
    char *k = strdup(key);
    if (k == NULL) {
        free(v);
        return CM_ENOMEM;
    }
    md->kv[2 * md->n] = k;
    md->kv[2 * md->n + 1] = v;
    md->n++;
    return 0;
}

const char *
cm_md_get(const cm_md *md, const char *key)
{
    if (md == NULL || key == NULL) {
        return NULL;
    }
    ptrdiff_t i = find(md, key);
    return i >= 0 ? md->kv[2 * i + 1] : NULL;
}

int
cm_md_del(cm_md *md, const char *key)
{
    if (md == NULL || key == NULL) {
        return CM_EINVAL;
    }
    ptrdiff_t i = find(md, key);
    if (i < 0) {
        return CM_ENOTFOUND;
    }
    free(md->kv[2 * i]);
    free(md->kv[2 * i + 1]);
    memmove(&md->kv[2 * i], &md->kv[2 * i + 2], 2 * (md->n - (size_t)i - 1) * sizeof(char *));
    md->n--;
    return 0;
}

size_t
cm_md_count(const cm_md *md)
{
    return md ? md->n : 0;
}

int
cm_md_at(const cm_md *md, size_t i, const char **key, const char **val)
{
    if (md == NULL || i >= md->n) {
        return CM_EINVAL;
    }
    if (key) {
        *key = md->kv[2 * i];
    }
    if (val) {
        *val = md->kv[2 * i + 1];
    }
    return 0;
}
