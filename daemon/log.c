/* log.c - circmond's leveled log lines on stderr. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static enum cmd_level min_level = CMD_INFO;
static const char *const names[] = {"debug", "info", "warning", "error"};

int cmd_log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && !strcmp(name, names[i])) {
            min_level = (enum cmd_level)i;
            return 0;
        }
    return -EINVAL;
}

void cmd_log(enum cmd_level level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    if (level < min_level)
        return;
    int h = snprintf(buf, sizeof(buf), "circmond[%ld]: %s: ", (long)getpid(), names[level]);
    va_start(ap, fmt);
    vsnprintf(buf + h, sizeof(buf) - (size_t)h - 1, fmt, ap);
    va_end(ap);
    size_t n = strlen(buf);
    buf[n++] = '\n';
    /* One write per line: lines of concurrent writers stay whole. */
    if (write(STDERR_FILENO, buf, n) < 0)
        return;
}
