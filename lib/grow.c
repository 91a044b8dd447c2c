/* grow.c - the one growth rule of circmon's arrays: double until it fits. */
#include "circmon/grow.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

size_t cm_grow_cap(size_t cap, size_t need, size_t first, size_t size)
{
    if (need <= cap)
        return cap;
    size_t nc = cap ? cap : (first ? first : 1);
    while (nc < need) {
        if (nc > SIZE_MAX / 2)
            return 0;
        nc *= 2;
    }
    return size && nc > SIZE_MAX / size ? 0 : nc;
}

int cm_grow(void **v, size_t *cap, size_t need, size_t first, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t nc = cm_grow_cap(*cap, need, first, size);
    if (!nc)
        return -ENOMEM;
    void *nv = realloc(*v, nc * size);
    if (!nv)
        return -ENOMEM;
    *v = nv;
    *cap = nc;
    return 0;
}
