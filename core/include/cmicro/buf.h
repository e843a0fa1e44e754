/* cmicro core: a growable byte buffer. */
#ifndef CMICRO_BUF_H
#define CMICRO_BUF_H

#include <cmicro/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A growable byte buffer. Zero-initialise it ({0}) before first use; cm_buf_free releases it. */
typedef struct cm_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} cm_buf;

/* Makes room for extra more bytes. 0 or CM_ENOMEM (the buffer is unchanged then). */
CM_EXTERN int cm_buf_reserve(cm_buf *b, size_t extra);
/* Appends n bytes. 0 or CM_ENOMEM. */
CM_EXTERN int cm_buf_append(cm_buf *b, const void *p, size_t n);
CM_EXTERN void cm_buf_free(cm_buf *b);

#ifdef __cplusplus
}
#endif
#endif
