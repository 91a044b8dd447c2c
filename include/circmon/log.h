/* log.h - one leveled log sink for circmon's programs and library: stderr lines or journald.
 *
 * A line reads "<ident>[<pid>]: <level>: <message>". The library never
 * prints by itself except through here (librdkafka's log callback included),
 * so that a program decides the level and the destination in one place.
 * When standard error is the journal (JOURNAL_STREAM names stderr's
 * st_dev:st_ino, as systemd sets it for StandardError=journal), messages go
 * to journald with sd_journal_sendv: MESSAGE, PRIORITY (3 error, 4 warning,
 * 6 info, 7 debug), SYSLOG_IDENTIFIER, and for the kinds of event below a
 * fixed MESSAGE_ID and CIRCMON_* fields. A message the journal refuses is
 * written to stderr instead. Every function is thread-safe: librdkafka logs
 * from its own threads. Never pass secrets, in the message or a field. */
#ifndef CIRCMON_LOG_H
#define CIRCMON_LOG_H

#include <stdarg.h>
#include <stddef.h>

struct iovec;

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

/* Kinds of event with a fixed journal MESSAGE_ID (circmond(8) lists them). */
enum cm_log_id {
    CM_LOGID_NONE = 0,
    CM_LOGID_ALERT,       /* an alert instance changed state (FIRING/RESOLVED) */
    CM_LOGID_DEAD_LETTER, /* a dead letter was produced, or could not be */
    CM_LOGID_REBALANCE,   /* the group assigned or revoked partitions */
    CM_LOGID_REDIS_DOWN,  /* the Redis connection was lost: partitions paused */
    CM_LOGID_REDIS_UP,    /* the Redis connection is ready again */
    CM_LOGID_RELOAD,      /* a SIGHUP reload was applied or refused */
    CM_LOGID_WATCHDOG,    /* the watchdog feed was withheld: the loop is stuck */
    CM_LOGID_COUNT
};

/* The MESSAGE_ID of id, 32 lowercase hex digits, or NULL for CM_LOGID_NONE
 * and out-of-range values. */
const char *cm_log_id_str(enum cm_log_id id);

/* One extra journal field: name is "CIRCMON_" and upper-case letters,
 * digits, '_' (e.g. CIRCMON_PARTITION, CIRCMON_ALERT, CIRCMON_SCHEME);
 * value any text. A NULL value skips the field. */
struct cm_log_field {
    const char *name;
    const char *value;
};

/* Like cm_log, with a MESSAGE_ID and nf fields for the journal. On stderr
 * the line is exactly cm_log's (fields are not printed). Can't fail. */
void cm_log_ev(enum cm_log_level level, enum cm_log_id id, const struct cm_log_field *f,
               size_t nf, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Looks at JOURNAL_STREAM and stderr again and picks the destination;
 * cm_log_set_ident does it too. Returns 1 (journald) or 0 (stderr). */
int cm_log_detect_journal(void);

/* Test hook: where journal entries go instead of sd_journal_sendv (NULL
 * restores it); fn returns 0 or a negative errno like sd_journal_sendv. */
typedef int (*cm_log_journal_fn)(const struct iovec *iov, int n);
void cm_log_set_journal_sink(cm_log_journal_fn fn);

#define cm_log_debug(...) cm_log(CM_LOG_DEBUG, __VA_ARGS__)
#define cm_log_info(...) cm_log(CM_LOG_INFO, __VA_ARGS__)
#define cm_log_warn(...) cm_log(CM_LOG_WARNING, __VA_ARGS__)
#define cm_log_err(...) cm_log(CM_LOG_ERROR, __VA_ARGS__)

#endif
