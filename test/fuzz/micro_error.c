/* libFuzzer harness: the Micro-Error header parser (cm_error_parse, framework/error.c): go-micro's
 * errors.Parse, JSON {"id","code","detail","status"} or else the whole text as the detail. What
 * it returns must write (cm_error_to_json) and parse back to the same error, and the header
 * value written from it must be one line. */
#include "fuzz.h"

#include <cmicro/rpc_error.h>
#include <string.h>

static int
same_error(const cm_error *a, const cm_error *b)
{
    return a->code == b->code && strcmp(a->id, b->id) == 0 && strcmp(a->detail, b->detail) == 0 &&
           strcmp(a->status, b->status) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cm_error *e = cm_error_parse((const char *)data, size);
    FUZZ_CHECK(e != NULL);
    FUZZ_CHECK(e->id != NULL && e->detail != NULL && e->status != NULL);
    char *json = cm_error_to_json(e);
    FUZZ_CHECK(json != NULL);
    FUZZ_CHECK(strchr(json, '\r') == NULL && strchr(json, '\n') == NULL);
    cm_error *back = cm_error_parse(json, strlen(json));
    FUZZ_CHECK(back != NULL);
    if (!same_error(e, back)) {
        fprintf(stderr, "error changed in a round trip: %s\n", json);
        FUZZ_CHECK(!"Micro-Error round trip");
    }
    cm_error *dup = cm_error_dup(back);
    FUZZ_CHECK(dup != NULL && same_error(dup, back));
    cm_error_free(dup);
    cm_error_free(back);
    free(json);
    cm_error_free(e);
    return 0;
}
