/* log.c - one leveled log sink: "ident[pid]: level: message" lines on stderr. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "circmon/log.h"

static atomic_int min_level = CM_LOG_INFO;
static const char *_Atomic ident = "circmon";
static const char *const names[] = {"debug", "info", "warning", "error"};

int cm_log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && !strcmp(name, names[i])) {
            atomic_store(&min_level, i);
            return 0;
        }
    return -EINVAL;
}

void cm_log_set_ident(const char *id)
{
    if (id)
        atomic_store(&ident, id);
}

int cm_log_enabled(enum cm_log_level level)
{
    return (int)level >= atomic_load(&min_level);
}

void cm_log_v(enum cm_log_level level, const char *fmt, va_list ap)
{
    char buf[1024];
    if (!cm_log_enabled(level))
        return;
    if ((unsigned)level > CM_LOG_ERROR)
        level = CM_LOG_ERROR;
    int h = snprintf(buf, sizeof(buf), "%s[%ld]: %s: ", atomic_load(&ident), (long)getpid(),
                     names[level]);
    if (h < 0 || (size_t)h >= sizeof(buf) - 1)
        return;
    vsnprintf(buf + h, sizeof(buf) - (size_t)h - 1, fmt, ap);
    size_t n = strlen(buf);
    buf[n++] = '\n';
    /* One write per line: lines of concurrent writers stay whole. */
    if (write(STDERR_FILENO, buf, n) < 0)
        return;
}

void cm_log(enum cm_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_log_v(level, fmt, ap);
    va_end(ap);
}
