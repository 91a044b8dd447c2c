/* names.h - interning of scheme ids and nationalities into small numbers. */
#ifndef CIRCMON_NAMES_H
#define CIRCMON_NAMES_H

#include <stddef.h>
#include <stdint.h>

struct cm_names;

/* 64-bit FNV-1a of len bytes, with the high half folded into the low one
 * (tables index by the low bits). This function can't fail. */
uint64_t cm_hash_bytes(const char *s, size_t len);

/* cm_hash_bytes of a NUL-terminated string. */
uint64_t cm_hash_str(const char *s);

/* A new, empty table, or NULL when out of memory. */
struct cm_names *cm_names_new(void);

/* The number of s (len bytes, may hold any byte), adding it when new.
 * Numbers start at 0 and are dense. Returns -ENOMEM on failure. */
int32_t cm_names_intern(struct cm_names *nm, const char *s, size_t len);

/* The number of s (len bytes) when the table holds it, else -ENOENT. */
int32_t cm_names_find(const struct cm_names *nm, const char *s, size_t len);

/* The string of number id (NUL-terminated) and its length, or NULL when id
 * is not in the table. */
const char *cm_names_get(const struct cm_names *nm, int32_t id, size_t *len);

/* How many names the table holds. */
size_t cm_names_count(const struct cm_names *nm);

/* Frees nm; accepts NULL; returns NULL. */
struct cm_names *cm_names_free(struct cm_names *nm);

#endif
