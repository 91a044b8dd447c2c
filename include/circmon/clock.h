/* clock.h - the monotonic clock and timeouts as libevent and hiredis take them. */
#ifndef CIRCMON_CLOCK_H
#define CIRCMON_CLOCK_H

#include <stdint.h>
#include <sys/time.h>

/* CLOCK_MONOTONIC in milliseconds and in microseconds (for deadlines and
 * durations, never for dates). These functions can't fail. */
int64_t cm_clock_ms(void);
int64_t cm_clock_us(void);

/* ms (>= 0) milliseconds as a struct timeval. */
void cm_clock_tv(int ms, struct timeval *tv);

#endif
