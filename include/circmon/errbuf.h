/* errbuf.h - what went wrong, written into a caller's buffer, and text a
 * SCAN pattern can hold. */
#ifndef CIRCMON_ERRBUF_H
#define CIRCMON_ERRBUF_H

#include <stddef.h>

/* Formats into err[0..errlen) (always terminated, cut if need be). Does
 * nothing when err is NULL or errlen is 0. */
void cm_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A malloc'd string: s with every glob character of a Redis SCAN MATCH
 * pattern (* ? [ ] \) escaped by a backslash, then room for tail_room more
 * bytes (unset) after its terminating NUL is written at *len. NULL when out
 * of memory. */
char *cm_glob_escape(const char *s, size_t tail_room, size_t *len);

#endif
