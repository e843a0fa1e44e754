/* The registry data model: construction, deep copies and lists. */
#include "registry_int.h"
#include "test.h"

/* A service with every part filled: nested values, endpoints, nodes, service metadata. */
static cm_reg_service *
sample(void)
{
    cm_reg_service *s = cm_reg_service_new("helloworld", "latest");
    CHECK(s != NULL);
    s->metadata = cm_md_new();
    CHECK(cm_md_set(s->metadata, "owner", "team-a") == 0);

    cm_value leaf = {"id", "int64", NULL, 0};
    cm_value inner[2] = {{"user", "User", &leaf, 1}, {"tags", "[]string", NULL, 0}};
    cm_value req = {"CallRequest", "CallRequest", inner, 2};
    cm_value rsp = {"CallResponse", "CallResponse", NULL, 0};
    cm_md *emd = cm_md_new();
    CHECK(cm_md_set(emd, "stream", "true") == 0);
    cm_endpoint *e = cm_reg_service_add_endpoint(s, "Helloworld.Call", &req, &rsp, NULL);
    CHECK(e != NULL);
    CHECK(e->metadata != NULL);
    CHECK_EQ_INT(cm_md_count(e->metadata), 0);
    CHECK(e->request != &req);
    CHECK_EQ_STR(e->request->values[0].values[0].type, "int64");
    e = cm_reg_service_add_endpoint(s, "Helloworld.Stream", NULL, NULL, emd);
    CHECK(e != NULL);
    CHECK(e->request == NULL && e->response == NULL);
    CHECK_EQ_STR(cm_md_get(e->metadata, "stream"), "true");
    CHECK(e->metadata != emd);
    cm_md_free(emd);

    cm_md *nmd = cm_md_new();
    CHECK(cm_md_set(nmd, "protocol", "mucp") == 0);
    cm_node *n = cm_reg_service_add_node(s, "helloworld-1", "10.0.0.1:8080", nmd);
    CHECK(n != NULL);
    CHECK_EQ_STR(n->id, "helloworld-1");
    CHECK_EQ_STR(cm_md_get(n->metadata, "protocol"), "mucp");
    cm_md_free(nmd);
    n = cm_reg_service_add_node(s, "helloworld-2", "10.0.0.2:8080", NULL);
    CHECK(n != NULL);
    CHECK(n->metadata != NULL);
    CHECK_EQ_INT(s->nnodes, 2);
    CHECK_EQ_INT(s->nendpoints, 2);
    return s;
}

/* Deep equality through the JSON form, which carries every field. */
static char *
json_of(const cm_reg_service *s)
{
    cJSON *j = cm__service_to_json(s);
    CHECK(j != NULL);
    char *txt = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    CHECK(txt != NULL);
    return txt;
}

static void
test_new_free(void)
{
    cm_reg_service *s = cm_reg_service_new("a", NULL);
    CHECK(s != NULL);
    CHECK_EQ_STR(s->name, "a");
    CHECK_EQ_STR(s->version, "");
    CHECK(s->metadata == NULL);
    CHECK_EQ_INT(s->nnodes, 0);
    CHECK_EQ_INT(s->nendpoints, 0);
    cm_reg_service_free(s);
    cm_reg_service_free(NULL);
    CHECK(cm_reg_service_add_node(NULL, "x", "y", NULL) == NULL);
}

static void
test_dup_round_trip(void)
{
    cm_reg_service *s = sample();
    cm_reg_service *d = cm_reg_service_dup(s);
    CHECK(d != NULL);
    char *a = json_of(s), *b = json_of(d);
    CHECK_EQ_STR(a, b);
    /* Nothing is shared. */
    CHECK(d->name != s->name);
    CHECK(d->metadata != s->metadata);
    CHECK(d->nodes != s->nodes);
    CHECK(d->nodes[0].metadata != s->nodes[0].metadata);
    CHECK(d->endpoints[0].request != s->endpoints[0].request);
    CHECK(d->endpoints[0].request->values != s->endpoints[0].request->values);
    /* The copy outlives the original (ASan would catch a shared pointer). */
    cm_reg_service_free(s);
    char *c = json_of(d);
    CHECK_EQ_STR(a, c);
    CHECK_EQ_STR(d->endpoints[0].request->values[0].values[0].name, "id");
    free(a);
    free(b);
    free(c);

    /* A NULL service metadata stays NULL. */
    cm_reg_service *bare = cm_reg_service_new("b", "1");
    cm_reg_service *bd = cm_reg_service_dup(bare);
    CHECK(bd->metadata == NULL);
    cm_reg_service_free(bare);
    cm_reg_service_free(bd);
    CHECK(cm_reg_service_dup(NULL) == NULL);
    cm_reg_service_free(d);
}

static void
test_value_copy(void)
{
    cm_value kids[2] = {{"a", "string", NULL, 0}, {"b", NULL, NULL, 0}};
    cm_value v = {"M", "M", kids, 2};
    cm_value c;
    CHECK_EQ_INT(cm_value_copy(&c, &v), 0);
    CHECK_EQ_STR(c.name, "M");
    CHECK_EQ_INT(c.nvalues, 2);
    CHECK(c.values != kids);
    CHECK_EQ_STR(c.values[0].type, "string");
    CHECK_EQ_STR(c.values[1].type, "");
    CHECK(c.values[0].values == NULL);
    cm_value_fini(&c);
    CHECK(c.name == NULL && c.values == NULL && c.nvalues == 0);
    cm_value_fini(&c);
    CHECK_EQ_INT(cm_value_copy(&c, NULL), 0);
    CHECK(c.name == NULL);
}

static void
test_list_dup(void)
{
    cm_reg_service *items[2] = {sample(), cm_reg_service_new("other", "v2")};
    cm_reg_service_list l = {items, 2};
    cm_reg_service_list *d = cm_reg_service_list_dup(&l);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->n, 2);
    CHECK(d->items[0] != items[0]);
    CHECK_EQ_STR(d->items[1]->version, "v2");
    CHECK_EQ_INT(d->items[0]->nnodes, 2);
    cm_reg_service_free(items[0]);
    cm_reg_service_free(items[1]);
    CHECK_EQ_STR(d->items[0]->nodes[1].id, "helloworld-2");
    cm_reg_service_list_free(d);

    cm_reg_service_list empty = {NULL, 0};
    d = cm_reg_service_list_dup(&empty);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->n, 0);
    cm_reg_service_list_free(d);
    cm_reg_service_list_free(NULL);
    CHECK(cm_reg_service_list_dup(NULL) == NULL);
}

static void
test_action_names(void)
{
    CHECK_EQ_STR(cm_watch_action_name(CM_WATCH_CREATE), "create");
    CHECK_EQ_STR(cm_watch_action_name(CM_WATCH_UPDATE), "update");
    CHECK_EQ_STR(cm_watch_action_name(CM_WATCH_DELETE), "delete");
    CHECK_EQ_STR(cm_watch_action_name((cm_watch_action)42), "unknown");

    cm_registry_opts o;
    memset(&o, 0xff, sizeof(o));
    cm_registry_opts_init(&o);
    CHECK(o.addresses == NULL && o.timeout_ms == 0 && o.noptions == 0);
    /* Backend settings by key: set, replace, refuse empty keys and a full table. */
    CHECK_EQ_INT(cm_registry_opts_set(&o, "namespace", "a"), 0);
    CHECK_EQ_INT(cm_registry_opts_set(&o, "namespace", "b"), 0);
    CHECK_EQ_INT((int)o.noptions, 1);
    CHECK_EQ_STR(o.options[0].val, "b");
    CHECK_EQ_INT(cm_registry_opts_set(&o, "", "x"), CM_EINVAL);
    CHECK_EQ_INT(cm_registry_opts_set(&o, "k", NULL), CM_EINVAL);
    static char keys[CM_REGISTRY_OPTS_MAX][8];
    for (int i = 1; i < CM_REGISTRY_OPTS_MAX; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        CHECK_EQ_INT(cm_registry_opts_set(&o, keys[i], "v"), 0);
    }
    CHECK_EQ_INT(cm_registry_opts_set(&o, "one-more", "v"), CM_ENOMEM);
}

int
main(void)
{
    RUN(test_new_free);
    RUN(test_dup_round_trip);
    RUN(test_value_copy);
    RUN(test_list_dup);
    RUN(test_action_names);
    TEST_DONE();
}
