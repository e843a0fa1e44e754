/* The tables of backends by name (transports, registries, brokers): the built-ins, then those
 * the application registers. One lock for every table: registering is rare, finding is short. */
#include "core_int.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

static uv_mutex_t mu;
static uv_once_t once = UV_ONCE_INIT;

static void
init(void)
{
    if (uv_mutex_init(&mu) != 0) {
        abort();
    }
}

int
cm__backends_add(cm__backends *t, const char *name, const void *ops)
{
    uv_once(&once, init);
    uv_mutex_lock(&mu);
    int rc = 0;
    size_t i = 0;
    while (i < t->n && strcmp(t->names[i], name) != 0) {
        i++;
    }
    if (i == CM__BACKENDS_MAX) {
        rc = CM_ENOMEM;
    } else {
        t->names[i] = name;
        t->ops[i] = ops;
        t->n += i == t->n;
    }
    uv_mutex_unlock(&mu);
    return rc;
}

const void *
cm__backends_find(cm__backends *t, const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    uv_once(&once, init);
    uv_mutex_lock(&mu);
    const void *ops = NULL;
    for (size_t i = 0; i < t->n && ops == NULL; i++) {
        if (strcmp(t->names[i], name) == 0) {
            ops = t->ops[i];
        }
    }
    uv_mutex_unlock(&mu);
    return ops;
}
