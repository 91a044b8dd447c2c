/* check_e2e_faults.c - circmond end to end through faults: crashes, rebalances,
 * Redis restarts, refusals and timeouts, Kafka down at start-up, services gone
 * at the stop. The figures stay exact. Fixture and helpers: cm_e2e.h. */
#include "cm_e2e.h"

START_TEST(test_crash)
{
    SETUP();
    /* Small batches: many applies, so that the kills land mid-stream. */
    const char *conf = write_conf("c0.conf", "crash0", 100, 2);
    const char *ev;
    long n = gen_publish(conf, 2, 4000, &ev);

    /* Killed right after an apply landed, before anything else. */
    const char *hooks[] = {"3", "17", "40"};
    for (int i = 0; i < 3; i++)
        run_to_hook("crash", i + 1, "CIRCMOND_TEST_CRASH_AFTER_APPLIES", hooks[i]);
    /* Killed from outside at arbitrary instants. */
    int64_t marks[] = {n / 2, (3 * n) / 4};
    for (int i = 0; i < 2; i++) {
        char group[32], name[32];
        snprintf(group, sizeof(group), "crash%d", i + 4);
        snprintf(name, sizeof(name), "c%d.conf", i + 4);
        const char *c = write_conf(name, group, 100, 2);
        pid_t d = daemon_start(c, path_in("d.log"), NULL);
        wait_progress(c, marks[i], 60);
        kill(d, SIGKILL);
        wait_pid(d, 10);
    }
    const char *c = write_conf("c9.conf", "crash9", 100, 2);
    pid_t d = daemon_start(c, path_in("d.log"), NULL);
    wait_caught_up(c, n, 60);
    compare(c, AS_OF, ev, NULL);
    compare(c, AS_OF_MID, ev, NULL);
    stop_daemon(d);
}
END_TEST

START_TEST(test_rebalance)
{
    SETUP();
    const char *ev = path_in("ev.bin"), *a = path_in("a.bin"), *b = path_in("b.bin");
    gen(ev, 3, 4000);
    long n = count_records(ev);
    split(ev, n / 2, a, b);
    const char *conf = write_conf("c.conf", "rebal", 100, 2);
    publish(conf, a);
    pid_t d1 = daemon_start(conf, path_in("d1.log"), NULL);
    pid_t d2 = daemon_start(conf, path_in("d2.log"), NULL);
    wait_caught_up(conf, n / 2, 90);
    /* Second half in, one member killed mid-stream and started again. */
    publish(conf, b);
    wait_progress(conf, n / 2 + 1, 30);
    kill(d2, SIGKILL);
    wait_pid(d2, 10);
    d2 = daemon_start(conf, path_in("d2.log"), NULL);
    wait_caught_up(conf, n, 120);
    compare(conf, AS_OF, a, b);
    ck_assert(alive(d1) && alive(d2));
    stop_daemon(d1);
    stop_daemon(d2);
}
END_TEST

START_TEST(test_redis_restart)
{
    SETUP();
    /* Persisting Redis: a restart loses only the script cache. */
    redis_stop();
    redis_start(1);
    const char *ev = path_in("ev.bin"), *a = path_in("a.bin"), *b = path_in("b.bin"),
               *b1 = path_in("b1.bin"), *b2 = path_in("b2.bin");
    gen(ev, 4, 3000);
    long n = count_records(ev);
    split(ev, n / 3, a, b);
    split(b, n / 3, b1, b2);
    const char *conf = write_conf("c.conf", "redis", 200, 4);
    publish(conf, a);
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    wait_caught_up(conf, n / 3, 60);

    /* Script cache flushed under the daemon. */
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "SCRIPT FLUSH");
    ck_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
    publish(conf, b1);
    wait_caught_up(conf, 2 * (n / 3), 60);

    /* Redis down while events arrive, then back. */
    redis_stop();
    publish(conf, b2);
    ck_assert(alive(d));
    redis_start(1);
    wait_caught_up(conf, n, 90);
    ck_assert(alive(d));
    compare(conf, AS_OF, a, b);
    stop_daemon(d);
}
END_TEST

/* Redis refuses the applies for a while (out of memory): resyncs back off;
 * then the connection drops and comes back. The backed-off read of the
 * positions must not assign the partitions a second time (it would fold
 * events twice: the data-quality counters would show it). */
START_TEST(test_redis_refusals_then_reconnect)
{
    SETUP();
    const char *ev = path_in("ev.bin"), *a = path_in("a.bin"), *b = path_in("b.bin");
    gen(ev, 5, 3000);
    long n = count_records(ev);
    split(ev, n / 2, a, b);
    const char *conf = write_conf("c.conf", "refusals", 200, 4);
    const char *log = path_in("d.log");
    publish(conf, a);
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n / 2, 60);

    redis_cmd_ok("CONFIG SET maxmemory 1");
    publish(conf, b);
    double end = now_s() + 60;
    int before = count_in_file(log, "resynchronising"), now;
    while ((now = count_in_file(log, "resynchronising")) < before + 4) {
        ck_assert_msg(now_s() < end, "no resyncs while Redis refused the applies");
        nap_ms(20);
    }
    redis_cmd_ok("CONFIG SET maxmemory 0");
    /* drop every client connection: the daemon reconnects and resyncs at once */
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    freeReplyObject(redisCommand(c, "CLIENT KILL TYPE normal"));
    redisFree(c);
    wait_caught_up(conf, n, 90);
    /* A stale backoff timer would fire within the longest backoff (5 s) and
     * assign again: watch for that long (this waits for something that must
     * not happen, so it can only be bounded by time), then let the daemon
     * settle and compare, data quality included. */
    const char *assigned = "partitions from the positions in Redis";
    int assigns = count_in_file(log, assigned);
    end = now_s() + 6;
    while (now_s() < end) {
        ck_assert_msg(count_in_file(log, assigned) == assigns,
                      "the partitions were assigned again after the reconnection (%s)", log);
        nap_ms(100);
    }
    wait_caught_up(conf, n, 30);
    ck_assert(alive(d));
    compare(conf, AS_OF, a, b);
    stop_daemon(d);
}
END_TEST

/* Stopped while Kafka and Redis go away too (a cleanup that signals every
 * process at once): circmond still exits, it does not wait for a consumer
 * close that can no longer finish. */
START_TEST(test_stop_with_services_gone)
{
    SETUP();
    const char *conf = write_conf("c.conf", "gone", 500, 4);
    long n = gen_publish(conf, 7, 2000, NULL);
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    wait_caught_up(conf, n, 60);
    kill(d, SIGTERM);
    kill(broker_pid, SIGTERM);
    kill(redis_pid, SIGTERM);
    int st = wait_pid(d, 45);
    ck_assert_msg(st >= 0 && WIFEXITED(st), "circmond did not stop (status %d)", st);
}
END_TEST

/* The same with a second signal once circmond is stopping (a Ctrl-C to the
 * whole process group, then the script's own SIGTERM): "stopping now"
 * leaves the loop with the consumer's close unfinished and Kafka gone;
 * circmond still exits, and says what it left. */
START_TEST(test_second_signal_with_services_gone)
{
    SETUP();
    const char *conf = write_conf("c.conf", "gone2", 500, 4);
    long n = gen_publish(conf, 7, 2000, NULL);
    const char *log = path_in("d.log");
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n, 60);
    kill(d, SIGINT);
    kill(broker_pid, SIGINT);
    kill(redis_pid, SIGINT);
    kill(d, SIGTERM);
    int st = wait_pid(d, 60);
    ck_assert_msg(st >= 0 && WIFEXITED(st), "circmond did not stop (status %d, %s)", st, log);
    ck_assert_msg(file_has(log, "second signal: stopping now"), "no second signal (%s)", log);
}
END_TEST

/* Kafka not there at start-up (nothing listens on port 1): circmond retries
 * within its start-up budget, then exits 1 naming the brokers and the
 * topic. It never takes an error for a partition count and goes on
 * "consuming". */
START_TEST(test_kafka_down_at_start)
{
    SETUP();
    const char *conf = path_in("down.conf");
    FILE *fp = fopen(conf, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[kafka]\nbrokers = 127.0.0.1:1\ngroup_id = down\n"
            "[redis]\nunix_socket = %s\n[http]\nport = 0\n",
            redis_sock);
    fclose(fp);
    const char *log = path_in("d.log");
    char budget[] = "CIRCMOND_TEST_STARTUP_BUDGET_MS=4000"; /* spawn writes into it */
    char *env[] = {budget, NULL};
    double t0 = now_s();
    pid_t d = daemon_start(conf, log, env);
    int st = wait_pid(d, 40);
    double dt = now_s() - t0;
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1,
                  "circmond was to exit 1 with Kafka down (status %d, %s)", st, log);
    ck_assert_msg(dt >= 4.0, "gave up after %.1f s, before its 4 s budget", dt);
    ck_assert_msg(file_has(log, "kafka at 127.0.0.1:1, topic circmon.events: ") &&
                      file_has(log, "; retrying"),
                  "no retry logged (%s)", log);
    ck_assert_msg(file_has(log, "giving up after 4.0 s"), "no clear final message (%s)", log);
    ck_assert_msg(!file_has(log, "consuming"), "circmond went on consuming (%s)", log);
}
END_TEST

/* Redis stops answering (SIGSTOP) for longer than command_timeout_ms while
 * events arrive: circmond drops the connection, reconnects once Redis
 * answers again, resynchronises, and the figures are exact. */
START_TEST(test_redis_command_timeout)
{
    SETUP();
    const char *ev = path_in("ev.bin"), *a = path_in("a.bin"), *b = path_in("b.bin");
    gen(ev, 12, 3000);
    long n = count_records(ev);
    split(ev, n / 2, a, b);
    const char *conf = write_conf("c.conf", "timeout", 200, 4);
    const char *log = path_in("d.log");
    publish(conf, a);
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n / 2, 60);
    ck_assert_int_eq(kill(redis_pid, SIGSTOP), 0);
    publish(conf, b);
    double end = now_s() + 30;
    while (!file_has(log, "redis command timed out after 3000 ms")) {
        if (now_s() > end)
            kill(redis_pid, SIGCONT);
        ck_assert_msg(now_s() < end, "no command timed out while Redis was stopped (%s)", log);
        nap_ms(50);
    }
    ck_assert_int_eq(kill(redis_pid, SIGCONT), 0);
    wait_caught_up(conf, n, 90);
    ck_assert(alive(d));
    ck_assert_msg(file_has(log, "resynchronising from the positions in Redis (redis reconnected)"),
                  "no resync after the reconnection (%s)", log);
    compare(conf, AS_OF, a, b);
    compare(conf, AS_OF_MID, a, b);
    stop_daemon(d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("e2e_faults");
    TCase *tc = new_case(s, "daemon", 240);
    tcase_add_test(tc, test_crash);
    tcase_add_test(tc, test_rebalance);
    tcase_add_test(tc, test_redis_restart);
    tcase_add_test(tc, test_redis_refusals_then_reconnect);

    tc = new_case(s, "operations", 120);
    tcase_add_test(tc, test_stop_with_services_gone);
    tcase_add_test(tc, test_second_signal_with_services_gone);

    tc = new_case(s, "robustness", 240);
    tcase_add_test(tc, test_kafka_down_at_start);
    tcase_add_test(tc, test_redis_command_timeout);
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
