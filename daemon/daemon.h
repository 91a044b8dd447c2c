/* daemon.h - circmond's pipeline: what its modules share (inside daemon/ only).
 *
 * One libevent loop drives the consumer (its queue wakes the loop through a
 * pipe), the dead-letter producer (likewise), the Redis store, timers and
 * signals. Per partition, events are folded in batches, one batch at a time;
 * a batch is: decode, MGET the states, fold (lib/batch.c), produce dead
 * letters and wait for their delivery, then ONE compare-and-set apply
 * (store.h). Batches of different partitions run in parallel up to
 * max_in_flight.
 *
 * Positions live in Redis only: on every assignment, reconnection or refused
 * apply, the daemon drops what it holds, reads the stored positions and
 * assigns the partitions from there (a resync).
 *
 * The modules, one job each:
 *   lifecycle.c   start-up (the budgets), signals, stop, teardown, stats line
 *   clients.c     librdkafka configurations and clients, loop wake-ups, metadata
 *   intake.c      consumer polling and backpressure (what is held, and its bound)
 *   partitions.c  assignment, positions, resync, rebalance, Redis up/down
 *   schedule.c    batches: when one starts, its states, fold, apply
 *   deadletter.c  everything about dead letters (deadletter.h)
 *   http.c, http_api.c, readside.c  the HTTP endpoint and its read side
 *                 (http.h, readside.h), fed by one-line hooks
 *   notify.c      sd_notify and the watchdog (notify.h)
 *   reload.c      SIGHUP: the configuration re-read and applied (reload.h) */
#ifndef CIRCMOND_DAEMON_H
#define CIRCMOND_DAEMON_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#include "circmon/batch.h"
#include "circmon/clock.h"
#include "circmon/config.h"
#include "circmon/log.h"
#include "circmon/metrics.h"
#include "circmon/store.h"
#include "deadletter.h"

#define STARTUP_BUDGET_MS 30000 /* Redis and Kafka must answer within this at start */
#define FLUSH_TICK_MS 5         /* how often partial batches are checked for linger */
#define STATS_S 10              /* operator log line period */
#define POLL_TICK_MS 1000       /* polls even when idle: librdkafka's max.poll.interval.ms */
#define RESYNC_BACKOFF_MAX_MS 5000
#define LOOP_TICK_MS 10       /* the loop-latency probe's period */
#define LOOP_BUDGET_MS 2      /* callbacks in a row before the loop polls again */
#define FOLD_SLICE_US 2000    /* a batch's fold yields to the loop after this long */
#define FOLD_SLICE_EVENTS 4   /* events folded between looks at the clock */
#define POLL_SLICE_US 2000    /* a pass of the consumer queue yields after this long */
#define DECODE_SLICE_MSGS 64  /* messages decoded between looks at the clock */
/* The loop's priorities. Every event has LOOP_PRIO_DEFAULT (timers, signals,
 * the Redis, Kafka and HTTP sockets), whose callbacks are short, except the
 * work that goes on in slices until done (a batch's decode, fold, packing and
 * apply; the consumer pass; a scheduling pass): LOOP_PRIO_WORK, which runs
 * only when nothing at LOOP_PRIO_DEFAULT is ready, for at most LOOP_BUDGET_MS
 * before the loop polls again. So what polling finds ready waits for at most
 * one slice, however many batches are in flight. */
#define LOOP_PRIORITIES 3
#define LOOP_PRIO_DEFAULT 1 /* libevent's default: LOOP_PRIORITIES / 2 */
#define LOOP_PRIO_WORK 2
/* Messages held (queued and in batches) stop the polling past this many
 * bytes of keys and payloads, whatever their number. */
#define MAX_BUFFERED_BYTES ((size_t)256 << 20)

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

struct daemon;

/* A batch's stages. Those marked "slice" run from its work event
 * (LOOP_PRIO_WORK), each at most about FOLD_SLICE_US at a time; the others
 * await Redis or Kafka. */
enum batch_stage {
    B_DECODE,  /* slices: decode and validate its messages */
    B_READ,    /* slice: ask Redis for its migrants' states */
    B_MGET,    /* awaiting the states */
    B_FOLD,    /* slices: fold, then pack the changed states */
    B_FINISH,  /* slice: the aggregate delta, then the dead letters sent */
    B_DLQ,     /* awaiting the dead letters' delivery */
    B_PREPARE, /* slice: the apply laid out for the state layout */
    B_SEND,    /* slice: the apply sent */
    B_APPLY,   /* awaiting the apply */
    B_DONE,    /* applied and detached: its messages freed in slices */
};

/* One batch of one partition in flight. */
struct batch {
    struct daemon *d;
    struct batch *prev, *next; /* in d->batches: every live batch */
    struct part *p;            /* NULL once abandoned */
    int32_t part_id;
    enum batch_stage stage;
    rd_kafka_message_t **msgs; /* owned; in offset order */
    size_t n;
    struct cm_batch *cb; /* the pure part: decode, fold, verdicts */
    int64_t expected, new_pos;
    struct cm_store_apply *ap;
    struct event *work_ev; /* runs its next slice of work (LOOP_PRIO_WORK) */
    size_t decoded;        /* messages decoded so far */
    size_t destroyed;      /* messages destroyed so far (B_DONE) */
    int folded;            /* the fold is complete: packing */
    int store_pending;     /* a store request awaits its callback */
    size_t bytes;      /* keys and payloads of its messages */
    struct cmd_dlq_batch dl;
    int64_t apply_t0_us; /* when its apply was sent (http.c's histogram) */
};

struct part {
    int32_t id;
    int active;   /* assigned and synced: messages are taken */
    int64_t pos;  /* stored position: the next apply's expected value */
    int64_t next; /* next offset expected from Kafka: older ones are dropped */
    int fresh;    /* no message taken since the assignment */
    rd_kafka_message_t **q;
    size_t n, cap;
    int64_t since_ms; /* when the oldest queued message was taken (monotonic) */
    struct batch *b;  /* the batch in flight, if any */
    struct cmd_dlq_part dl;
};

enum phase { PH_IDLE, PH_SYNCING, PH_RUNNING };

struct daemon {
    const struct cm_config *cfg;
    struct cm_config *cfg_rw; /* the same, for reload.c (the daemon owns it) */
    struct cmd_notify *notify; /* notify.c */
    struct event *sig_hup;
    uint64_t loop_ticks, polls; /* the watchdog's progress: probe firings, consumer polls */
    int64_t last_poll_us;
    int loop_stalled; /* the watchdog test hook stopped the probe */
    struct event_base *base;
    struct cm_store *st;
    struct cm_decoder *dec;
    struct cm_names *nm;
    struct cm_fold_ctx *fc;

    rd_kafka_t *rk; /* consumer */
    rd_kafka_queue_t *rkq;
    int kpipe[2];
    struct event *kev;
    struct cmd_dlq *dlq; /* deadletter.c */

    rd_kafka_topic_partition_list_t *want; /* assignment given by the group */
    enum phase phase;
    uint64_t gen; /* bumped by every resync and every read of the positions: late replies are ignored */
    struct part *parts;
    size_t n_parts; /* parts[] is indexed by partition id */
    size_t rr;      /* round-robin start of the scheduler */
    struct batch *batches;
    size_t in_flight; /* batches attached to a partition */
    size_t buffered;  /* messages held, queued or in batches */
    size_t max_buffered;
    size_t buffered_bytes; /* their keys and payloads */
    int capped;  /* stopped polling because max_buffered was reached */
    int drained; /* the last poll pass emptied the consumer queue */

    int started;  /* store came up once and the consumer exists */
    int stopping; /* SIGTERM/SIGINT received */
    int closing;  /* rd_kafka_consumer_close_queue called */
    int exit_code;
    int listpack_checked; /* Redis's listpack limits asked (partitions.c) */
    int resync_backoff_ms;
    uint64_t crash_after; /* CIRCMOND_TEST_CRASH_AFTER_APPLIES, 0 = off */
    int budget_ms;        /* start-up budget (CIRCMOND_TEST_STARTUP_BUDGET_MS) */
    int64_t kafka_t0;     /* when asking Kafka for the topics began */
    int kafka_ok;         /* both topics known */
    struct cmd_meta *meta;
    struct event *meta_retry;

    struct event *sig_term, *sig_int, *flush_timer, *stats_timer, *poll_timer, *startup_timer,
        *resync_timer, *stop_timer, *close_timer;

    /* what the stats line (and later /metrics) reads */
    struct cm_metrics *m;
    struct cm_counter *c_folded, *c_dlq, *c_applies, *c_refused, *c_unreadable, *c_resyncs;
    struct cm_hist *h_loop;     /* loop latency (us) since the start */
    struct cm_hist h_loop_line; /* the same since the last stats line */
    /* event-to-apply latency (us): wall clock at the apply's reply minus the
     * Kafka CreateTime of each event it folded (schedule.c) */
    struct cm_hist *h_event_lat;
    struct cm_hist h_event_lat_line; /* the same since the last stats line */
    struct event *loop_timer;
    struct event *sched_ev; /* continues a scheduling pass that yielded */
    int sched_flush;        /* its flush argument */
    int64_t loop_due_us; /* when the probe should fire */
    struct cmd_alerts *alerts; /* alerts.h; NULL without rules or read side */
    struct cmd_http *http; /* the HTTP endpoint and its read side (http.h); NULL when off */
    int topic_parts;       /* the event topic's partition count, once known */
    uint64_t last_folded;
    int64_t last_stats_us;
};

/* Runs the daemon until SIGTERM/SIGINT. Returns the process exit status:
 * 0 after a clean stop, 1 when a dependency stayed unreachable past the
 * start-up budget, set-up failed or cmd_fatal_stop stopped it (logged). */
int cmd_run(struct cm_config *cfg);

/* --- lifecycle.c */
/* Ends the loop once in-flight batches are done and the consumer is closed
 * (only while stopping). */
void cmd_maybe_finish_stop(struct daemon *d);

/* Stops the daemon as SIGTERM does, then exits 1: for what no retry can
 * mend (the stored layout is another than the configuration's). */
void cmd_fatal_stop(struct daemon *d);

/* --- clients.c */
/* Builds the configuration of circmond's consumer from cfg, with its forced
 * settings (manual offsets, earliest reset) and tuning defaults
 * (overridable by rdkafka.*). Returns NULL with err set on a bad property. */
rd_kafka_conf_t *cmd_consumer_conf(const struct cm_config *cfg, char *err, size_t errlen);

/* A configuration from cfg: its properties, then nd defaults (each unless
 * cfg passes it through as rdkafka.<name>), then nf forced settings. When
 * strict, an rdkafka.<name> for a forced setting is an error (it would be
 * overridden without a word). NULL with err set on failure. */
rd_kafka_conf_t *cmd_conf_build(const struct cm_config *cfg, const char *const (*defaults)[2],
                                size_t nd, const char *const (*forced)[2], size_t nf,
                                int strict, char *err, size_t errlen);

/* A client of kind from conf (taken in every case), or NULL, logged as what. */
rd_kafka_t *cmd_client_new(rd_kafka_type_t kind, rd_kafka_conf_t *conf, const char *what);

/* Wakes the loop through a non-blocking pipe whenever queue q goes from
 * empty to non-empty: cb (with d, at loop priority prio) then serves it and
 * calls cmd_drain_pipe. Returns 0 or a negative errno (fds then hold what
 * was opened, or -1). */
int cmd_wake_on(struct daemon *d, rd_kafka_queue_t *q, int fds[2], struct event **ev,
                event_callback_fn cb, const char *byte, int prio);
void cmd_drain_pipe(int fd);

/* The consumer, wired to the loop. Returns 0 or a negative errno (logged). */
int cmd_consumer_setup(struct daemon *d);

/* Topic metadata, asked off the loop: rd_kafka_metadata blocks for up to
 * its timeout, so a thread of its own asks and hands the result back
 * through a pipe. One query at a time. */
struct cmd_meta_result {
    const char *topic;     /* the topic the result is about (the failed one) */
    int n;                 /* its partition count (> 0), or 0 on failure */
    int n_topic;           /* the event topic's count, once known */
    rd_kafka_resp_err_t err; /* why not: a broker's or librdkafka's error */
};
typedef void (*cmd_meta_fn)(struct daemon *d, const struct cmd_meta_result *res);
struct cmd_meta {
    struct daemon *d;
    rd_kafka_t *rk;
    const char *topics[2]; /* the event topic, then the dead-letter topic */
    int timeout_ms;
    cmd_meta_fn done;
    int fds[2];
    struct event *ev;
    pthread_t th;
    int running;
    struct cmd_meta_result res; /* written by the thread, read after the join */
};

/* A metadata asker for topic then dlq_topic (borrowed) on d's consumer;
 * done runs on the loop after each query. NULL when out of memory. */
struct cmd_meta *cmd_meta_new(struct daemon *d, const char *topic, const char *dlq_topic,
                              cmd_meta_fn done);
/* Starts one query (each topic waits up to timeout_ms). Returns 0, -EBUSY
 * while one runs, or a negative errno when no thread could start. */
int cmd_meta_query(struct cmd_meta *mt, int timeout_ms);
/* Waits for a running query (at most its timeout), frees mt. Accepts NULL;
 * returns NULL. */
struct cmd_meta *cmd_meta_free(struct cmd_meta *mt);

/* --- intake.c */
void cmd_on_kafka(evutil_socket_t fd, short what, void *arg);
void cmd_on_poll_timer(evutil_socket_t fd, short what, void *arg);
/* Polling resumes if it stopped at the bound and what is held fell below
 * half of it. */
void cmd_intake_uncap(struct daemon *d);
/* Drops the messages queued in p (not its batch). */
void cmd_intake_drop_queue(struct daemon *d, struct part *p);

/* --- partitions.c */
/* The partition entry for id, growing the table. NULL when out of memory. */
struct part *cmd_part_get(struct daemon *d, int32_t id);
/* Drops every held message and batch; partitions stop taking messages. */
void cmd_drop_all(struct daemon *d);
/* Drops everything held and starts over from Redis's positions, after a
 * backoff when resyncs follow each other without progress. */
void cmd_resync(struct daemon *d, const char *why);
void cmd_on_resync_timer(evutil_socket_t fd, short what, void *arg);
void cmd_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts, void *opaque);
void cmd_on_store(struct cm_store *s, int up, void *ud);
/* Hands p's applied position to librdkafka for the group's commits. */
void cmd_mirror_position(struct daemon *d, const struct part *p);

/* --- schedule.c */
/* Starts batches while fewer than max_in_flight run (flush: also partial
 * ones of every partition). */
void cmd_schedule(struct daemon *d, int flush);
void cmd_on_flush(evutil_socket_t fd, short what, void *arg);
/* Continues a cmd_schedule that yielded to the loop. */
void cmd_on_sched(evutil_socket_t fd, short what, void *arg);
/* Detaches b from its partition; freed once no callback refers to it. */
void cmd_batch_abandon(struct batch *b);
/* Detaches b from its partition as cmd_batch_abandon does, without freeing
 * it. */
void cmd_batch_abandon_keep(struct batch *b);
/* Frees now every batch applied and awaiting its free (B_DONE): a revoke or
 * a resync gives their messages back at once, as before that free moved to
 * a slice. */
void cmd_batch_free_done(struct daemon *d);
void cmd_batch_free(struct batch *b);
/* Called by deadletter.c when the last dead letter of b is settled: failed
 * is nonzero when any was not delivered. */
void cmd_batch_dlq_done(struct batch *b, int failed);

/* --- small helpers (clients.c) */
/* Arms timer ev in ms milliseconds (logged if libevent refuses). */
void cmd_timer_in(struct event *ev, int ms);

#endif
