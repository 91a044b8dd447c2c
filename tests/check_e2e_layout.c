/* check_e2e_layout.c - circmond end to end across a change of the state
 * layout: a Redis written by an earlier version (one string key per migrant,
 * no layout key) is refused by a circmond asking for hash buckets, with the
 * fixes named; circmonctl migrate-layout converts it; circmond then goes on
 * from the stored positions and its figures equal the replay of the whole
 * stream. Fixture and helpers: cm_e2e.h. */
#include "cm_e2e.h"

/* Appends text to the configuration at conf. */
static void conf_add(const char *conf, const char *text)
{
    FILE *fp = fopen(conf, "a");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
}

/* The number of keys matching pattern (KEYS: a test's small Redis). */
static long long count_keys(const char *pattern)
{
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "KEYS %s", pattern);
    ck_assert(r && r->type == REDIS_REPLY_ARRAY);
    long long n = (long long)r->elements;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

START_TEST(test_upgrade_from_string_keys)
{
    SETUP();
    const char *all = path_in("all.bin"), *a = path_in("a.bin"), *b = path_in("b.bin");
    gen(all, 3, 2000);
    long n = count_records(all);
    long na = n / 2;
    ck_assert_int_eq(split(all, na, a, b), n);

    /* the earlier version: string keys, and (as then) no layout key */
    const char *c0 = write_conf("c0.conf", "lay0", 500, 4);
    conf_add(c0, "[redis]\nstate_buckets = 0\n");
    publish(c0, a);
    pid_t d = daemon_start(c0, path_in("d0.log"), NULL);
    wait_caught_up(c0, na, 60);
    stop_daemon(d);
    compare(c0, AS_OF, a, NULL);
    ck_assert_int_gt(count_keys("circmon:{*}:m:*"), 500);
    ck_assert_int_eq(count_keys("circmon:{*}:s:*"), 0);
    ck_assert_int_eq(count_keys("circmon:{*}:layout"), N_PARTS);
    redisContext *rc = redis_conn();
    for (int p = 0; p < N_PARTS; p++)
        freeReplyObject(redisCommand(rc, "DEL circmon:{%d}:layout", p));
    redisFree(rc);

    /* the default layout refuses it: exit 1, the partition and the fixes named */
    const char *c1 = write_conf("c1.conf", "lay1", 500, 4);
    const char *log1 = path_in("d1.log");
    d = daemon_start(c1, log1, NULL);
    int st = wait_pid(d, 90);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1,
                  "circmond did not exit 1 on another layout (status %d, %s)", st, log1);
    ck_assert_msg(file_has(log1, "Redis holds its states in one string key per migrant (no "
                                 "layout key), [redis] state_buckets = 256 asks for 256 hash "
                                 "buckets: set state_buckets = 0, or convert with circmonctl "
                                 "migrate-layout"),
                  "no layout error in %s", log1);
    ck_assert_int_eq(count_keys("circmon:{*}:s:*"), 0); /* it wrote no state */

    /* convert, then go on with the rest of the stream */
    char *args[] = {"migrate-layout", "--config", (char *)c1, NULL};
    const char *out = path_in("m.out");
    ck_assert_int_eq(run_bin("circmonctl", args, out, path_in("m.err")), 0);
    ck_assert_msg(file_has(out, "8 partitions converted to 256 state buckets"), "%s", out);
    ck_assert_int_eq(count_keys("circmon:{*}:m:*"), 0);
    const char *c2 = write_conf("c2.conf", "lay2", 500, 4);
    publish(c2, b);
    const char *log2 = path_in("d2.log");
    d = daemon_start(c2, log2, NULL);
    wait_caught_up(c2, n, 60);
    ck_assert(alive(d));
    compare(c2, AS_OF, a, b);
    compare(c2, AS_OF_MID, a, b);
    ck_assert_int_eq(count_keys("circmon:{*}:m:*"), 0);
    ck_assert_int_gt(count_keys("circmon:{*}:s:*"), 8);
    stop_daemon(d);
    ck_assert_msg(!file_has(log2, "does not unpack"), "a moved state is unreadable (%s)", log2);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("e2e_layout");
    TCase *tc = new_case(s, "upgrade", 300);
    tcase_add_test(tc, test_upgrade_from_string_keys);
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
