/* batch.h - one batch of one partition's messages, folded without any I/O.
 *
 * What circmond does with a batch between reading its migrants' states and
 * writing them back, as a pure module (no Kafka, no Redis, no clock), so that
 * it can be tested alone: decode and validate each message (in offset
 * order), collect the migrants, take their stored states, fold the accepted
 * events, gather the aggregate delta, pack the states that changed, and give
 * each message its verdict: accepted (or dropped as a duplicate), or the
 * reason it goes to the dead-letter topic.
 *
 * Use: cm_batch_new, cm_batch_add for every message, cm_batch_set_state for
 * every migrant (cm_batch_migrant names them), cm_batch_fold until it
 * returns 0, then cm_batch_agg, cm_batch_each_changed and cm_batch_verdict.
 * A batch is used once. Errors are negative errno-style codes; after
 * -ENOMEM the batch is unusable (free it). */
#ifndef CIRCMON_BATCH_H
#define CIRCMON_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "circmon/agg.h"
#include "circmon/event.h"
#include "circmon/fold.h"

/* Dead-letter reason of the events of a migrant whose stored state does not
 * unpack: the state is left as it is, the events are kept on the
 * dead-letter topic, and the operator rebuilds the partition (README). */
#define CM_BATCH_REASON_STATE_UNREADABLE "state_unreadable"

struct cm_batch;

/* A new batch for at most cap messages (cap > 0), folding in fc (its states
 * are made there) and decoding with dec; both borrowed, they must outlive
 * the batch. Returns NULL when out of memory. */
struct cm_batch *cm_batch_new(struct cm_fold_ctx *fc, struct cm_decoder *dec, size_t cap);

/* Frees b and the states it holds. Accepts NULL; returns NULL. */
struct cm_batch *cm_batch_free(struct cm_batch *b);

/* Adds the next message (offset order): its Kafka key and payload, both
 * borrowed until the batch is freed. It is decoded and validated; a valid
 * message whose key is not its migrant_id is invalid (key_mismatch).
 * Returns 0, -ENOSPC past cap messages, or -ENOMEM. */
int cm_batch_add(struct cm_batch *b, const void *key, size_t key_len, const void *payload,
                 size_t len);

/* Number of messages and of distinct migrants of the valid ones. */
size_t cm_batch_size(const struct cm_batch *b);
size_t cm_batch_migrants(const struct cm_batch *b);

/* The id of migrant i (i < cm_batch_migrants), NUL-terminated, and its
 * length; valid until the batch is freed. */
const char *cm_batch_migrant(const struct cm_batch *b, size_t i, size_t *len);

/* Gives migrant i its stored state: data (len bytes, copied), or NULL for a
 * migrant never stored. Call it once per migrant before cm_batch_fold.
 * Returns 0; -EINVAL when data does not unpack (cm_mstate_unpack refuses it):
 * the migrant is then unreadable, its events are not folded, their verdict
 * is CM_BATCH_REASON_STATE_UNREADABLE, its state is not written back, and
 * the batch goes on; or -ENOMEM. */
int cm_batch_set_state(struct cm_batch *b, size_t i, const uint8_t *data, size_t len);

/* Folds up to max messages (0: all that remain), in offset order, so that
 * a caller on an event loop can fold a heavy batch in slices. Returns 1
 * when messages remain, 0 when the fold is complete, -ENOMEM, or -EIO when
 * a message decodes differently the second time (cannot happen). */
int cm_batch_fold(struct cm_batch *b, size_t max);

/* After the fold: the aggregate delta of the batch (owned by b). */
const struct cm_agg *cm_batch_agg(const struct cm_batch *b);

/* After the fold: calls cb for each readable migrant whose packed state
 * differs from the one stored (in migrant order), with the packed bytes
 * (valid during the call). Returns 0, cb's negative
 * result (which stops the walk), or -ENOMEM. */
typedef int (*cm_batch_state_cb)(const char *id, size_t id_len, const uint8_t *state,
                                 size_t len, void *ud);
int cm_batch_each_changed(struct cm_batch *b, cm_batch_state_cb cb, void *ud);

/* The verdict of message i (i < cm_batch_size), final after the fold: NULL
 * when the message was accepted or dropped as a duplicate, else the
 * dead-letter reason (a static string: cm_reject_name's for invalid
 * messages, "too_late", CM_BATCH_REASON_STATE_UNREADABLE, or the name of any
 * other non-accepted fold result). */
const char *cm_batch_verdict(const struct cm_batch *b, size_t i);

/* Messages whose fold accepted them or dropped them as duplicates; messages
 * with a verdict; migrants whose stored state did not unpack. */
size_t cm_batch_folded(const struct cm_batch *b);
size_t cm_batch_rejected(const struct cm_batch *b);
size_t cm_batch_unreadable(const struct cm_batch *b);

#endif
