/* Wrapper chains: installation and the before/after walk shared by the four kinds. */
#include "framework_int.h"

#include <stdlib.h>
#include <string.h>

int
cm__wraps_add(cm__wraps *ws, const cm_wrapper *w)
{
    if (w == NULL || (w->before == NULL && w->after == NULL)) {
        return CM_EINVAL;
    }
    if (ws->n == CM_WRAP_MAX) {
        return CM_ENOMEM;
    }
    char *name = strdup(w->name ? w->name : "wrapper");
    if (name == NULL) {
        return CM_ENOMEM;
    }
    ws->w[ws->n] = *w;
    ws->w[ws->n].name = name;
    ws->n++;
    return 0;
}

int
cm__wraps_add_first(cm__wraps *ws, const cm_wrapper *w)
{
    int rc = cm__wraps_add(ws, w);
    if (rc == 0) {
        cm_wrapper last = ws->w[ws->n - 1];
        memmove(&ws->w[1], &ws->w[0], (ws->n - 1) * sizeof(cm_wrapper));
        ws->w[0] = last;
    }
    return rc;
}

void
cm__wraps_free(cm__wraps *ws)
{
    for (size_t i = 0; i < ws->n; i++) {
        free((char *)ws->w[i].name);
    }
    ws->n = 0;
}

int
cm__wraps_before(const cm__wraps *ws, cm_wrap_info *wi, void **states, size_t *ran, cm_error **err)
{
    *ran = 0;
    *err = NULL;
    for (size_t i = 0; i < ws->n; i++) {
        const cm_wrapper *w = &ws->w[i];
        states[i] = NULL;
        if (w->before != NULL) {
            int rc = w->before(wi, w->arg, &states[i], err);
            if (rc != 0) {
                if (*err == NULL) {
                    *err = cm_error_internal("cmicro.wrapper", "wrapper %s refused the call: %s",
                                             w->name, cm_strerror(rc));
                }
                return CM_EREMOTE;
            }
        }
        *ran = i + 1;
    }
    return 0;
}

void
cm__wraps_after(const cm__wraps *ws, const cm_wrap_info *wi, void *const *states, size_t ran)
{
    for (size_t i = ran; i-- > 0;) {
        const cm_wrapper *w = &ws->w[i];
        if (w->after != NULL) {
            w->after(wi, w->arg, states[i]);
        }
    }
}
