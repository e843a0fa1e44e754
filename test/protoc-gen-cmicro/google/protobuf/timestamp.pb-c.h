/* naming.pb-c.h includes "google/protobuf/timestamp.pb-c.h", but the test build generates
 * timestamp.pb-c.h flat in its build directory (meson outputs cannot live in subdirectories). This
 * forwards to it; the angle brackets keep the search away from this file's own directory. */
#include <timestamp.pb-c.h>
