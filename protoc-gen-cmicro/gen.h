/* protoc-gen-cmicro: declarations shared by the plugin's files.
 *
 * The plugin is a short-lived compiler step: out of memory prints a message and exits 1 (see
 * xmalloc), every other failure is returned to the caller as a message.
 */
#ifndef PROTOC_GEN_CMICRO_GEN_H
#define PROTOC_GEN_CMICRO_GEN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin.pb-c.h"

#if defined(__GNUC__)
#define GEN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define GEN_PRINTF(f, a)
#endif

typedef Google__Protobuf__Compiler__CodeGeneratorRequest gen_request;
typedef Google__Protobuf__Compiler__CodeGeneratorResponse gen_response;
typedef Google__Protobuf__FileDescriptorProto gen_file;
typedef Google__Protobuf__DescriptorProto gen_message;
typedef Google__Protobuf__FieldDescriptorProto gen_field;
typedef Google__Protobuf__ServiceDescriptorProto gen_service;
typedef Google__Protobuf__MethodDescriptorProto gen_method;

/* ---- memory and text (text.c) ---- */

/* Allocation that never returns NULL: out of memory ends the process with exit code 1. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) GEN_PRINTF(1, 2);

/* A growable NUL-terminated text buffer. Zero-initialise it; sb_free releases it. */
typedef struct sbuf {
    char *data;
    size_t len;
    size_t cap;
} sbuf;

void sb_putc(sbuf *b, char c);
void sb_puts(sbuf *b, const char *s);
void sb_printf(sbuf *b, const char *fmt, ...) GEN_PRINTF(2, 3);
void sb_vprintf(sbuf *b, const char *fmt, va_list ap);
/* The text so far ("" when empty); the buffer keeps ownership. */
const char *sb_str(const sbuf *b);
/* The text, owned by the caller; the buffer is left empty. */
char *sb_take(sbuf *b);
void sb_free(sbuf *b);

/* Writes head, the parameters separated by ", " and tail, wrapped at 100 columns: parameters
 * are packed greedily and continuation lines are aligned under the first one. head ends with
 * the opening delimiter ("f(" or "{"), tail starts with the closing one. indent is the column
 * where head starts (the caller wrote what comes before). */
void sb_wrap_call(sbuf *b, size_t indent, const char *head, const char *const *params,
                  size_t nparams, const char *tail);

/* Writes text as a block comment starting at column indent (the caller wrote the indent of
 * the first line), words wrapped at 100 columns; '\n' in text forces a line break. */
void sb_comment(sbuf *b, size_t indent, const char *text);

/* A list of owned strings, used for collision checks and name sets. */
typedef struct strlist {
    char **items;
    size_t n;
    size_t cap;
} strlist;

void strlist_add(strlist *l, const char *s);
int strlist_has(const strlist *l, const char *s);
void strlist_free(strlist *l);

/* ---- names (names.c) ---- */

/* protoc-c's rules (protoc-c/c_helpers.cc): ToCamel per dotted piece joined by "__" for type
 * names, CamelToLower per piece joined by "__" for descriptor and function names. full is the
 * fully qualified name without the leading dot; package and c_package come from the defining
 * file (c_package: the (pb_c_file).c_package option, or NULL). */
char *c_type_name(const char *full, const char *package, const char *c_package);
char *c_lower_name(const char *full, const char *package, const char *c_package);
/* protoc-c's CamelToLower of one identifier: "SayHello" -> "say_hello". */
char *c_camel_to_lower(const char *s);
/* The stub prefix of a package: dots to '_', lower-cased, plus '_'; "" for no package. */
char *c_package_prefix(const char *package, const char *c_package);
/* 1 when s is a C11 keyword (or a name C headers make one, like bool). */
int c_is_keyword(const char *s);
/* protoc-gen-go's GoCamelCase (google.golang.org/protobuf/internal/strs). */
char *go_camel_case(const char *s);
/* The (pb_c_file).c_package option of a file, owned by the caller, or NULL. */
char *file_c_package(const gen_file *f);
/* A .proto file name without its ".proto" (or ".protodevel") suffix, as protoc-c strips it. */
char *file_base_name(const char *name);
/* 1 when s is a C identifier: [A-Za-z_][A-Za-z0-9_]*. */
int c_is_ident(const char *s);

/* ---- the type index (index.c) ---- */

/* A message or enum of any file of the request. */
typedef struct gen_type {
    char *full;              /* ".pkg.Outer.Inner" as in field type names */
    const gen_message *msg;  /* NULL for an enum */
    const gen_file *file;    /* the defining file */
    char *c_name;            /* protobuf-c type: Pkg__Outer__Inner */
    char *lc_name;           /* protobuf-c lower name: pkg__outer__inner */
    char *go_name;           /* protoc-gen-go type: Outer_Inner */
} gen_type;

typedef struct gen_index {
    gen_type *types; /* sorted by full */
    size_t n;
    size_t cap;
} gen_index;

/* Indexes every message and enum of req->proto_file. Returns 0, or -1 with a message in err
 * (errlen bytes) when the request is malformed. */
int gen_index_build(gen_index *ix, const gen_request *req, char *err, size_t errlen);
/* The type named full (".pkg.Name"), or NULL. */
const gen_type *gen_index_find(const gen_index *ix, const char *full);
void gen_index_free(gen_index *ix);

/* ---- generation (emit.c, values.c) ---- */

/* Status of a generation step: malformed request (protoc never sends it) or a construct the
 * plugin refuses (reported to protoc through CodeGeneratorResponse.error). */
enum { GEN_OK = 0, GEN_MALFORMED = -1, GEN_UNSUPPORTED = -2 };

/* Endpoint metadata from the leading comment of the rpc f->service[s]->method[m]: each field
 * owned, NULL when absent. Lines of the comment join with spaces; "@example <json>" sets example,
 * each "@scope <name>" adds to the comma-separated scopes. */
typedef struct gen_meta {
    char *description;
    char *example;
    char *scopes;
} gen_meta;

void gen_endpoint_meta(const gen_file *f, size_t s, size_t m, gen_meta *out);
void gen_meta_free(gen_meta *m);

/* A C string literal for s, escaping what C needs escaped (values.c). */
void gen_put_literal(sbuf *b, const char *s);

/* Writes f's <name>.cmicro.h and .cmicro.c into hdr and src. Returns GEN_OK (nothing is
 * written for a file without services or events), GEN_MALFORMED or GEN_UNSUPPORTED with a message
 * in err. */
int gen_file_emit(const gen_index *ix, const gen_file *f, sbuf *hdr, sbuf *src, char *err,
                  size_t errlen);

/* Appends the static cm_value_desc tables of the request and response messages of f's
 * methods (go-micro's registry Value trees) to src, named by gen_value_name(). Returns GEN_OK or
 * GEN_MALFORMED with a message in err. */
int gen_values_emit(const gen_index *ix, const gen_file *f, sbuf *src, char *err,
                    size_t errlen);
/* The name of the top Value table of message t; owned by the caller. */
char *gen_value_name(const gen_type *t);

/* ---- events (events.c) ---- */

/* The top-level messages of f marked "@event" in their leading comment, in file order: up to max
 * in out; returns how many there are. */
size_t gen_event_types(const gen_index *ix, const gen_file *f, const gen_type **out, size_t max);
/* The typed publish and subscribe helpers of those messages, declarations and definitions. */
void gen_events_header(sbuf *h, const gen_index *ix, const gen_file *f);
void gen_events_source(sbuf *c, const gen_index *ix, const gen_file *f);

/* ---- the whole request (run.c) ---- */

/* Runs the plugin on a serialized CodeGeneratorRequest. On 0, *out (malloc'd, *outlen bytes)
 * holds the serialized CodeGeneratorResponse, possibly with its error field set. On -1 the
 * request is malformed and err says why. */
int gen_run(const uint8_t *in, size_t inlen, uint8_t **out, size_t *outlen, char *err,
            size_t errlen);

#endif
