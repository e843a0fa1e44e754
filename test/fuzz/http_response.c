/* libFuzzer harness: HTTP responses as the client reads them (transport/http.c over
 * http_parser with the ":status" pseudo header, the read buffer of http_client.c, EOF ending a
 * body delimited by the close), then what the framework's client does with a reply: the status,
 * the Micro-Error header (cm_error_parse), the text/plain refusal and the body decoded with the
 * request's codec. Whole and cut in three reads, the input must parse alike. */
#include "echo.pb-c.h"
#include "http_common.h"
#include <cmicro/rpc_error.h>

#include <cmicro/codec.h>

/* framework/client.c's on_reply after the transport. */
static void
on_response(cm__http_in *in, cm__http_buf *log, uint64_t h)
{
    const cm_msg *rsp = &in->msg;
    log_msg(log, rsp);
    const char *status = cm_msg_header(rsp, ":status");
    FUZZ_CHECK((status == NULL) == (in->parser.status_code == 200));
    const char *merr = cm_msg_header(rsp, "Micro-Error");
    if (merr != NULL && merr[0] != '\0' && strcmp(merr, "EOS") != 0) {
        cm_error *e = cm_error_parse(merr, strlen(merr));
        FUZZ_CHECK(e != NULL);
        cm_error_free(e);
        return;
    }
    const char *ct = cm_msg_header(rsp, "Content-Type");
    if (ct != NULL && strcmp(ct, "text/plain") == 0 && rsp->body_len > 0) {
        return;
    }
    const cm_codec_ops *codec = (h >> 4) & 1 ? &cm_codec_json : &cm_codec_proto;
    void *msg = NULL;
    char reason[160] = "";
    int rc = codec->unmarshal(&cmicro__test__v1__echo_response__descriptor, rsp->body,
                              rsp->body_len, NULL, &msg, reason, sizeof(reason));
    FUZZ_CHECK(rc == 0 || rc == CM_ECODEC);
    if (rc == 0) {
        protobuf_c_message_free_unpacked(msg, NULL);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    http_check_splits(HTTP_RESPONSE, 1, 1, data, size, on_response);
    return 0;
}
