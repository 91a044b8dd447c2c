/* daemon.h - circmond's pipeline: Kafka partitions folded into Redis in batches.
 *
 * One libevent loop drives the consumer (its queue wakes the loop through a
 * pipe), the dead-letter producer (likewise), the Redis store, timers and
 * signals. Per partition, events are folded in batches, one batch at a time;
 * a batch is: decode, MGET the states, fold, produce dead letters and wait
 * for their delivery, then ONE compare-and-set apply (store.h). Batches of
 * different partitions run in parallel up to max_in_flight.
 *
 * Positions live in Redis only: on every assignment, reconnection or refused
 * apply, the daemon drops what it holds, reads the stored positions and
 * assigns the partitions from there (a resync). */
#ifndef CIRCMOND_DAEMON_H
#define CIRCMOND_DAEMON_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "circmon/config.h"

/* Builds the configurations of circmond's consumer, dead-letter producer
 * and dead-letter reader from cfg, with their forced settings (manual
 * offsets, earliest reset) and tuning defaults (overridable by rdkafka.*).
 * Returns NULL with err set on a bad property. */
rd_kafka_conf_t *cmd_consumer_conf(const struct cm_config *cfg, char *err, size_t errlen);
rd_kafka_conf_t *cmd_producer_conf(const struct cm_config *cfg, char *err, size_t errlen);
rd_kafka_conf_t *cmd_scanner_conf(const struct cm_config *cfg, char *err, size_t errlen);

/* Runs the daemon until SIGTERM/SIGINT. Returns the process exit status:
 * 0 after a clean stop, 1 when a dependency stayed unreachable past the
 * start-up budget or set-up failed (logged). */
int cmd_run(const struct cm_config *cfg);

#endif
