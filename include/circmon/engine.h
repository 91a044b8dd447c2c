/* engine.h - the in-memory store: decode, fold and aggregate in one process.
 *
 * Used by circmonctl replay and the tests: events in, indicators out. */
#ifndef CIRCMON_ENGINE_H
#define CIRCMON_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "circmon/agg.h"
#include "circmon/config.h"
#include "circmon/event.h"

struct cm_engine;

/* A new engine over cfg (borrowed; must outlive the engine), or NULL when out
 * of memory. Its aggregate has the cohorts per nationality when cfg's
 * nationality_cohorts is set at this call, as the daemon's batches. */
struct cm_engine *cm_engine_new(const struct cm_config *cfg);
struct cm_engine *cm_engine_free(struct cm_engine *en);

/* Decodes, validates and folds one message. Returns CM_OK when the message
 * was valid (accepted, duplicate or too late: see cm_engine_last_result),
 * the cm_reject reason when it was invalid (counted), or -ENOMEM. */
int cm_engine_feed(struct cm_engine *en, const uint8_t *buf, size_t len);

#define CM_ENGINE_BATCH 64

/* cm_engine_feed for n messages in arrival order, faster: the memory of
 * several migrants is fetched at once. results (may be NULL) receives each
 * message's cm_engine_feed value. Returns 0, or -ENOMEM, after which the
 * engine's figures are undefined (free it). */
int cm_engine_feed_batch(struct cm_engine *en, const uint8_t *const *bufs, const size_t *lens,
                         size_t n, int *results);

/* Folds an already decoded, valid event. Returns a cm_fold_result or -ENOMEM. */
int cm_engine_fold(struct cm_engine *en, const struct cm_event *ev);

/* The aggregate (NULL when out of memory), and the name table. */
const struct cm_agg *cm_engine_agg(struct cm_engine *en);
const struct cm_names *cm_engine_names(const struct cm_engine *en);

/* The indicators document as of as_of (see cm_indicators_json). */
json_t *cm_engine_indicators(struct cm_engine *en, int64_t as_of);

/* The latest occurred_at among the accepted events (0 when none): the
 * indicators are defined as of this instant or later. */
int64_t cm_engine_latest(const struct cm_engine *en);

/* Number of migrants and approximate bytes of state they hold. */
size_t cm_engine_migrants(const struct cm_engine *en);
size_t cm_engine_state_bytes(const struct cm_engine *en);

#endif
