/* grow.c - the one growth rule for arrays: doubling, from a first size. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/grow.h"

size_t cm_grow_cap(size_t cap, size_t need, size_t first, size_t size)
{
    if (need <= cap)
        return cap;
    size_t c = cap ? cap : (first ? first : 1);
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return 0;
        c *= 2;
    }
    return size && c > SIZE_MAX / size ? 0 : c;
}

int cm_grow(void *pp, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t c = cm_grow_cap(*cap, need, first, elem);
    if (!c)
        return -ENOMEM;
    void *old;
    memcpy(&old, pp, sizeof(old));
    void *p = realloc(old, c * elem);
    if (!p)
        return -ENOMEM;
    memcpy(pp, &p, sizeof(p));
    *cap = c;
    return 0;
}
