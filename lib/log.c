/* log.c - one leveled log sink: "ident[pid]: level: message" lines on stderr, or journald. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "circmon/log.h"

#define CM_LOG_MAX_FIELDS 8 /* extra fields of one entry; more are dropped */

static atomic_int min_level = CM_LOG_INFO;
static atomic_int to_journal = 0;
static const char *_Atomic ident = "circmon";
static const char *const names[] = {"debug", "info", "warning", "error"};
static const int priorities[] = {7, 6, 4, 3}; /* syslog's, per level */
static _Atomic cm_log_journal_fn journal_sink; /* NULL: stderr lines */

/* Fixed, never to change: operators filter on them (journalctl MESSAGE_ID=). */
static const char *const ids[CM_LOGID_COUNT] = {
    [CM_LOGID_ALERT] = "438cf76a6a8f43edbf0465ba361b4af8",
    [CM_LOGID_DEAD_LETTER] = "a158326c57354a5f8d29975f32ca9ba8",
    [CM_LOGID_REBALANCE] = "868103daf8164a0186439d32a0eacd34",
    [CM_LOGID_REDIS_DOWN] = "fc3d867182af4a1b872948cf302e3cfc",
    [CM_LOGID_REDIS_UP] = "9b8d593c68e74ba8984d774f2cc912af",
    [CM_LOGID_RELOAD] = "21d2ce91d555476aa2eddf939d535ba5",
    [CM_LOGID_WATCHDOG] = "90d7b9634f434817a1f6c59c07bc5337",
};

const char *cm_log_id_str(enum cm_log_id id)
{
    return (unsigned)id < CM_LOGID_COUNT ? ids[id] : NULL;
}

int cm_log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && !strcmp(name, names[i])) {
            atomic_store(&min_level, i);
            return 0;
        }
    return -EINVAL;
}

int cm_log_detect_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    struct stat sb;
    uintmax_t dev, ino;
    char tail;
    int on = js && sscanf(js, "%ju:%ju%c", &dev, &ino, &tail) == 2 &&
             fstat(STDERR_FILENO, &sb) == 0 && (uintmax_t)sb.st_dev == dev &&
             (uintmax_t)sb.st_ino == ino;
    atomic_store(&to_journal, on);
    return on;
}

void cm_log_set_journal_sink(cm_log_journal_fn fn)
{
    atomic_store(&journal_sink, fn);
}

void cm_log_set_ident(const char *id)
{
    if (id)
        atomic_store(&ident, id);
    cm_log_detect_journal();
}

int cm_log_enabled(enum cm_log_level level)
{
    return (int)level >= atomic_load(&min_level);
}

/* One journal entry; 0 or a negative errno. */
static int journal_send(enum cm_log_level level, enum cm_log_id id, const char *msg,
                        const struct cm_log_field *f, size_t nf)
{
    char prio[16], mid[48], syslog_id[80], fields[CM_LOG_MAX_FIELDS][512];
    struct iovec iov[4 + CM_LOG_MAX_FIELDS];
    int n = 0;
    size_t mlen = strlen(msg) + 9;
    char *m = malloc(mlen);
    if (!m)
        return -ENOMEM;
    snprintf(m, mlen, "MESSAGE=%s", msg);
    iov[n++] = (struct iovec){m, strlen(m)};
    snprintf(prio, sizeof(prio), "PRIORITY=%d", priorities[level]);
    iov[n++] = (struct iovec){prio, strlen(prio)};
    snprintf(syslog_id, sizeof(syslog_id), "SYSLOG_IDENTIFIER=%s", atomic_load(&ident));
    iov[n++] = (struct iovec){syslog_id, strlen(syslog_id)};
    if (cm_log_id_str(id)) {
        snprintf(mid, sizeof(mid), "MESSAGE_ID=%s", cm_log_id_str(id));
        iov[n++] = (struct iovec){mid, strlen(mid)};
    }
    for (size_t i = 0, k = 0; i < nf && k < CM_LOG_MAX_FIELDS; i++) {
        if (!f[i].name || !f[i].value)
            continue;
        snprintf(fields[k], sizeof(fields[k]), "%s=%s", f[i].name, f[i].value);
        iov[n++] = (struct iovec){fields[k], strlen(fields[k])};
        k++;
    }
    cm_log_journal_fn sink = atomic_load(&journal_sink);
    int r = sink ? sink(iov, n) : sd_journal_sendv(iov, n);
    free(m);
    return r;
}

static void log_entry(enum cm_log_level level, enum cm_log_id id, const struct cm_log_field *f,
                      size_t nf, const char *fmt, va_list ap)
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
    if (atomic_load(&to_journal) && journal_send(level, id, buf + h, f, nf) == 0)
        return;
    size_t n = strlen(buf);
    buf[n++] = '\n';
    /* One write per line: lines of concurrent writers stay whole. */
    if (write(STDERR_FILENO, buf, n) < 0)
        return;
}

void cm_log_v(enum cm_log_level level, const char *fmt, va_list ap)
{
    log_entry(level, CM_LOGID_NONE, NULL, 0, fmt, ap);
}

void cm_log(enum cm_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_entry(level, CM_LOGID_NONE, NULL, 0, fmt, ap);
    va_end(ap);
}

void cm_log_ev(enum cm_log_level level, enum cm_log_id id, const struct cm_log_field *f,
               size_t nf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_entry(level, id, f, nf, fmt, ap);
    va_end(ap);
}
