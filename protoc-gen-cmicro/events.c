/* protoc-gen-cmicro: typed publish and subscribe helpers for the messages of a file marked with
 * "@event" in their leading comment (see <cmicro/event.h>):
 *   <prefix><message>_publish         blocking publish         user_created_publish
 *   <prefix><message>_publish_async   publish with a callback   user_created_publish_async
 *   <prefix><message>_subscriber      a typed subscriber        user_created_subscriber
 *   <prefix><message>_subscribe       adds it to a service      user_created_subscribe
 * (prefix as for the service stubs, the message's name through CamelToLower). A subscriber is
 * published in the registry as go-micro publishes a function subscriber: endpoint "Func" with the
 * message's Value tree. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

/* FileDescriptorProto.message_type, as SourceCodeInfo paths spell it. */
#define PATH_MESSAGE 4

static int
marked(const gen_file *f, size_t i)
{
    const Google__Protobuf__SourceCodeInfo *sci = f->source_code_info;
    for (size_t k = 0; sci != NULL && k < sci->n_location; k++) {
        const Google__Protobuf__SourceCodeInfo__Location *l = sci->location[k];
        if (l->n_path != 2 || l->path[0] != PATH_MESSAGE || l->path[1] != (int32_t)i ||
            l->leading_comments == NULL) {
            continue;
        }
        for (const char *p = l->leading_comments; (p = strstr(p, "@event")) != NULL; p += 6) {
            int starts = p == l->leading_comments || isspace((unsigned char)p[-1]);
            if (starts && (p[6] == '\0' || isspace((unsigned char)p[6]))) {
                return 1;
            }
        }
    }
    return 0;
}

size_t
gen_event_types(const gen_index *ix, const gen_file *f, const gen_type **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n_message_type; i++) {
        if (!marked(f, i)) {
            continue;
        }
        char *full = f->package && f->package[0]
                         ? xasprintf(".%s.%s", f->package, f->message_type[i]->name)
                         : xasprintf(".%s", f->message_type[i]->name);
        const gen_type *t = gen_index_find(ix, full);
        free(full);
        if (t != NULL && n < max) {
            out[n] = t;
        }
        n += t != NULL;
    }
    return n;
}

/* The helpers' prefix of t: the package prefix and the message's snake name. */
static char *
event_prefix(const gen_file *f, const gen_type *t)
{
    char *cpkg = file_c_package(f);
    char *pkg = c_package_prefix(f->package, cpkg);
    char *lower = c_camel_to_lower(t->msg->name);
    char *p = xasprintf("%s%s", pkg, lower);
    free(cpkg);
    free(pkg);
    free(lower);
    return p;
}

static void
header_event(sbuf *h, const char *p, const gen_type *t)
{
    char *msg = xasprintf("const %s *msg", t->c_name);
    sb_printf(h, "/* ---- event %s ---- */\n\n", t->msg->name);
    sb_comment(h, 0,
               "Publishes msg on topic through the client's broker and waits for the outcome "
               "(cm_publish: the client must be a service's). msg and opts (may be NULL) are "
               "borrowed; on failure *err (may be NULL; returns owned) says why.");
    const char *sync[] = {"cm_client *c", "const char *topic", msg, "const cm_publish_opts *opts",
                          "cm_error **err"};
    char *head = xasprintf("int %s_publish(", p);
    sb_wrap_call(h, 0, head, sync, 5, ");\n\n");
    free(head);
    sb_comment(h, 0,
               "Publishes msg on topic; cb (may be NULL) runs with the outcome on the "
               "client's loop thread (cm_publish_async). Any thread.");
    const char *async[] = {
        "cm_client *c",     "const char *topic", msg, "const cm_publish_opts *opts",
        "cm_publish_cb cb", "void *user"};
    head = xasprintf("int %s_publish_async(", p);
    sb_wrap_call(h, 0, head, async, 6, ");\n\n");
    free(head);
    sb_comment(h, 0,
               "A subscriber of the message: fn gets it decoded (borrowed) with the "
               "message's metadata in ctx, and returns as a cm_subscriber_fn does.");
    sb_printf(h, "typedef struct %s_subscriber {\n", p);
    sb_printf(h, "    int (*fn)(cm_ctx *ctx, const %s *msg, void *user);\n", t->c_name);
    sb_puts(h, "    void *user;\n");
    sb_puts(h, "    const char *queue; /* queue group; NULL: none */\n");
    sb_puts(h, "    unsigned flags;    /* CM_HANDLER_INLINE, CM_HANDLER_INTERNAL */\n");
    sb_printf(h, "} %s_subscriber;\n\n", p);
    sb_comment(h, 0,
               "Adds sub (borrowed while the service lives) to service s for topic, before "
               "it runs. Returns as cm_service_subscribe does.");
    char *ps = xasprintf("const %s_subscriber *sub", p);
    const char *subp[] = {"cm_service *s", "const char *topic", ps};
    head = xasprintf("int %s_subscribe(", p);
    sb_wrap_call(h, 0, head, subp, 3, ");\n\n");
    free(head);
    free(ps);
    free(msg);
}

static void
source_event(sbuf *c, const char *p, const gen_type *t)
{
    char *msg = xasprintf("const %s *msg", t->c_name);
    char *desc = xasprintf("&%s__descriptor", t->lc_name);
    sb_printf(c, "/* ---- event %s ---- */\n\n", t->msg->name);
    const char *sync[] = {"cm_client *c", "const char *topic", msg, "const cm_publish_opts *opts",
                          "cm_error **err"};
    char *head = xasprintf("%s_publish(", p);
    sb_puts(c, "int\n");
    sb_wrap_call(c, 0, head, sync, 5, ")\n{\n    return ");
    free(head);
    const char *call[] = {"c", "topic", desc, "msg", "opts", "err"};
    sb_wrap_call(c, 11, "cm_publish(", call, 6, ");\n}\n\n");
    const char *async[] = {
        "cm_client *c",     "const char *topic", msg, "const cm_publish_opts *opts",
        "cm_publish_cb cb", "void *user"};
    head = xasprintf("%s_publish_async(", p);
    sb_puts(c, "int\n");
    sb_wrap_call(c, 0, head, async, 6, ")\n{\n    return ");
    free(head);
    const char *acall[] = {"c", "topic", desc, "msg", "opts", "cb", "user"};
    sb_wrap_call(c, 11, "cm_publish_async(", acall, 7, ");\n}\n\n");
    /* A thunk calls the typed function: no call through a cast function pointer. */
    sb_printf(c, "static int\ncm__thunk_%s(cm_ctx *ctx, const void *msg, void *user)\n{\n", p);
    sb_printf(c, "    const %s_subscriber *sub = user;\n\n", p);
    sb_puts(c, "    return sub->fn(ctx, msg, sub->user);\n}\n\n");
    char *ps = xasprintf("const %s_subscriber *sub", p);
    const char *subp[] = {"cm_service *s", "const char *topic", ps};
    head = xasprintf("%s_subscribe(", p);
    sb_puts(c, "int\n");
    sb_wrap_call(c, 0, head, subp, 3, ")\n{\n");
    free(head);
    free(ps);
    char *value = gen_value_name(t);
    sb_puts(c, "    if (sub == NULL || sub->fn == NULL) {\n        return CM_EINVAL;\n    }\n");
    sb_puts(c, "    cm_subscriber cs = {\n        .topic = topic,\n        .queue = sub->queue,\n");
    sb_printf(c, "        .message = %s,\n        .fn = cm__thunk_%s,\n", desc, p);
    sb_printf(c, "        .flags = sub->flags,\n        .message_value = &%s,\n    };\n\n", value);
    sb_puts(c, "    return cm_service_subscribe(s, &cs, (void *)(uintptr_t)sub);\n}\n");
    free(value);
    free(desc);
    free(msg);
}

void
gen_events_header(sbuf *h, const gen_index *ix, const gen_file *f)
{
    const gen_type *ts[256];
    size_t n = gen_event_types(ix, f, ts, 256);
    for (size_t i = 0; i < n && i < 256; i++) {
        char *p = event_prefix(f, ts[i]);
        header_event(h, p, ts[i]);
        free(p);
    }
}

void
gen_events_source(sbuf *c, const gen_index *ix, const gen_file *f)
{
    const gen_type *ts[256];
    size_t n = gen_event_types(ix, f, ts, 256);
    for (size_t i = 0; i < n && i < 256; i++) {
        char *p = event_prefix(f, ts[i]);
        if (i > 0) {
            sb_putc(c, '\n');
        }
        source_event(c, p, ts[i]);
        free(p);
    }
}
