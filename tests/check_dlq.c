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
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

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
