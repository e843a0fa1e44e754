/* cmicro: metadata, go-micro's context metadata. Sent as request headers (keys in canonical
 * MIME form, "X-User-Id"); received from them. Keys compare case-insensitively.
 * A cm_md is not synchronised: use it from one thread at a time. */
#ifndef CMICRO_MD_H
#define CMICRO_MD_H

#include <cmicro/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cm_md cm_md;

/* Returns owned (cm_md_free), or NULL on out of memory. */
CM_EXTERN cm_md *cm_md_new(void);
CM_EXTERN void cm_md_free(cm_md *md);
/* Sets key to val (both copied), replacing any value of the same key. 0, CM_EINVAL (empty key,
 * or a key or value with CR, LF or NUL is refused) or CM_ENOMEM. */
CM_EXTERN int cm_md_set(cm_md *md, const char *key, const char *val);
/* The value of key, or NULL. Borrowed until the next change of md. */
CM_EXTERN const char *cm_md_get(const cm_md *md, const char *key);
/* Removes key; 0 or CM_ENOTFOUND. */
CM_EXTERN int cm_md_del(cm_md *md, const char *key);
CM_EXTERN size_t cm_md_count(const cm_md *md);
/* The i-th pair (0 <= i < count), in insertion order. 0 or CM_EINVAL. */
CM_EXTERN int cm_md_at(const cm_md *md, size_t i, const char **key, const char **val);

#ifdef __cplusplus
}
#endif
#endif
