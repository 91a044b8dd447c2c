/* timeutil.c - days and months of unix time, UTC (Howard Hinnant's civil algorithms). */
#include "circmon/timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "circmon/decimal.h"

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d (m 1..12). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

int64_t cm_day(int64_t t)
{
    return floor_div(t, CM_DAY);
}

int32_t cm_month_of_day(int64_t day)
{
    int64_t y;
    unsigned m, d;
    civil_from_days(day, &y, &m, &d);
    return (int32_t)((y - 1970) * 12 + (int64_t)m - 1);
}

void cm_month_str(int32_t month, char *buf)
{
    int y = 1970 + (int)floor_div(month, 12);
    unsigned char m = (unsigned char)(month - floor_div(month, 12) * 12 + 1);
    snprintf(buf, 16, "%04d-%02u", y, (unsigned)m);
}

int64_t cm_month_first_day(int32_t month)
{
    int64_t y = 1970 + floor_div(month, 12);
    unsigned m = (unsigned)(month - floor_div(month, 12) * 12) + 1;
    return days_from_civil(y, m, 1);
}

/* Reads exactly n decimal digits at *p into *v, advancing *p. */
static int digits(const char **p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        x = x * 10 + (c - '0');
    }
    *p += n;
    *v = x;
    return 0;
}

int cm_month_parse(const char *s, int32_t *month)
{
    /* the inverse of cm_month_str for every month, so that whatever the
     * store writes reads back: [-]YYYY-MM, the year as wide as it needs */
    const char *p = s;
    int64_t y = 0;
    int m, nd = 0, neg = *p == '-';
    if (neg)
        p++;
    for (; *p >= '0' && *p <= '9'; p++, nd++) {
        if (nd == 10)
            return -EINVAL;
        y = y * 10 + (*p - '0');
    }
    if (!nd || *p++ != '-' || digits(&p, 2, &m) || *p || m < 1 || m > 12)
        return -EINVAL;
    int64_t mi = ((neg ? -y : y) - 1970) * 12 + m - 1;
    if (mi < INT32_MIN || mi > INT32_MAX)
        return -EINVAL;
    char canon[16];
    cm_month_str((int32_t)mi, canon);
    if (strcmp(canon, s))
        return -EINVAL; /* one spelling per month: "2024-01", not "02024-01" */
    *month = (int32_t)mi;
    return 0;
}

int cm_time_parse(const char *s, int64_t *t)
{
    int y, mo, d, hh = 0, mi = 0, ss = 0;
    const char *p = s;

    if (!s || !*s)
        return -EINVAL;
    /* Unix seconds: an optional '-', then digits only. */
    if (*p == '-')
        p++;
    while (*p >= '0' && *p <= '9')
        p++;
    if (!*p)
        return cm_decimal_i64(s, strlen(s), t);
    p = s;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || (unsigned)d > days_in_month(y, (unsigned)mo))
        return -EINVAL;
    if (*p == 'T') {
        p++;
        if (digits(&p, 2, &hh) || *p++ != ':' || digits(&p, 2, &mi))
            return -EINVAL;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &ss))
                return -EINVAL;
        }
        if (hh > 23 || mi > 59 || ss > 59)
            return -EINVAL;
    }
    if (*p == 'Z')
        p++;
    else if (p[0] == '+' && p[1] == '0' && p[2] == '0' && p[3] == ':' && p[4] == '0' &&
             p[5] == '0')
        p += 6;
    if (*p)
        return -EINVAL;
    *t = days_from_civil(y, (unsigned)mo, (unsigned)d) * CM_DAY + hh * 3600 + mi * 60 + ss;
    return 0;
}
