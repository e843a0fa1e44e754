/* libFuzzer harness: the application/protobuf codec (codec/proto.c over protobuf-c) decoding
 * bytes as each test message (test/proto/echo.proto, legacy.proto); whatever decodes must pack,
 * decode again to the same bytes and survive a JSON round trip (codec_common.h). */
#include "codec_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    codec_fuzz(&cm_codec_proto, data, size);
    return 0;
}
