/* check_dlq.c - what librdkafka 2.0.2's mock cluster (circmon-broker) does with
 * transactional producers and read_committed consumers: the facts a fenced
 * dead-letter channel would rest on, pinned as regression tests.
 *
 * Each test runs its own in-process mock cluster (rd_kafka_mock_cluster_new,
 * the same code circmon-broker runs) with one topic of one partition, and
 * real librdkafka clients against its bootstrap address. What real Kafka
 * does is stated next to each assertion; where the mock differs, the test
 * asserts what the mock does, so that a librdkafka that closes the gap makes
 * the test fail and the fenced design can be tested for real. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "circmon/dlq.h"

#define TOPIC "dlq.check"

static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mc;
static char bootstrap[256];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 3)
        fprintf(stderr, "rdkafka: %s: %s\n", fac, buf);
}

static rd_kafka_conf_t *conf_new(void)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    ck_assert_ptr_nonnull(c);
    rd_kafka_conf_set_log_cb(c, quiet_log);
    ck_assert_msg(rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err)) ==
                      RD_KAFKA_CONF_OK,
                  "%s", err);
    return c;
}

static void conf_set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[512];
    ck_assert_msg(rd_kafka_conf_set(c, k, v, err, sizeof(err)) == RD_KAFKA_CONF_OK, "%s=%s: %s",
                  k, v, err);
}

static void setup(void)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(c, quiet_log);
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    ck_assert_msg(mock_rk != NULL, "%s", err);
    mc = rd_kafka_mock_cluster_new(mock_rk, 1);
    ck_assert_ptr_nonnull(mc);
    ck_assert_int_eq(rd_kafka_mock_topic_create(mc, TOPIC, 1, 1), 0);
    snprintf(bootstrap, sizeof(bootstrap), "%s", rd_kafka_mock_cluster_bootstraps(mc));
}

static void teardown(void)
{
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (mock_rk)
        rd_kafka_destroy(mock_rk);
    mc = NULL;
    mock_rk = NULL;
}

/* A transactional producer with transactional.id tid, initialised
 * (init_transactions asserted to succeed). */
static rd_kafka_t *txn_producer(const char *tid)
{
    char err[512];
    rd_kafka_conf_t *c = conf_new();
    conf_set(c, "transactional.id", tid);
    conf_set(c, "linger.ms", "0");
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    ck_assert_msg(p != NULL, "%s", err);
    rd_kafka_error_t *e = rd_kafka_init_transactions(p, 10000);
    ck_assert_msg(!e, "init_transactions(%s): %s", tid, e ? rd_kafka_error_string(e) : "");
    return p;
}

/* Produces value to partition 0 and waits until it is acknowledged. */
static void produce_acked(rd_kafka_t *p, const char *value)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE((void *)value, strlen(value)), RD_KAFKA_V_END);
    ck_assert_msg(!e, "produce %s: %s", value, rd_kafka_err2str(e));
    ck_assert_int_eq(rd_kafka_flush(p, 10000), 0);
}

static void begin(rd_kafka_t *p)
{
    rd_kafka_error_t *e = rd_kafka_begin_transaction(p);
    ck_assert_msg(!e, "begin_transaction: %s", e ? rd_kafka_error_string(e) : "");
}

/* The values on the partition as a read_committed consumer returns them up
 * to its end of partition, joined by ',' into out; returns their number. */
static int read_committed(char *out, size_t outlen)
{
    char err[512];
    rd_kafka_conf_t *c = conf_new();
    conf_set(c, "group.id", "check-dlq-reader");
    conf_set(c, "isolation.level", "read_committed");
    conf_set(c, "enable.partition.eof", "true");
    conf_set(c, "enable.auto.commit", "false");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    ck_assert_msg(rk != NULL, "%s", err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    int n = 0, eof = 0;
    size_t len = 0;
    out[0] = '\0';
    double end = now_s() + 20;
    while (!eof) {
        ck_assert_msg(now_s() < end, "read_committed consumer got no end of partition");
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof = 1;
        } else {
            ck_assert_msg(!m->err, "%s", rd_kafka_message_errstr(m));
            len += (size_t)snprintf(out + len, outlen - len, "%s%.*s", n ? "," : "",
                                    (int)m->len, (const char *)m->payload);
            ck_assert_uint_lt(len, outlen);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_destroy(rk);
    return n;
}

/* init, begin, produce, commit: the calls work and the committed messages are
 * read (real Kafka: the same, plus a commit marker at the next offset). */
START_TEST(test_commit_is_read)
{
    rd_kafka_t *p = txn_producer("circmon.dlq.0");
    begin(p);
    produce_acked(p, "a");
    produce_acked(p, "b");
    rd_kafka_error_t *e = rd_kafka_commit_transaction(p, 10000);
    ck_assert_msg(!e, "commit: %s", e ? rd_kafka_error_string(e) : "");
    char got[256];
    ck_assert_int_eq(read_committed(got, sizeof(got)), 2);
    ck_assert_str_eq(got, "a,b");
    rd_kafka_destroy(p);
}
END_TEST

/* The gap: an aborted transaction's messages. Real Kafka writes an abort
 * marker and lists the transaction in the fetch response's
 * AbortedTransactions, so a read_committed consumer skips them. The 2.0.2
 * mock writes no control record and always answers #Aborted = 0
 * (rdkafka_mock_handlers.c, Fetch): they are read as if committed. */
START_TEST(test_mock_shows_aborted_messages)
{
    rd_kafka_t *p = txn_producer("circmon.dlq.0");
    begin(p);
    produce_acked(p, "aborted");
    rd_kafka_error_t *e = rd_kafka_abort_transaction(p, 10000);
    ck_assert_msg(!e, "abort: %s", e ? rd_kafka_error_string(e) : "");
    begin(p);
    produce_acked(p, "kept");
    e = rd_kafka_commit_transaction(p, 10000);
    ck_assert_msg(!e, "commit: %s", e ? rd_kafka_error_string(e) : "");
    char got[256];
    int n = read_committed(got, sizeof(got));
    /* real Kafka: n == 1, "kept" */
    ck_assert_msg(n == 2 && !strcmp(got, "aborted,kept"),
                  "the mock now hides aborted messages (read %d: %s): revisit the "
                  "dead-letter fencing tests",
                  n, got);
    rd_kafka_destroy(p);
}
END_TEST

/* The gap: the last stable offset. Real Kafka stops a read_committed
 * consumer at the first offset of a transaction still open. The mock answers
 * LastStableOffset = high watermark: messages of an open transaction are read
 * before their commit (and would be if it never came). */
START_TEST(test_mock_shows_open_transaction)
{
    rd_kafka_t *p = txn_producer("circmon.dlq.0");
    begin(p);
    produce_acked(p, "open");
    char got[256];
    int n = read_committed(got, sizeof(got));
    /* real Kafka: n == 0 until the commit */
    ck_assert_msg(n == 1 && !strcmp(got, "open"),
                  "the mock now hides open transactions (read %d: %s): revisit the "
                  "dead-letter fencing tests",
                  n, got);
    rd_kafka_error_t *e = rd_kafka_abort_transaction(p, 10000);
    ck_assert_msg(!e, "abort: %s", e ? rd_kafka_error_string(e) : "");
    rd_kafka_destroy(p);
}
END_TEST

/* The gap that matters most: fencing. Real Kafka: a second producer's
 * init_transactions with the same transactional.id bumps the producer
 * epoch (aborting the first one's open transaction), and the first
 * producer's next produce, AddPartitionsToTxn or EndTxn fails with
 * PRODUCER_FENCED / INVALID_PRODUCER_EPOCH, a fatal error: nothing of the
 * deposed producer lands any more. The 2.0.2 mock's InitProducerId hands
 * every new producer a new producer id at epoch 0 (rd_kafka_mock_pid_new)
 * and never bumps nor invalidates the old one: the deposed producer goes
 * on producing and committing. */
START_TEST(test_mock_does_not_fence)
{
    rd_kafka_t *old = txn_producer("circmon.dlq.3");
    begin(old);
    produce_acked(old, "old-1"); /* in flight when the owner froze */

    rd_kafka_t *nu = txn_producer("circmon.dlq.3"); /* the new owner takes over */
    begin(nu);
    produce_acked(nu, "new-1");
    rd_kafka_error_t *e = rd_kafka_commit_transaction(nu, 10000);
    ck_assert_msg(!e, "new owner's commit: %s", e ? rd_kafka_error_string(e) : "");

    /* The deposed owner thaws: real Kafka refuses all of this. */
    rd_kafka_resp_err_t pe = rd_kafka_producev(
        old, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE("old-2", 5), RD_KAFKA_V_END);
    ck_assert_int_eq(pe, 0);
    ck_assert_int_eq(rd_kafka_flush(old, 10000), 0); /* acknowledged: landed */
    e = rd_kafka_commit_transaction(old, 10000);
    int fenced = e && (rd_kafka_error_is_fatal(e) ||
                       rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__FENCED ||
                       rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
                       rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH);
    char why[512];
    snprintf(why, sizeof(why), "%s", e ? rd_kafka_error_string(e) : "committed");
    if (e)
        rd_kafka_error_destroy(e);
    char fatal[256] = "";
    rd_kafka_resp_err_t fe = rd_kafka_fatal_error(old, fatal, sizeof(fatal));
    ck_assert_msg(!fenced && !fe,
                  "the mock now fences an older epoch (%s; fatal: %s): revisit the "
                  "dead-letter fencing tests",
                  why, fatal);

    char got[256];
    int n = read_committed(got, sizeof(got));
    /* real Kafka: "new-1" only (old-1's transaction is aborted by the new
     * owner's init, old-2 is refused) */
    ck_assert_msg(n == 3 && !strcmp(got, "old-1,new-1,old-2"), "read %d: %s", n, got);
    rd_kafka_destroy(old);
    rd_kafka_destroy(nu);
}
END_TEST

/* Idempotence, which circmond's dead-letter producer relies on today, holds
 * per producer id only: two producers (two owners) of the same message both
 * land it. The mock agrees with real Kafka here. */
START_TEST(test_idempotence_is_per_producer)
{
    char err[512];
    rd_kafka_t *p[2];
    for (int i = 0; i < 2; i++) {
        rd_kafka_conf_t *c = conf_new();
        conf_set(c, "enable.idempotence", "true");
        p[i] = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        ck_assert_msg(p[i] != NULL, "%s", err);
        produce_acked(p[i], "same");
    }
    char got[256];
    ck_assert_int_eq(read_committed(got, sizeof(got)), 2);
    ck_assert_str_eq(got, "same,same");
    rd_kafka_destroy(p[0]);
    rd_kafka_destroy(p[1]);
}
END_TEST

/* ------------------------------------------------- dead letters with epochs */

/* Produces a dead letter of source (part, off) with epoch ep to partition 0
 * and waits for its delivery. */
static void dl_acked(rd_kafka_t *p, int32_t part, int64_t off, int64_t ep, const char *why)
{
    ck_assert_int_eq(cm_dlq_produce(p, TOPIC, 0, "k", 1, "v", 1, why, "src", part, off, ep, NULL),
                     0);
    ck_assert_int_eq(rd_kafka_flush(p, 10000), 0);
}

static rd_kafka_t *plain_producer(void)
{
    char err[512];
    rd_kafka_conf_t *c = conf_new();
    conf_set(c, "linger.ms", "0");
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    ck_assert_msg(p != NULL, "%s", err);
    return p;
}

static rd_kafka_conf_t *reader_conf(void)
{
    rd_kafka_conf_t *c = conf_new();
    conf_set(c, "group.id", "check-dlq-scan");
    conf_set(c, "enable.partition.eof", "true");
    conf_set(c, "enable.auto.commit", "false");
    return c;
}

struct recs {
    struct cm_dlq_rec r[16];
    char why[16][32];
    int n;
};

static int keep_rec(const struct cm_dlq_rec *r, void *ud)
{
    struct recs *x = ud;
    ck_assert_int_lt(x->n, 16);
    x->r[x->n] = *r;
    snprintf(x->why[x->n], sizeof(x->why[0]), "%.*s", (int)r->reason_len, r->reason);
    x->r[x->n].reason = NULL;
    x->n++;
    return 0;
}

/* The epoch travels as a header and comes back with the record; a dead
 * letter without it (an older circmond) reads as epoch -1; messages of
 * another source topic or without the headers are skipped. */
START_TEST(test_epoch_header_round_trip)
{
    rd_kafka_t *p = plain_producer();
    dl_acked(p, 3, 40, 7, "invalid");
    dl_acked(p, 3, 41, 0, "too_late"); /* no epoch header */
    ck_assert_int_eq(cm_dlq_produce(p, TOPIC, 0, NULL, 0, NULL, 0, "invalid", "other", 3, 42, 9,
                                    NULL),
                     0);
    produce_acked(p, "not a dead letter");
    dl_acked(p, 5, 1, 8, "out_of_range");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, reader_conf(), NULL, 0);
    ck_assert_ptr_nonnull(rk);
    struct recs x = {.n = 0};
    char err[512];
    int64_t end = -1;
    ck_assert_msg(cm_dlq_scan_recs(rk, TOPIC, 0, 0, "src", 10000, NULL, keep_rec, &x, &end, err,
                                   sizeof(err)) == 0,
                  "%s", err);
    ck_assert_int_eq(end, 5);
    ck_assert_int_eq(x.n, 3);
    ck_assert(x.r[0].partition == 3 && x.r[0].offset == 40 && x.r[0].epoch == 7 &&
              x.r[0].dlq_offset == 0);
    ck_assert_str_eq(x.why[0], "invalid");
    ck_assert(x.r[1].partition == 3 && x.r[1].offset == 41 && x.r[1].epoch == -1);
    ck_assert_str_eq(x.why[1], "too_late");
    ck_assert(x.r[2].partition == 5 && x.r[2].offset == 1 && x.r[2].epoch == 8 &&
              x.r[2].dlq_offset == 4);
    /* from an offset on */
    x.n = 0;
    ck_assert(cm_dlq_scan_recs(rk, TOPIC, 0, 2, "src", 10000, NULL, keep_rec, &x, &end, err,
                               sizeof(err)) == 0);
    ck_assert_int_eq(x.n, 1);
    ck_assert_int_eq(x.r[0].offset, 1);
    /* a set flag cancels before anything is read */
    atomic_int cancel;
    atomic_init(&cancel, 1);
    x.n = 0;
    ck_assert_int_eq(cm_dlq_scan_recs(rk, TOPIC, 0, 0, "src", 10000, &cancel, keep_rec, &x, &end,
                                      err, sizeof(err)),
                     -ECANCELED);
    ck_assert_int_eq(x.n, 0);
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    rd_kafka_destroy(p);
}
END_TEST

static void add(struct cm_dlq_set *s, int32_t part, int64_t off, int64_t ep, int64_t at,
                const char *why)
{
    struct cm_dlq_rec r = {.partition = part, .offset = off, .epoch = ep, .dlq_partition = 0,
                           .dlq_offset = at, .reason = why, .reason_len = strlen(why)};
    ck_assert_int_eq(cm_dlq_set_add(s, &r), 0);
}

/* Deduplication by source keeps the highest epoch, whatever the order on
 * the topic; copies with a lower epoch are counted apart from the others. */
START_TEST(test_dedupe_keeps_highest_epoch)
{
    struct cm_dlq_set s = {0};
    add(&s, 1, 5, 3, 0, "late-copy");  /* landed first, the new owner's (higher) */
    add(&s, 0, 9, 2, 1, "invalid");
    add(&s, 1, 5, 2, 2, "deposed");    /* the deposed owner's copy, landing late */
    add(&s, 1, 6, 4, 3, "invalid");
    add(&s, 1, 6, -1, 4, "no-epoch");  /* an older circmond's: not lower */
    add(&s, 1, 7, 5, 5, "a");
    add(&s, 1, 7, 5, 6, "b");          /* same epoch twice: not lower */
    cm_dlq_set_finish(&s);
    ck_assert_uint_eq(s.records, 7);
    ck_assert_uint_eq(s.n, 4);
    ck_assert(s.e[0].partition == 0 && s.e[0].offset == 9 && s.e[0].copies == 1);
    ck_assert(s.e[1].partition == 1 && s.e[1].offset == 5 && s.e[1].epoch == 3 &&
              s.e[1].copies == 2 && s.e[1].dlq_offset == 0);
    ck_assert_str_eq(s.e[1].reason, "late-copy");
    ck_assert(s.e[2].offset == 6 && s.e[2].epoch == 4 && s.e[2].copies == 2);
    ck_assert(s.e[3].offset == 7 && s.e[3].epoch == 5 && s.e[3].dlq_offset == 5);
    ck_assert_str_eq(s.e[3].reason, "a");
    ck_assert_uint_eq(s.lower, 1);
    ck_assert_uint_eq(s.not_lower, 2);
    cm_dlq_set_free(&s);
    cm_dlq_set_free(NULL);
}
END_TEST

/* Waits (poll on its fd) for the reader's next result. */
static struct cm_dlq_result *next_result(struct cm_dlq_reader *r)
{
    double end = now_s() + 20;
    for (;;) {
        struct cm_dlq_result *res = cm_dlq_reader_take(r);
        if (res)
            return res;
        ck_assert_msg(now_s() < end, "no read-back result in 20 s");
        struct pollfd pfd = {.fd = cm_dlq_reader_fd(r), .events = POLLIN};
        poll(&pfd, 1, 200);
    }
}

/* The worker reads back off the caller's thread: the result comes through
 * the pipe, keeps only what the job wants (partition at or past its
 * position), and says where the partition ended. */
START_TEST(test_reader_reads_back_off_thread)
{
    rd_kafka_t *p = plain_producer();
    dl_acked(p, 2, 10, 4, "invalid");
    dl_acked(p, 2, 11, 4, "invalid");
    dl_acked(p, 6, 11, 4, "invalid"); /* not wanted */
    dl_acked(p, 2, 9, 3, "invalid");  /* below the position */
    rd_kafka_destroy(p);
    char err[512];
    struct cm_dlq_reader *r = cm_dlq_reader_new(reader_conf(), TOPIC, "src", 10000, err,
                                                sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    int32_t dp = 0;
    int64_t from = 0;
    struct cm_dlq_want w[] = {{.partition = 2, .pos = 10}, {.partition = 1, .pos = 0}};
    ck_assert_int_eq(cm_dlq_reader_submit(r, 77, &dp, &from, 1, w, 2), 0);
    struct cm_dlq_result *res = next_result(r);
    ck_assert_msg(res->err == 0, "%s", res->errstr);
    ck_assert_uint_eq(res->tag, 77);
    ck_assert_uint_eq(res->n_seen, 2);
    ck_assert(res->seen[0].partition == 2 && res->seen[0].offset == 10 && res->seen[0].epoch == 4);
    ck_assert(res->seen[1].partition == 2 && res->seen[1].offset == 11);
    ck_assert(res->n_dps == 1 && res->dps[0] == 0 && res->ends[0] == 4);
    cm_dlq_result_free(res);
    ck_assert_ptr_null(cm_dlq_reader_take(r));
    ck_assert_int_eq(cm_dlq_reader_busy(r), 0);
    ck_assert_ptr_null(cm_dlq_reader_free(r));
    ck_assert_ptr_null(cm_dlq_reader_free(NULL));
}
END_TEST

/* Every submitted job gives one result; results not taken are bounded
 * (CM_DLQ_READER_MAX_DONE): past them, submit says -EBUSY. A job replaced
 * or cancelled comes back with -ECANCELED; the last one is read. */
START_TEST(test_reader_is_bounded_and_superseded)
{
    rd_kafka_t *p = plain_producer();
    dl_acked(p, 1, 0, 2, "invalid");
    rd_kafka_destroy(p);
    char err[512];
    struct cm_dlq_reader *r = cm_dlq_reader_new(reader_conf(), TOPIC, "src", 10000, err,
                                                sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    int32_t dp = 0;
    int64_t from = 0;
    struct cm_dlq_want w = {.partition = 1, .pos = 0};
    for (uint64_t t = 1; t <= CM_DLQ_READER_MAX_DONE; t++)
        ck_assert_int_eq(cm_dlq_reader_submit(r, t, &dp, &from, 1, &w, 1), 0);
    ck_assert_int_eq(cm_dlq_reader_submit(r, 99, &dp, &from, 1, &w, 1), -EBUSY);
    int ok = 0;
    for (uint64_t t = 1; t <= CM_DLQ_READER_MAX_DONE; t++) {
        struct cm_dlq_result *res = next_result(r);
        if (res->tag == CM_DLQ_READER_MAX_DONE) {
            ck_assert_msg(res->err == 0, "%s", res->errstr);
            ck_assert_uint_eq(res->n_seen, 1);
            ok = 1;
        } else {
            ck_assert_msg(res->err == 0 || res->err == -ECANCELED, "job %d: %s", (int)res->tag,
                          res->errstr);
        }
        cm_dlq_result_free(res);
    }
    ck_assert(ok);
    ck_assert_int_eq(cm_dlq_reader_submit(r, 100, &dp, &from, 1, &w, 1), 0);
    cm_dlq_reader_cancel(r);
    struct cm_dlq_result *res = next_result(r);
    ck_assert_uint_eq(res->tag, 100);
    ck_assert(res->err == 0 || res->err == -ECANCELED);
    cm_dlq_result_free(res);
    /* freed with a job queued and results not taken */
    ck_assert_int_eq(cm_dlq_reader_submit(r, 101, &dp, &from, 1, &w, 1), 0);
    ck_assert_ptr_null(cm_dlq_reader_free(r));
}
END_TEST

/* ------------------------------------------------- the group waits for assign */

struct rb {
    int assigns, revokes, errors;
    rd_kafka_topic_partition_list_t *pending; /* an assignment not yet acted on */
    int pending_revoke;
};

static void on_rb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                  void *opaque)
{
    (void)rk;
    struct rb *x = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        x->assigns++;
        if (x->pending)
            rd_kafka_topic_partition_list_destroy(x->pending);
        x->pending = rd_kafka_topic_partition_list_copy(parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        x->revokes++;
        if (rd_kafka_assignment_lost(rk))
            x->errors++; /* the group gave up on us */
        x->pending_revoke = 1;
    } else {
        x->errors++;
    }
}

static rd_kafka_t *member(struct rb *x)
{
    char err[512];
    rd_kafka_conf_t *c = conf_new();
    conf_set(c, "group.id", "check-dlq-wait");
    conf_set(c, "session.timeout.ms", "6000");
    conf_set(c, "heartbeat.interval.ms", "500");
    conf_set(c, "max.poll.interval.ms", "60000");
    rd_kafka_conf_set_rebalance_cb(c, on_rb);
    rd_kafka_conf_set_opaque(c, x);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    ck_assert_msg(rk != NULL, "%s", err);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, TOPIC, RD_KAFKA_PARTITION_UA);
    ck_assert_int_eq(rd_kafka_subscribe(rk, t), 0);
    rd_kafka_topic_partition_list_destroy(t);
    return rk;
}

/* Polls both members for secs seconds (messages dropped). */
static void poll_for(rd_kafka_t *a, rd_kafka_t *b, double secs)
{
    double end = now_s() + secs;
    while (now_s() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(a, 50);
        if (m)
            rd_kafka_message_destroy(m);
        if (b && (m = rd_kafka_consumer_poll(b, 50)))
            rd_kafka_message_destroy(m);
    }
}

/* Acknowledges what the group waits for from member x: its revoke
 * (rd_kafka_assign NULL), then its assignment. *held becomes the partitions
 * it holds, -1 after a revoke until the next assignment. */
static void acknowledge(rd_kafka_t *rk, struct rb *x, int *held)
{
    if (x->pending_revoke) {
        ck_assert_int_eq(rd_kafka_assign(rk, NULL), 0);
        x->pending_revoke = 0;
        *held = -1;
    }
    if (x->pending) {
        ck_assert_int_eq(rd_kafka_assign(rk, x->pending), 0);
        *held = x->pending->cnt;
        rd_kafka_topic_partition_list_destroy(x->pending);
        x->pending = NULL;
    }
}

/* What circmond relies on to keep the rebalance callback short (librdkafka
 * 2.0.2, rd_kafka_cgrp_join_state_serve): the group stays in
 * WAIT_ASSIGN_CALL / WAIT_UNASSIGN_CALL, heartbeating, until the
 * application calls rd_kafka_assign, however long after the callback that
 * is. Here both calls come 8 s late, past the 6 s session timeout: the
 * member is not evicted, and the other member gets its partition only once
 * the revoke is acknowledged. */
START_TEST(test_group_waits_for_assign_call)
{
    struct rb xa = {0}, xb = {0};
    rd_kafka_t *a = member(&xa);
    double end = now_s() + 20;
    while (!xa.pending) {
        ck_assert_msg(now_s() < end, "no assignment in 20 s");
        poll_for(a, NULL, 0.1);
    }
    ck_assert_int_eq(xa.pending->cnt, 1);
    poll_for(a, NULL, 8); /* the assign call waits past the session timeout */
    ck_assert_int_eq(xa.revokes + xa.errors, 0);
    int held[2] = {-1, -1}; /* partitions each member holds, -1 unknown */
    acknowledge(a, &xa, &held[0]);

    /* a second member: a revokes, and acknowledges 8 s later */
    rd_kafka_t *b = member(&xb);
    end = now_s() + 20;
    while (!xa.pending_revoke) {
        ck_assert_msg(now_s() < end, "no revoke in 20 s");
        poll_for(a, b, 0.1);
    }
    poll_for(a, b, 8);
    ck_assert_int_eq(xa.errors, 0);
    ck_assert_msg(!xb.pending || xb.pending->cnt == 0,
                  "the partition went to the other member before the revoke was acknowledged");
    acknowledge(a, &xa, &held[0]);
    /* From here on both members act on every callback at once, as circmond
     * does: a member that left a revoke or an assignment unacknowledged would
     * hold the group in WAIT_*_CALL (what the steps above show), and a second
     * rebalance while the rejoin settles (a loaded machine, ASan) would then
     * never end. The rejoin may wait out a session timeout more: the bound
     * only guards against a hang. */
    end = now_s() + 60;
    while (held[0] < 0 || held[1] < 0 || held[0] + held[1] != 1) {
        ck_assert_msg(now_s() < end, "no new assignment in 60 s (a holds %d, b holds %d)",
                      held[0], held[1]);
        poll_for(a, b, 0.1);
        acknowledge(a, &xa, &held[0]);
        acknowledge(b, &xb, &held[1]);
    }
    ck_assert_int_eq(xa.errors + xb.errors, 0);
    rd_kafka_destroy_flags(a, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    rd_kafka_destroy_flags(b, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dlq");
    TCase *tc = tcase_create("mock transactions");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_commit_is_read);
    tcase_add_test(tc, test_mock_shows_aborted_messages);
    tcase_add_test(tc, test_mock_shows_open_transaction);
    tcase_add_test(tc, test_mock_does_not_fence);
    tcase_add_test(tc, test_idempotence_is_per_producer);
    suite_add_tcase(s, tc);

    tc = tcase_create("epochs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_epoch_header_round_trip);
    tcase_add_test(tc, test_dedupe_keeps_highest_epoch);
    tcase_add_test(tc, test_reader_reads_back_off_thread);
    tcase_add_test(tc, test_reader_is_bounded_and_superseded);
    suite_add_tcase(s, tc);

    tc = tcase_create("group");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 150);
    tcase_add_test(tc, test_group_waits_for_assign_call);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
