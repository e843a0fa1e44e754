/* libFuzzer harness: the broker message, go-micro's broker.Message in JSON
 * (cm_broker_msg_decode, broker/msg.c), as both the NATS and the HTTP broker receive it.
 * Failures are CM_ECODEC with a one-line reason; a message that decodes encodes (sorted keys, Go's
 * escapes, base64) to JSON that decodes to the same header and body, and that second encoding is
 * byte for byte the first. */
#include "broker_int.h"
#include "fuzz.h"

#include <string.h>

static void
same_message(const cm_md *a, const uint8_t *ab, size_t alen, const cm_md *b, const uint8_t *bb,
             size_t blen)
{
    FUZZ_CHECK(alen == blen && (alen == 0 || memcmp(ab, bb, alen) == 0));
    FUZZ_CHECK(cm_md_count(a) == cm_md_count(b));
    for (size_t i = 0; i < cm_md_count(a); i++) {
        const char *k, *v;
        FUZZ_CHECK(cm_md_at(a, i, &k, &v) == 0);
        const char *w = cm_md_get(b, k);
        FUZZ_CHECK(w != NULL && strcmp(v, w) == 0);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cm_md *h = NULL;
    uint8_t *body = NULL;
    size_t len = 0;
    char err[128];
    int rc = cm_broker_msg_decode(data, size, &h, &body, &len, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == CM_ECODEC || rc == CM_ENOMEM);
    if (rc < 0) {
        FUZZ_CHECK(h == NULL && body == NULL && len == 0);
        FUZZ_CHECK(rc != CM_ECODEC || (err[0] != '\0' && strchr(err, '\n') == NULL));
        return 0;
    }
    FUZZ_CHECK(h != NULL && (len == 0) == (body == NULL));
    cm_buf e1 = {0}, e2 = {0};
    FUZZ_CHECK(cm_broker_msg_encode(h, body, len, &e1) == 0);
    cm_md *h2 = NULL, *h3 = NULL;
    uint8_t *b2 = NULL, *b3 = NULL;
    size_t l2 = 0, l3 = 0;
    FUZZ_CHECK(cm_broker_msg_decode(e1.data, e1.len, &h2, &b2, &l2, err, sizeof(err)) == 0);
    /* The body survives as is; header strings may have had invalid UTF-8 made U+FFFD. */
    FUZZ_CHECK(l2 == len && (len == 0 || memcmp(b2, body, len) == 0));
    FUZZ_CHECK(cm_broker_msg_encode(h2, b2, l2, &e2) == 0);
    FUZZ_CHECK(cm_broker_msg_decode(e2.data, e2.len, &h3, &b3, &l3, err, sizeof(err)) == 0);
    same_message(h2, b2, l2, h3, b3, l3);
    cm_buf e3 = {0};
    FUZZ_CHECK(cm_broker_msg_encode(h3, b3, l3, &e3) == 0);
    /* After one round every string is valid UTF-8: encodings are stable from then on. */
    FUZZ_CHECK(e2.len == e3.len && memcmp(e2.data, e3.data, e2.len) == 0);
    cm_buf_free(&e1);
    cm_buf_free(&e2);
    cm_buf_free(&e3);
    cm_md_free(h);
    cm_md_free(h2);
    cm_md_free(h3);
    free(body);
    free(b2);
    free(b3);
    return 0;
}
