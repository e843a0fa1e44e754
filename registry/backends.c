/* The registry backends, by name: the built-ins, then those the application registers. */
#include "registry_int.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define BACKENDS_MAX 16

static const cm_registry_ops *backends[BACKENDS_MAX] = {
    &cm__registry_memory,
    &cm__registry_mdns,
    &cm__registry_consul,
    &cm__registry_etcd,
};
static size_t nbackends = 4;
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
cm_registry_register(const cm_registry_ops *ops)
{
    if (ops == NULL || ops->abi_version != CM_ABI_VERSION || ops->name == NULL ||
        ops->name[0] == '\0' || ops->close == NULL) {
        return CM_EINVAL;
    }
    uv_once(&once, init);
    uv_mutex_lock(&mu);
    int rc = 0;
    size_t i = 0;
    while (i < nbackends && strcmp(backends[i]->name, ops->name) != 0) {
        i++;
    }
    if (i == BACKENDS_MAX) {
        rc = CM_ENOMEM;
    } else {
        backends[i] = ops;
        nbackends += i == nbackends;
    }
    uv_mutex_unlock(&mu);
    return rc;
}

const cm_registry_ops *
cm_registry_find(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    uv_once(&once, init);
    uv_mutex_lock(&mu);
    const cm_registry_ops *ops = NULL;
    for (size_t i = 0; i < nbackends && ops == NULL; i++) {
        if (strcmp(backends[i]->name, name) == 0) {
            ops = backends[i];
        }
    }
    uv_mutex_unlock(&mu);
    return ops;
}
