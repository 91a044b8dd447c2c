/* grow.h - the one growth rule of circmon's arrays: double until it fits. */
#ifndef CIRCMON_GROW_H
#define CIRCMON_GROW_H

#include <stddef.h>

/* The capacity an array of cap elements grows to for need: cap doubled
 * (first when cap is 0) until it is at least need; cap itself when it is
 * enough already. 0 when that many elements of size bytes would not fit a
 * size_t. This function can't fail otherwise. */
size_t cm_grow_cap(size_t cap, size_t need, size_t first, size_t size);

/* Grows the malloc'd array *v of *cap elements of size bytes to room for
 * need (realloc; new elements uninitialised). Returns 0, or -ENOMEM with
 * *v and *cap unchanged. */
int cm_grow(void **v, size_t *cap, size_t need, size_t first, size_t size);

#endif
