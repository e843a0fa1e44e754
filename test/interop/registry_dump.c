/* What cmicro's registry backend returns, as JSON, for the registry cross-checks of the interop
 * suite (the twin of `gmicro registry`, go/gmicro/registry.go):
 *   interop-registry get NAME [NODES [WAIT_MS]]  cm_registry_get_service(NAME): a JSON array of
 *                                               services in go-micro's JSON form, polled until
 *                                               the versions hold NODES nodes (default 1) or
 *                                               WAIT_MS (default 3000) pass
 *   interop-registry list [NAME [WAIT_MS]]       cm_registry_list_services(): the sorted names,
 *                                               polled until NAME is among them
 * The backend is MICRO_REGISTRY (mdns by default; consul reads CONSUL_HTTP_ADDR). */
#include "echo_common.h"
#include "mdns/mdns_test.h"
#include "registry_int.h"

static cJSON *result;
static int done;
static size_t want_nodes = 1;
static const char *want_name;

static void
on_get(int status, const cm_reg_service_list *l, void *user)
{
    (void)user;
    size_t n = 0;
    for (size_t i = 0; status == 0 && i < l->n; i++) {
        n += l->items[i]->nnodes;
    }
    cJSON_Delete(result);
    result = NULL;
    if (status < 0) {
        fprintf(stderr, "interop-registry: get: %s\n", cm_strerror(status));
    } else {
        result = cJSON_CreateArray();
        for (size_t i = 0; i < l->n; i++) {
            cJSON_AddItemToArray(result, cm__service_to_json(l->items[i]));
        }
    }
    done = status == 0 && n >= want_nodes ? 1 : -1;
}

static int
cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
on_list(int status, const cm_reg_service_list *l, void *user)
{
    (void)user;
    cJSON_Delete(result);
    result = NULL;
    if (status < 0) {
        fprintf(stderr, "interop-registry: list: %s\n", cm_strerror(status));
        done = -1;
        return;
    }
    const char **names = calloc(l->n + 1, sizeof(char *));
    if (names == NULL) {
        exit(1);
    }
    int found = want_name == NULL;
    for (size_t i = 0; i < l->n; i++) {
        names[i] = l->items[i]->name;
        found = found || strcmp(names[i], want_name) == 0;
    }
    qsort(names, l->n, sizeof(char *), cmp_name);
    result = cJSON_CreateArray();
    for (size_t i = 0; i < l->n; i++) {
        if (i == 0 || strcmp(names[i], names[i - 1]) != 0) {
            cJSON_AddItemToArray(result, cJSON_CreateString(names[i]));
        }
    }
    free(names);
    done = found ? 1 : -1;
}

int
main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "get") == 0 && argc < 3)) {
        fprintf(stderr, "usage: interop-registry get NAME [NODES [WAIT_MS]] | list [NAME "
                        "[WAIT_MS]]\n");
        return 2;
    }
    int get = strcmp(argv[1], "get") == 0;
    const char *name = argc > 2 ? argv[2] : NULL;
    if (get && argc > 3) {
        want_nodes = (size_t)atoi(argv[3]);
    } else if (!get) {
        want_name = name;
    }
    int wait_arg = get ? 4 : 3;
    uint64_t wait_ms = argc > wait_arg ? (uint64_t)atoi(argv[wait_arg]) : 3000;
    const char *reg_name = getenv("MICRO_REGISTRY");
    reg_name = reg_name && reg_name[0] ? reg_name : "mdns";
    interop_require_netns_for(reg_name);

    cm_loop *loop;
    cm_registry *reg;
    CHECK(cm_loop_new(&loop) == 0);
    int rc = cm_registry_new(loop, reg_name, NULL, &reg);
    if (rc < 0) {
        fprintf(stderr, "interop-registry: %s: %s\n", reg_name, cm_strerror(rc));
        return 1;
    }
    uint64_t end = now_ms() + wait_ms;
    for (;;) {
        done = 0;
        rc = get ? cm_registry_get_service(reg, name, on_get, NULL)
                 : cm_registry_list_services(reg, on_list, NULL);
        CHECK(rc == 0);
        run_until(loop, &done, 10000);
        if (done == 1 || now_ms() >= end) {
            break;
        }
        run_for(loop, 100);
    }
    cm_registry_close(reg, NULL, NULL);
    run_for(loop, 50);
    cm_loop_free(loop);
    if (result == NULL) {
        return 1;
    }
    char *text = cJSON_PrintUnformatted(result);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(result);
    return 0;
}
