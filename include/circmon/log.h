/* log.h - one leveled log sink for circmon's programs and library: lines on stderr.
 *
 * A line reads "<ident>[<pid>]: <level>: <message>". The library never
 * prints by itself except through here (librdkafka's log callback included),
 * so that a program decides the level and, later, the destination (journald)
 * in one place. Every function is thread-safe: librdkafka logs from its own
 * threads. Never pass secrets. */
#ifndef CIRCMON_LOG_H
#define CIRCMON_LOG_H

#include <stdarg.h>

enum cm_log_level { CM_LOG_DEBUG = 0, CM_LOG_INFO, CM_LOG_WARNING, CM_LOG_ERROR };

/* Sets the lowest level printed from its name ("debug", "info", "warning",
 * "error"). Returns 0, or -EINVAL for an unknown name (the level is kept).
 * The default is "info". */
int cm_log_set_level(const char *name);

/* Sets the program name that opens every line (borrowed: a string that
 * outlives every later log call, e.g. a literal). The default is "circmon".
 * Call it before other threads log. */
void cm_log_set_ident(const char *ident);

/* 1 when lines of level are printed. */
int cm_log_enabled(enum cm_log_level level);

/* Prints one line if level is enabled (one write(2): lines of concurrent
 * writers stay whole; a message past ~1000 bytes is cut). Can't fail. */
void cm_log(enum cm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cm_log_v(enum cm_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define cm_log_debug(...) cm_log(CM_LOG_DEBUG, __VA_ARGS__)
#define cm_log_info(...) cm_log(CM_LOG_INFO, __VA_ARGS__)
#define cm_log_warn(...) cm_log(CM_LOG_WARNING, __VA_ARGS__)
#define cm_log_err(...) cm_log(CM_LOG_ERROR, __VA_ARGS__)

#endif
