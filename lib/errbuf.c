/* errbuf.c - error texts into callers' buffers, escaped SCAN patterns
 * (see errbuf.h). */
#include "circmon/errbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cm_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

char *cm_glob_escape(const char *s, size_t tail_room, size_t *len)
{
    size_t n = strlen(s);
    char *p = malloc(2 * n + tail_room + 1);
    if (!p)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (strchr("*?[]\\", s[i]))
            p[j++] = '\\';
        p[j++] = s[i];
    }
    p[j] = '\0';
    *len = j;
    return p;
}
