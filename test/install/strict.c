/* The public headers under the strictest flags a consumer may use: -std=c11 -pedantic -Werror,
 * and the same file as C++ (test/install/consumer.sh compiles it both ways with only
 * pkg-config --cflags cmicro). */
#include <cmicro/cmicro.h>
#include <cmicro/metrics.h>
#include <cmicro/trace.h>

int
main(void)
{
    cm_loop *l = 0;
    int rc = cm_loop_new(&l);
    if (rc == 0) {
        cm_loop_free(l);
    }
    return rc == 0 ? 0 : 1;
}
