/* libFuzzer harness: go-micro's registry payloads, hex -> zlib -> JSON (registry/encoding.c,
 * consul_codec.c, mdns_entries.c).
 *
 * An input that starts with '{', '[' or whitespace is a JSON payload. It is compressed and
 * hex-encoded (cm__hexzlib_encode), then decoded as an mDNS TXT payload (cm__mdns_txt_decode,
 * whose result must encode and decode to the same service) and read as the registry's JSON form
 * of a service (cm__service_from_json, which must round-trip).
 *
 * Any other input is a list of Consul tags, one per line, decoded with go-micro's rules
 * (version, metadata, endpoints). A line "T-<text>", "E-<text>" or "V-<text>" stands for the
 * tag "t-", "e-" or "v-" followed by hex(zlib(<text>)), so that the fuzzer reaches the JSON
 * inside real tags; every other line ("t-789c...", legacy "t={...}", foreign tags) is a tag as it
 * is.
 *
 * Every input is also decoded as a raw hex(zlib) string with a small output cap (bad hex, bad
 * zlib, bombs). */
#include "consul_int.h"
#include "mdns_int.h"
#include "registry_common.h"

#include <string.h>

static void
raw_hex(const uint8_t *data, size_t size)
{
    cm_buf out = {0};
    int rc = cm__hexzlib_decode((const char *)data, size, 4096, &out);
    FUZZ_CHECK(rc == 0 || rc == CM_EPROTO);
    FUZZ_CHECK(rc != 0 || out.len <= 4096);
    FUZZ_CHECK(rc == 0 || out.len == 0);
    cm_buf_free(&out);
}

static void
txt_payload(const uint8_t *data, size_t size)
{
    cm_buf hex = {0};
    FUZZ_CHECK(cm__hexzlib_encode(data, size, &hex) == 0);
    cm_reg_service *svc = NULL;
    cm_md *md = NULL;
    int rc = cm__mdns_txt_decode((const char *)hex.data, hex.len, &svc, &md);
    cm_buf_free(&hex);
    FUZZ_CHECK(rc == 0 || rc == CM_EPROTO);
    if (rc != 0) {
        FUZZ_CHECK(svc == NULL && md == NULL);
        return;
    }
    /* What a responder would serve for this node decodes to the same service. */
    cm_node *node = cm_reg_service_add_node(svc, "n", "127.0.0.1:1", md);
    FUZZ_CHECK(node != NULL);
    char *again;
    size_t againlen;
    FUZZ_CHECK(cm__mdns_txt_encode(svc, node, &again, &againlen) == 0);
    cm_reg_service *svc2 = NULL;
    cm_md *md2 = NULL;
    FUZZ_CHECK(cm__mdns_txt_decode(again, againlen, &svc2, &md2) == 0);
    FUZZ_CHECK(cm_reg_service_add_node(svc2, "n", "127.0.0.1:1", md2) != NULL);
    cJSON *j1 = cm__service_to_json(svc), *j2 = cm__service_to_json(svc2);
    FUZZ_CHECK(j1 != NULL && j2 != NULL);
    FUZZ_CHECK(cJSON_Compare(j1, j2, 1));
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    free(again);
    cm_md_free(md);
    cm_md_free(md2);
    cm_reg_service_free(svc);
    cm_reg_service_free(svc2);
}

static void
service_json(const uint8_t *data, size_t size)
{
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    cm_reg_service *s = NULL;
    int rc = cm__service_from_json(j, &s);
    FUZZ_CHECK(rc == 0 || rc == CM_EPROTO);
    if (rc == 0) {
        service_round_trip(s);
        cm_reg_service_free(s);
    }
    cJSON_Delete(j);
}

/* One line as a tag string added to tags. */
static void
add_tag(cJSON *tags, const char *line, size_t n)
{
    cm_buf tag = {0};
    if (n >= 2 && line[1] == '-' && (line[0] == 'T' || line[0] == 'E' || line[0] == 'V')) {
        char prefix[2] = {(char)(line[0] - 'A' + 'a'), '-'};
        FUZZ_CHECK(cm_buf_append(&tag, prefix, 2) == 0);
        FUZZ_CHECK(cm__hexzlib_encode(line + 2, n - 2, &tag) == 0);
    } else {
        FUZZ_CHECK(cm_buf_append(&tag, line, n) == 0);
    }
    FUZZ_CHECK(cm_buf_append(&tag, "", 1) == 0);
    cJSON *s = cJSON_CreateString((const char *)tag.data);
    FUZZ_CHECK(s != NULL);
    cJSON_AddItemToArray(tags, s);
    cm_buf_free(&tag);
}

static void
tags(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size);
    cJSON *arr = cJSON_CreateArray();
    FUZZ_CHECK(arr != NULL);
    for (char *p = text; p <= text + size;) {
        char *nl = memchr(p, '\n', (size_t)(text + size - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        add_tag(arr, p, n);
        if (nl == NULL) {
            break;
        }
        p = nl + 1;
    }
    char *version = cm__consul_decode_version(arr);
    FUZZ_CHECK(version != NULL);
    cm_md *md = NULL;
    FUZZ_CHECK(cm__consul_decode_metadata(arr, &md) == 0);
    cm_reg_service *s = cm_reg_service_new("greeter", version);
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(cm__consul_decode_endpoints(arr, s) == 0);
    FUZZ_CHECK(cm_reg_service_add_node(s, "greeter-1", "127.0.0.1:1", md) != NULL);
    service_round_trip(s);
    cm_reg_service_free(s);
    cm_md_free(md);
    free(version);
    cJSON_Delete(arr);
    free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    raw_hex(data, size);
    if (size > 0 && strchr("{[ \t\r\n", data[0]) != NULL) {
        txt_payload(data, size);
        service_json(data, size);
    } else {
        tags(data, size);
    }
    return 0;
}
