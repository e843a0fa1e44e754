/* Nested and repeated fields: the server side fills a reply of sub-messages and arrays from the
 * call's memory (cm_ctx_*: nothing to free in the handler), the client side prints the reply and
 * frees it with the stub's function. Both run in one process on the memory registry:
 *
 *   build/examples/library/library-example [SHELF] [LIMIT]
 */
#define _POSIX_C_SOURCE 200809L /* <uv.h>, for the server's thread */

#include "library.cmicro.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct shelf_book {
    const char *title, *author;
    int born;
    const char *tags[3]; /* NULL-terminated */
} shelf_book;

static const shelf_book classics[] = {
    {"Middlemarch", "George Eliot", 1819, {"novel", "england", NULL}},
    {"War and Peace", "Leo Tolstoy", 1828, {"novel", "russia", "war"}},
    {"The Odyssey", "Homer", 0, {"epic", NULL, NULL}},
};

/* One Book of the reply: a sub-message, its own sub-message and a repeated string field. */
static Book *
make_book(cm_ctx *ctx, const shelf_book *src)
{
    Book *b = cm_ctx_new_message(ctx, &book__descriptor);
    Author *a = cm_ctx_new_message(ctx, &author__descriptor);
    if (b == NULL || a == NULL) {
        return NULL;
    }
    a->name = cm_ctx_strdup(ctx, src->author); /* string fields are char *: copy, never cast */
    a->born = src->born;
    b->author = a;
    b->title = cm_ctx_strdup(ctx, src->title);
    size_t ntags = 0;
    while (ntags < 3 && src->tags[ntags] != NULL) {
        ntags++;
    }
    if (a->name == NULL || b->title == NULL || CM_CTX_REPEATED(ctx, b, tags, ntags) < 0) {
        return NULL;
    }
    for (size_t i = 0; i < ntags; i++) {
        if ((b->tags[i] = cm_ctx_strdup(ctx, src->tags[i])) == NULL) {
            return NULL;
        }
    }
    return b;
}

static int
list(cm_ctx *ctx, const ListRequest *req, ListReply *rsp, void *user)
{
    (void)user;
    if (strcmp(req->shelf, "classics") != 0) {
        return cm_ctx_error(ctx, 404, "no shelf %s", req->shelf);
    }
    size_t n = sizeof classics / sizeof classics[0];
    if (req->limit > 0 && (size_t)req->limit < n) {
        n = (size_t)req->limit;
    }
    rsp->label =
        cm_ctx_sprintf(ctx, "%s (%zu of %zu)", req->shelf, n, sizeof classics / sizeof classics[0]);
    if (rsp->label == NULL || CM_CTX_REPEATED(ctx, rsp, books, n) < 0) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rsp->books[i] = make_book(ctx, &classics[i])) == NULL) {
            return CM_ENOMEM;
        }
    }
    return 0;
}

static void
print_reply(const ListReply *rsp)
{
    printf("%s\n", rsp->label);
    for (size_t i = 0; i < rsp->n_books; i++) {
        const Book *b = rsp->books[i];
        printf("- %s by %s (%d) [", b->title, b->author->name, b->author->born);
        for (size_t t = 0; t < b->n_tags; t++) {
            printf("%s%s", t ? ", " : "", b->tags[t]);
        }
        printf("]\n");
    }
}

static void
serve(void *svc)
{
    cm_service_run(svc);
}

int
main(int argc, char **argv)
{
    cm_service_opts o;
    cm_service_opts_init(&o);
    o.name = "example.library";
    o.address = "127.0.0.1:0";
    o.registry = "memory";
    o.log_config = 0;
    o.deregister_wait_ms = 10;
    cm_service *svc;
    if (cm_service_new(&o, &svc) < 0) {
        fprintf(stderr, "library: %s\n", cm_service_why());
        return 1;
    }
    static const library_handlers handlers = {.list = list};
    uv_thread_t t;
    if (library_register(cm_service_server(svc), &handlers) < 0 ||
        uv_thread_create(&t, serve, svc) != 0) {
        cm_service_free(svc);
        return 1;
    }

    /* The client side: the request is ours (borrowed by the call), the reply is returned owned. */
    ListRequest req = LIST_REQUEST__INIT;
    req.shelf = argc > 1 ? argv[1] : "classics";
    req.limit = argc > 2 ? atoi(argv[2]) : 0;
    ListReply *rsp = NULL;
    cm_error *err = NULL;
    int rc = CM_ENOTFOUND;
    for (int i = 0; i < 100 && rc == CM_ENOTFOUND; i++) { /* until the service is registered */
        rc = library_list(cm_service_client(svc), "example.library", &req, &rsp, NULL, &err);
        if (rc == CM_ENOTFOUND) {
            cm_error_free(err);
            err = NULL;
            uv_sleep(20);
        }
    }
    if (rc == 0) {
        print_reply(rsp);
        library_list_free(rsp); /* frees the reply and everything it points to */
    } else {
        fprintf(stderr, "library: %s\n", err ? err->detail : cm_strerror(rc));
        cm_error_free(err);
    }
    cm_service_stop(svc);
    uv_thread_join(&t);
    cm_service_free(svc);
    return rc == 0 ? 0 : 1;
}
