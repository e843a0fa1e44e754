/* protoc-gen-cmicro: the stubs of streaming methods (<cmicro/stream.h>).
 *
 * For an rpc X of service S (prefix s_x), whatever its kind:
 *   s_x(c, service, [req,] opts, &st, &err)   opens the stream (a server-stream sends req)
 *   s_x_send / s_x_recv                      the client's typed send and receive
 *   s_x_close_send                           the client's end of sending (go-micro's EOS)
 *   s_x_server_send / s_x_server_recv        the handler's typed send and receive
 *   s_x_free / s_x_free_request              free a received response / request
 * The handler table's slot is (ctx, req, st, user) for a server-stream, whose first request the
 * generated code receives as go-micro's generated code does, and (ctx, st, user) for the
 * client-stream and bidi kinds. The registry shape is go-micro's for stream handlers: request
 * "Context", response "Stream" (the Go handler's context.Context and server.Stream arguments)
 * and metadata stream=true.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

const char *const gen_stream_suffixes[GEN_STREAM_NSUFFIXES] = {
    "_send", "_recv", "_close_send", "_server_send", "_server_recv", "_free_request",
};

int
gen_stream_kind(const gen_method *md)
{
    int client = md->has_client_streaming && md->client_streaming;
    int server = md->has_server_streaming && md->server_streaming;

    return client && server ? GEN_STREAM_BIDI
           : client         ? GEN_STREAM_CLIENT
           : server         ? GEN_STREAM_SERVER
                            : GEN_UNARY;
}

static const char *
kind_name(int kind)
{
    return kind == GEN_STREAM_SERVER   ? "server-stream"
           : kind == GEN_STREAM_CLIENT ? "client-stream"
                                       : "bidi stream";
}

static void
put_inline(sbuf *h, const char *ret, const char *name, const char *params, const char *body)
{
    sb_printf(h, "static inline %s\n%s(%s)\n{\n    %s\n}\n\n", ret, name, params, body);
}

/* The typed helpers over cm_stream_send / cm_stream_recv. */
static void
header_helpers(sbuf *h, const gen_stream_meth *m)
{
    char *name, *params;

    sb_printf(h,
              "/* The client's side of %s: as cm_stream_send, cm_stream_recv and "
              "cm_stream_close_send. */\n",
              m->endpoint);
    name = xasprintf("%s_send", m->prefix);
    params = xasprintf("cm_stream *st, const %s *req", m->in_c);
    put_inline(h, "int", name, params, "return cm_stream_send(st, req);");
    free(name);
    free(params);
    name = xasprintf("%s_recv", m->prefix);
    params = xasprintf("cm_stream *st, %s **rsp", m->out_c);
    put_inline(h, "int", name, params, "return cm_stream_recv(st, (void **)rsp);");
    free(name);
    free(params);
    name = xasprintf("%s_close_send", m->prefix);
    put_inline(h, "int", name, "cm_stream *st", "return cm_stream_close_send(st);");
    free(name);

    sb_printf(h, "/* The handler's side of %s. */\n", m->endpoint);
    name = xasprintf("%s_server_send", m->prefix);
    params = xasprintf("cm_stream *st, const %s *rsp", m->out_c);
    put_inline(h, "int", name, params, "return cm_stream_send(st, rsp);");
    free(name);
    free(params);
    name = xasprintf("%s_server_recv", m->prefix);
    params = xasprintf("cm_stream *st, %s **req", m->in_c);
    put_inline(h, "int", name, params, "return cm_stream_recv(st, (void **)req);");
    free(name);
    free(params);

    sb_printf(h, "/* Frees a received response / request of %s; NULL is ignored. */\n",
              m->endpoint);
    sb_printf(h, "static inline void\n%s_free(%s *rsp)\n{\n", m->prefix, m->out_c);
    sb_printf(
        h, "    if (rsp != NULL) {\n        cm_message_free(&%s__descriptor, rsp);\n    }\n}\n\n",
        m->out_lc);
    sb_printf(h, "static inline void\n%s_free_request(%s *req)\n{\n", m->prefix, m->in_c);
    sb_printf(
        h, "    if (req != NULL) {\n        cm_message_free(&%s__descriptor, req);\n    }\n}\n\n",
        m->in_lc);
}

void
gen_stream_header(sbuf *h, const gen_stream_meth *m)
{
    char *p_req = xasprintf("const %s *req", m->in_c);
    char *head = xasprintf("int %s(", m->prefix);
    sbuf text = {0};

    sb_printf(&text,
              "Opens a %s of %s on service (its registry name)%s, from any thread but the "
              "client's loop thread. On 0, *st is the stream (returns owned: cm_stream_free). "
              "Otherwise the status is cm_client_stream's%s and *err (err may be NULL; returns "
              "owned: cm_error_free) says why. opts (may be NULL) is borrowed; its timeout_ms is "
              "the stream's deadline.",
              kind_name(m->kind), m->endpoint,
              m->kind == GEN_STREAM_SERVER ? " and sends req (borrowed)" : "",
              m->kind == GEN_STREAM_SERVER ? " or cm_stream_send's" : "");
    sb_comment(h, 0, sb_str(&text));
    sb_free(&text);
    if (m->kind == GEN_STREAM_SERVER) {
        const char *params[] = {
            "cm_client *c",   "const char *service", p_req, "const cm_call_opts *opts",
            "cm_stream **st", "cm_error **err"};
        sb_wrap_call(h, 0, head, params, 6, ");\n\n");
    } else {
        const char *params[] = {"cm_client *c", "const char *service", "const cm_call_opts *opts",
                                "cm_stream **st", "cm_error **err"};
        sb_wrap_call(h, 0, head, params, 5, ");\n\n");
    }
    header_helpers(h, m);
    free(head);
    free(p_req);
}

void
gen_stream_slot(sbuf *h, const gen_stream_meth *m)
{
    char *head = xasprintf("int (*%s)(", m->slot);
    char *p_req = xasprintf("const %s *req", m->in_c);

    sb_printf(h, "    /* %s (%s) */\n    ", m->endpoint, kind_name(m->kind));
    if (m->kind == GEN_STREAM_SERVER) {
        const char *params[] = {"cm_ctx *ctx", p_req, "cm_stream *st", "void *user"};
        sb_wrap_call(h, 4, head, params, 4, ");\n");
    } else {
        const char *params[] = {"cm_ctx *ctx", "cm_stream *st", "void *user"};
        sb_wrap_call(h, 4, head, params, 3, ");\n");
    }
    free(head);
    free(p_req);
}

void
gen_stream_client(sbuf *c, const gen_stream_meth *m)
{
    char *head = xasprintf("%s(", m->prefix);
    char *p_req = xasprintf("const %s *req", m->in_c);
    char *ep = xasprintf("\"%s\"", m->endpoint);
    char *d_in = xasprintf("&%s__descriptor", m->in_lc);
    char *d_out = xasprintf("&%s__descriptor", m->out_lc);
    int server = m->kind == GEN_STREAM_SERVER;

    sb_puts(c, "int\n");
    if (server) {
        const char *params[] = {
            "cm_client *c",   "const char *service", p_req, "const cm_call_opts *opts",
            "cm_stream **st", "cm_error **err"};
        sb_wrap_call(c, 0, head, params, 6, ")\n{\n");
    } else {
        const char *params[] = {"cm_client *c", "const char *service", "const cm_call_opts *opts",
                                "cm_stream **st", "cm_error **err"};
        sb_wrap_call(c, 0, head, params, 5, ")\n{\n");
    }
    sb_puts(c, "    cm_stream *s = NULL;\n    int rc;\n\n");
    sb_puts(c, "    if (st == NULL) {\n        return CM_EINVAL;\n    }\n    rc = ");
    const char *call[] = {"c", "service", ep, d_in, d_out, "opts", "NULL", "&s", "err"};
    sb_wrap_call(c, 9, "cm_client_stream(", call, 9, ");\n");
    if (server) {
        sb_puts(c, "    if (rc == 0 && (rc = cm_stream_send(s, req)) < 0) {\n"
                   "        cm_stream_free(s);\n        s = NULL;\n    }\n");
    }
    sb_puts(c, "    *st = s;\n    return rc;\n}\n\n");
    free(head);
    free(p_req);
    free(ep);
    free(d_in);
    free(d_out);
}

void
gen_stream_thunk(sbuf *c, const gen_stream_meth *m, const char *svc_prefix)
{
    const char *params[] = {"cm_ctx *ctx", "const void *req", "void *rsp", "void *user"};
    char *head = xasprintf("cm__thunk_%s(", m->prefix);

    sb_puts(c, "static int\n");
    sb_wrap_call(c, 0, head, params, 4, ")\n{\n");
    free(head);
    sb_printf(c, "    const %s_handlers *h = user;\n", svc_prefix);
    if (m->kind != GEN_STREAM_SERVER) {
        sb_printf(c, "\n    (void)req;\n    return h->%s(ctx, rsp, h->user);\n}\n\n", m->slot);
        return;
    }
    /* go-micro's generated server-stream handler receives the request first. */
    sb_printf(c, "    %s *in = NULL;\n    int rc;\n\n    (void)req;\n", m->in_c);
    sb_puts(c, "    rc = cm_stream_recv(rsp, (void **)&in);\n    if (rc == 0) {\n");
    sb_printf(c, "        rc = h->%s(ctx, in, rsp, h->user);\n", m->slot);
    sb_printf(c, "        cm_message_free(&%s__descriptor, in);\n    }\n    return rc;\n}\n\n",
              m->in_lc);
}

void
gen_stream_entry(sbuf *c, const gen_stream_meth *m, const gen_meta *meta)
{
    sb_printf(c, "    {\n        .endpoint = \"%s\",\n", m->endpoint);
    sb_printf(c, "        .request = &%s__descriptor,\n", m->in_lc);
    sb_printf(c, "        .response = &%s__descriptor,\n", m->out_lc);
    sb_printf(c, "        .fn = cm__thunk_%s,\n", m->prefix);
    sb_puts(c, "        .flags = CM_HANDLER_STREAM,\n");
    sb_puts(c, "        .request_value = &cm__stream_value_context,\n");
    sb_puts(c, "        .response_value = &cm__stream_value_stream,\n");
    sb_puts(c, "        .metadata = (const char *const[]){\n");
    sb_puts(c, "            \"stream\",\n            \"true\",\n");
    const char *keys[] = {"description", "example", "scopes"};
    const char *vals[] = {meta->description, meta->example, meta->scopes};
    for (size_t i = 0; i < 3; i++) {
        if (vals[i] != NULL) {
            sb_printf(c, "            \"%s\",\n            ", keys[i]);
            gen_put_literal(c, vals[i]);
            sb_puts(c, ",\n");
        }
    }
    sb_puts(c, "            NULL,\n        },\n    },\n");
}

void
gen_stream_values(sbuf *c)
{
    sb_puts(c, "/* The registry shape go-micro publishes for a stream handler: its context.Context "
               "and\n * server.Stream arguments. */\n");
    sb_puts(c, "static const cm_value_desc cm__stream_value_context = {\"Context\", \"Context\", "
               "0, NULL};\n");
    sb_puts(c, "static const cm_value_desc cm__stream_value_stream = {\"Stream\", \"Stream\", 0, "
               "NULL};\n\n");
}
