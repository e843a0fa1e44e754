/* cmicro core: the log facade. Every line the library writes goes through here; the library never
 * writes to stdout or stderr by itself.
 *
 * A line has a level, the module that wrote it ("registry.consul", "server") and a message. The
 * default handler writes "2026-12-06T04:36:17.123Z INFO  [registry.consul] message" to stderr;
 * cm_log_set_handler() sends lines to the application's own logger instead.
 *
 * The level threshold starts from MICRO_LOG_LEVEL (go-micro's spelling: trace, debug, info,
 * warn, error, fatal), read at the first use, and is "info" when unset. cm_log_set_level()
 * overrides it.
 *
 * A failure the library returns to its caller is logged at debug at most, so a caller that logs
 * its errors sees each once. A background failure no caller sees (a TTL pass, a watch) is logged
 * once per change of state, not once per retry.
 *
 * Threads: every function here may be called from any thread.
 */
#ifndef CMICRO_LOG_H
#define CMICRO_LOG_H

#include <cmicro/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CM_LOG_TRACE = 0,
    CM_LOG_DEBUG = 1,
    CM_LOG_INFO = 2,
    CM_LOG_WARN = 3,
    CM_LOG_ERROR = 4,
    CM_LOG_FATAL = 5, /* logged only; the library never exits the process */
    CM_LOG_OFF = 6    /* as a threshold: nothing is logged */
} cm_log_level;

/* Receives one line: module and msg are borrowed during the call, msg has no trailing newline.
 * It runs on the thread that logged, possibly several threads at once. It must not block for
 * long; it may log again (that line goes to the handler too). */
typedef void (*cm_log_handler)(cm_log_level level, const char *module, const char *msg, void *user);

/* Sends every line to h (with user), or back to the default stderr writer when h is NULL. */
CM_EXTERN void cm_log_set_handler(cm_log_handler h, void *user);
/* Lines below level are dropped (CM_LOG_OFF drops all). */
CM_EXTERN void cm_log_set_level(cm_log_level level);
CM_EXTERN cm_log_level cm_log_get_level(void);
/* Non-zero when a line of this level would be written. */
CM_EXTERN int cm_log_enabled(cm_log_level level);
/* "trace", "debug", "info", "warn" (or "warning"), "error", "fatal", "off" (any case) into *out.
 * 0 or CM_EINVAL. */
CM_EXTERN int cm_log_level_parse(const char *s, cm_log_level *out);
/* "trace" ... "fatal", "off". Static storage. */
CM_EXTERN const char *cm_log_level_name(cm_log_level level);

/* Formats and writes one line, when level passes the threshold. Lines longer than 1 KiB are cut
 * and end with "...". */
CM_EXTERN void cm_log(cm_log_level level, const char *module, const char *fmt, ...) CM_PRINTF(3, 4);

/* The default handler (user is unused), for a custom handler that also wants stderr lines. */
CM_EXTERN void cm_log_stderr(cm_log_level level, const char *module, const char *msg, void *user);

#ifdef __cplusplus
}
#endif
#endif
