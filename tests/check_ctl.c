/* check_ctl.c - circmonctl's command line: the options every subcommand shares,
 * the contract's range for TIME, and errors that say what went wrong. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "circmon/decimal.h"
#include "cm_svc.h"

static char ctl[4096];

static void setup(void)
{
    svc_bin_needed("circmonctl", ctl, sizeof ctl);
    svc_dir_make("check_ctl");
}

static void teardown(void)
{
    svc_dir_remove();
}

/* Runs circmonctl with args, stdout and stderr to files; returns the exit
 * status and leaves stderr in err (cap bytes). */
static int run(const char *args, char *err, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s/out' 2>'%s/err'", ctl, args, dir, dir);
    int st = system(cmd);
    ck_assert_msg(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
    snprintf(cmd, sizeof cmd, "%s/err", dir);
    FILE *fp = fopen(cmd, "r");
    ck_assert_ptr_nonnull(fp);
    size_t n = fread(err, 1, cap - 1, fp);
    err[n] = 0;
    fclose(fp);
    return WEXITSTATUS(st);
}

static const char *write_conf(const char *body)
{
    static char path[300];
    snprintf(path, sizeof path, "%s/c.conf", dir);
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(body, fp);
    ck_assert_int_eq(fclose(fp), 0);
    return path;
}

START_TEST(test_as_of_range)
{
    /* TIME outside [0, 253402300799] is a usage error in every command that
     * takes it (INDICATORS.md section 2: the contract's instants) */
    static const char *const bad[] = {"-1", "253402300800", "9223372036854775807",
                                      "-9223372036854775808", "1969-12-31T23:59:59Z",
                                      "0001-01-01"};
    static const char *const good[] = {"0", "253402300799", "9999-12-31T23:59:59Z",
                                       "1970-01-01"};
    char err[8192], args[512];
    const char *conf = write_conf("[redis]\nunix_socket = /nonexistent/redis.sock\n");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "replay --as-of %s /dev/null", bad[i]);
        ck_assert_msg(run(args, err, sizeof err) == 2, "%s: %s", args, err);
        ck_assert_msg(strstr(err, "--as-of") && strstr(err, "253402300799") &&
                          strstr(err, "usage: circmonctl replay"),
                      "%s: %s", args, err);
        snprintf(args, sizeof args, "indicators --config '%s' --as-of %s", conf, bad[i]);
        ck_assert_msg(run(args, err, sizeof err) == 2, "%s: %s", args, err);
        ck_assert_msg(strstr(err, "--as-of") && strstr(err, "253402300799"), "%s: %s", args, err);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(args, sizeof args, "replay --as-of %s /dev/null", good[i]);
        ck_assert_msg(run(args, err, sizeof err) == 0, "%s: %s", args, err);
        /* past the options: fails on the missing Redis, not on TIME */
        snprintf(args, sizeof args, "indicators --config '%s' --as-of %s", conf, good[i]);
        ck_assert_msg(run(args, err, sizeof err) == 1, "%s: %s", args, err);
        ck_assert_msg(strstr(err, "/nonexistent/redis.sock") != NULL, "%s: %s", args, err);
    }
}
END_TEST

START_TEST(test_shared_usage)
{
    /* every subcommand: --help on stdout with status 0; a usage error says
     * what is wrong and exits 2 */
    static const char *const cmds[] = {"replay", "indicators", "status", "publish"};
    char err[8192], args[256];
    for (size_t i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        ck_assert_int_eq(run(args, err, sizeof err), 0);
        snprintf(args, sizeof args, "%s --bogus", cmds[i]);
        ck_assert_int_eq(run(args, err, sizeof err), 2);
        ck_assert_msg(strstr(err, "unknown option '--bogus'"), "%s: %s", args, err);
        snprintf(args, sizeof args, "%s --config", cmds[i]);
        ck_assert_int_eq(run(args, err, sizeof err), 2);
        ck_assert_msg(strstr(err, "--config needs a value"), "%s: %s", args, err);
    }
    ck_assert_int_eq(run("replay --as-of 0 --format yaml /dev/null", err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "'yaml'"));
    ck_assert_int_eq(run("replay /dev/null", err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "--as-of is required"));
    ck_assert_int_eq(run("replay --as-of 0", err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "no event FILE given"));
    ck_assert_int_eq(run("indicators", err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "--config is required"));
    ck_assert_int_eq(run("status --config x extra", err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "unexpected argument 'extra'"));
    ck_assert_int_eq(run("publish --config x --topic '' f", err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "--topic: empty name"));
    ck_assert_int_eq(run("status --as-of 0 --config x", err, sizeof err), 2); /* no TIME there */
    /* --rate: publish only, an integer in 1..100000000 */
    static const char *const bad_rates[] = {"0", "-5", "1.5", "abc", "100000001", "''"};
    for (size_t i = 0; i < sizeof bad_rates / sizeof bad_rates[0]; i++) {
        snprintf(args, sizeof args, "publish --config x --rate %s f", bad_rates[i]);
        ck_assert_msg(run(args, err, sizeof err) == 2, "%s: %s", args, err);
        ck_assert_msg(strstr(err, "--rate: ") && strstr(err, "1..100000000"), "%s: %s", args, err);
    }
    /* a good rate goes on to the configuration, which does not exist */
    ck_assert_int_eq(run("publish --config /nonexistent/c.conf --rate 100000000 f", err, sizeof err), 1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/c.conf"));
    ck_assert_int_eq(run("status --config x --rate 5", err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "unknown option '--rate'"));
}
END_TEST

START_TEST(test_indicators_names_the_refused_key)
{
    /* a scheme id that is not UTF-8 in Redis (written before the validation
     * of step 1, or by hand): jansson refuses it as a key, and circmonctl
     * says so instead of "out of memory" */
    redis_start(0);
    const char *sock = redis_sock;
    redisContext *c = redisConnectUnix(sock);
    ck_assert(c && !c->err);
    static const char field[] = "r:S\xe9JOUR";
    redisReply *r = redisCommand(c, "HSET circmon:{3}:agg %b 2", field, sizeof field - 1);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    redisFree(c);
    char conf_body[300], err[8192], args[512];
    snprintf(conf_body, sizeof conf_body, "[redis]\nunix_socket = %s\n", sock);
    const char *conf = write_conf(conf_body);
    snprintf(args, sizeof args, "indicators --config '%s' --as-of 2025-01-01", conf);
    ck_assert_int_eq(run(args, err, sizeof err), 1);
    ck_assert_msg(strstr(err, "\"S\\xe9JOUR\"") && strstr(err, "not valid UTF-8") &&
                      !strstr(err, "out of memory"),
                  "%s", err);
}
END_TEST

START_TEST(test_decimal)
{
    /* the one decimal reader of TIME and of circmon-gen's numbers: digits
     * only, overflow refused */
    uint64_t u = 7;
    int64_t i = 7;
#define U(s, max) cm_decimal_u64((s), strlen(s), (max), &u)
#define I(s) cm_decimal_i64((s), strlen(s), &i)
    ck_assert(U("0", 0) == 0 && u == 0);
    ck_assert(U("007", 10) == 0 && u == 7);
    ck_assert(U("18446744073709551615", UINT64_MAX) == 0 && u == UINT64_MAX);
    ck_assert_int_eq(U("18446744073709551616", UINT64_MAX), -EINVAL);
    ck_assert_int_eq(U("99999999999999999999999", UINT64_MAX), -EINVAL);
    ck_assert(U("50", 50) == 0 && u == 50);
    ck_assert_int_eq(U("51", 50), -EINVAL);
    ck_assert_int_eq(U("9", 5), -EINVAL);
    static const char *const bad[] = {"", "-", "+1", " 1", "1 ", "1x", "0x10", "1e3", "--1", "-1"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        u = 7;
        ck_assert_msg(U(bad[k], UINT64_MAX) == -EINVAL && u == 7, "'%s'", bad[k]);
    }
    ck_assert(I("-9223372036854775808") == 0 && i == INT64_MIN);
    ck_assert(I("9223372036854775807") == 0 && i == INT64_MAX);
    ck_assert(I("-0") == 0 && i == 0);
    ck_assert(I("-1") == 0 && i == -1);
    ck_assert_int_eq(I("-9223372036854775809"), -EINVAL);
    ck_assert_int_eq(I("9223372036854775808"), -EINVAL);
    ck_assert_int_eq(I("-"), -EINVAL);
    ck_assert_int_eq(I("+5"), -EINVAL);
    ck_assert_int_eq(cm_decimal_u64("12", 1, 100, &u), 0); /* len bytes only */
    ck_assert_uint_eq(u, 1);
#undef U
#undef I
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ctl");
    TCase *tc = tcase_create("ctl");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_as_of_range);
    tcase_add_test(tc, test_shared_usage);
    tcase_add_test(tc, test_indicators_names_the_refused_key);
    tcase_add_test(tc, test_decimal);
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
