/* pool.h - memory for many small blocks with one owner: the migrant states
 * of an in-memory engine.
 *
 * Blocks are sized: whoever releases or resizes a block says how big it is,
 * so blocks carry no header. Release every block before the pool: blocks
 * over 4 KiB are malloc's own.
 *
 * Built with AddressSanitizer, or with valgrind's headers at hand and run
 * under valgrind, the pool poisons what no live block covers: a released
 * block, the unused rest of a chunk, the bytes of a block past the size
 * asked for. Touching them is reported (ASan: use-after-poison). A released
 * block is reused by the next block of its class at once, so a stale pointer
 * touching a block given out again goes unnoticed. */
#ifndef CIRCMON_POOL_H
#define CIRCMON_POOL_H

#include <stddef.h>

struct cm_pool;

/* A new, empty pool, or NULL when out of memory. */
struct cm_pool *cm_pool_new(void);

/* Releases the pool and the chunks it took from the system; accepts NULL;
 * returns NULL. */
struct cm_pool *cm_pool_free(struct cm_pool *pl);

/* A block of n bytes (n > 0), uninitialised, aligned for any object; NULL
 * when out of memory. */
void *cm_pool_alloc(struct cm_pool *pl, size_t n);

/* Block p of old bytes (p NULL and old 0: none yet) resized to n > 0 bytes,
 * its first min(old, n) bytes kept; possibly moved. NULL when out of memory,
 * p then unchanged. */
void *cm_pool_realloc(struct cm_pool *pl, void *p, size_t old, size_t n);

/* Gives back block p of n bytes; accepts NULL. */
void cm_pool_release(struct cm_pool *pl, void *p, size_t n);

/* Bytes the pool holds from the system. */
size_t cm_pool_footprint(const struct cm_pool *pl);

/* Asks the system to back [p, p + n) with huge pages once it is touched,
 * which saves page faults on large tables. Only a hint: no effect when the
 * system has no transparent huge pages, and none on the contents. */
void cm_mem_hint_huge(void *p, size_t n);

#endif
