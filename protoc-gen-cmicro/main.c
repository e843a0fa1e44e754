/* protoc-gen-cmicro: the protoc plugin that writes cmicro client stubs and server handler
 * tables. protoc runs it with a CodeGeneratorRequest on stdin and reads the
 * CodeGeneratorResponse from stdout:
 *
 *     protoc --plugin=protoc-gen-cmicro=PATH --c_out=DIR --cmicro_out=DIR x.proto
 *
 * For each file to generate that has services it writes x.cmicro.h and x.cmicro.c next to
 * protoc-c's x.pb-c.h. Problems with the .proto (names that would collide
 * in C) go back to protoc in the response's error field, with exit code 0, as protoc expects.
 * A request that cannot be read prints a message on stderr and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "gen.h"

/* Reads all of f. Returns the bytes (owned by the caller) or NULL on a read error. */
static uint8_t *
read_all(FILE *f, size_t *len)
{
    size_t cap = 64 * 1024, n = 0;
    uint8_t *buf = xmalloc(cap);

    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);

        n += got;
        if (n < cap) {
            if (ferror(f)) {
                free(buf);
                return NULL;
            }
            if (feof(f)) {
                break;
            }
            continue;
        }
        cap *= 2;
        buf = xrealloc(buf, cap);
    }
    *len = n;
    return buf;
}

int
main(int argc, char **argv)
{
    char err[1024] = "";
    uint8_t *in, *out = NULL;
    size_t inlen = 0, outlen = 0;
    int rc;

    if (argc > 1) {
        fprintf(stderr, "usage: protoc --plugin=protoc-gen-cmicro=%s --cmicro_out=DIR "
                        "FILE.proto\n(%s reads a CodeGeneratorRequest on stdin; it takes no "
                        "arguments)\n",
                argv[0], argv[0]);
        return 1;
    }
    in = read_all(stdin, &inlen);
    if (in == NULL) {
        perror("protoc-gen-cmicro: reading stdin");
        return 1;
    }
    rc = gen_run(in, inlen, &out, &outlen, err, sizeof(err));
    free(in);
    if (rc < 0) {
        fprintf(stderr, "protoc-gen-cmicro: %s\n", err);
        return 1;
    }
    if (fwrite(out, 1, outlen, stdout) != outlen || fflush(stdout) != 0) {
        perror("protoc-gen-cmicro: writing stdout");
        free(out);
        return 1;
    }
    free(out);
    return 0;
}
