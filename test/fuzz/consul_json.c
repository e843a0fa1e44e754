/* libFuzzer harness: the Consul backend's reply parsers (registry/consul_codec.c). Every input
 * goes through both: GET /v1/health/service/<name> (cm__consul_parse_health: entries, checks,
 * addresses, go-micro's tags hex -> zlib -> JSON) and GET /v1/catalog/services
 * (cm__consul_parse_catalog). The name asked for is the Service of the first entry, so that
 * mutated replies keep matching. The services a health reply gives feed the watcher's diff
 * (consul_watch.c) and the JSON round trip of their go-micro form. */
#include "consul_int.h"
#include "registry_common.h"

#include <string.h>

/* The name a health query would have asked for: the first entry's Service.Service. */
static char *
asked_name(const uint8_t *data, size_t size)
{
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    const cJSON *first = cJSON_IsArray(root) ? cJSON_GetArrayItem(root, 0) : NULL;
    const cJSON *svc = cJSON_GetObjectItemCaseSensitive(first, "Service");
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(svc, "Service"));
    char *copy = strdup(name != NULL ? name : "greeter");
    FUZZ_CHECK(copy != NULL);
    cJSON_Delete(root);
    return copy;
}

static int
count_event(void *arg, cm_watch_action a, const cm_reg_service *svc)
{
    FUZZ_CHECK(a == CM_WATCH_CREATE || a == CM_WATCH_UPDATE || a == CM_WATCH_DELETE);
    FUZZ_CHECK(svc != NULL && svc->name != NULL);
    (*(int *)arg)++;
    return 0;
}

static void
health(const uint8_t *data, size_t size)
{
    char *name = asked_name(data, size);
    cm_reg_service_list *l = NULL;
    int rc = cm__consul_parse_health(name, (const char *)data, size, &l);
    FUZZ_CHECK(rc == 0 || rc == CM_EPROTO);
    if (rc == 0) {
        FUZZ_CHECK(l != NULL);
        for (size_t i = 0; i < l->n; i++) {
            const cm_reg_service *s = l->items[i];
            FUZZ_CHECK(strcmp(s->name, name) == 0);
            for (size_t j = i + 1; j < l->n; j++) {
                FUZZ_CHECK(strcmp(s->version, l->items[j]->version) != 0);
            }
            service_round_trip(s);
        }
        /* A first snapshot creates every version; the same snapshot again changes nothing. */
        int events = 0;
        FUZZ_CHECK(cm__consul_diff(NULL, l, count_event, &events) == 0);
        FUZZ_CHECK((size_t)events == l->n);
        events = 0;
        FUZZ_CHECK(cm__consul_diff(l, l, count_event, &events) == 0);
        FUZZ_CHECK(events == 0);
        events = 0;
        FUZZ_CHECK(cm__consul_diff(l, NULL, count_event, &events) == 0);
        FUZZ_CHECK((size_t)events == l->n);
        cm_reg_service_list_free(l);
    }
    free(name);
}

static void
catalog(const uint8_t *data, size_t size)
{
    cm_reg_service_list *l = NULL;
    int rc = cm__consul_parse_catalog((const char *)data, size, &l);
    FUZZ_CHECK(rc == 0 || rc == CM_EPROTO);
    if (rc == 0) {
        for (size_t i = 0; i < l->n; i++) {
            FUZZ_CHECK(l->items[i]->name != NULL && l->items[i]->nnodes == 0);
        }
        cm_reg_service_list_free(l);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    health(data, size);
    catalog(data, size);
    return 0;
}
