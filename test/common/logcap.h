/* Captures the library's log lines (through cm_log_set_handler) for a test to read. Lines are
 * kept as "[module] message\n", from debug up. Shared by every suite that checks what the library
 * says; compiled once (logcap.c). */
#ifndef CM_TEST_LOGCAP_H
#define CM_TEST_LOGCAP_H

/* Starts capturing (debug and up); the previous level is restored by logcap_end. */
void logcap_start(void);
/* Stops capturing, echoes the capture to stderr (each line behind "   captured: ") and returns
 * it, owned (free). */
char *logcap_end(void);
/* How many lines of text equal line (without its newline). */
int logcap_count(const char *text, const char *line);

#endif
