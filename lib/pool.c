/* pool.c - sized blocks in size classes, carved from large chunks.
 *
 * A freed block goes on the free list of its class and is reused by the next
 * block of that class. Chunks are 2 MiB, aligned to 2 MiB and handed to the
 * kernel as candidates for transparent huge pages: a replay touches hundreds
 * of megabytes of state once each, and one page fault per 2 MiB instead of
 * one per 4 KiB saved about a fifth of its time on the machines we measured
 * (README, "Limits"). Blocks over the largest class go to malloc. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MADV_HUGEPAGE */
#include "circmon/pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Under AddressSanitizer and valgrind the pool stays the pool, so that both
 * check the allocator the programs use: memory no live block covers (the
 * unused rest of a chunk, a released block, the tail of a block past the
 * bytes asked for) is poisoned, and a block is made addressable (valgrind:
 * undefined) when handed out. The free-list link in a released block is
 * written and read with the poison lifted for that word only. The leak
 * checkers scan the chunks for pointers to malloc's blocks (LeakSanitizer
 * through a root region; valgrind scans every addressable byte). */
#if defined(__SANITIZE_ADDRESS__)
#define CM_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CM_POOL_ASAN 1
#endif
#endif
#ifdef CM_POOL_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define CM_POOL_VALGRIND 1
#endif
#endif

/* [p, p + n) may not be touched. */
static void no_access(void *p, size_t n)
{
#ifdef CM_POOL_ASAN
    ASAN_POISON_MEMORY_REGION(p, n);
#endif
#ifdef CM_POOL_VALGRIND
    (void)VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
    (void)p;
    (void)n;
}

/* [p, p + n) is handed out: addressable, contents undefined. */
static void undefined(void *p, size_t n)
{
#ifdef CM_POOL_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#ifdef CM_POOL_VALGRIND
    (void)VALGRIND_MAKE_MEM_UNDEFINED(p, n);
#endif
    (void)p;
    (void)n;
}

/* The free-list link stored in released block b. */
static void *link_get(void *b)
{
    void *next;
#ifdef CM_POOL_ASAN
    ASAN_UNPOISON_MEMORY_REGION(b, sizeof(void *));
#endif
#ifdef CM_POOL_VALGRIND
    (void)VALGRIND_MAKE_MEM_DEFINED(b, sizeof(void *));
#endif
    memcpy(&next, b, sizeof(void *));
    no_access(b, sizeof(void *));
    return next;
}

static void link_set(void *b, void *next)
{
    undefined(b, sizeof(void *));
    memcpy(b, &next, sizeof(void *));
    no_access(b, sizeof(void *));
}

#define CHUNK ((size_t)2 << 20)
#define GRAIN 16
#define MAXBLK 4096

/* steps of 16 bytes up to 256, then of about half a size: little waste for
 * a state and its arrays */
static const unsigned class_size[] = {16,  32,  48,  64,  80,   96,   112,  128,  144,  160,
                                      176, 192, 208, 224, 240,  256,  384,  512,  768,  1024,
                                      1536, 2048, 3072, 4096};
#define NCLASS (sizeof(class_size) / sizeof(class_size[0]))

struct chunk {
    struct chunk *next;
    void *base; /* the mapping, CHUNK bytes */
};

struct cm_pool {
    void *free[NCLASS]; /* free lists: the first word of a block links them */
    unsigned char cls[MAXBLK / GRAIN + 1]; /* class of a size, by (size + GRAIN - 1) / GRAIN */
    char *cur, *end;                       /* the rest of the newest chunk */
    struct chunk *chunks;
    size_t nchunks;
};

struct cm_pool *cm_pool_new(void)
{
    struct cm_pool *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return NULL;
    unsigned c = 0;
    for (unsigned g = 0; g <= MAXBLK / GRAIN; g++) {
        while (class_size[c] < g * GRAIN)
            c++;
        pl->cls[g] = (unsigned char)c;
    }
    return pl;
}

struct cm_pool *cm_pool_free(struct cm_pool *pl)
{
    if (!pl)
        return NULL;
    while (pl->chunks) {
        struct chunk *c = pl->chunks;
        pl->chunks = c->next;
#ifdef CM_POOL_ASAN
        __lsan_unregister_root_region(c->base, CHUNK);
        ASAN_UNPOISON_MEMORY_REGION(c->base, CHUNK); /* the addresses may be mapped again */
#endif
        munmap(c->base, CHUNK);
        free(c);
    }
    free(pl);
    return NULL;
}

void cm_mem_hint_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    uintptr_t a = ((uintptr_t)p + CHUNK - 1) & ~(uintptr_t)(CHUNK - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(uintptr_t)(CHUNK - 1);
    if (b > a)
        (void)madvise((void *)a, b - a, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#else
    (void)p;
    (void)n;
#endif
}

/* The class of a block of n <= MAXBLK bytes. */
static unsigned class_of(const struct cm_pool *pl, size_t n)
{
    return pl->cls[(n + GRAIN - 1) / GRAIN];
}

/* A new chunk, aligned to its size (so that it can be one huge page). */
static int add_chunk(struct cm_pool *pl)
{
    struct chunk *c = malloc(sizeof(*c));
    if (!c)
        return -1;
    char *m = mmap(NULL, 2 * CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        free(c);
        return -1;
    }
    char *a = (char *)(((uintptr_t)m + CHUNK - 1) & ~(uintptr_t)(CHUNK - 1));
    if (a > m)
        munmap(m, (size_t)(a - m));
    munmap(a + CHUNK, (size_t)(m + 2 * CHUNK - (a + CHUNK)));
    cm_mem_hint_huge(a, CHUNK);
    no_access(a, CHUNK);
#ifdef CM_POOL_ASAN
    __lsan_register_root_region(a, CHUNK);
#endif
    c->base = a;
    c->next = pl->chunks;
    pl->chunks = c;
    pl->nchunks++;
    pl->cur = a;
    pl->end = a + CHUNK;
    return 0;
}

void *cm_pool_alloc(struct cm_pool *pl, size_t n)
{
    if (n > MAXBLK)
        return malloc(n);
    unsigned c = class_of(pl, n);
    void *b = pl->free[c];
    if (b) {
        pl->free[c] = link_get(b);
        undefined(b, n);
        return b;
    }
    size_t sz = class_size[c];
    if (!pl->cur || (size_t)(pl->end - pl->cur) < sz) {
        /* the rest of the chunk, too small for this block, feeds the small classes */
        while (pl->cur && pl->end - pl->cur >= GRAIN) {
            unsigned k = pl->cls[(size_t)(pl->end - pl->cur) / GRAIN];
            if (class_size[k] > (size_t)(pl->end - pl->cur))
                k--;
            link_set(pl->cur, pl->free[k]);
            pl->free[k] = pl->cur;
            pl->cur += class_size[k];
        }
        if (add_chunk(pl) < 0)
            return NULL;
    }
    b = pl->cur;
    pl->cur += sz;
    undefined(b, n);
    return b;
}

void cm_pool_release(struct cm_pool *pl, void *p, size_t n)
{
    if (!p)
        return;
    if (n > MAXBLK) {
        free(p);
        return;
    }
    unsigned c = class_of(pl, n);
    no_access(p, class_size[c]);
    link_set(p, pl->free[c]);
    pl->free[c] = p;
}

void *cm_pool_realloc(struct cm_pool *pl, void *p, size_t old, size_t n)
{
    if (!p)
        return cm_pool_alloc(pl, n);
    if (old > MAXBLK && n > MAXBLK)
        return realloc(p, n);
    if (old <= MAXBLK && n <= MAXBLK && class_of(pl, old) == class_of(pl, n)) {
        if (n > old)
            undefined((char *)p + old, n - old);
        else
            no_access((char *)p + n, old - n);
        return p;
    }
    void *q = cm_pool_alloc(pl, n);
    if (!q)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    cm_pool_release(pl, p, old);
    return q;
}

size_t cm_pool_footprint(const struct cm_pool *pl)
{
    return pl->nchunks * CHUNK;
}
