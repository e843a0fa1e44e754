/* Minimal test helpers: each test program is one meson test; a failed CHECK prints the place
 * and exits 1. */
#ifndef CM_TEST_H
#define CM_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cm_test_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        cm_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        cm_test_checks++;                                                                          \
        if (_a != _b) {                                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__,  \
                    #a, #b, _a, _b);                                                               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        cm_test_checks++;                                                                          \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__,        \
                    __LINE__, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)");                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        fprintf(stderr, "-- %s\n", #fn);                                                           \
        fn();                                                                                      \
    } while (0)

#define TEST_DONE()                                                                                \
    do {                                                                                           \
        fprintf(stderr, "ok: %d checks\n", cm_test_checks);                                        \
        return 0;                                                                                  \
    } while (0)

#endif
