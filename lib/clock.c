/* clock.c - the monotonic clock and timeouts as libevent and hiredis take them. */
#include <time.h>

#include "circmon/clock.h"

int64_t cm_clock_ms(void)
{
    return cm_clock_us() / 1000;
}

int64_t cm_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cm_clock_tv(int ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}
