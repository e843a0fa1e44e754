/* The cmicro tool's commands that live in their own files. */
#ifndef CMICRO_CLI_H
#define CMICRO_CLI_H

#include <cmicro/cmicro.h>

/* cmicro api [--address HOST:PORT]: the HTTP gateway (api.c). Runs until SIGINT or SIGTERM. */
int cmd_api(cm_service *svc, int argc, char **argv);

/* cmicro stream NAME Endpoint.Method ...: JSON lines in, replies out (stream.c). */
int cmd_stream(cm_service *svc, int argc, char **argv);

/* Call options from arguments: -m key=value into md, --timeout MS, --address H:P. 0, or -1 after
 * one line on stderr. */
int cli_call_opts(int argc, char **argv, cm_call_opts *o, cm_md *md);
/* 0 when json parses; otherwise one line on stderr saying where it stops (what: "request"). */
int cli_check_json(const char *what, const char *json);
/* A failed call's error as one JSON line on stderr ({"id","code","detail","status"}). */
void cli_print_error(const cm_error *err, int rc);
/* A JSON reply on one line of stdout (a trailing newline of the peer's codec dropped). */
void cli_print_reply(const ProtobufCBinaryData *rsp);

/* cmicro new NAME: scaffolds a service project in ./NAME (new.c). */
int cmd_new(int argc, char **argv);

#endif
