/* notify.h - circmond's side of systemd: READY/STATUS/RELOADING/STOPPING and the watchdog.
 *
 * Every message goes through sd_notify(3), a no-op without NOTIFY_SOCKET.
 * STATUS= is sent only when its text changes. The watchdog (WatchdogSec= in
 * the unit, WATCHDOG_USEC in the environment, read with sd_watchdog_enabled)
 * is fed from a timer of the loop every half interval, and only while the
 * loop makes progress: the loop-latency probe (lifecycle.c, every
 * LOOP_TICK_MS) fired since the last feed and the consumer was polled
 * within the last 2 x POLL_TICK_MS. During start-up (before the consumer
 * exists) a turn of the loop is progress: the start-up budgets bound it.
 *
 * Test hook: CIRCMOND_TEST_WATCHDOG_STALL_MS=N stops the loop-latency probe
 * N ms after the first READY=1, a loop that no longer makes progress: WATCHDOG=1
 * then stops. All functions run on the loop's thread. */
#ifndef CIRCMOND_NOTIFY_H
#define CIRCMOND_NOTIFY_H

struct daemon;

/* Sets up d->notify and its watchdog timer. Returns 0 or -ENOMEM (logged). */
int cmd_notify_start(struct daemon *d);
/* READY=1 with STATUS=status (also after a reload). */
void cmd_notify_ready(struct daemon *d, const char *status);
/* STATUS=<printf text>, sent only when it differs from the last one. */
void cmd_notify_status(struct daemon *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Redis went down (up = 0) or came back: STATUS says the partitions are paused. */
void cmd_notify_redis(struct daemon *d, int up);
/* RELOADING=1 with MONOTONIC_USEC= (systemd 253's notify-reload wants it;
 * 252 ignores the field). Returns 1 when sent (the daemon had been ready):
 * the reload must then end with cmd_notify_ready. */
int cmd_notify_reloading(struct daemon *d);
/* STOPPING=1 (once). */
void cmd_notify_stopping(struct daemon *d);
/* 1 while Redis is known to be down (STATUS says so). */
int cmd_notify_redis_down(const struct daemon *d);
/* Frees d->notify; harmless when it was never set up. */
void cmd_notify_free(struct daemon *d);

#endif
