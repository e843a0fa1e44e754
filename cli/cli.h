/* The cmicro tool's commands that live in their own files. */
#ifndef CMICRO_CLI_H
#define CMICRO_CLI_H

#include <cmicro/cmicro.h>

/* cmicro api [--address HOST:PORT]: the HTTP gateway (api.c). Runs until SIGINT or SIGTERM. */
int cmd_api(cm_service *svc, int argc, char **argv);

/* cmicro new NAME: scaffolds a service project in ./NAME (new.c). */
int cmd_new(int argc, char **argv);

#endif
