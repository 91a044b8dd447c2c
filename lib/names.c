/* names.c - interning of scheme ids and nationalities into small numbers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/grow.h"
#include "circmon/names.h"

struct cm_name {
    char *s;
    size_t len;
    uint64_t hash;
};

struct cm_names {
    struct cm_name *v; /* by number */
    size_t n, cap;
    int32_t *slots;    /* open addressing: number + 1, 0 = empty */
    size_t nslots;     /* power of two */
};

uint64_t cm_hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 32);
}

uint64_t cm_hash_str(const char *s)
{
    return cm_hash_bytes(s, strlen(s));
}

struct cm_names *cm_names_new(void)
{
    struct cm_names *nm = calloc(1, sizeof(*nm));
    if (!nm)
        return NULL;
    nm->nslots = 64;
    nm->slots = calloc(nm->nslots, sizeof(*nm->slots));
    if (!nm->slots) {
        free(nm);
        return NULL;
    }
    return nm;
}

static int grow_slots(struct cm_names *nm)
{
    size_t ns = nm->nslots * 2;
    int32_t *sl = calloc(ns, sizeof(*sl));
    if (!sl)
        return -ENOMEM;
    for (size_t i = 0; i < nm->n; i++) {
        size_t j = nm->v[i].hash & (ns - 1);
        while (sl[j])
            j = (j + 1) & (ns - 1);
        sl[j] = (int32_t)i + 1;
    }
    free(nm->slots);
    nm->slots = sl;
    nm->nslots = ns;
    return 0;
}

int32_t cm_names_find(const struct cm_names *nm, const char *s, size_t len)
{
    uint64_t h = cm_hash_bytes(s, len);
    for (size_t j = h & (nm->nslots - 1); nm->slots[j]; j = (j + 1) & (nm->nslots - 1)) {
        const struct cm_name *e = &nm->v[nm->slots[j] - 1];
        if (e->hash == h && e->len == len && !memcmp(e->s, s, len))
            return nm->slots[j] - 1;
    }
    return -ENOENT;
}

int32_t cm_names_intern(struct cm_names *nm, const char *s, size_t len)
{
    uint64_t h = cm_hash_bytes(s, len);
    size_t j = h & (nm->nslots - 1);
    while (nm->slots[j]) {
        struct cm_name *e = &nm->v[nm->slots[j] - 1];
        if (e->hash == h && e->len == len && !memcmp(e->s, s, len))
            return nm->slots[j] - 1;
        j = (j + 1) & (nm->nslots - 1);
    }
    if (nm->n >= INT32_MAX - 1)
        return -ENOMEM;
    if ((nm->n + 1) * 2 > nm->nslots) {
        if (grow_slots(nm) < 0)
            return -ENOMEM;
        j = h & (nm->nslots - 1);
        while (nm->slots[j])
            j = (j + 1) & (nm->nslots - 1);
    }
    if (cm_grow(&nm->v, &nm->cap, nm->n + 1, sizeof(*nm->v), 16) < 0)
        return -ENOMEM;
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    nm->v[nm->n] = (struct cm_name){.s = copy, .len = len, .hash = h};
    nm->slots[j] = (int32_t)nm->n + 1;
    return (int32_t)nm->n++;
}

const char *cm_names_get(const struct cm_names *nm, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= nm->n)
        return NULL;
    if (len)
        *len = nm->v[id].len;
    return nm->v[id].s;
}

size_t cm_names_count(const struct cm_names *nm)
{
    return nm->n;
}

struct cm_names *cm_names_free(struct cm_names *nm)
{
    if (!nm)
        return NULL;
    for (size_t i = 0; i < nm->n; i++)
        free(nm->v[i].s);
    free(nm->v);
    free(nm->slots);
    free(nm);
    return NULL;
}
