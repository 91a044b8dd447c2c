/* decimal.c - decimal integers from untrusted text (see decimal.h). */
#include "circmon/decimal.h"

#include <errno.h>

int cm_decimal_u64(const char *s, size_t len, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    if (!len)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (d > max || x > (max - d) / 10)
            return -EINVAL;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

int cm_decimal_i64(const char *s, size_t len, int64_t *v)
{
    int neg = len && s[0] == '-';
    uint64_t x;
    if (cm_decimal_u64(s + neg, len - (size_t)neg, neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX, &x))
        return -EINVAL;
    *v = neg ? (x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)x) : (int64_t)x;
    return 0;
}
