/* The registry backends, by name: the built-ins, then those the application registers. */
#include "registry_int.h"

static cm__backends backends = {
    .names = {"memory", "mdns", "consul", "etcd"},
    .ops = {&cm__registry_memory, &cm__registry_mdns, &cm__registry_consul, &cm__registry_etcd},
    .n = 4,
};

int
cm_registry_register(const cm_registry_ops *ops)
{
    if (ops == NULL || ops->abi_version != CM_ABI_VERSION || ops->name == NULL ||
        ops->name[0] == '\0' || ops->close == NULL) {
        return CM_EINVAL;
    }
    return cm__backends_add(&backends, ops->name, ops);
}

const cm_registry_ops *
cm_registry_find(const char *name)
{
    return cm__backends_find(&backends, name);
}
