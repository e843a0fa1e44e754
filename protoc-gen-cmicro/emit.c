/* protoc-gen-cmicro: writes <name>.cmicro.h and <name>.cmicro.c for the services of a file.
 *
 * Names (prefix = package with dots turned into '_', lower-cased, plus '_'; empty without a
 * package; service and method names go through protoc-c's CamelToLower):
 *   <prefix><service>_<method>         sync client stub      hello_say
 *   <prefix><service>_<method>_async   async client stub     hello_say_async
 *   <prefix><service>_<method>_cb      its typed callback    hello_say_cb
 *   <prefix><service>_<method>_free    frees a response      hello_say_free
 *   <prefix><service>_handlers         server handler table  hello_handlers
 *   <prefix><service>_register         installs the table    hello_register
 * Streaming methods get the stubs stream.c writes (the opening stub and typed helpers) instead.
 * File-local helpers start with cm__. Endpoints are "<Service>.<Method>" with both parts
 * camel-cased as protoc-gen-micro does (the Go handler struct is named after the service and
 * its methods after the rpcs), so a C server answers what a Go client calls and vice versa.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

typedef struct meth {
    const gen_method *md;
    const gen_type *in;
    const gen_type *out;
    char *prefix;   /* hello_say */
    char *slot;     /* say: the member of the handler table */
    char *endpoint; /* Hello.Say */
    gen_meta meta;  /* from the rpc's leading comment */
    int kind;       /* GEN_UNARY or a stream kind (stream.c) */
} meth;

typedef struct svc {
    const gen_service *sd;
    char *prefix;  /* hello */
    char *go_name; /* Hello: the Go handler struct, the first part of the endpoints */
    meth *meths;
    size_t n;
} svc;

typedef struct plan {
    const gen_file *f;
    char *base;  /* "dir/hello": the file name without .proto */
    char *shown; /* the file name, safe inside a comment */
    char *guard; /* the header's include guard */
    svc *svcs;
    size_t n;
} plan;

static void
plan_free(plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        for (size_t k = 0; k < p->svcs[i].n; k++) {
            free(p->svcs[i].meths[k].prefix);
            free(p->svcs[i].meths[k].slot);
            free(p->svcs[i].meths[k].endpoint);
            gen_meta_free(&p->svcs[i].meths[k].meta);
        }
        free(p->svcs[i].meths);
        free(p->svcs[i].prefix);
        free(p->svcs[i].go_name);
    }
    free(p->svcs);
    free(p->base);
    free(p->shown);
    free(p->guard);
}

/* The file name with anything that could end a comment or a string replaced by '_'. */
static char *
shown_name(const char *name)
{
    char *s = xstrdup(name);

    for (char *p = s; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && strchr("._-+/", *p) == NULL) {
            *p = '_';
        }
    }
    return s;
}

static char *
guard_name(const char *base)
{
    sbuf b = {0};

    sb_puts(&b, "CMICRO_GEN_");
    for (const char *p = base; *p != '\0'; p++) {
        sb_putc(&b, isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_');
    }
    sb_puts(&b, "_CMICRO_H");
    return sb_take(&b);
}

/* A method's member name in the handler table: its snake name, with '_' appended when that is
 * a C keyword or one of the table's own members. */
static char *
slot_name(const char *method)
{
    char *s = c_camel_to_lower(method);

    if (c_is_keyword(s) || strcmp(s, "user") == 0 || strcmp(s, "flags") == 0) {
        char *t = xasprintf("%s_", s);
        free(s);
        s = t;
    }
    return s;
}

static int
plan_method(const gen_index *ix, const plan *p, svc *sv, size_t s, size_t m, char *err,
            size_t errlen)
{
    const gen_method *md = p->f->service[s]->method[m];
    const char *file = p->f->name;
    meth *mt = &sv->meths[sv->n];

    if (md->name == NULL || md->input_type == NULL || md->output_type == NULL) {
        snprintf(err, errlen, "a method of %s in %s has no name or type", sv->sd->name, file);
        return GEN_MALFORMED;
    }
    mt->md = md;
    mt->kind = gen_stream_kind(md);
    mt->in = gen_index_find(ix, md->input_type);
    mt->out = gen_index_find(ix, md->output_type);
    if (mt->in == NULL || mt->in->msg == NULL || mt->out == NULL || mt->out->msg == NULL) {
        snprintf(err, errlen, "method %s.%s in %s: unknown message type %s", sv->sd->name,
                 md->name, file, mt->in == NULL ? md->input_type : md->output_type);
        return GEN_MALFORMED;
    }
    char *snake = c_camel_to_lower(md->name);
    char *meth_go = go_camel_case(md->name);
    mt->prefix = xasprintf("%s_%s", sv->prefix, snake);
    mt->slot = slot_name(md->name);
    mt->endpoint = xasprintf("%s.%s", sv->go_name, meth_go);
    gen_endpoint_meta(p->f, s, m, &mt->meta);
    sv->n++;
    free(snake);
    free(meth_go);
    return GEN_OK;
}

static int
plan_build(const gen_index *ix, const gen_file *f, plan *p, char *err, size_t errlen)
{
    char *c_package = file_c_package(f);
    char *pkg_prefix = c_package_prefix(f->package, c_package);
    int rc = GEN_OK;

    free(c_package);
    p->f = f;
    p->base = file_base_name(f->name);
    p->shown = shown_name(f->name);
    p->guard = guard_name(p->base);
    p->svcs = xcalloc(f->n_service, sizeof(*p->svcs));
    for (size_t i = 0; i < f->n_service && rc == GEN_OK; i++) {
        const gen_service *sd = f->service[i];
        svc *sv = &p->svcs[p->n++];

        if (sd->name == NULL) {
            snprintf(err, errlen, "a service in %s has no name", f->name);
            rc = GEN_MALFORMED;
            break;
        }
        char *snake = c_camel_to_lower(sd->name);
        sv->sd = sd;
        sv->prefix = xasprintf("%s%s", pkg_prefix, snake);
        sv->go_name = go_camel_case(sd->name);
        sv->meths = xcalloc(sd->n_method, sizeof(*sv->meths));
        free(snake);
        for (size_t k = 0; k < sd->n_method && rc == GEN_OK; k++) {
            rc = plan_method(ix, p, sv, i, k, err, errlen);
        }
    }
    free(pkg_prefix);
    return rc;
}

/* Adds name to the names taken so far; 0, or -1 when it is taken or not an identifier. */
static int
claim(strlist *taken, const char *name)
{
    int ok = c_is_ident(name) && !strlist_has(taken, name);

    strlist_add(taken, name);
    return ok ? 0 : -1;
}

/* Refuses names that would not compile or would collide. */
static int
plan_check(const plan *p, char *err, size_t errlen)
{
    static const char *const method_suffixes[] = {"", "_async", "_cb", "_free"};
    strlist names = {0};
    int rc = GEN_OK;

    if (strpbrk(p->base, "\"\\\n") != NULL) {
        snprintf(err, errlen, "%s: the file name cannot be #included from C", p->shown);
        return GEN_UNSUPPORTED;
    }
    for (size_t i = 0; i < p->n && rc == GEN_OK; i++) {
        const svc *sv = &p->svcs[i];
        strlist slots = {0};
        char *reg = xasprintf("%s_register", sv->prefix);
        char *tab = xasprintf("%s_handlers", sv->prefix);

        if (!c_is_ident(sv->sd->name) || claim(&names, reg) < 0 || claim(&names, tab) < 0) {
            snprintf(err, errlen, "%s: service %s gives the C names %s and %s, taken or not "
                     "identifiers; rename it", p->f->name, sv->sd->name, reg, tab);
            rc = GEN_UNSUPPORTED;
        }
        free(reg);
        free(tab);
        for (size_t k = 0; k < sv->n && rc == GEN_OK; k++) {
            const meth *mt = &sv->meths[k];

            size_t nsuffixes = 4 + (mt->kind != GEN_UNARY ? GEN_STREAM_NSUFFIXES : 0);
            for (size_t s = 0; s < nsuffixes && rc == GEN_OK; s++) {
                char *name = xasprintf("%s%s", mt->prefix,
                                       s < 4 ? method_suffixes[s] : gen_stream_suffixes[s - 4]);

                if (claim(&names, name) < 0) {
                    snprintf(err, errlen, "%s: method %s.%s gives the C name %s twice (or not "
                             "an identifier); rename a service or method", p->f->name,
                             sv->sd->name, mt->md->name, name);
                    rc = GEN_UNSUPPORTED;
                }
                free(name);
            }
            if (rc == GEN_OK &&
                (!c_is_ident(mt->md->name) || claim(&slots, mt->slot) < 0 ||
                 !c_is_ident(mt->in->c_name) || !c_is_ident(mt->out->c_name) ||
                 !c_is_ident(mt->in->lc_name) || !c_is_ident(mt->out->lc_name))) {
                snprintf(err, errlen, "%s: method %s.%s: its handler slot %s is taken or a C "
                         "name is not an identifier", p->f->name, sv->sd->name, mt->md->name,
                         mt->slot);
                rc = GEN_UNSUPPORTED;
            }
        }
        strlist_free(&slots);
    }
    strlist_free(&names);
    return rc;
}

/* The view of a method the stream emitters take. */
static gen_stream_meth
stream_meth(const meth *mt)
{
    gen_stream_meth m = {mt->prefix,      mt->slot,        mt->endpoint,     mt->in->c_name,
                         mt->in->lc_name, mt->out->c_name, mt->out->lc_name, mt->kind};
    return m;
}

static void GEN_PRINTF(3, 4)
put_comment(sbuf *b, size_t indent, const char *fmt, ...)
{
    sbuf text = {0};
    va_list ap;

    va_start(ap, fmt);
    sb_vprintf(&text, fmt, ap);
    va_end(ap);
    sb_comment(b, indent, sb_str(&text));
    sb_free(&text);
}

/* ---- the header ---- */

static void
header_method(sbuf *h, const meth *mt)
{
    const char *in = mt->in->c_name, *out = mt->out->c_name;
    char *p_req = xasprintf("const %s *req", in);
    char *p_rsp = xasprintf("%s **rsp", out);
    char *p_rsp1 = xasprintf("%s *rsp", out);
    char *p_cb = xasprintf("%s_cb cb", mt->prefix);
    char *head;

    put_comment(h, 0,
                "Calls %s on service (its registry name) and waits for the answer, from any "
                "thread but the client's loop thread. On 0, *rsp holds the response (returns "
                "owned: %s_free; rsp NULL: discarded). Otherwise the status is cm_client_call's "
                "and *err (err may be NULL; returns owned: cm_error_free) says why. req and opts "
                "(may be NULL) are borrowed.",
                mt->endpoint, mt->prefix);
    const char *sync[] = {"cm_client *c", "const char *service", p_req, p_rsp,
                          "const cm_call_opts *opts", "cm_error **err"};
    head = xasprintf("int %s(", mt->prefix);
    sb_wrap_call(h, 0, head, sync, 6, ");\n\n");
    free(head);

    put_comment(h, 0,
                "The callback of %s_async: on the client's loop thread, exactly once. status 0: "
                "rsp is the response (returns owned: %s_free; borrowed during the callback with "
                "opts->borrow_response); otherwise err (borrowed during the callback) says why.",
                mt->prefix, mt->prefix);
    const char *cb[] = {"int status", p_rsp1, "const cm_error *err", "void *user"};
    head = xasprintf("typedef void (*%s_cb)(", mt->prefix);
    sb_wrap_call(h, 0, head, cb, 4, ");\n\n");
    free(head);

    put_comment(h, 0,
                "Starts a call of %s; req is encoded before this returns. Any thread. Returns 0 "
                "(cb will run with user) or CM_EINVAL (cb NULL), CM_ENOMEM or an error of "
                "cm_client_call_async (cb will not run).",
                mt->endpoint);
    const char *async[] = {"cm_client *c", "const char *service", p_req,
                           "const cm_call_opts *opts", p_cb, "void *user"};
    head = xasprintf("int %s_async(", mt->prefix);
    sb_wrap_call(h, 0, head, async, 6, ");\n\n");
    free(head);

    put_comment(h, 0, "Frees a response of %s; NULL is ignored.", mt->endpoint);
    sb_printf(h, "static inline void\n%s_free(%s)\n{\n", mt->prefix, p_rsp1);
    sb_printf(h, "    if (rsp != NULL) {\n        cm_message_free(&%s__descriptor, rsp);\n    }\n",
              mt->out->lc_name);
    sb_puts(h, "}\n\n");
    free(p_req);
    free(p_rsp);
    free(p_rsp1);
    free(p_cb);
}

static void
header_service(sbuf *h, const svc *sv)
{
    sb_printf(h, "/* ---- service %s ---- */\n\n", sv->sd->name);
    for (size_t i = 0; i < sv->n; i++) {
        if (sv->meths[i].kind != GEN_UNARY) {
            gen_stream_meth m = stream_meth(&sv->meths[i]);
            gen_stream_header(h, &m);
        } else {
            header_method(h, &sv->meths[i]);
        }
    }
    put_comment(h, 0,
                "The handlers of service %s, one slot per method (NULL: not installed). A handler "
                "fills rsp (initialised to its defaults) from req (borrowed) and returns as a "
                "cm_handler_fn does; user is the table's user.",
                sv->sd->name);
    sb_printf(h, "typedef struct %s_handlers {\n", sv->prefix);
    for (size_t i = 0; i < sv->n; i++) {
        const meth *mt = &sv->meths[i];
        if (mt->kind != GEN_UNARY) {
            gen_stream_meth m = stream_meth(mt);
            gen_stream_slot(h, &m);
            continue;
        }
        char *p_req = xasprintf("const %s *req", mt->in->c_name);
        char *p_rsp = xasprintf("%s *rsp", mt->out->c_name);
        char *head = xasprintf("int (*%s)(", mt->slot);
        const char *params[] = {"cm_ctx *ctx", p_req, p_rsp, "void *user"};

        sb_puts(h, "    ");
        put_comment(h, 4, "%s", mt->endpoint);
        sb_puts(h, "    ");
        sb_wrap_call(h, 4, head, params, 4, ");\n");
        free(head);
        free(p_req);
        free(p_rsp);
    }
    sb_puts(h, "    void *user;     /* passed to every handler */\n");
    sb_puts(h, "    unsigned flags; /* cm_handler flags of every method: CM_HANDLER_INLINE */\n");
    sb_printf(h, "} %s_handlers;\n\n", sv->prefix);
    put_comment(h, 0,
                "Installs one handler per non-NULL slot of h on s, with its endpoint "
                "(\"%s.<Method>\") and registry shapes. h is borrowed while the server lives. "
                "Returns 0, CM_EINVAL (s or h NULL) or the first error of cm_server_handle (the "
                "handlers installed before it stay).",
                sv->go_name);
    sb_printf(h, "int %s_register(cm_server *s, const %s_handlers *h);\n\n", sv->prefix,
              sv->prefix);
}

/* The handler's endpoint metadata, as NULL-terminated key/value pairs; nothing when empty. */
static void
emit_meta(sbuf *c, const gen_meta *m)
{
    const char *keys[] = {"description", "example", "scopes"};
    const char *vals[] = {m->description, m->example, m->scopes};
    if (!m->description && !m->example && !m->scopes) {
        return;
    }
    sb_puts(c, "        .metadata = (const char *const[]){\n");
    for (size_t i = 0; i < 3; i++) {
        if (vals[i] != NULL) {
            sb_printf(c, "            \"%s\",\n            ", keys[i]);
            gen_put_literal(c, vals[i]);
            sb_puts(c, ",\n");
        }
    }
    sb_puts(c, "            NULL,\n        },\n");
}

static void
emit_header(sbuf *h, const gen_index *ix, const plan *p)
{
    sb_printf(h, "/* Generated by protoc-gen-cmicro from %s. DO NOT EDIT. */\n", p->shown);
    put_comment(h, 0,
                "cmicro client stubs and server handler tables for the services of %s.\n\n"
                "Client: <service>_<method>() makes a blocking call, <service>_<method>_async() "
                "starts one whose callback runs on the client's loop thread (see cm_client_call "
                "and cm_client_call_async). Server: fill a <service>_handlers table and install it "
                "with <service>_register().%s",
                p->shown,
                gen_event_types(ix, p->f, NULL, 0) == 0
                    ? ""
                    : " Events: <message>_publish() publishes a message marked @event, "
                      "<message>_subscribe() adds a typed subscriber to a service (see "
                      "<cmicro/event.h>).");
    sb_printf(h, "#ifndef %s\n#define %s\n\n", p->guard, p->guard);
    sb_puts(h, "#include <cmicro/cmicro.h>\n\n");
    sb_puts(h, "#if CM_ABI_VERSION != 3\n");
    sb_printf(h, "#error \"the cmicro stubs of %s need cmicro ABI version 3: regenerate them\"\n",
              p->shown);
    sb_puts(h, "#endif\n\n");
    sb_printf(h, "#include \"%s.pb-c.h\"\n\n", p->base);
    sb_puts(h, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    for (size_t i = 0; i < p->n; i++) {
        header_service(h, &p->svcs[i]);
    }
    gen_events_header(h, ix, p->f);
    sb_puts(h, "#ifdef __cplusplus\n}\n#endif\n#endif\n");
}

/* ---- the source ---- */

static void
source_client(sbuf *c, const meth *mt)
{
    const char *in = mt->in->c_name, *out = mt->out->c_name;
    char *p_req = xasprintf("const %s *req", in);
    char *p_rsp = xasprintf("%s **rsp", out);
    char *p_cb = xasprintf("%s_cb cb", mt->prefix);
    char *ep = xasprintf("\"%s\"", mt->endpoint);
    char *d_in = xasprintf("&%s__descriptor", mt->in->lc_name);
    char *d_out = xasprintf("&%s__descriptor", mt->out->lc_name);
    char *done = xasprintf("cm__done_%s", mt->prefix);
    char *head;

    /* The blocking stub. */
    const char *sync[] = {"cm_client *c", "const char *service", p_req, p_rsp,
                          "const cm_call_opts *opts", "cm_error **err"};
    head = xasprintf("%s(", mt->prefix);
    sb_puts(c, "int\n");
    sb_wrap_call(c, 0, head, sync, 6, ")\n{\n");
    free(head);
    sb_puts(c, "    void *out = NULL;\n    int rc;\n\n    rc = ");
    const char *call[] = {"c", "service", ep, d_in, "req", d_out, "&out", "opts", "err"};
    sb_wrap_call(c, 9, "cm_client_call(", call, 9, ");\n");
    sb_puts(c, "    if (rsp != NULL) {\n        *rsp = rc == 0 ? out : NULL;\n");
    sb_printf(c, "    } else if (rc == 0) {\n        %s_free(out);\n    }\n", mt->prefix);
    sb_puts(c, "    return rc;\n}\n\n");

    /* The typed callback travels with its user pointer in a malloc'd closure. */
    put_comment(c, 0, "The typed callback of %s_async and its user, freed by %s.", mt->prefix,
                done);
    sb_printf(c, "typedef struct cm__closure_%s {\n    %s_cb cb;\n    void *user;\n"
                 "} cm__closure_%s;\n\n",
              mt->prefix, mt->prefix, mt->prefix);
    sb_puts(c, "static void\n");
    const char *dparams[] = {"int status", "void *rsp", "const cm_error *err", "void *user"};
    head = xasprintf("%s(", done);
    sb_wrap_call(c, 0, head, dparams, 4, ")\n{\n");
    free(head);
    sb_printf(c, "    cm__closure_%s *cl = user;\n", mt->prefix);
    sb_printf(c, "    %s_cb cb = cl->cb;\n    void *cb_user = cl->user;\n\n", mt->prefix);
    sb_puts(c, "    free(cl);\n    cb(status, rsp, err, cb_user);\n}\n\n");

    /* The asynchronous stub. */
    const char *async[] = {"cm_client *c", "const char *service", p_req,
                           "const cm_call_opts *opts", p_cb, "void *user"};
    head = xasprintf("%s_async(", mt->prefix);
    sb_puts(c, "int\n");
    sb_wrap_call(c, 0, head, async, 6, ")\n{\n");
    free(head);
    sb_printf(c, "    cm__closure_%s *cl;\n    int rc;\n\n", mt->prefix);
    sb_puts(c, "    if (cb == NULL) {\n        return CM_EINVAL;\n    }\n");
    sb_puts(c, "    cl = malloc(sizeof(*cl));\n    if (cl == NULL) {\n        return CM_ENOMEM;\n"
               "    }\n    cl->cb = cb;\n    cl->user = user;\n    rc = ");
    const char *acall[] = {"c", "service", ep, d_in, "req", d_out, "opts", done, "cl"};
    sb_wrap_call(c, 9, "cm_client_call_async(", acall, 9, ");\n");
    sb_puts(c, "    if (rc < 0) {\n        free(cl);\n    }\n    return rc;\n}\n\n");
    free(p_req);
    free(p_rsp);
    free(p_cb);
    free(ep);
    free(d_in);
    free(d_out);
    free(done);
}

static void
source_service(sbuf *c, const svc *sv)
{
    sb_printf(c, "/* ---- service %s ---- */\n\n", sv->sd->name);
    int streams = 0;
    for (size_t i = 0; i < sv->n; i++) {
        gen_stream_meth m = stream_meth(&sv->meths[i]);
        if (m.kind != GEN_UNARY) {
            gen_stream_client(c, &m);
            streams = 1;
        } else {
            source_client(c, &sv->meths[i]);
        }
    }
    for (size_t i = 0; i < sv->n; i++) {
        const meth *mt = &sv->meths[i];
        if (mt->kind != GEN_UNARY) {
            gen_stream_meth m = stream_meth(mt);
            gen_stream_thunk(c, &m, sv->prefix);
            continue;
        }

        const char *params[] = {"cm_ctx *ctx", "const void *req", "void *rsp", "void *user"};
        char *head = xasprintf("cm__thunk_%s(", mt->prefix);

        sb_puts(c, "static int\n");
        sb_wrap_call(c, 0, head, params, 4, ")\n{\n");
        free(head);
        sb_printf(c, "    const %s_handlers *h = user;\n\n", sv->prefix);
        sb_printf(c, "    return h->%s(ctx, req, rsp, h->user);\n}\n\n", mt->slot);
    }
    if (sv->n > 0) {
        sb_printf(c, "static const cm_handler cm__handlers_%s[] = {\n", sv->prefix);
        for (size_t i = 0; i < sv->n; i++) {
            const meth *mt = &sv->meths[i];
            if (mt->kind != GEN_UNARY) {
                gen_stream_meth m = stream_meth(mt);
                gen_stream_entry(c, &m, &mt->meta);
                continue;
            }
            char *vin = gen_value_name(mt->in);
            char *vout = gen_value_name(mt->out);

            sb_printf(c, "    {\n        .endpoint = \"%s\",\n", mt->endpoint);
            sb_printf(c, "        .request = &%s__descriptor,\n", mt->in->lc_name);
            sb_printf(c, "        .response = &%s__descriptor,\n", mt->out->lc_name);
            sb_printf(c, "        .fn = cm__thunk_%s,\n", mt->prefix);
            sb_printf(c, "        .request_value = &%s,\n", vin);
            sb_printf(c, "        .response_value = &%s,\n", vout);
            emit_meta(c, &mt->meta);
            sb_puts(c, "    },\n");
            free(vin);
            free(vout);
        }
        sb_puts(c, "};\n\n");
        char *p_h = xasprintf("const %s_handlers *h", sv->prefix);
        char *head = xasprintf("cm__handle_%s(", sv->prefix);
        const char *params[] = {"cm_server *s", p_h, "size_t i"};

        sb_puts(c, "static int\n");
        sb_wrap_call(c, 0, head, params, 3, ")\n{\n");
        free(head);
        free(p_h);
        sb_printf(c, "    cm_handler hd = cm__handlers_%s[i];\n\n", sv->prefix);
        /* A stream handler keeps its CM_HANDLER_STREAM. */
        sb_puts(c, streams ? "    hd.flags |= h->flags;\n" : "    hd.flags = h->flags;\n");
        sb_puts(c, "    return cm_server_handle(s, &hd, (void *)(uintptr_t)h);\n}\n\n");
    }
    sb_printf(c, "int\n%s_register(cm_server *s, const %s_handlers *h)\n{\n", sv->prefix,
              sv->prefix);
    sb_puts(c, "    int rc = 0;\n\n    if (s == NULL || h == NULL) {\n        return CM_EINVAL;\n"
               "    }\n");
    for (size_t i = 0; i < sv->n; i++) {
        sb_printf(c, "    if (rc == 0 && h->%s != NULL) {\n", sv->meths[i].slot);
        sb_printf(c, "        rc = cm__handle_%s(s, h, %zu);\n    }\n", sv->prefix, i);
    }
    sb_puts(c, "    return rc;\n}\n");
}

static int
file_has_streams(const plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        for (size_t k = 0; k < p->svcs[i].n; k++) {
            if (p->svcs[i].meths[k].kind != GEN_UNARY) {
                return 1;
            }
        }
    }
    return 0;
}

static int
emit_source(sbuf *c, const gen_index *ix, const plan *p, char *err, size_t errlen)
{
    int rc;

    sb_printf(c, "/* Generated by protoc-gen-cmicro from %s. DO NOT EDIT. */\n", p->shown);
    sb_printf(c, "#include <stdint.h>\n#include <stdlib.h>\n\n#include \"%s.cmicro.h\"\n\n",
              p->base);
    rc = gen_values_emit(ix, p->f, c, err, errlen);
    if (rc == GEN_OK && file_has_streams(p)) {
        gen_stream_values(c);
    }
    for (size_t i = 0; i < p->n && rc == GEN_OK; i++) {
        if (i > 0) {
            sb_putc(c, '\n');
        }
        source_service(c, &p->svcs[i]);
    }
    if (rc == GEN_OK && p->n > 0 && gen_event_types(ix, p->f, NULL, 0) > 0) {
        sb_putc(c, '\n');
    }
    if (rc == GEN_OK) {
        gen_events_source(c, ix, p->f);
    }
    return rc;
}

int
gen_file_emit(const gen_index *ix, const gen_file *f, sbuf *hdr, sbuf *src, char *err,
              size_t errlen)
{
    plan p;
    int rc;

    memset(&p, 0, sizeof(p));
    if (f->n_service == 0 && gen_event_types(ix, f, NULL, 0) == 0) {
        return GEN_OK;
    }
    rc = plan_build(ix, f, &p, err, errlen);
    if (rc == GEN_OK) {
        rc = plan_check(&p, err, errlen);
    }
    if (rc == GEN_OK) {
        emit_header(hdr, ix, &p);
        rc = emit_source(src, ix, &p, err, errlen);
    }
    plan_free(&p);
    return rc;
}
