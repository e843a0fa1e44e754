/* protoc-gen-cmicro: one CodeGeneratorRequest in, one CodeGeneratorResponse out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

/* CodeGeneratorResponse.Feature.FEATURE_PROTO3_OPTIONAL: proto3 optional fields are plain
 * fields to the stubs, so files using them are fine. */
#define FEATURE_PROTO3_OPTIONAL 1u

typedef Google__Protobuf__Compiler__CodeGeneratorResponse__File gen_out_file;

static const gen_file *
find_file(const gen_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_proto_file; i++) {
        if (req->proto_file[i]->name != NULL && strcmp(req->proto_file[i]->name, name) == 0) {
            return req->proto_file[i];
        }
    }
    return NULL;
}

static void
add_output(gen_response *rsp, char *name, char *content)
{
    gen_out_file *f = xmalloc(sizeof(*f));

    google__protobuf__compiler__code_generator_response__file__init(f);
    f->name = name;
    f->content = content;
    rsp->file = xrealloc(rsp->file, (rsp->n_file + 1) * sizeof(*rsp->file));
    rsp->file[rsp->n_file++] = f;
}

static void
response_free(gen_response *rsp)
{
    for (size_t i = 0; i < rsp->n_file; i++) {
        free(rsp->file[i]->name);
        free(rsp->file[i]->content);
        free(rsp->file[i]);
    }
    free(rsp->file);
    free(rsp->error);
}

/* Fills rsp for req. Returns 0 (rsp->error may be set) or -1 (malformed: err says why). */
static int
generate(const gen_request *req, gen_response *rsp, char *err, size_t errlen)
{
    char msg[1024];
    gen_index ix;
    int rc = 0;

    if (gen_index_build(&ix, req, err, errlen) < 0) {
        gen_index_free(&ix);
        return -1;
    }
    if (req->parameter != NULL && *req->parameter != '\0') {
        rsp->error = xasprintf("protoc-gen-cmicro takes no options (got \"%s\")",
                               req->parameter);
    }
    for (size_t i = 0; i < req->n_file_to_generate && rsp->error == NULL && rc == 0; i++) {
        const char *name = req->file_to_generate[i];
        const gen_file *f = name != NULL ? find_file(req, name) : NULL;
        sbuf hdr = {0}, src = {0};

        if (f == NULL) {
            snprintf(err, errlen, "file_to_generate %s is not among the proto files",
                     name != NULL ? name : "(null)");
            rc = -1;
            break;
        }
        msg[0] = '\0';
        int st = gen_file_emit(&ix, f, &hdr, &src, msg, sizeof(msg));
        if (st == GEN_OK && hdr.len > 0) {
            char *base = file_base_name(f->name);
            add_output(rsp, xasprintf("%s.cmicro.h", base), sb_take(&hdr));
            add_output(rsp, xasprintf("%s.cmicro.c", base), sb_take(&src));
            free(base);
        } else if (st == GEN_UNSUPPORTED) {
            rsp->error = xstrdup(msg);
        } else if (st == GEN_MALFORMED) {
            snprintf(err, errlen, "%s", msg);
            rc = -1;
        }
        sb_free(&hdr);
        sb_free(&src);
    }
    if (rsp->error != NULL) {
        /* protoc ignores the files of a failed response; send none. */
        for (size_t i = 0; i < rsp->n_file; i++) {
            free(rsp->file[i]->name);
            free(rsp->file[i]->content);
            free(rsp->file[i]);
        }
        rsp->n_file = 0;
    }
    gen_index_free(&ix);
    return rc;
}

int
gen_run(const uint8_t *in, size_t inlen, uint8_t **out, size_t *outlen, char *err,
        size_t errlen)
{
    gen_request *req;
    gen_response rsp;
    int rc;

    *out = NULL;
    *outlen = 0;
    if (inlen == 0) {
        snprintf(err, errlen, "no CodeGeneratorRequest on stdin (run me through protoc "
                              "--cmicro_out=DIR)");
        return -1;
    }
    req = google__protobuf__compiler__code_generator_request__unpack(NULL, inlen, in);
    if (req == NULL) {
        snprintf(err, errlen, "cannot parse the CodeGeneratorRequest on stdin (%zu bytes): "
                              "malformed or truncated",
                 inlen);
        return -1;
    }
    google__protobuf__compiler__code_generator_response__init(&rsp);
    rsp.has_supported_features = 1;
    rsp.supported_features = FEATURE_PROTO3_OPTIONAL;
    rc = generate(req, &rsp, err, errlen);
    if (rc == 0) {
        *outlen = google__protobuf__compiler__code_generator_response__get_packed_size(&rsp);
        *out = xmalloc(*outlen);
        google__protobuf__compiler__code_generator_response__pack(&rsp, *out);
    }
    response_free(&rsp);
    google__protobuf__compiler__code_generator_request__free_unpacked(req, NULL);
    return rc;
}
