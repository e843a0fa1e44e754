/* A growable byte buffer. */
#include <cmicro/buf.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
cm_buf_reserve(cm_buf *b, size_t extra)
{
    size_t need, cap;
    uint8_t *p;

    if (extra <= b->cap - b->len) {
        return 0;
    }
    if (extra > SIZE_MAX - b->len) {
        return CM_ENOMEM;
    }
    need = b->len + extra;
    cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL) {
        return CM_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int
cm_buf_append(cm_buf *b, const void *p, size_t n)
{
    int rc;

    if (n == 0) {
        return 0;
    }
    rc = cm_buf_reserve(b, n);
    if (rc < 0) {
        return rc;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void
cm_buf_free(cm_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
