/* timeutil.h - days and months of unix time, UTC, as INDICATORS.md section 1. */
#ifndef CIRCMON_TIMEUTIL_H
#define CIRCMON_TIMEUTIL_H

#include <stdint.h>

#define CM_DAY 86400

/* day(t) = floor(t / 86400), also for negative t. */
int64_t cm_day(int64_t t);

/* The month of a day, as months since 1970-01 (0 = 1970-01, -1 = 1969-12). */
int32_t cm_month_of_day(int64_t day);

/* Writes "YYYY-MM" for a month index into buf (at least 16 bytes). */
void cm_month_str(int32_t month, char *buf);

/* Parses a month as cm_month_str writes it ("YYYY-MM"; the year with more
 * digits or a '-' where it needs them, e.g. "10000-01", "-001-12") into a
 * month index: for every int32_t month, cm_month_parse(cm_month_str(m)) is m.
 * Any other spelling is -EINVAL. Returns 0 or -EINVAL. */
int cm_month_parse(const char *s, int32_t *month);

/* First day (days since epoch) of a month index. */
int64_t cm_month_first_day(int32_t month);

/* Parses an "as of" time: unix seconds, an ISO 8601 date (YYYY-MM-DD, taken as
 * 00:00:00 UTC) or datetime (YYYY-MM-DDTHH:MM[:SS][Z|+00:00]). Returns 0 or
 * -EINVAL. */
int cm_time_parse(const char *s, int64_t *t);

#endif
