/* log.h - circmond's leveled log lines on stderr: "circmond[pid]: level: message". */
#ifndef CIRCMOND_LOG_H
#define CIRCMOND_LOG_H

enum cmd_level { CMD_DEBUG = 0, CMD_INFO, CMD_WARNING, CMD_ERROR };

/* Sets the lowest level printed from its name ("debug", "info", "warning",
 * "error"). Returns 0, or -EINVAL for an unknown name (the level is kept). */
int cmd_log_set_level(const char *name);

/* Prints one line if level is enabled. Never pass secrets. */
void cmd_log(enum cmd_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define cmd_debug(...) cmd_log(CMD_DEBUG, __VA_ARGS__)
#define cmd_info(...) cmd_log(CMD_INFO, __VA_ARGS__)
#define cmd_warn(...) cmd_log(CMD_WARNING, __VA_ARGS__)
#define cmd_err(...) cmd_log(CMD_ERROR, __VA_ARGS__)

#endif
