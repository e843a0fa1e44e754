/* cmicro new NAME: scaffolds a service project in ./NAME, outside any source tree: a .proto, a
 * server and a client, a meson.build that finds the installed library with pkg-config and runs
 * the installed protoc-gen-cmicro, and a README with the commands to build and run it. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char proto_text[] =
    "// The service's API. protoc-gen-cmicro makes greeter.cmicro.{c,h} from it: the client\n"
    "// stub greeter_hello() and the handler table greeter_handlers.\n"
    "syntax = \"proto3\";\n"
    "\n"
    "option go_package = \"./;greeter\";\n"
    "\n"
    "service Greeter {\n"
    "    // Hello answers \"Hello <name>\".\n"
    "    rpc Hello(HelloRequest) returns (HelloReply);\n"
    "}\n"
    "\n"
    "message HelloRequest {\n"
    "    string name = 1;\n"
    "}\n"
    "\n"
    "message HelloReply {\n"
    "    string message = 1;\n"
    "}\n";

/* %1$s: the service name. */
static const char server_text[] =
    "/* The %1$s service: answers Greeter.Hello. The registry comes from MICRO_REGISTRY (mdns by\n"
    " * default; consul, etcd) and MICRO_REGISTRY_ADDRESS. */\n"
    "#include \"greeter.cmicro.h\"\n"
    "\n"
    "#include <stdio.h>\n"
    "\n"
    "static int\n"
    "hello(cm_ctx *ctx, const HelloRequest *req, HelloReply *rsp, void *user)\n"
    "{\n"
    "    (void)user;\n"
    "    if (req->name[0] == '\\0') {\n"
    "        return cm_ctx_error(ctx, 400, \"name required\");\n"
    "    }\n"
    "    rsp->message = cm_ctx_sprintf(ctx, \"Hello %%s\", req->name);\n"
    "    return rsp->message ? 0 : CM_ENOMEM;\n"
    "}\n"
    "\n"
    "int\n"
    "main(void)\n"
    "{\n"
    "    cm_service_opts o;\n"
    "    cm_service_opts_init(&o);\n"
    "    o.name = \"%1$s\";\n"
    "    cm_service *svc;\n"
    "    if (cm_service_new(&o, &svc) < 0) {\n"
    "        fprintf(stderr, \"%1$s: %%s\\n\", cm_service_why());\n"
    "        return 1;\n"
    "    }\n"
    "    static const greeter_handlers handlers = {.hello = hello};\n"
    "    int rc = greeter_register(cm_service_server(svc), &handlers);\n"
    "    if (rc == 0) {\n"
    "        rc = cm_service_run(svc); /* until SIGINT or SIGTERM */\n"
    "    }\n"
    "    if (rc < 0) {\n"
    "        fprintf(stderr, \"%1$s: %%s\\n\", cm_strerror(rc));\n"
    "    }\n"
    "    cm_service_free(svc);\n"
    "    return rc < 0 ? 1 : 0;\n"
    "}\n";

static const char client_text[] =
    "/* Calls Greeter.Hello on %1$s by name and prints the answer. */\n"
    "#include \"greeter.cmicro.h\"\n"
    "\n"
    "#include <stdio.h>\n"
    "\n"
    "int\n"
    "main(int argc, char **argv)\n"
    "{\n"
    "    cm_service_opts o;\n"
    "    cm_service_opts_init(&o);\n"
    "    o.name = \"%1$s-client\";\n"
    "    cm_service *svc;\n"
    "    if (cm_service_new(&o, &svc) < 0) {\n"
    "        fprintf(stderr, \"client: %%s\\n\", cm_service_why());\n"
    "        return 1;\n"
    "    }\n"
    "    HelloRequest req = HELLO_REQUEST__INIT;\n"
    "    req.name = argc > 1 ? argv[1] : \"world\";\n"
    "    HelloReply *rsp = NULL;\n"
    "    cm_error *err = NULL;\n"
    "    int rc = greeter_hello(cm_service_client(svc), \"%1$s\", &req, &rsp, NULL, &err);\n"
    "    if (rc == 0) {\n"
    "        printf(\"%%s\\n\", rsp->message);\n"
    "        greeter_hello_free(rsp);\n"
    "    } else {\n"
    "        fprintf(stderr, \"client: %%s\\n\", err ? err->detail : cm_strerror(rc));\n"
    "        cm_error_free(err);\n"
    "    }\n"
    "    cm_service_free(svc);\n"
    "    return rc == 0 ? 0 : 1;\n"
    "}\n";

static const char meson_text[] =
    "# The %1$s service, built against the installed cmicro (pkg-config finds it; set\n"
    "# PKG_CONFIG_PATH for a cmicro installed under another prefix).\n"
    "project('%1$s', 'c', default_options : ['c_std=c11', 'warning_level=2'])\n"
    "\n"
    "cmicro = dependency('cmicro', version : '>=0.2')\n"
    "protoc = find_program('protoc')\n"
    "plugin = cmicro.get_variable(pkgconfig : 'protoc_gen_cmicro')\n"
    "\n"
    "stubs = custom_target('greeter-stubs',\n"
    "  input : 'greeter.proto',\n"
    "  output : ['greeter.pb-c.c', 'greeter.pb-c.h', 'greeter.cmicro.c', "
    "'greeter.cmicro.h'],\n"
    "  command : [protoc, '--plugin=protoc-gen-cmicro=' + plugin, '--c_out=@OUTDIR@',\n"
    "             '--cmicro_out=@OUTDIR@', '--proto_path=@CURRENT_SOURCE_DIR@', '@INPUT@'])\n"
    "\n"
    "rpath = cmicro.get_variable(pkgconfig : 'libdir')\n"
    "executable('server', 'server.c', stubs, dependencies : cmicro, build_rpath : rpath)\n"
    "executable('client', 'client.c', stubs, dependencies : cmicro, build_rpath : rpath)\n";

static const char readme_text[] =
    "# %1$s\n"
    "\n"
    "A cmicro service. Build it (cmicro, protoc and protoc-c installed):\n"
    "\n"
    "```sh\n"
    "meson setup build && ninja -C build\n"
    "```\n"
    "\n"
    "Run the server, then call it by name (mDNS by default; MICRO_REGISTRY=consul with\n"
    "MICRO_REGISTRY_ADDRESS=host:8500 for Consul):\n"
    "\n"
    "```sh\n"
    "./build/server &\n"
    "./build/client Ada                # Hello Ada\n"
    "cmicro call %1$s Greeter.Hello '{\"name\":\"Ada\"}'\n"
    "```\n"
    "\n"
    "The API is greeter.proto; the handler is in server.c.\n";

/* A name the registry, a file system and a meson project all accept. */
static int
valid_name(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 64 || n[0] == '.' || n[0] == '-') {
        return 0;
    }
    for (const char *p = n; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.')) {
            return 0;
        }
    }
    return 1;
}

static int
write_file(const char *dir, const char *file, const char *fmt, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wx");
    if (f == NULL) {
        fprintf(stderr, "cmicro new: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int ok = fprintf(f, fmt, name) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        fprintf(stderr, "cmicro new: writing %s failed\n", path);
    }
    return ok ? 0 : -1;
}

int
cmd_new(int argc, char **argv)
{
    if (argc != 1 || !valid_name(argv[0])) {
        fprintf(stderr, "usage: cmicro new NAME (letters, digits, '-', '_', '.'; up to 64)\n");
        return 2;
    }
    const char *name = argv[0];
    if (mkdir(name, 0777) < 0) {
        fprintf(stderr, "cmicro new: cannot make %s: %s\n", name, strerror(errno));
        return 1;
    }
    if (write_file(name, "greeter.proto", "%s", proto_text) < 0 ||
        write_file(name, "server.c", server_text, name) < 0 ||
        write_file(name, "client.c", client_text, name) < 0 ||
        write_file(name, "meson.build", meson_text, name) < 0 ||
        write_file(name, "README.md", readme_text, name) < 0) {
        return 1;
    }
    printf("%s: a service project; build and run it with:\n"
           "  cd %s && meson setup build && ninja -C build\n"
           "  ./build/server &  ./build/client Ada\n",
           name, name);
    return 0;
}
