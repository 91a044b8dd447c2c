/* check_alerts_e2e.c - alert rules against a real redis-server: circmonctl alerts reads the stored aggregate and says, per instance, whether the fire condition holds. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "circmon/agg.h"
#include "circmon/names.h"

static char ctl[4096], dir[4200];
static pid_t redis_pid = -1;

static void setup(void)
{
    const char *top = getenv("CM_TOP"), *t = getenv("TMPDIR");
    ck_assert_msg(top && *top, "CM_TOP is not set (the repository top)");
    snprintf(ctl, sizeof ctl, "%s/bin/circmonctl", top);
    ck_assert_msg(access(ctl, X_OK) == 0, "%s is missing: build it first", ctl);
    snprintf(dir, sizeof dir, "%s/check_alerts_e2e.XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Starts redis-server on a unix socket in dir; returns its path once it answers PING. */
static const char *redis_start(void)
{
    static char sock[4300];
    char log[4300];
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    snprintf(log, sizeof log, "%s/redis.log", dir);
    redis_pid = fork();
    ck_assert_int_ge(redis_pid, 0);
    if (redis_pid == 0) {
        if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr))
            _exit(127);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--save", "",
               "--appendonly", "no", "--dir", dir, (char *)NULL);
        _exit(127);
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        redisContext *c = redisConnectUnix(sock);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            int up = r && r->type == REDIS_REPLY_STATUS;
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (up)
                return sock;
        } else if (c) {
            redisFree(c);
        }
        ck_assert_msg(waitpid(redis_pid, NULL, WNOHANG) == 0, "redis-server exited (see %s)", log);
        clock_gettime(CLOCK_MONOTONIC, &t);
        ck_assert_msg(t.tv_sec - t0.tv_sec < 20, "redis-server did not answer on %s", sock);
        struct timespec pause = {0, 10 * 1000 * 1000}; /* polling for readiness */
        nanosleep(&pause, NULL);
    }
}

/* Months since 1970-01 of y-m (INDICATORS.md section 1). */
static int64_t MON(int y, int m) { return (int64_t)(y - 1970) * 12 + (m - 1); }

/* Stores cohort counter ctr of (scheme, month) = v in partition part's aggregate. */
static void put(redisContext *c, int part, const char *scheme, int64_t month, enum cm_ctr ctr,
                int64_t v)
{
    struct cm_names *nm = cm_names_new();
    ck_assert_ptr_nonnull(nm);
    struct cm_agg_key k = {.kind = CM_AK_MONTH, .ctr = (uint8_t)ctr,
                           .scheme = cm_names_intern(nm, scheme, strlen(scheme)), .a = month};
    char f[1024];
    int n = cm_agg_key_format(&k, nm, f, sizeof f);
    ck_assert(n > 0 && (size_t)n <= sizeof f);
    redisReply *r = redisCommand(c, "HINCRBY circmon:{%d}:agg %b %lld", part, f, (size_t)n,
                                 (long long)v);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    cm_names_free(nm);
}

/* Runs circmonctl alerts, parses its JSON output. */
static json_t *alerts(const char *conf, const char *as_of)
{
    char cmd[13000], out[4400];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(cmd, sizeof cmd, "'%s' alerts --config '%s' --as-of %s --format json >'%s'", ctl,
             conf, as_of, out);
    int st = system(cmd);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "failed: %s", cmd);
    json_error_t je;
    json_t *doc = json_load_file(out, 0, &je);
    ck_assert_msg(doc != NULL, "output: %s", je.text);
    return doc;
}

static json_t *find(json_t *doc, const char *alert, const char *scheme)
{
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(doc, "instances"), i, o)
        if (!strcmp(json_string_value(json_object_get(o, "alert")), alert) &&
            !strcmp(json_string_value(json_object_get(o, "scheme")), scheme))
            return o;
    return NULL;
}

START_TEST(test_ctl_fire_condition)
{
    const char *sock = redis_start();
    redisContext *c = redisConnectUnix(sock);
    ck_assert(c && !c->err);
    /* S: 2026-10 40 expected, 1 late; 2026-12 20 expected, 2 in-country; 2026-09
     * (outside a 3-month window as of December 2026) 100 late of 100, in
     * another partition. T: 29 expected, all late (n = min_expected - 1). */
    put(c, 0, "S", MON(2026, 10), CM_C_EXPECTED, 40);
    put(c, 0, "S", MON(2026, 10), CM_C_LATE, 1);
    put(c, 1, "S", MON(2026, 12), CM_C_EXPECTED, 20);
    put(c, 1, "S", MON(2026, 12), CM_C_ICO, 2);
    put(c, 1, "S", MON(2026, 9), CM_C_EXPECTED, 100);
    put(c, 1, "S", MON(2026, 9), CM_C_LATE, 100);
    put(c, 2, "T", MON(2026, 11), CM_C_EXPECTED, 29);
    put(c, 2, "T", MON(2026, 11), CM_C_LATE, 29);
    redisFree(c);

    char conf[4400];
    snprintf(conf, sizeof conf, "%s/c.conf", dir);
    FILE *fp = fopen(conf, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp, "[redis]\nunix_socket = %s\n"
                "[alert over5]\nscheme = *\nindicator = overstay_rate\nabove = 0.05\n"
                "[alert ico]\nscheme = S\nindicator = in_country_overstay_rate\nabove = 0.034\n"
                "min_expected = 60\n"
                "[alert ret]\nscheme = S\nindicator = return_compliance_rate\nbelow = 0.5\n"
                "window_months = 4\n", sock);
    ck_assert_int_eq(fclose(fp), 0);

    json_t *doc = alerts(conf, "2026-12-15");
    /* over5 S: (1 + 2) / 60 = 0.05 >= 0.05, n = 60 >= 30: fires */
    json_t *o = find(doc, "over5", "S");
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "expected_departures")), 60);
    ck_assert(json_is_true(json_object_get(o, "fire")));
    ck_assert(json_real_value(json_object_get(o, "value")) == 3.0 / 60.0);
    /* over5 T: v = 1 but n = 29 < 30: does not fire */
    o = find(doc, "over5", "T");
    ck_assert_ptr_nonnull(o);
    ck_assert(json_is_false(json_object_get(o, "fire")));
    /* ico S: 2 / 60 = 0.0333 < 0.034 */
    o = find(doc, "ico", "S");
    ck_assert_ptr_nonnull(o);
    ck_assert(json_is_false(json_object_get(o, "fire")));
    /* ret S over 4 months (2026-09 joins): in-time 0 / 160 = 0 <= 0.5 */
    o = find(doc, "ret", "S");
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "expected_departures")), 160);
    ck_assert(json_is_true(json_object_get(o, "fire")));
    ck_assert_uint_eq(json_array_size(json_object_get(doc, "instances")), 4);
    json_decref(doc);

    /* As of February 2027 the window 2026-12..2027-02 holds S's 20 only: n < 30 */
    doc = alerts(conf, "2027-02-01");
    o = find(doc, "over5", "S");
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "expected_departures")), 20);
    ck_assert(json_is_false(json_object_get(o, "fire")));
    ck_assert_ptr_null(find(doc, "over5", "T")); /* no expected departure in the window */
    json_decref(doc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alerts_e2e");
    TCase *tc = tcase_create("ctl");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ctl_fire_condition);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
