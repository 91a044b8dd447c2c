/* dlq.h - the dead-letter topic's records: produced with the owner epoch,
 * read back (blocking, or in a worker thread), deduplicated.
 *
 * A dead letter is identified by its source (topic, partition, offset): the
 * headers CM_DLQ_HDR_* of kafka.h, plus CM_DLQ_HDR_OWNER_EPOCH, the owner
 * epoch (store.h) of the daemon that sent it. With this stack a deposed
 * owner's dead letters may land after its successor's (the mock cluster of
 * librdkafka 2.0.2 does not fence producers, tests/check_dlq.c): the topic
 * then holds a source offset more than once, and the copy with the highest
 * epoch is the one that counts (cm_dlq_dedupe). Errors are negative
 * errno-style codes. */
#ifndef CIRCMON_DLQ_H
#define CIRCMON_DLQ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#define CM_DLQ_HDR_OWNER_EPOCH "circmon-owner-epoch" /* decimal, >= 1 */

/* The most records one read-back keeps (cm_dlq_reader): past it the read
 * fails with -E2BIG. 24 bytes each: 24 MiB at most. */
#define CM_DLQ_READ_MAX_RECS ((size_t)1 << 20)

/* cm_dlq_send_opaque (kafka.h) with the header CM_DLQ_HDR_OWNER_EPOCH =
 * epoch added (epoch <= 0: no such header). Same contract: key and value
 * copied, queued not delivered, msg_opaque in the delivery report; 0, or
 * -ENOBUFS, -EMSGSIZE, -ENOENT, -EINVAL, -EIO and nothing queued. */
int cm_dlq_produce(rd_kafka_t *rk, const char *topic, int32_t dlq_partition, const void *key,
                   size_t keylen, const void *value, size_t len, const char *reason,
                   const char *src_topic, int32_t partition, int64_t offset, int64_t epoch,
                   void *msg_opaque);

/* One dead letter as read from the topic. */
struct cm_dlq_rec {
    int32_t partition;   /* source partition */
    int64_t offset;      /* source offset */
    int64_t epoch;       /* owner epoch, -1 when the header is absent (older circmond) */
    int32_t dlq_partition;
    int64_t dlq_offset;
    const char *reason;  /* not NUL-terminated, reason_len bytes; valid during the callback */
    size_t reason_len;
};

/* Called for each dead letter whose headers name the source topic with a
 * valid partition and offset. A nonzero return stops the scan and becomes
 * its result. */
typedef int (*cm_dlq_rec_cb)(const struct cm_dlq_rec *r, void *ud);

/* Reads partition dlq_partition of dlq_topic from offset from (or its log
 * start, if later) up to its high watermark as it stands when the scan
 * begins, with consumer rk (any group.id, subscribed to nothing, best with
 * enable.partition.eof=true; its assignment is replaced, then cleared).
 * Calls cb for the dead letters of src_topic; other messages are skipped.
 * Sets *end to the high watermark. Gives up when the watermark query or the
 * next message takes longer than timeout_ms, or (checked every 100 ms) when
 * *cancel becomes nonzero (cancel may be NULL). Blocks: call it off the
 * event loop. Returns 0, cb's nonzero result, or -ETIMEDOUT, -EIO,
 * -ECANCELED, -ENOMEM with a message in err (errlen bytes, NUL-terminated). */
int cm_dlq_scan_recs(rd_kafka_t *rk, const char *dlq_topic, int32_t dlq_partition,
                     int64_t from, const char *src_topic, int timeout_ms,
                     const atomic_int *cancel, cm_dlq_rec_cb cb, void *ud, int64_t *end,
                     char *err, size_t errlen);

/* A dead letter kept by a deduplication, and how many copies it had. */
struct cm_dlq_entry {
    int32_t partition;
    int64_t offset;
    int64_t epoch; /* the highest among the copies, -1 if none had one */
    int32_t dlq_partition;
    int64_t dlq_offset; /* of the kept copy */
    char *reason;       /* NUL-terminated copy, owned by the set */
    size_t copies;
};

/* Dead letters deduplicated by (source partition, offset): the copy with the
 * highest epoch is kept (the first read among equals). */
struct cm_dlq_set {
    struct cm_dlq_entry *e;
    size_t n, cap;
    size_t records;    /* copies added */
    size_t lower;      /* superseded copies with a lower epoch than the kept one */
    size_t not_lower;  /* superseded copies whose epoch is not lower (equal, or absent) */
};

/* Adds one copy (reason copied). Entries are sorted only by cm_dlq_set_finish.
 * Returns 0 or -ENOMEM. */
int cm_dlq_set_add(struct cm_dlq_set *s, const struct cm_dlq_rec *r);

/* Sorts by (partition, offset) and merges the copies; fills lower and
 * not_lower. Call once, after the last cm_dlq_set_add. */
void cm_dlq_set_finish(struct cm_dlq_set *s);

/* Frees what s holds (s itself is the caller's); accepts NULL. */
void cm_dlq_set_free(struct cm_dlq_set *s);

/* ------------------------------------------------------- the read-back worker */

/* One thread with its own consumer that reads dead-letter partitions back
 * for the event loop. The loop submits a job, the thread scans, the result
 * comes back through a pipe (cm_dlq_reader_fd becomes readable). Every
 * function below is for the loop's thread only; none blocks except
 * cm_dlq_reader_free (it joins the thread, which a cancelled job leaves
 * within 100 ms). At most one job runs; a new one cancels the one before
 * (its result comes back with -ECANCELED); at most CM_DLQ_READER_MAX_DONE
 * results wait to be taken, past which cm_dlq_reader_submit says -EBUSY. */
#define CM_DLQ_READER_MAX_DONE 4

struct cm_dlq_reader;

/* What a read-back keeps: the dead letters of source partition partition at
 * or past offset pos. */
struct cm_dlq_want {
    int32_t partition;
    int64_t pos;
};

/* One dead letter read back. */
struct cm_dlq_seen {
    int32_t partition;
    int64_t offset;
    int64_t epoch;
};

struct cm_dlq_result {
    uint64_t tag; /* the submitter's */
    int err;      /* 0, or negative: -ECANCELED, -ETIMEDOUT, -EIO, -ENOMEM, -E2BIG */
    char errstr[512];
    struct cm_dlq_seen *seen; /* n_seen, in the order read */
    size_t n_seen;
    int32_t *dps; /* the dead-letter partitions read, and their high watermarks */
    int64_t *ends;
    size_t n_dps;
};

/* A reader of dlq_topic for dead letters of src_topic (both copied) with a
 * consumer from conf (taken in every case), each scan step bounded by
 * timeout_ms. NULL with a message in err when the consumer, the pipe or the
 * thread cannot be made. */
struct cm_dlq_reader *cm_dlq_reader_new(rd_kafka_conf_t *conf, const char *dlq_topic,
                                        const char *src_topic, int timeout_ms, char *err,
                                        size_t errlen);

/* Cancels the running job, waits for the thread, frees everything (results
 * not taken too). Accepts NULL; returns NULL. */
struct cm_dlq_reader *cm_dlq_reader_free(struct cm_dlq_reader *r);

/* The read end of the result pipe (non-blocking): readable when a result
 * may be taken. */
int cm_dlq_reader_fd(const struct cm_dlq_reader *r);

/* Queues a job: read dead-letter partitions dps[i] from froms[i] (n of
 * them, n > 0), keeping the dead letters that want[0..nw-1] names (both
 * copied). Cancels the job before, if any. Returns 0, -EBUSY (too many
 * results not taken), -EINVAL, -ENOMEM. */
int cm_dlq_reader_submit(struct cm_dlq_reader *r, uint64_t tag, const int32_t *dps,
                         const int64_t *froms, size_t n, const struct cm_dlq_want *want,
                         size_t nw);

/* Cancels the running job, if any (its result comes back with -ECANCELED). */
void cm_dlq_reader_cancel(struct cm_dlq_reader *r);

/* The next finished result (the caller owns it: cm_dlq_result_free), or
 * NULL. Drains the pipe: call it until NULL when the fd is readable. */
struct cm_dlq_result *cm_dlq_reader_take(struct cm_dlq_reader *r);

/* 1 while a job is queued or running. */
int cm_dlq_reader_busy(const struct cm_dlq_reader *r);

/* Accepts NULL; returns NULL. */
struct cm_dlq_result *cm_dlq_result_free(struct cm_dlq_result *res);

#endif
