/* notify.c - sd_notify messages (READY, STATUS, RELOADING, STOPPING) and the watchdog feed. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "daemon.h"
#include "notify.h"

struct cmd_notify {
    struct daemon *d;
    struct event *wd_timer;    /* every wd_usec / 2, when the watchdog is on */
    struct event *stall_timer; /* the test hook */
    uint64_t wd_usec;          /* 0: no watchdog */
    int ready;                 /* READY=1 sent once */
    int stopping;              /* STOPPING=1 sent */
    int redis_down;
    int withheld;              /* the last feed was withheld (logged once) */
    int stall_ms;              /* the test hook's delay after READY=1, 0: off */
    uint64_t last_ticks, last_polls;
    char status[512];          /* the last STATUS= text sent */
};

static void send_status(struct cmd_notify *n, const char *text)
{
    if (!strcmp(n->status, text))
        return;
    snprintf(n->status, sizeof(n->status), "%s", text);
    sd_notifyf(0, "STATUS=%s", n->status);
}

/* Progress since the last look: the loop-latency probe fired and the
 * consumer was polled recently (see notify.h). */
static int progressing(struct cmd_notify *n)
{
    struct daemon *d = n->d;
    if (!d->started || d->stopping)
        return 1;
    int64_t now = cm_clock_us();
    int ticked = d->loop_ticks != n->last_ticks;
    int polled = d->polls != n->last_polls || now - d->last_poll_us < 2 * POLL_TICK_MS * 1000;
    n->last_ticks = d->loop_ticks;
    n->last_polls = d->polls;
    return ticked && polled;
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    struct cmd_notify *n = arg;
    (void)fd;
    (void)what;
    if (progressing(n)) {
        if (n->withheld) {
            cm_log_info("watchdog: the loop makes progress again");
            send_status(n, "running: the loop makes progress again");
        }
        n->withheld = 0;
        sd_notify(0, "WATCHDOG=1");
        return;
    }
    if (!n->withheld) {
        cm_log_ev(CM_LOG_ERROR, CM_LOGID_WATCHDOG, NULL, 0, "watchdog: the loop made no progress for %.1f s (loop probe or consumer"
                   " polls stopped); WATCHDOG=1 withheld",
                   (double)n->wd_usec / 2e6);
        send_status(n, "stalled: the loop makes no progress, watchdog not fed");
    }
    n->withheld = 1;
}

static void on_stall_hook(evutil_socket_t fd, short what, void *arg)
{
    struct cmd_notify *n = arg;
    (void)fd;
    (void)what;
    cm_log_warn("test hook: the loop-latency probe stops");
    if (n->d->loop_timer)
        evtimer_del(n->d->loop_timer);
    n->d->loop_stalled = 1;
}

int cmd_notify_start(struct daemon *d)
{
    struct cmd_notify *n = calloc(1, sizeof(*n));
    if (!n) {
        cm_log_err("out of memory for the systemd notifier");
        return -ENOMEM;
    }
    n->d = d;
    d->notify = n;
    uint64_t usec = 0;
    int r = sd_watchdog_enabled(0, &usec);
    if (r < 0)
        cm_log_warn("systemd watchdog settings unreadable: %s (no watchdog)", strerror(-r));
    if (r > 0 && usec > 0) {
        n->wd_usec = usec;
        struct timeval tv = {(time_t)(usec / 2 / 1000000), (suseconds_t)(usec / 2 % 1000000)};
        if (!(n->wd_timer = event_new(d->base, -1, EV_PERSIST, on_watchdog, n)) ||
            event_add(n->wd_timer, &tv) < 0) {
            cm_log_err("cannot arm the watchdog timer");
            return -ENOMEM;
        }
        cm_log_info("systemd watchdog: %.1f s, fed every %.1f s while the loop makes progress",
                    (double)usec / 1e6, (double)usec / 2e6);
    }
    const char *stall = getenv("CIRCMOND_TEST_WATCHDOG_STALL_MS");
    if (stall && *stall) {
        n->stall_ms = atoi(stall) > 0 ? atoi(stall) : 1;
        cm_log_warn("test hook: the loop-latency probe stops %d ms after READY=1", n->stall_ms);
        if (!(n->stall_timer = evtimer_new(d->base, on_stall_hook, n))) {
            cm_log_err("out of memory for the stall hook's timer");
            return -ENOMEM;
        }
    }
    send_status(n, "starting");
    return 0;
}

void cmd_notify_ready(struct daemon *d, const char *status)
{
    struct cmd_notify *n = d->notify;
    if (!n)
        return;
    if (!n->ready && n->stall_ms)
        cmd_timer_in(n->stall_timer, n->stall_ms);
    n->ready = 1;
    snprintf(n->status, sizeof(n->status), "%s", status);
    sd_notifyf(0, "READY=1\nSTATUS=%s", n->status);
}

void cmd_notify_status(struct daemon *d, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    if (!d->notify || d->notify->stopping)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    send_status(d->notify, buf);
}

void cmd_notify_redis(struct daemon *d, int up)
{
    if (!d->notify)
        return;
    d->notify->redis_down = !up;
    if (!up)
        cmd_notify_status(d, "paused: redis unavailable, partitions paused until it is back");
    else
        cmd_notify_status(d, "resynchronising from Redis (redis is back)");
}

int cmd_notify_redis_down(const struct daemon *d)
{
    return d->notify && d->notify->redis_down;
}

int cmd_notify_reloading(struct daemon *d)
{
    struct cmd_notify *n = d->notify;
    if (!n || !n->ready || n->stopping)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    snprintf(n->status, sizeof(n->status), "reloading the configuration");
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=%s", us, n->status);
    return 1;
}

void cmd_notify_stopping(struct daemon *d)
{
    struct cmd_notify *n = d->notify;
    if (n && n->stopping)
        return;
    if (n)
        n->stopping = 1;
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void cmd_notify_free(struct daemon *d)
{
    struct cmd_notify *n = d->notify;
    if (!n)
        return;
    if (n->wd_timer)
        event_free(n->wd_timer);
    if (n->stall_timer)
        event_free(n->stall_timer);
    free(n);
    d->notify = NULL;
}
