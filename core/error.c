/* Library error codes. */
#include <cmicro/error.h>

#include <uv.h>

const char *
cm_strerror(int err)
{
    switch (err) {
#define CM__ERR_MSG(name, val, msg)                                                                \
    case CM_##name:                                                                                \
        return msg;
        CM_ERRNO_MAP(CM__ERR_MSG)
#undef CM__ERR_MSG
    case 0:
        return "success";
    default:
        return uv_strerror(err);
    }
}

const char *
cm_err_name(int err)
{
    switch (err) {
#define CM__ERR_NAME(name, val, msg)                                                               \
    case CM_##name:                                                                                \
        return "CM_" #name;
        CM_ERRNO_MAP(CM__ERR_NAME)
#undef CM__ERR_NAME
    case 0:
        return "OK";
    default:
        return uv_err_name(err);
    }
}
