/* fold_int.h - internals shared by the fold (fold.c), the migrant state
 * (fold_state.c: window, ring, pruning, memory) and the state codec
 * (fold_codec.c). Private to lib/: not an interface. */
#ifndef CIRCMON_FOLD_INT_H
#define CIRCMON_FOLD_INT_H

#include <stdint.h>
#include <string.h>

#include "circmon/fold.h"
#include "circmon/grow.h"
#include "circmon/pool.h"
#include "circmon/timeutil.h"
#include "circmon/v1/state.pb-c.h"


#define RING 32                   /* accepted event ids always remembered */
#define DAY_LIM (1 << 28)         /* days are clamped to +-735,000 years */
#define OPEN_END INT32_MAX        /* end of a run still open */
#define NO_BREACH INT32_MAX       /* no breach day found (yet) */
#define REENTRY_DAYS 365
#define PERMITS_MAX CM_FOLD_PERMITS_MAX
#define RUNS_MAX CM_FOLD_RUNS_MAX
#define HEAD_MIN 16 /* a window this long keeps its head; a shorter one is folded again */

/* permit flags */
enum {
    PF_USED = 1 << 0,     /* a stay began on it */
    PF_ADJUSTED = 1 << 1, /* transfer or status change ended its stay */
    PF_REVOKED = 1 << 2,
    PF_REENTRY = 1 << 3,  /* an Entry on another permit of the scheme in (x, x+365] */
    PF_OPEN = 1 << 4,     /* the migrant is in a stay on it */
    PF_EXITED = 1 << 5,   /* its last stay ended with an Exit, on last_exit */
    PF_PRUNED = 1 << 6,   /* packed form only: a pruned permit, of which only the id is kept */
};

enum { M_ABSENT = 0, M_ON_PERMIT, M_NO_PERMIT, M_EXEMPT };


/* fold-made data-quality counters */
enum { FQ_EXIT_NO_ENTRY, FQ_ENTRY_PRESENT, FQ_ENTRY_NO_PERMIT, FQ_UNKNOWN, FQ_LATE_ADMIN, FQ__N };

/* A permit id: up to 22 bytes inline (b[23] == 0), longer ones in a
 * malloc'd string whose pointer is in b (b[23] == 1). */
struct pid {
    char b[24];
};


static inline const char *pid_str(const struct pid *p)
{
    if (!p->b[23])
        return p->b;
    char *s;
    memcpy(&s, p->b, sizeof(s));
    return s;
}


struct permit {
    struct pid id; /* owned by the snapshot; a copy (not owned) in scratch */
    int32_t scheme, nat;
    int32_t vf, end, last_exit;
    uint8_t flags, kind;
};

/* A run: consecutive days present on permits of one stay-limited scheme.
 * Days [start, chk] are known to hold no breach day; brk is the first breach
 * day when found (breach days are a suffix of a run: the count of present
 * days in the window never falls while the migrant stays present). */
struct run {
    int32_t sc; /* index into fstate.sc */
    int32_t start, end, chk, brk;
};

struct sch {
    int32_t scheme, nat; /* nat: of the latest permit granted in the scheme */
};

struct fstate {
    uint8_t mode;
    int32_t cur;
    struct permit *p;
    uint32_t np, capp;
    struct sch *sc;
    uint32_t nsc, capsc;
    struct run *r;
    uint32_t nr, capr;
    int32_t dq[FQ__N];
    char *tombs; /* ids of pruned permits, each NUL-terminated (snapshot only) */
    uint32_t ltombs, ntombs;
};

/* An accepted event in the reorder window, with what the fold needs of it. */
struct wev {
    uint64_t idh;
    int64_t t;
    struct pid pid; /* owned; emptied once moved into the snapshot */
    int32_t scheme, nat;
    int32_t vf, end, eff;
    uint8_t type, kind, status;
}; /* 64 bytes: one cache line */

/* The fold of a migrant's accepted events in order of occurrence is the fold
 * of snap, then of the window w. head caches it (when not NULL; windows of
 * HEAD_MIN events or more): an event that arrives in order is folded onto
 * head alone; one that lands inside the window folds the window again from
 * snap. A shorter window is folded again at each arrival: cheaper than the
 * memory of a head in every state. */
struct cm_mstate {
    int64_t latest; /* L: latest occurred_at accepted, 0 = none */
    int64_t snap_t; /* latest occurred_at folded into snap, 0 = none */
    struct wev *w;  /* sorted by t; every t > snap_t */
    uint64_t *ring; /* ids of the last RING accepted events; grows with them */
    uint32_t nw, capw;
    uint8_t nring, ringpos, capring;
    struct fstate snap;
    struct fstate *head; /* snap + window, ids borrowed (pool memory), or NULL */
};

struct sinfo {
    int8_t set;
    int32_t grace, n, w;
};

struct cm_fold_ctx {
    const struct cm_config *cfg;
    struct cm_names *nm;
    struct cm_pool *pool; /* every migrant state, and the scratch states below */
    struct sinfo *si; /* by name number */
    size_t nsi;
    int32_t nat_xxx; /* ICAO's "unspecified nationality", for grants without one */
    struct fstate ta, tb; /* scratch: the fold before (small windows) and after an arrival */
    int limit;            /* which CM_FOLD_LIMIT_* an apply returned -E2BIG for */
    struct cm_item *ca, *cb;
    size_t na, nb, capa, capb;
    /* packing: scratch reused by every call */
    void *pk;
    size_t pkcap;
    /* unpacking: protobuf-c allocates from this arena, reset by every call */
    ProtobufCAllocator alloc;
    unsigned char *arena;
    size_t arena_used, arena_cap;
    void **bigs;
    size_t nbigs, capbigs;
};


/* Grace and stay limit of a scheme already seen (interned and looked up). */
static inline const struct sinfo *si_of(const struct cm_fold_ctx *fc, int32_t scheme)
{
    return &fc->si[scheme];
}

static inline int limited(const struct sinfo *s)
{
    return s->n > 0 && s->w > 0;
}

/* fold_state.c */
int cm_pid_set(struct cm_pool *pl, struct pid *p, const char *s);
void cm_pid_free(struct cm_pool *pl, struct pid *p);
int cm_fold_grow(struct cm_pool *pl, void **v, uint32_t *cap, uint32_t need, size_t size);
void cm_fstate_free(struct cm_pool *pl, struct fstate *fs, int own);
int cm_fstate_copy(struct cm_pool *pl, struct fstate *dst, const struct fstate *src);
int32_t cm_fstate_find_sch(const struct fstate *fs, int32_t scheme);
int32_t cm_fstate_last_run(const struct fstate *fs, int32_t sc);
int32_t cm_fstate_find_permit(const struct fstate *fs, const char *id);
int cm_fstate_is_tomb(const struct fstate *fs, const char *id);
int cm_fstate_add_tomb(struct cm_pool *pl, struct fstate *fs, const char *id);
int cm_mstate_advance(struct cm_fold_ctx *fc, struct cm_mstate *st);
int cm_mstate_shed(struct cm_fold_ctx *fc, struct cm_mstate *st);
int cm_mstate_max_window(const struct cm_fold_ctx *fc);
struct fstate *cm_mstate_drop_head(struct cm_fold_ctx *fc, struct cm_mstate *st); /* NULL */
int cm_mstate_known_id(const struct cm_mstate *st, uint64_t h);
int cm_mstate_holds_permit(const struct cm_mstate *st, const char *id);

/* fold.c */
const struct sinfo *cm_fold_scheme_info(struct cm_fold_ctx *fc, int32_t scheme);
int cm_fold_apply(struct cm_fold_ctx *fc, struct fstate *fs, struct wev *e, int own);
int cm_fold_refold(struct cm_fold_ctx *fc, struct cm_mstate *st, struct fstate *out);
void cm_fold_scan_run(const struct fstate *fs, struct run *r, const struct sinfo *s, int64_t upto);

/* fold_codec.c */
void *cm_fold_codec_alloc(void *ud, size_t size);
void cm_fold_codec_free(void *ud, void *p);
void cm_fold_codec_reset(struct cm_fold_ctx *fc);

#endif
