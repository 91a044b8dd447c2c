/* check_e2e_input.c - circmond end to end on hostile data: bad messages and
 * hostile values dead-lettered (crashes included), unreadable stored states,
 * one heavy migrant. Fixture and helpers: cm_e2e.h. */
#include "cm_e2e.h"

START_TEST(test_bad_input)
{
    SETUP();
    const char *conf = write_conf("c.conf", "bad", 300, 4);
    const char *ev;
    long n = gen_publish(conf, 5, 3000, &ev);
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    wait_caught_up(conf, n, 60);
    ck_assert(alive(d));
    compare(conf, AS_OF, ev, NULL);
    stop_daemon(d);
    ck_assert_int_eq(read_dlq(), expected_dead_letters());
}
END_TEST

/* Dead letters sent, then the daemon dies before its apply: the next one
 * reads them back and does not send them again. */
START_TEST(test_bad_input_crash)
{
    SETUP();
    const char *conf = write_conf("c0.conf", "dlqcrash0", 100, 2);
    const char *ev;
    long n = gen_publish(conf, 6, 3000, &ev);
    const char *hooks[] = {"1", "5"};
    for (int i = 0; i < 2; i++)
        run_to_hook("dlqcrash", i + 1, "CIRCMOND_TEST_CRASH_AFTER_DLQ", hooks[i]);
    const char *c = write_conf("c9.conf", "dlqcrash9", 100, 2);
    pid_t d = daemon_start(c, path_in("d.log"), NULL);
    wait_caught_up(c, n, 60);
    compare(c, AS_OF, ev, NULL);
    stop_daemon(d);
    ck_assert_int_eq(read_dlq(), expected_dead_letters());
}
END_TEST

/* Non-UTF-8 and far-future messages through Kafka (issue 8, section 1): each
 * ends in the dead-letter topic with its own reason (invalid_utf8,
 * out_of_range), and the figures read from Redis still equal replay. */
START_TEST(test_hostile_values_dead_lettered)
{
    SETUP();
    /* by hand: a grant valid until 10000-02-09 (cohort "10000-02" once), a
     * grant of scheme "S\xe9JOUR" (Latin-1), an entry whose migrant id (and
     * so Kafka key) is not UTF-8 */
    static const uint8_t y10000[] = {
        0x0a, 0x09, 'h', 'o', 's', 't', 'i', 'l', 'e', '-', '1', 0x12, 0x04, 'h', 'm', '-',
        '1', 0x18, 0x80, 0x81, 0xc8, 0xac, 0x06, 0x62, 0x21, 0x0a, 0x04, 'h', 'p', '-', '1',
        0x12, 0x07, 'S', 'A', 'W', 'P', '-', 'E', 'S', 0x20, 0x80, 0x81, 0xc8, 0xac, 0x06,
        0x28, 0xff, 0xfa, 0xa3, 0x81, 0xb0, 0x07, 0x3a, 0x03, 'U', 'K', 'R'};
    static const uint8_t latin1[] = {
        0x0a, 0x09, 'h', 'o', 's', 't', 'i', 'l', 'e', '-', '2', 0x12, 0x04, 'h', 'm', '-',
        '2', 0x18, 0x80, 0x81, 0xc8, 0xac, 0x06, 0x62, 0x1f, 0x0a, 0x04, 'h', 'p', '-', '1',
        0x12, 0x06, 'S', 0xe9, 'J', 'O', 'U', 'R', 0x20, 0x80, 0x81, 0xc8, 0xac, 0x06, 0x28,
        0x80, 0xcf, 0xa2, 0xb0, 0x06, 0x3a, 0x03, 'U', 'K', 'R'};
    static const uint8_t badkey[] = {0x0a, 0x09, 'h', 'o', 's',  't',  'i',  'l',  'e',
                                     '-',  '3',  0x12, 0x04, 'h',  'm',  0xff, '3',  0x18,
                                     0x80, 0x81, 0xc8, 0xac, 0x06, 0x52, 0x00};
    struct {
        const uint8_t *b;
        size_t n;
        enum cm_reject why;
        int seen;
    } hand[] = {{y10000, sizeof y10000, CM_REJ_OUT_OF_RANGE, 0},
                {latin1, sizeof latin1, CM_REJ_INVALID_UTF8, 0},
                {badkey, sizeof badkey, CM_REJ_INVALID_UTF8, 0}};
    const int nhand = 3;

    /* a generated stream (its own faults include both reasons), the hand
     * records in its middle; what each record should be, by cm_decode */
    const char *conf = write_conf("c.conf", "hostile", 300, 4);
    const char *gev = path_in("gen.bin"), *ev = path_in("ev.bin");
    gen(gev, 12, 1500);
    long ngen = count_records(gev), n = 0;
    long want[CM_REJ__COUNT] = {0}, got[CM_REJ__COUNT] = {0};
    struct cm_decoder *dec = cm_decoder_new();
    ck_assert_ptr_nonnull(dec);
    FILE *fi = fopen(gev, "rb"), *fo = fopen(ev, "wb");
    ck_assert(fi && fo);
    struct cm_frame_reader fr;
    const uint8_t *data;
    size_t len;
    struct cm_event cev;
    cm_frame_reader_init(&fr, fi);
    while (cm_frame_read(&fr, &data, &len) == 1) {
        ck_assert_int_eq(cm_frame_write(fo, data, len), 0);
        want[cm_decode(dec, data, len, &cev)]++;
        if (++n == ngen / 2)
            for (int i = 0; i < nhand; i++) {
                ck_assert_int_eq(cm_frame_write(fo, hand[i].b, hand[i].n), 0);
                ck_assert_int_eq(cm_decode(dec, hand[i].b, hand[i].n, &cev), hand[i].why);
                want[hand[i].why]++;
                n++;
            }
    }
    cm_frame_reader_free(&fr);
    fclose(fi);
    ck_assert_int_eq(fclose(fo), 0);
    cm_decoder_free(dec);
    ck_assert_int_eq(n, ngen + nhand);
    /* the seed gives both reasons besides the hand records */
    ck_assert_int_gt(want[CM_REJ_INVALID_UTF8], 2 + 2);
    ck_assert_int_gt(want[CM_REJ_OUT_OF_RANGE], 1 + 2);

    publish(conf, ev);
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    wait_caught_up(conf, n, 90);
    ck_assert(alive(d));
    compare(conf, AS_OF, ev, NULL);
    compare(conf, "9999-12-31T23:59:59Z", ev, NULL);
    stop_daemon(d);
    /* each source offset once, invalid + too late of replay in all */
    ck_assert_int_eq(read_dlq(), expected_dead_letters());

    /* and each with its reason: the hand records found by their bytes */
    rd_kafka_t *rk = topic_reader("circmon.events.dlq", N_PARTS, "dlq-reasons");
    int eof = 0;
    double end = now_s() + 30;
    rd_kafka_message_t *m;
    while ((m = topic_next(rk, "circmon.events.dlq", N_PARTS, &eof, end))) {
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t vl;
        ck_assert(rd_kafka_message_headers(m, &h) == 0 &&
                  rd_kafka_header_get_last(h, CM_DLQ_HDR_REASON, &v, &vl) == 0);
        int r = -1;
        for (int k = 0; k < CM_REJ__COUNT && r < 0; k++)
            if (strlen(cm_reject_name(k)) == vl && !memcmp(cm_reject_name(k), v, vl))
                r = k;
        ck_assert_msg(r > 0, "unknown reason '%.*s'", (int)vl, (const char *)v);
        got[r]++;
        for (int i = 0; i < nhand; i++)
            if (m->len == hand[i].n && !memcmp(m->payload, hand[i].b, m->len)) {
                ck_assert_int_eq(r, hand[i].why);
                hand[i].seen++;
            }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    for (int i = 0; i < nhand; i++)
        ck_assert_msg(hand[i].seen == 1, "hand record %d: %d dead letters", i, hand[i].seen);
    for (int k = 1; k < CM_REJ__COUNT; k++)
        if (k != CM_REJ_TOO_LATE)
            ck_assert_msg(got[k] == want[k], "reason %s: %ld dead letters, %ld records",
                          cm_reject_name(k), got[k], want[k]);
}
END_TEST

/* A stored state that does not unpack (garbage bytes SET by hand): its
 * migrant's events go to the dead-letter topic as state_unreadable, the
 * state stays as it is, the error names the migrant and the partition, and
 * every other migrant's figures are exact. Neither the partition nor the
 * daemon stops. */
START_TEST(test_state_unreadable)
{
    SETUP();
    const char *conf = write_conf("c.conf", "unreadable", 200, 4);
    const char *ev = path_in("ev.bin");
    gen(ev, 11, 1500);
    struct tev bad[] = {
        ev_grant(NULL, "broken-state", D(2021, 3, 1), "P1", "SAWP-ES", "MA", D(2021, 4, 1),
                 D(2021, 9, 30)),
        ev_entry(NULL, "broken-state", D(2021, 4, 2)),
        ev_exit(NULL, "broken-state", D(2021, 9, 20)),
        ev_entry(NULL, "broken-state", D(2022, 4, 2)),
    };
    const char *x = write_events("x.bin", bad, 4);
    /* The garbage is set under every partition's hash tag: whichever
     * partition the key lands in reads it. */
    static const char garbage[] = "\xff\xfe garbage, not a MigrantState \x01\x02";
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    uint32_t bucket = cm_layout_bucket("broken-state", 12, CM_STATE_BUCKETS_DEFAULT);
    for (int p = 0; p < N_PARTS; p++) {
        redisReply *r = redisCommand(c, "HSET circmon:{%d}:s:%u broken-state %b", p,
                                     (unsigned)bucket, garbage, sizeof(garbage) - 1);
        ck_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
        freeReplyObject(r);
    }
    publish(conf, ev);
    publish(conf, x);
    long n = count_records(ev) + 4;
    const char *log = path_in("d.log");
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n, 60);
    ck_assert(alive(d));
    /* Redis holds the figures of the other migrants, exactly. */
    compare(conf, AS_OF, ev, NULL);
    compare(conf, AS_OF_MID, ev, NULL);
    for (int p = 0; p < N_PARTS; p++) {
        redisReply *r = redisCommand(c, "HGET circmon:{%d}:s:%u broken-state", p, (unsigned)bucket);
        ck_assert(r && r->type == REDIS_REPLY_STRING && r->len == sizeof(garbage) - 1 &&
                  !memcmp(r->str, garbage, r->len));
        freeReplyObject(r);
    }
    redisFree(c);
    ck_assert_msg(file_has(log, "the state of migrant 'broken-state' in Redis"),
                  "the unreadable state is not reported (%s)", log);
    stop_daemon(d);
    long unreadable = 0;
    long want = expected_dead_letters() + 4;
    ck_assert_int_eq(read_dlq_reason("state_unreadable", &unreadable), want);
    ck_assert_int_eq(unreadable, 4);
}
END_TEST

/* One heavy migrant (4000 events within one reorder window, so that each
 * arrival folds a long window again) among ordinary ones: figures exact,
 * and the loop latency circmond reports at its stop. */
START_TEST(test_heavy_migrant)
{
    SETUP();
    const char *conf = write_conf("c.conf", "heavy", 1000, 4);
    const char *ev = path_in("ev.bin");
    gen(ev, 13, 1000);
    enum { N_HEAVY = 4000 };
    struct tev *h = calloc(N_HEAVY, sizeof(*h));
    ck_assert_ptr_nonnull(h);
    h[0] = ev_grant(NULL, "heavy-1", D(2021, 1, 1), "P1", "SAWP-ES", "MA", D(2021, 1, 2),
                    D(2021, 12, 31));
    /* an entry and an exit every 10 minutes from 2021-01-02: 4000 events in 14 days */
    for (int i = 1; i < N_HEAVY; i++)
        h[i] = i % 2 ? ev_entry(NULL, "heavy-1", D(2021, 1, 2) + (int64_t)i * 600)
                     : ev_exit(NULL, "heavy-1", D(2021, 1, 2) + (int64_t)i * 600);
    const char *x = write_events("heavy.bin", h, N_HEAVY);
    free(h);
    publish(conf, ev);
    publish(conf, x);
    long n = count_records(ev) + N_HEAVY;
    const char *log = path_in("d.log");
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n, 120);
    ck_assert(alive(d));
    compare(conf, AS_OF, ev, x);
    compare(conf, AS_OF_MID, ev, x);
    stop_daemon(d);
    double p50, p99, max;
    ck_assert_msg(loop_latency(log, &p50, &p99, &max), "no loop latency at the stop (%s)", log);
    fprintf(stderr, "test_heavy_migrant: loop latency p50/p99/max %.1f/%.1f/%.1f ms\n", p50, p99,
            max);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("e2e_input");
    TCase *tc = new_case(s, "robustness", 240);
    tcase_add_test(tc, test_state_unreadable);
    tcase_add_test(tc, test_heavy_migrant);

    tc = new_case(s, "dead letters", 240);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_bad_input_crash);
    tcase_add_test(tc, test_hostile_values_dead_lettered);
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
