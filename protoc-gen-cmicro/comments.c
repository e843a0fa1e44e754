/* Endpoint metadata from an rpc's leading comment: "description" (the comment's text), "example"
 * (an "@example <json>" line) and "scopes" (the "@scope <name>" lines, comma separated), the keys
 * go-micro's tooling reads from the registry (its MCP gateway turns them into tool
 * descriptions). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

/* FileDescriptorProto field numbers, as SourceCodeInfo paths spell them. */
#define PATH_SERVICE 6
#define PATH_METHOD 2

static const char *
leading_comment(const gen_file *f, size_t s, size_t m)
{
    const Google__Protobuf__SourceCodeInfo *sci = f->source_code_info;
    for (size_t i = 0; sci != NULL && i < sci->n_location; i++) {
        const Google__Protobuf__SourceCodeInfo__Location *l = sci->location[i];
        if (l->n_path == 4 && l->path[0] == PATH_SERVICE && l->path[1] == (int32_t)s &&
            l->path[2] == PATH_METHOD && l->path[3] == (int32_t)m) {
            return l->leading_comments;
        }
    }
    return NULL;
}

/* Appends the line (trimmed) to a space-separated or comma-separated text. */
static void
append(char **dst, const char *line, size_t n, const char *sep)
{
    while (n > 0 && isspace((unsigned char)*line)) {
        line++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)line[n - 1])) {
        n--;
    }
    if (n == 0) {
        return;
    }
    char *old = *dst;
    *dst = old ? xasprintf("%s%s%.*s", old, sep, (int)n, line) : xasprintf("%.*s", (int)n, line);
    free(old);
}

static int
tagged(const char *line, size_t n, const char *tag, const char **rest, size_t *rest_n)
{
    while (n > 0 && isspace((unsigned char)*line)) {
        line++;
        n--;
    }
    size_t tl = strlen(tag);
    if (n < tl || strncmp(line, tag, tl) != 0 || (n > tl && !isspace((unsigned char)line[tl]))) {
        return 0;
    }
    *rest = line + tl;
    *rest_n = n - tl;
    return 1;
}

void
gen_endpoint_meta(const gen_file *f, size_t s, size_t m, gen_meta *out)
{
    memset(out, 0, sizeof(*out));
    const char *c = leading_comment(f, s, m);
    for (const char *p = c; p != NULL && *p;) {
        size_t n = strcspn(p, "\n");
        const char *rest;
        size_t rn;
        if (tagged(p, n, "@example", &rest, &rn)) {
            free(out->example);
            out->example = NULL;
            append(&out->example, rest, rn, " ");
        } else if (tagged(p, n, "@scope", &rest, &rn)) {
            append(&out->scopes, rest, rn, ",");
        } else {
            append(&out->description, p, n, " ");
        }
        p += n + (p[n] == '\n');
    }
}

void
gen_meta_free(gen_meta *m)
{
    free(m->description);
    free(m->example);
    free(m->scopes);
    memset(m, 0, sizeof(*m));
}
