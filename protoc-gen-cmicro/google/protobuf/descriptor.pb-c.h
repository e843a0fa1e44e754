/* protoc-gen-cmicro: plugin.pb-c.h includes "google/protobuf/descriptor.pb-c.h", but the build
 * generates descriptor.pb-c.h flat in the build directory (meson outputs cannot live in
 * subdirectories). This forwards to it; the angle brackets keep the search away from this
 * file's own directory, where the name would find this file again. */
#include <descriptor.pb-c.h>
