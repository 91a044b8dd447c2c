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

/* Frees fc. Free the migrant states made in it first: their memory is the
 * context's. Accepts NULL; returns NULL. */
struct cm_fold_ctx *cm_fold_ctx_free(struct cm_fold_ctx *fc);

/* A new, empty migrant state in the memory of fc, or NULL when out of
 * memory. A state belongs to the context it was made in (cm_mstate_unpack
 * included) and is freed through it. */
struct cm_mstate *cm_mstate_new(struct cm_fold_ctx *fc);
struct cm_mstate *cm_mstate_free(struct cm_fold_ctx *fc, struct cm_mstate *st);

enum cm_fold_result {
    CM_FOLD_ACCEPTED = 0,
    CM_FOLD_DUPLICATE,
    CM_FOLD_TOO_LATE, /* goes to the dead-letter topic */
};

/* Folds one arriving, valid event of this migrant into st. Appends to *items
 * (a growable array given as items, n and cap; realloc'd as needed; free it yourself)
 * the data-quality items of the arrival and the change of the migrant's
 * contribution. Returns a cm_fold_result, or -ENOMEM, in which case st and
 * the items already in the array are unchanged. */
int cm_fold_event(struct cm_fold_ctx *fc, struct cm_mstate *st, const struct cm_event *ev,
                  struct cm_item **items, size_t *n, size_t *cap);

/* Packs st into a self-contained byte string (a circmon.v1.MigrantState
 * protobuf) in *buf (malloc'd, caller frees). Returns the length or -ENOMEM. */
long cm_mstate_pack(struct cm_fold_ctx *fc, const struct cm_mstate *st, uint8_t **buf);

/* Unpacks a string made by cm_mstate_pack. Returns 0 with *st set, -EINVAL
 * when buf is not a valid state, or -ENOMEM. */
int cm_mstate_unpack(struct cm_fold_ctx *fc, const uint8_t *buf, size_t len, struct cm_mstate **st);

/* A hint that st will be folded soon: stage 0 asks for the state itself,
 * stage 1 (once it has arrived) for what it points to. No effect on results. */
void cm_mstate_prefetch(const struct cm_mstate *st, int stage);

/* Approximate bytes of memory held by st (for the benchmarks). */
size_t cm_mstate_size(const struct cm_mstate *st);

#endif
