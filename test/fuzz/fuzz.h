/* Shared pieces of the libFuzzer harnesses in this folder. Each harness defines
 * LLVMFuzzerTestOneInput (and may define LLVMFuzzerInitialize); it is linked either with
 * libFuzzer (-fsanitize=fuzzer, the fuzz build of scripts/fuzz-smoke.sh) or with replay.c, which
 * runs the checked-in corpus as a regular test. A broken invariant aborts, so that libFuzzer
 * keeps the input as a crash. */
#ifndef CM_TEST_FUZZ_H
#define CM_TEST_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* FNV-1a of the input: harness decisions (where to cut, which limits) that must not need a
 * prefix in the corpus files, so that seeds stay plain captured messages. */
static inline uint64_t
fuzz_hash(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < size; i++) {
        h ^= data[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* A NUL-terminated copy of the input (malloc; never NULL on success of malloc). */
static inline char *
fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) {
        abort();
    }
    for (size_t i = 0; i < size; i++) {
        s[i] = (char)data[i];
    }
    s[size] = '\0';
    return s;
}

#endif
