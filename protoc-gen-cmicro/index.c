/* protoc-gen-cmicro: an index of every message and enum of the request, by full name, with the
 * C and Go names the generated code needs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

typedef struct scope {
    const gen_file *file;
    const char *package; /* "" when none */
    const char *c_package;
} scope;

static void
add_type(gen_index *ix, const scope *sc, const char *rel, const gen_message *msg)
{
    gen_type *t;

    if (ix->n == ix->cap) {
        ix->cap = ix->cap == 0 ? 64 : ix->cap * 2;
        ix->types = xrealloc(ix->types, ix->cap * sizeof(*ix->types));
    }
    t = &ix->types[ix->n++];
    t->msg = msg;
    t->file = sc->file;
    if (*sc->package != '\0') {
        t->full = xasprintf(".%s.%s", sc->package, rel);
        char *abs = t->full + 1;
        t->c_name = c_type_name(abs, sc->package, sc->c_package);
        t->lc_name = c_lower_name(abs, sc->package, sc->c_package);
    } else {
        t->full = xasprintf(".%s", rel);
        t->c_name = c_type_name(rel, sc->package, sc->c_package);
        t->lc_name = c_lower_name(rel, sc->package, sc->c_package);
    }
    t->go_name = go_camel_case(rel);
}

static int
add_enums(gen_index *ix, const scope *sc, const char *outer,
          Google__Protobuf__EnumDescriptorProto *const *enums, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (enums[i]->name == NULL || *enums[i]->name == '\0') {
            snprintf(err, errlen, "an enum in %s has no name", sc->file->name);
            return -1;
        }
        char *rel = outer == NULL ? xstrdup(enums[i]->name)
                                  : xasprintf("%s.%s", outer, enums[i]->name);
        add_type(ix, sc, rel, NULL);
        free(rel);
    }
    return 0;
}

static int
add_messages(gen_index *ix, const scope *sc, const char *outer, gen_message *const *msgs,
             size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const gen_message *m = msgs[i];
        int rc;

        if (m->name == NULL || *m->name == '\0') {
            snprintf(err, errlen, "a message in %s has no name", sc->file->name);
            return -1;
        }
        char *rel = outer == NULL ? xstrdup(m->name) : xasprintf("%s.%s", outer, m->name);
        add_type(ix, sc, rel, m);
        rc = add_messages(ix, sc, rel, m->nested_type, m->n_nested_type, err, errlen);
        if (rc == 0) {
            rc = add_enums(ix, sc, rel, m->enum_type, m->n_enum_type, err, errlen);
        }
        free(rel);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int
cmp_type(const void *a, const void *b)
{
    return strcmp(((const gen_type *)a)->full, ((const gen_type *)b)->full);
}

int
gen_index_build(gen_index *ix, const gen_request *req, char *err, size_t errlen)
{
    memset(ix, 0, sizeof(*ix));
    for (size_t i = 0; i < req->n_proto_file; i++) {
        const gen_file *f = req->proto_file[i];
        char *c_package;
        scope sc;
        int rc;

        if (f->name == NULL || *f->name == '\0') {
            snprintf(err, errlen, "proto_file %zu has no name", i);
            return -1;
        }
        c_package = file_c_package(f);
        sc.file = f;
        sc.package = f->package != NULL ? f->package : "";
        sc.c_package = c_package;
        rc = add_messages(ix, &sc, NULL, f->message_type, f->n_message_type, err, errlen);
        if (rc == 0) {
            rc = add_enums(ix, &sc, NULL, f->enum_type, f->n_enum_type, err, errlen);
        }
        free(c_package);
        if (rc < 0) {
            return rc;
        }
    }
    if (ix->n > 0) {
        qsort(ix->types, ix->n, sizeof(*ix->types), cmp_type);
    }
    return 0;
}

const gen_type *
gen_index_find(const gen_index *ix, const char *full)
{
    gen_type key;

    if (full == NULL || ix->n == 0) {
        return NULL;
    }
    key.full = (char *)(uintptr_t)full;
    return bsearch(&key, ix->types, ix->n, sizeof(*ix->types), cmp_type);
}

void
gen_index_free(gen_index *ix)
{
    for (size_t i = 0; i < ix->n; i++) {
        free(ix->types[i].full);
        free(ix->types[i].c_name);
        free(ix->types[i].lc_name);
        free(ix->types[i].go_name);
    }
    free(ix->types);
    memset(ix, 0, sizeof(*ix));
}
