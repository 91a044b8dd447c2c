/* kafka.h - librdkafka configuration from cm_config, logging, and the
 * dead-letter producer helper. */
#ifndef CIRCMON_KAFKA_H
#define CIRCMON_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "circmon/config.h"

/* Dead-letter header names (values are text, no NUL terminator). */
#define CM_DLQ_HDR_REASON "circmon-reason"
#define CM_DLQ_HDR_SRC_TOPIC "circmon-source-topic"
#define CM_DLQ_HDR_SRC_PARTITION "circmon-source-partition" /* decimal */
#define CM_DLQ_HDR_SRC_OFFSET "circmon-source-offset"       /* decimal */

/* A new librdkafka configuration: bootstrap.servers from cfg->brokers, then
 * every cfg->rdkafka pass-through property in file order (so they override
 * anything set before), and cm_kafka_log_cb as the log callback.
 * Returns the configuration (the caller owns it: rd_kafka_new takes it on
 * success, rd_kafka_conf_destroy otherwise), or NULL with a message in err
 * (errlen bytes, always NUL-terminated) that names the rejected property as
 * "rdkafka.<name>". Values of secret properties (passwords, private keys,
 * client secrets) never appear in err. */
rd_kafka_conf_t *cm_kafka_conf_new(const struct cm_config *cfg, char *err, size_t errlen);

/* Sets property name to value on conf unless cfg passes name through
 * (rdkafka.<name>), in which case the operator's value stands: a program's
 * tuning defaults go through here. Returns 0, or -EINVAL with a message in
 * err naming the property. */
int cm_kafka_conf_default(rd_kafka_conf_t *conf, const struct cm_config *cfg,
                          const char *name, const char *value, char *err, size_t errlen);

/* Nonzero when the librdkafka property name holds a secret whose value must
 * never be printed. */
int cm_kafka_prop_is_secret(const char *name);

/* The log callback installed by cm_kafka_conf_new: one line per log through
 * the log sink (log.h), "rdkafka <client>: <facility>: <message>", at error
 * (syslog levels 0-3), warning (4) or info (5-7, debug lines appearing only
 * with rdkafka.debug), except librdkafka's warnings that a property is for
 * the other kind of client (rdkafka.* properties go to every client).
 * Thread-safe; may be installed on any configuration with
 * rd_kafka_conf_set_log_cb. */
void cm_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* Produces one dead-letter message to topic on producer rk, to partition
 * dlq_partition (RD_KAFKA_PARTITION_UA: chosen by the key): key and value are
 * copied (either may be NULL with length 0), and the headers CM_DLQ_HDR_*
 * carry reason, src_topic, partition and offset. The message is queued, not
 * yet delivered: its fate arrives in rk's delivery report callback with
 * msg_opaque as the message's opaque. Call rd_kafka_poll to serve it.
 * Returns 0 when queued, else a negative errno-style code and nothing is
 * queued: -ENOBUFS when the producer queue is full (poll, then retry),
 * -EMSGSIZE when the message is too large, -ENOENT for an unknown topic or
 * partition, -EINVAL for a bad argument, -EIO otherwise. */
int cm_dlq_send_opaque(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
                       const void *value, size_t len, const char *reason,
                       const char *src_topic, int32_t partition, int64_t offset,
                       int32_t dlq_partition, void *msg_opaque);

/* cm_dlq_send_opaque with a NULL opaque and the partition chosen by the key. */
int cm_dlq_send(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
                const void *value, size_t len, const char *reason, const char *src_topic,
                int32_t partition, int64_t offset);

/* Called by cm_dlq_scan for each dead letter read that names src_topic as its
 * source: its source partition and offset. A nonzero return stops the scan
 * and becomes its result. */
typedef int (*cm_dlq_seen_cb)(int32_t partition, int64_t offset, void *ud);

/* Reads partition dlq_partition of dead-letter topic dlq_topic from offset
 * from (or its log start, if later) up to its high watermark as it stands
 * when the scan begins, with consumer rk (a consumer with a group.id that
 * subscribes to nothing, best with enable.partition.eof=true so that a gap
 * at the end cannot hold the scan until its timeout; its assignment is
 * replaced, then cleared). Calls cb
 * for each message whose CM_DLQ_HDR_* headers name src_topic; messages
 * without them are skipped. Sets *end to the high watermark read up to.
 * Blocks while messages come; gives up when the watermark query or the
 * next message takes longer than timeout_ms. Returns 0, cb's nonzero result, or a
 * negative errno-style code with a message in err: -ETIMEDOUT, -EIO (also
 * when the assignment could not be cleared afterwards), -ENOMEM. It is
 * cm_dlq_scan_recs (circmon/dlq.h) without a cancel flag, reduced to the
 * source partition and offset. */
int cm_dlq_scan(rd_kafka_t *rk, const char *dlq_topic, int32_t dlq_partition, int64_t from,
                const char *src_topic, int timeout_ms, cm_dlq_seen_cb cb, void *ud,
                int64_t *end, char *err, size_t errlen);

/* rd_kafka_destroy_flags(rk, flags), waited for at most timeout_ms. A client
 * whose group cannot terminate (its coordinator gone while it was leaving)
 * can block a destroy without end; then it is left to finish, or to the
 * process's exit, on a thread of its own. rk must not be used again in
 * either case; its callbacks may still run until it is gone. Returns 0 when
 * it was destroyed in time, -ETIMEDOUT when it was left, -ENOMEM or another
 * negative errno when no thread could be made (it was then destroyed here,
 * without a bound). */
int cm_kafka_destroy_within(rd_kafka_t *rk, int flags, int timeout_ms);

/* How long circmond waits for each of its Kafka clients' destroy at exit. */
#define CM_KAFKA_DESTROY_MS 5000

#endif
