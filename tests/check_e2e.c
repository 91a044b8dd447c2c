/* check_e2e.c - circmond end to end, the main path: the store against a real
 * redis-server, a stream through circmond equal to its replay, operations
 * (idle, forced settings, positions). Fixture and helpers: cm_e2e.h. */
#include "cm_e2e.h"

START_TEST(test_end_to_end)
{
    SETUP();
    const char *conf = write_conf("c.conf", "e2e", 500, 4);
    const char *ev;
    long n = gen_publish(conf, 1, 3000, &ev);
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    wait_caught_up(conf, n, 60);
    compare(conf, AS_OF, ev, NULL);
    compare(conf, AS_OF_MID, ev, NULL);
    ck_assert(alive(d));
    stop_daemon(d);
    /* a clean stop commits the last applied positions */
    check_committed(conf, "e2e");
    /* the stop line: one event-to-apply latency per folded event */
    unsigned long long folded = 0, lat_n = 0;
    double p50 = -1, p99 = -1, max = -1;
    char *log = slurp(path_in("d.log"), NULL);
    ck_assert_ptr_nonnull(log);
    const char *st = strstr(log, "stopped: ");
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(sscanf(st, "stopped: %llu events folded", &folded), 1);
    const char *k = strstr(st, "event-to-apply latency since the start p50/p99/max ");
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(sscanf(k, "event-to-apply latency since the start p50/p99/max %lf/%lf/%lf ms"
                               " (%llu events)", &p50, &p99, &max, &lat_n), 4);
    ck_assert_uint_eq(lat_n, folded);
    ck_assert_uint_gt(folded, 0);
    ck_assert_uint_lt(folded, (unsigned long long)n); /* dead letters are not counted */
    ck_assert(0 <= p50 && p50 <= p99 && p99 <= max);
    free(log);
}
END_TEST

/* The record's Kafka CreateTimes (ms) of every message of the topic: their
 * smallest and largest; returns how many were read (all n, or the test
 * fails within 30 s). */
static long create_time_span(long n, int64_t *lo, int64_t *hi)
{
    char err[256];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    ck_assert_int_eq(rd_kafka_conf_set(kc, "bootstrap.servers", brokers, err, sizeof err),
                     RD_KAFKA_CONF_OK);
    ck_assert_int_eq(rd_kafka_conf_set(kc, "group.id", "rate-reader", err, sizeof err),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof err);
    ck_assert_msg(rk != NULL, "%s", err);
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(N_PARTS);
    for (int i = 0; i < N_PARTS; i++)
        rd_kafka_topic_partition_list_add(tp, "circmon.events", i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(rk, tp), 0);
    rd_kafka_topic_partition_list_destroy(tp);
    long got = 0;
    *lo = INT64_MAX;
    *hi = INT64_MIN;
    double end = now_s() + 30;
    while (got < n) {
        ck_assert_msg(now_s() < end, "read %ld of %ld messages within 30 s", got, n);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            rd_kafka_timestamp_type_t tt;
            int64_t ts = rd_kafka_message_timestamp(m, &tt);
            ck_assert_int_eq(tt, RD_KAFKA_TIMESTAMP_CREATE_TIME);
            *lo = ts < *lo ? ts : *lo;
            *hi = ts > *hi ? ts : *hi;
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got;
}

/* publish --rate N: record i is queued no earlier than i/N s after the
 * first (less a millisecond of pacing slack and one of CreateTime's
 * truncation), so the CreateTimes span at least (n-1)/N s. Only that
 * lower bound is asserted: a slow machine makes the span longer, never
 * shorter. */
START_TEST(test_publish_rate_paces)
{
    SETUP();
    const char *conf = write_conf("c.conf", "rate", 500, 4);
    const char *ev = path_in("ev.bin");
    gen(ev, 3, 40);
    long n = count_records(ev);
    ck_assert_int_gt(n, 100);
    char *args[] = {"publish", "--config", (char *)conf, "--rate", "400", (char *)ev, NULL};
    ck_assert_int_eq(run_bin("circmonctl", args, NULL, path_in("publish.log")), 0);
    int64_t lo, hi;
    ck_assert_int_eq(create_time_span(n, &lo, &hi), n);
    int64_t want = (int64_t)((n - 1) * 1000 / 400) - 2;
    ck_assert_msg(hi - lo >= want, "%ld records at --rate 400 span %" PRId64 " ms, want >= %" PRId64,
                  n, hi - lo, want);
}
END_TEST

/* Caught up and idle for longer than max.poll.interval.ms: circmond keeps
 * polling, so librdkafka never leaves the group (no revoke, no rejoin). */
START_TEST(test_idle_stays_in_group)
{
    SETUP();
    const char *conf = write_conf("c.conf", "idle", 500, 4);
    FILE *fp = fopen(conf, "a");
    ck_assert_ptr_nonnull(fp);
    fputs("[kafka]\nrdkafka.max.poll.interval.ms = 6000\n", fp);
    fclose(fp);
    long n = gen_publish(conf, 8, 300, NULL);
    const char *log = path_in("d.log");
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n, 60);
    /* an observation window of twice the interval: nothing may happen */
    double end = now_s() + 13;
    while (now_s() < end && !file_has(log, "revoked"))
        nap_ms(200);
    ck_assert_msg(!file_has(log, "revoked") && !file_has(log, "MAXPOLL"),
                  "circmond left the group while idle (see %s)", log);
    ck_assert(alive(d));
    stop_daemon(d);
}
END_TEST

/* A stored position past the topic's end (the topic was recreated): Kafka
 * restarts the partition lower, and circmond says so instead of skipping
 * in silence. */
START_TEST(test_position_past_topic_end_is_reported)
{
    SETUP();
    const char *conf = write_conf("c.conf", "past", 500, 4);
    gen_publish(conf, 9, 300, NULL);
    redisContext *c = redis_conn();
    freeReplyObject(redisCommand(c, "SET circmon:{0}:pos 1000000"));
    /* as this version writes a partition (without it, a position is that of
     * an earlier version's string keys, which state_buckets refuses) */
    freeReplyObject(redisCommand(c, "SET circmon:{0}:layout %s", "buckets 256"));
    redisFree(c);
    const char *log = path_in("d.log");
    pid_t d = daemon_start(conf, log, NULL);
    double end = now_s() + 60;
    while (now_s() < end && !file_has(log, "restarts at offset"))
        nap_ms(100);
    ck_assert_msg(file_has(log, "partition 0: Redis holds position 1000000 but the topic "
                                "restarts at offset 0"),
                  "no error about partition 0 (see %s)", log);
    stop_daemon(d);
}
END_TEST

/* librdkafka settings circmond forces are refused where the operator wrote
 * them, not overridden in silence. */
START_TEST(test_check_config_forced_kafka_settings)
{
    SETUP();
    const char *bad[][2] = {
        {"rdkafka.group.id = other", "rdkafka.group.id: circmond sets it itself (use group_id)"},
        {"rdkafka.enable.auto.offset.store = true",
         "rdkafka.enable.auto.offset.store: circmond sets it itself"},
        {"rdkafka.acks = 1", "rdkafka.acks: circmond sets it itself"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *conf = write_conf("f.conf", "forced", 500, 4);
        FILE *fp = fopen(conf, "a+");
        ck_assert_ptr_nonnull(fp);
        int lines = 0, ch; /* the bad key goes on line lines + 2 */
        rewind(fp);
        while ((ch = fgetc(fp)) != EOF)
            lines += ch == '\n';
        fprintf(fp, "[kafka]\n%s\n", bad[i][0]);
        fclose(fp);
        char want[512];
        snprintf(want, sizeof(want), "%s:%d: [kafka] %s", conf, lines + 2, bad[i][1]);
        char *args[] = {"--config", (char *)conf, "--check-config", NULL};
        const char *log = path_in("check.log");
        ck_assert_int_eq(run_bin("circmond", args, NULL, log), 1);
        ck_assert_msg(file_has(log, want), "expected \"%s\" in %s", want, log);
    }
}
END_TEST

START_TEST(test_zombie)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/check_e2e.XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", dir);
    redis_start(0);
    strcpy(brokers, "127.0.0.1:9"); /* unused here */
    const char *conf = write_conf("c.conf", "z", 10, 1);
    struct cm_config cfg = {0};
    char err[512];
    ck_assert_msg(cm_config_load(&cfg, conf, err, sizeof(err)) == 0, "%s", err);
    struct event_base *base = event_base_new();
    struct cm_store *st = cm_store_new(base, &cfg, on_up, base);
    event_base_dispatch(base);
    ck_assert(cm_store_ready(st));

    struct cm_names *nm = cm_names_new();
    struct cm_agg *ag = cm_agg_new();
    int32_t sch = cm_names_intern(nm, "SEASONAL-X", 10), nat = cm_names_intern(nm, "MA", 2);
    struct cm_agg_key k1 = {.kind = CM_AK_NAT, .ctr = CM_C_EXPECTED, .scheme = sch, .a = nat};
    struct cm_agg_key k2 = {.kind = CM_AK_DQ, .ctr = CM_DQ_INVALID};
    cm_agg_add(ag, &k1, 5);
    cm_agg_add(ag, &k2, 2);

    /* First writer: 0 -> 10. */
    struct apply_res r = do_apply(base, st, &cfg, 0, 10, "state-A", ag, nm);
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.applied, 1);
    ck_assert_int_eq(r.stored, 10);
    char *before = dump();

    /* A zombie still believing the partition stands at 0: refused, nothing
     * changed. */
    r = do_apply(base, st, &cfg, 0, 7, "state-Z", ag, nm);
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.applied, 0);
    ck_assert_int_eq(r.stored, 10);
    char *after = dump();
    ck_assert_str_eq(before, after);
    free(after);

    /* After SCRIPT FLUSH the apply still goes through (NOSCRIPT -> EVAL), and
     * a counter that returns to 0 leaves the hash. */
    redisContext *c = redis_conn();
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    redisFree(c);
    struct cm_agg *neg = cm_agg_new();
    cm_agg_add(neg, &k2, -2);
    r = do_apply(base, st, &cfg, 10, 20, "state-B", neg, nm);
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.applied, 1);

    /* The read side sees what was applied. */
    struct cm_agg *rag = cm_agg_new();
    struct cm_names *rnm = cm_names_new();
    ck_assert_msg(cm_store_read_agg(&cfg, rag, rnm, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(cm_agg_count(rag), 1);
    int32_t rs = cm_names_intern(rnm, "SEASONAL-X", 10), rn = cm_names_intern(rnm, "MA", 2);
    struct cm_agg_key rk1 = {.kind = CM_AK_NAT, .ctr = CM_C_EXPECTED, .scheme = rs, .a = rn};
    ck_assert_int_eq(cm_agg_get(rag, &rk1), 5);
    int32_t *parts;
    int64_t *pos;
    size_t np;
    ck_assert_int_eq(cm_store_read_positions(&cfg, &parts, &pos, &np, err, sizeof(err)), 0);
    ck_assert_int_eq(np, 1);
    ck_assert_int_eq(parts[0], 3);
    ck_assert_int_eq(pos[0], 20);
    free(parts);
    free(pos);

    /* The dead-letter mark goes with the position, only when applied. */
    struct cm_agg *none = cm_agg_new();
    struct cm_store_apply *ap = cm_store_apply_new(cfg.key_prefix, 3, 0, 99);
    ck_assert_int_eq(cm_store_apply_dlq_mark(ap, 1, 5), 0);
    r = (struct apply_res){.base = base};
    ck_assert_int_eq(cm_store_apply_send(st, ap, on_apply, &r), 0);
    event_base_dispatch(base);
    ck_assert(r.done && r.err == 0 && r.applied == 0);
    ap = cm_store_apply_new(cfg.key_prefix, 3, 20, 30);
    ck_assert_int_eq(cm_store_apply_dlq_mark(ap, 1, 5), 0);
    ck_assert_int_eq(cm_store_apply_dlq_mark(ap, 2, 77), 0); /* replaces */
    ck_assert_int_eq(cm_store_apply_agg(ap, none, nm), 0);
    r = (struct apply_res){.base = base};
    ck_assert_int_eq(cm_store_apply_send(st, ap, on_apply, &r), 0);
    event_base_dispatch(base);
    ck_assert(r.done && r.err == 0 && r.applied == 1);
    struct pos_res pr = {.base = base};
    int32_t ids[] = {3, 4};
    ck_assert_int_eq(cm_store_get_positions(st, ids, 2, on_pos, &pr), 0);
    event_base_dispatch(base);
    ck_assert(pr.done && pr.err == 0);
    ck_assert_int_eq(pr.p[0].pos, 30);
    ck_assert_int_eq(pr.p[0].dlq_part, 2);
    ck_assert_int_eq(pr.p[0].dlq_from, 77);
    ck_assert_int_eq(pr.p[1].pos, 0);
    ck_assert_int_eq(pr.p[1].dlq_part, -1);
    /* a mark that is not ours is an error, not a guess */
    c = redis_conn();
    freeReplyObject(redisCommand(c, "SET %s:{4}:dlq garbage", cfg.key_prefix));
    redisFree(c);
    pr = (struct pos_res){.base = base};
    ck_assert_int_eq(cm_store_get_positions(st, ids, 2, on_pos, &pr), 0);
    event_base_dispatch(base);
    ck_assert(pr.done && pr.err == -EPROTO);

    /* A key of the wrong type under the prefix: the apply fails before any
     * write (Redis would not roll back a half-run script). */
    c = redis_conn();
    freeReplyObject(redisCommand(c, "SET %s:{5}:agg not-a-hash", cfg.key_prefix));
    ap = cm_store_apply_new(cfg.key_prefix, 5, 0, 10);
    ck_assert_int_eq(cm_store_apply_state(ap, "mig-9", 5, (const uint8_t *)"s", 1), 0);
    ck_assert_int_eq(cm_store_apply_agg(ap, ag, nm), 0);
    r = (struct apply_res){.base = base};
    ck_assert_int_eq(cm_store_apply_send(st, ap, on_apply, &r), 0);
    event_base_dispatch(base);
    ck_assert(r.done && r.err == -EPROTO);
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(st), "WRONGTYPE"));
    char *bk = cm_layout_key_bucket(cfg.key_prefix, 5,
                                    cm_layout_bucket("mig-9", 5, (uint32_t)cfg.state_buckets), NULL);
    redisReply *ex = redisCommand(c, "EXISTS %s %s:{5}:pos %s:{5}:layout", bk, cfg.key_prefix,
                                  cfg.key_prefix);
    free(bk);
    ck_assert(ex && ex->type == REDIS_REPLY_INTEGER && ex->integer == 0);
    freeReplyObject(ex);
    redisFree(c);
    cm_agg_free(none);

    free(before);
    cm_agg_free(rag);
    cm_names_free(rnm);
    cm_agg_free(neg);
    cm_agg_free(ag);
    cm_names_free(nm);
    cm_store_free(st);
    event_base_free(base);
    cm_config_free(&cfg);
}
END_TEST

/* The one reader of stored positions: absent is 0, a decimal >= 0 is the
 * position, anything else is refused. */
START_TEST(test_positions_read)
{
    SETUP();
    const char *conf = write_conf("c.conf", "pos", 100, 1);
    struct cm_config cfg = {0};
    char err[512];
    ck_assert_msg(cm_config_load(&cfg, conf, err, sizeof(err)) == 0, "%s", err);
    redis_cmd_ok("SET circmon:{3}:pos 42");
    redis_cmd_ok("SET circmon:{5}:pos -1");
    redis_cmd_ok("SET circmon:{6}:pos 12x");
    int32_t parts[] = {3, 4};
    int64_t pos[2] = {-7, -7};
    ck_assert_msg(cm_store_read_positions_of(&cfg, parts, 2, pos, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_int_eq(pos[0], 42);
    ck_assert_int_eq(pos[1], 0);
    int32_t neg[] = {5}, bad[] = {6};
    ck_assert_int_eq(cm_store_read_positions_of(&cfg, neg, 1, pos, err, sizeof(err)), -EPROTO);
    ck_assert_msg(strstr(err, "circmon:{5}:pos") != NULL, "%s", err);
    ck_assert_int_eq(cm_store_read_positions_of(&cfg, bad, 1, pos, err, sizeof(err)), -EPROTO);
    cm_config_free(&cfg);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("e2e");
    TCase *tc = new_case(s, "store", 60);
    tcase_add_test(tc, test_zombie);
    tcase_add_test(tc, test_positions_read);

    tc = new_case(s, "daemon", 240);
    tcase_add_test(tc, test_end_to_end);

    tc = new_case(s, "operations", 120);
    tcase_add_test(tc, test_idle_stays_in_group);
    tcase_add_test(tc, test_check_config_forced_kafka_settings);
    tcase_add_test(tc, test_position_past_topic_end_is_reported);
    tcase_add_test(tc, test_publish_rate_paces);
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
