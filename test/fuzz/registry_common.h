/* What the registry harnesses share: the go-micro JSON form of a service must survive a round
 * trip (registry/encoding.c). */
#ifndef CM_TEST_FUZZ_REGISTRY_COMMON_H
#define CM_TEST_FUZZ_REGISTRY_COMMON_H

#include "fuzz.h"
#include "registry_int.h"

/* to_json(s) reads back into a service that writes the same JSON. */
static void
service_round_trip(const cm_reg_service *s)
{
    cJSON *j1 = cm__service_to_json(s);
    FUZZ_CHECK(j1 != NULL);
    cm_reg_service *back = NULL;
    FUZZ_CHECK(cm__service_from_json(j1, &back) == 0);
    cJSON *j2 = cm__service_to_json(back);
    FUZZ_CHECK(j2 != NULL);
    if (!cJSON_Compare(j1, j2, 1)) {
        char *a = cJSON_PrintUnformatted(j1), *b = cJSON_PrintUnformatted(j2);
        fprintf(stderr, "service JSON changed in a round trip:\n%s\n%s\n", a ? a : "?",
                b ? b : "?");
        FUZZ_CHECK(!"service JSON round trip");
    }
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    cm_reg_service_free(back);
}

#endif
