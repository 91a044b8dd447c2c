/* decimal.h - decimal integers as circmon reads them from text it does not
 * trust: digits only, no blanks, no '+', no suffix, no overflow. */
#ifndef CIRCMON_DECIMAL_H
#define CIRCMON_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

/* Parses the len bytes at s as one or more decimal digits whose value is at
 * most max. Returns 0 with *v set, or -EINVAL (*v unchanged). */
int cm_decimal_u64(const char *s, size_t len, uint64_t max, uint64_t *v);

/* The same with an optional leading '-': any int64_t, INT64_MIN included.
 * Returns 0 with *v set, or -EINVAL (*v unchanged). */
int cm_decimal_i64(const char *s, size_t len, int64_t *v);

#endif
