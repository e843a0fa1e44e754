/* The registry backends, by name. Adding a backend: one file plus one line here. */
#include "registry_int.h"

#include <stddef.h>

const cm_registry_ops *const cm__registry_backends[] = {
    &cm__registry_memory,
    &cm__registry_mdns,
    &cm__registry_consul,
    NULL,
};
