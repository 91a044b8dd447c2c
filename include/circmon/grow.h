/* grow.h - the one growth rule for arrays: doubling, from a first size. */
#ifndef CIRCMON_GROW_H
#define CIRCMON_GROW_H

#include <stddef.h>

/* The capacity an array of cap elements of size bytes grows to for need:
 * cap doubled (starting at first, or 1, when cap is 0) until it is at least
 * need; cap itself when it is enough already. 0 when that many elements
 * would not fit a size_t. This function can't fail otherwise. */
size_t cm_grow_cap(size_t cap, size_t need, size_t first, size_t size);

/* Makes room for at least need elements of elem bytes in the array *pp of
 * *cap elements (NULL with *cap 0 at first): its capacity grows by
 * cm_grow_cap, starting at first (> 0), until it holds need. *pp and *cap
 * change only on success. Returns 0, or -ENOMEM when memory runs out or the
 * size would overflow (the array is then unchanged). pp is a pointer to the
 * array's pointer (e.g. &v->items). */
int cm_grow(void *pp, size_t *cap, size_t need, size_t elem, size_t first);

#endif
