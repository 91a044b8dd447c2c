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
