/* fold.h - the pure fold: arriving events into one migrant's state.
 *
 * No I/O, no clock, no globals: everything the fold needs is in its
 * arguments. A migrant's state is a snapshot plus the accepted events of the
 * reorder window; the migrant's figures are those of folding its accepted
 * events in order of occurrence (INDICATORS.md section 2). Each arrival
 * yields items (agg.h): the difference between the migrant's contribution
 * to the aggregate before and after it. */
#ifndef CIRCMON_FOLD_H
#define CIRCMON_FOLD_H

#include <stddef.h>
#include <stdint.h>

#include "circmon/agg.h"
#include "circmon/config.h"
#include "circmon/event.h"
#include "circmon/names.h"

struct cm_mstate; /* one migrant */

/* What the fold needs besides the state and the event: the configuration,
 * the name table the items refer to, and scratch space it reuses. One
 * context per thread. */
struct cm_fold_ctx;

/* A new context over cfg and nm (both borrowed, they must outlive it), or
 * NULL when out of memory. */
struct cm_fold_ctx *cm_fold_ctx_new(const struct cm_config *cfg, struct cm_names *nm);

/* 1 when fc's configuration asks for the cohorts per nationality ([circmon]
 * nationality_cohorts = yes): whoever adds fc's items to an aggregate sets
 * cm_agg_set_nat_cohorts with it. 0 without a configuration. Can't fail. */
int cm_fold_ctx_nat_cohorts(const struct cm_fold_ctx *fc);

/* Frees fc. Free the migrant states made in it first: their memory is the
 * context's. Accepts NULL; returns NULL. */
struct cm_fold_ctx *cm_fold_ctx_free(struct cm_fold_ctx *fc);

/* A new, empty migrant state in the memory of fc, or NULL when out of
 * memory. A state belongs to the context it was made in (cm_mstate_unpack
 * included) and is freed through it. */
struct cm_mstate *cm_mstate_new(struct cm_fold_ctx *fc);
struct cm_mstate *cm_mstate_free(struct cm_fold_ctx *fc, struct cm_mstate *st);

/* What became of an arriving event. Every value but ACCEPTED and DUPLICATE
 * sends the event to the dead-letter topic with reason cm_fold_result_name(r)
 * and counts it (too_late, or over_limit for the CM_FOLD_LIMIT_* ones). */
enum cm_fold_result {
    CM_FOLD_ACCEPTED = 0,
    CM_FOLD_DUPLICATE,
    CM_FOLD_TOO_LATE,          /* "too_late": reorder window or max_window_events */
    CM_FOLD_LIMIT_NAMES,       /* "limit_names": a new scheme id or nationality, table full */
    CM_FOLD_LIMIT_PERMITS,     /* "limit_permits": a grant beyond CM_FOLD_PERMITS_MAX */
    CM_FOLD_LIMIT_RUNS,        /* "limit_runs": a stay beyond CM_FOLD_RUNS_MAX stay-limit runs */
    CM_FOLD__COUNT
};

/* Bounds of one migrant's state (README "Limits"). */
#define CM_FOLD_PERMITS_MAX 256 /* permits granted to one migrant, finished ones included */
#define CM_FOLD_RUNS_MAX 1024   /* stay-limit runs kept (those with a breach are kept for ever) */
#define CM_FOLD_NAMES_MAX 65536 /* distinct scheme ids + nationalities one fold context interns */

/* The dead-letter reason of a result ("too_late", "limit_names", ...), NULL
 * for ACCEPTED and DUPLICATE (not dead-lettered) and unknown values. */
const char *cm_fold_result_name(int r);

/* Folds one arriving, valid event of this migrant into st. Appends to *items
 * (a growable array given as items, n and cap; realloc'd as needed; free it yourself)
 * the data-quality items of the arrival and the change of the migrant's
 * contribution. Returns a cm_fold_result, or -ENOMEM, in which case st and
 * the items already in the array are unchanged. A result other than
 * ACCEPTED leaves st unchanged and appends only its data-quality item. */
int cm_fold_event(struct cm_fold_ctx *fc, struct cm_mstate *st, const struct cm_event *ev,
                  struct cm_item **items, size_t *n, size_t *cap);

/* Packs st into a self-contained byte string (a circmon.v1.MigrantState
 * protobuf) in *buf (malloc'd, caller frees). Returns the length or -ENOMEM. */
long cm_mstate_pack(struct cm_fold_ctx *fc, const struct cm_mstate *st, uint8_t **buf);

/* Unpacks a string made by cm_mstate_pack, validating every value as wire
 * input is validated: every count, index, day, instant and string is range-
 * and consistency-checked, so that folding more events onto the state is
 * safe and costs what a state made by the fold costs. Returns 0 with *st
 * set, -EINVAL when buf is not a valid state (also when the name table is
 * full and the state names a scheme or nationality it does not hold), or
 * -ENOMEM. */
int cm_mstate_unpack(struct cm_fold_ctx *fc, const uint8_t *buf, size_t len, struct cm_mstate **st);

/* A hint that st will be folded soon: stage 0 asks for the state itself,
 * stage 1 (once it has arrived) for what it points to. No effect on results. */
void cm_mstate_prefetch(const struct cm_mstate *st, int stage);

/* Approximate bytes of memory held by st (for the benchmarks). */
size_t cm_mstate_size(const struct cm_mstate *st);

#endif
