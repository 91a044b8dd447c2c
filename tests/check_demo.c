/* check_demo.c - the README's first command: make demo runs end to end and agrees with replay.
 *
 * Runs tools/demo.sh (what `make demo` runs) on a small stream: it starts its
 * own redis-server and circmon-broker, publishes, runs circmond until caught
 * up, compares the figures read from Redis with circmonctl replay's, and
 * stops what it started (its own cleanup, also on failure). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *top(void)
{
    const char *t = getenv("CM_TOP");
    return t && *t ? t : ".";
}

START_TEST(test_demo_end_to_end)
{
    const char *tmp = getenv("TMPDIR");
    char out[512], cmd[1600];
    snprintf(out, sizeof(out), "%s/check_demo.%d.out", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && MIGRANTS=2000 PARTITIONS=8 timeout -k 10 240 bash tools/demo.sh "
             ">'%s' 2>&1 </dev/null",
             top(), out);
    int st = system(cmd);
    FILE *fp = fopen(out, "r");
    ck_assert_msg(fp != NULL, "no output of the demo (%s)", out);
    char line[4096];
    int equal = 0, url = 0;
    while (fgets(line, sizeof(line), fp)) {
        equal |= strstr(line, "equal circmonctl replay's: yes") != NULL;
        url |= strstr(line, "HTTP endpoint: http://127.0.0.1:") != NULL;
    }
    fclose(fp);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "the demo failed (status %d): see %s", st, out);
    ck_assert_msg(equal, "the demo did not find Redis equal to replay: see %s", out);
    ck_assert_msg(url, "the demo did not print its endpoint's URL: see %s", out);
    remove(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("demo");
    TCase *tc = tcase_create("demo");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_demo_end_to_end);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
