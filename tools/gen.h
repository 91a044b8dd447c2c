/* gen.h - circmon-gen's parts: the world it simulates, the lives of its
 * migrants (tools/gen_life.c) and the stream it writes (tools/gen_write.c).
 * Not a public interface: the generator's own types and its one random
 * number generator, shared by the two halves so that a seed means the same
 * stream. */
#ifndef CIRCMON_TOOLS_GEN_H
#define CIRCMON_TOOLS_GEN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* --- random numbers: splitmix64, one stream per migrant --------------------- */

struct rng {
    uint64_t s;
};

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rng_next(struct rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return mix64(r->s);
}

/* Uniform in [0, n), n > 0. */
static inline uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Uniform in [lo, hi]. */
static inline int64_t rng_range(struct rng *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + rng_below(r, (uint32_t)(hi - lo + 1));
}

static inline double rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static inline int rng_chance(struct rng *r, double p)
{
    return rng_unit(r) < p;
}

/* Exponential with the given mean, in whole units. */
static inline int64_t rng_expo(struct rng *r, double mean)
{
    return (int64_t)(-log(1 - rng_unit(r)) * mean);
}

/* --- the world: schemes (tools/gen_life.c) ---------------------------------- */

enum flow { FLOW_PERMIT, FLOW_SHORTSTAY };

struct scheme {
    const char *id;
    const char *prefix; /* of permit ids */
    int kind;           /* Circmon__V1__PermitKind */
    const char *ms;     /* member state */
    const char *border_src, *registry_src;
    const char *border[4];
    const char *sector[3];
    uint8_t nat[6], natw[6]; /* nationalities (NATS index) and weights */
    int share;               /* per mille of migrants */
    int multiple_entry;
    enum flow flow;
    /* FLOW_PERMIT profile: probabilities per permit */
    double noshow, withdraw, ext, transfer, status, revoke, late, overstay, in_grace, trip,
        again, in_country;
    int len_min, len_max, ext_min, ext_max, grace;
};

/* The schemes, indexed by struct gev's scheme. */
extern const struct scheme gen_schemes[];

/* --- compact events --------------------------------------------------------- */

enum kind { K_ENTRY = 1, K_EXIT, K_GRANT, K_EXTEND, K_REVOKE, K_STATUS };

enum fault {
    F_NONE,
    F_DUP_NEXT,  /* exact duplicate, right after the original */
    F_DUP_LATER, /* exact duplicate, 20 records after the original */
    F_GARBAGE,   /* random bytes */
    F_TRUNC,     /* a valid message cut inside a field */
    F_PREFIX,    /* random bytes before a valid message */
    F_NO_EVID,
    F_NO_MIGRANT,
    F_NO_BODY,
    F_ZERO_TIME,
    F_LONG_STRING,
    F_NO_SCHEME,      /* PermitGranted */
    F_BAD_RANGE,      /* PermitGranted: valid_until < valid_from */
    F_NO_PERMIT_ID,   /* PermitGranted/Extended/Revoked */
    F_NO_VALID_UNTIL, /* PermitExtended */
    F_BAD_UTF8,       /* a string that is not UTF-8 (a grant: its scheme id or nationality) */
    F_OUT_OF_RANGE,   /* an instant before 1970 or after 9999 */
    F__COUNT
};

struct gev {
    int64_t occ, arr;
    int64_t t1; /* granted: valid_from; extended: valid_until; revoked: effective_at */
    int64_t t2; /* granted: valid_until */
    uint32_t m;
    uint16_t seq; /* event id number within the migrant */
    uint8_t kind, fault, scheme;
    uint8_t permit; /* permit number within the migrant; 0 = never granted */
    uint8_t aux;    /* border point, sector, revocation reason or status */
    uint8_t nat;    /* granted: nationality (0 = missing) */
};

struct vec {
    struct gev *v;
    size_t n, cap;
};

static inline int is_registry(int kind)
{
    return kind == K_GRANT || kind == K_EXTEND || kind == K_REVOKE || kind == K_STATUS;
}

/* A stream in the making: every delivered event, in generation order. */
struct gen {
    uint64_t seed;
    uint32_t migrants;
    uint16_t salt;
    struct vec all;
    uint32_t *dup_orig; /* per duplicate record in all: its original */
    size_t ndup, capdup;
    int64_t horizon;
};

/* Generates the lives of g->migrants migrants over the years start_year ..
 * start_year + years - 1 into g->all (and g->dup_orig), keeping what is
 * delivered before the horizon, which it sets. Returns 0, or 1 after saying
 * why on stderr. */
int gen_generate(struct gen *g, int start_year, int years);

/* What gen_write wrote. */
struct gen_written {
    uint64_t bytes, records, undecodable, invalid;
    uint64_t per_kind[7]; /* by enum kind, the records that decode */
};

/* Writes g's events to the file out (- for standard output) in arrival
 * order, each duplicate after its original, varint-length-delimited, and
 * checks that each record decodes as valid exactly when it carries no fault.
 * Frees g->dup_orig. Returns 0, or 1 after saying why on stderr. */
int gen_write(struct gen *g, const char *out, struct gen_written *wr);

#endif
