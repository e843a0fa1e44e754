/* libFuzzer harness: the application/json codec (codec/json*.c: the parser, jsonpb's reading
 * rules, Go's writing rules) decoding text as each test message (test/proto/echo.proto,
 * legacy.proto); whatever decodes must write, read back and settle, and survive a protobuf
 * round trip (codec_common.h). */
#include "codec_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    codec_fuzz(&cm_codec_json, data, size);
    return 0;
}
