/* deadletter.h - circmond's dead letters: producing them, their delivery,
 * the per-partition mark, the read-back at assignment, the wait on revoke.
 *
 * A batch's dead letters are delivered before its apply: the apply moves the
 * position past them, so a crash in between sends them again, and the next
 * owner of the partition reads back what is on the topic past the
 * partition's mark (written with each apply) so as not to send it twice.
 * The dead letters of one source partition all go to one dead-letter
 * partition (the marked one, else id % count), so that they read back in
 * order. Everything here runs on the loop. */
#ifndef CIRCMOND_DEADLETTER_H
#define CIRCMOND_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "circmon/config.h"
#include "circmon/store.h"

struct daemon;
struct part;
struct batch;
struct cmd_dlq; /* the daemon's dead-letter side: producer, reader, delivery marks */

/* Per source partition (in struct part). */
struct cmd_dlq_part {
    /* Dead letters already on the topic for offsets at or past the position,
     * read back at assignment (a predecessor died after sending them, before
     * its apply): sorted, not sent again. */
    int64_t *seen;
    size_t n_seen, cap_seen;
    int32_t mark_part; /* the dead-letter mark Redis holds (-1: none) */
    int64_t mark_from;
    int32_t dp;    /* its dead-letter partition: the marked one, else id % count */
    int assigning; /* positions read, dead letters being read back */
};

/* Per batch (in struct batch). */
struct cmd_dlq_batch {
    size_t pending; /* dead letters awaiting their delivery report */
    size_t failed;
    size_t sent;       /* dead letters produced for it */
    int64_t mark_from; /* the dead-letter mark its apply writes, -1 = none */
};

/* The configurations of the dead-letter producer and reader, from cfg with
 * their forced settings. NULL with err set on a bad property. */
rd_kafka_conf_t *cmd_producer_conf(const struct cm_config *cfg, char *err, size_t errlen);
rd_kafka_conf_t *cmd_scanner_conf(const struct cm_config *cfg, char *err, size_t errlen);

/* Creates d->dlq: the producer (wired to d's loop) and the reader; reads
 * the CIRCMOND_TEST_CRASH_AFTER_DLQ hook. Returns 0 or a negative errno
 * (logged); cmd_dlq_free cleans up in every case. */
int cmd_dlq_setup(struct daemon *d);

/* The dead-letter topic has n (> 0) partitions. Returns 0 or -ENOMEM. */
int cmd_dlq_start(struct daemon *d, int32_t n);

/* Delivers or drops what is still in flight (bounded), before the store
 * goes away. Then cmd_dlq_free (after the consumer is destroyed) frees
 * d->dlq; both accept a d without one. */
void cmd_dlq_drain(struct daemon *d);
void cmd_dlq_free(struct daemon *d);

/* Frees what p holds. */
void cmd_dlq_part_free(struct cmd_dlq_part *dl);

/* 1 when dead letters of abandoned batches are still in flight: the topic
 * must not be read back before they land (they would be sent again). */
int cmd_dlq_busy(const struct daemon *d);

/* p is being assigned with what Redis holds for it (its mark). */
void cmd_dlq_assigning(struct daemon *d, struct part *p, const struct cm_store_pos *pos);

/* Reads back, from the dead-letter partitions of the n partitions ids being
 * assigned (cmd_dlq_assigning called for each), the dead letters sent past
 * their marks, then calls done(d, err, ud): err 0, or negative when the
 * topic could not be read (the caller resyncs). done may run before this
 * returns (today it always does: the read blocks) or later from the loop;
 * ids must stay valid until then. */
typedef void (*cmd_dlq_done_fn)(struct daemon *d, int err, void *ud);
void cmd_dlq_read_back(struct daemon *d, const int32_t *ids, size_t n, cmd_dlq_done_fn done,
                       void *ud);

/* Produces the dead letters of b (its messages with a verdict, except
 * those already on the topic). Returns 0 when none is pending (apply now),
 * 1 when some are (cmd_batch_dlq_done follows), or -EIO when one could not
 * be queued and none is pending (logged; the caller resyncs). */
int cmd_dlq_send(struct batch *b);

/* Adds b's partition's dead-letter mark to ap when it moved. Returns 0 or
 * -ENOMEM. */
int cmd_dlq_mark(struct batch *b, struct cm_store_apply *ap);

/* b's apply landed: its partition's mark is what it wrote. */
void cmd_dlq_applied(struct batch *b);

/* The group revokes the partitions: dead letters in flight land before the
 * next owner reads them back (bounded; logged when not). */
void cmd_dlq_revoke(struct daemon *d);

#endif
