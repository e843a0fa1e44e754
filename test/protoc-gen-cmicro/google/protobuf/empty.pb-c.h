/* naming.pb-c.h includes "google/protobuf/empty.pb-c.h", but the test build generates
 * empty.pb-c.h flat in its build directory (meson outputs cannot live in subdirectories). This
 * forwards to it; the angle brackets keep the search away from this file's own directory. */
#include <empty.pb-c.h>
