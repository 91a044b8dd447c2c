/* check_rebuild_cluster.c - a rebuild without downtime on a Redis Cluster: config 1
 * folds prefix old on 3 masters + 3 replicas, `circmond --rebuild` folds prefix new
 * under config 2 while every reader (the HTTP read side, circmonctl under either file)
 * serves old with config 1's settings, `circmonctl rebuild status` and `switch` read
 * and write through the cluster, a read side polled during the switch answers one whole
 * figure set or the other, never a mix; after the switch every reader serves new
 * with config 2's settings, and `circmonctl rebuild delete` removes every key of old from every
 * master, also with a slot of it half moved to another master (ASK/MOVED): then the
 * deletion is not reported as verified until the move is over.
 *
 * Services: the cluster (cm_cluster.h), circmon-broker (cm_svc.h), circmond with
 * [http] on ports below the ephemeral range. Figures are compared with `circmonctl
 * replay` of the same events under the configuration each prefix was folded with;
 * the two sets are checked to differ. Keys are counted with KEYS on each master
 * itself, not through circmon's code. Every wait polls with a deadline. */
#include "cm_e2e.h"

#include "circmon/alias.h"
#include "circmon/cluster_sync.h"

#include "cm_cluster.h"
#include "cm_rebuild.h"

/* The [redis] lines of the cluster: two seeds. */
static char cl_redis[200];

static void rc_setup(void)
{
    svc_dir_make("check_rebuild_cluster");
    cluster_start();
    broker_start(N_PARTS);
    snprintf(cl_redis, sizeof(cl_redis), "cluster = yes\nnodes = 127.0.0.1:%d, 127.0.0.1:%d",
             cl_port[0], cl_port[1]);
    rb_redis = cl_redis;
}

/* Keys of "<prefix>:{*" on the master at port: KEYS on that node alone
 * (exact, unlike SCAN, which may return a key twice; fine for a test). */
static long master_keys(int port, const char *prefix)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "%s:{*", prefix); /* prefixes of this test hold no glob */
    redisReply *r = node_cmd(port, "KEYS", pat, NULL, NULL, NULL, NULL);
    ck_assert_msg(r && r->type == REDIS_REPLY_ARRAY, "%d: KEYS", port);
    long n = (long)r->elements;
    freeReplyObject(r);
    return n;
}

/* Keys of prefix on every master; *on_masters gets how many masters hold some. */
static long cluster_keys(const char *prefix, int *on_masters)
{
    long n = 0;
    int masters = 0;
    *on_masters = 0;
    for (int i = 0; i < CL_N; i++)
        if (is_master(cl_port[i])) {
            long k = master_keys(cl_port[i], prefix);
            n += k;
            *on_masters += k > 0;
            masters++;
        }
    ck_assert_int_eq(masters, 3);
    return n;
}

/* The alias's prefix, read from the master of its slot (NULL: none). */
static char *cl_alias_prefix(void)
{
    int port = slot_owner(cl_port[0], cm_slot_of(ALIAS, strlen(ALIAS)));
    ck_assert_int_gt(port, 0);
    redisReply *r = node_cmd(port, "HGET", ALIAS, "prefix", NULL, NULL, NULL);
    ck_assert_ptr_nonnull(r);
    char *s = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return s;
}

static void cl_wait_progress(const char *conf, int64_t min, double timeout_s)
{
    double end = now_s() + timeout_s;
    while (cl_stored_sum(conf) < min) {
        ck_assert_msg(now_s() < end, "no progress to %" PRId64 " in %.0f s", min, timeout_s);
        nap_ms(5);
    }
}

/* Keys of slot on the node at port that start with pfx. */
static long slot_prefix_keys(int port, int slot, const char *pfx)
{
    char sl[16];
    snprintf(sl, sizeof(sl), "%d", slot);
    redisReply *r = node_cmd(port, "CLUSTER", "GETKEYSINSLOT", sl, "100000", NULL, NULL);
    ck_assert(r && r->type == REDIS_REPLY_ARRAY);
    long n = 0;
    for (size_t i = 0; i < r->elements; i++)
        n += !strncmp(r->element[i]->str, pfx, strlen(pfx));
    freeReplyObject(r);
    return n;
}

/* MIGRATE of every other key of slot starting with pfx from src to dst (the
 * slot MIGRATING on src, IMPORTING on dst); returns the keys moved. */
static long migrate_some(int slot, int src, int dst, const char *pfx)
{
    char sl[16], dp[16];
    snprintf(sl, sizeof(sl), "%d", slot);
    snprintf(dp, sizeof(dp), "%d", dst);
    redisReply *r = node_cmd(src, "CLUSTER", "GETKEYSINSLOT", sl, "100000", NULL, NULL);
    ck_assert(r && r->type == REDIS_REPLY_ARRAY);
    long moved = 0, seen = 0;
    for (size_t i = 0; i < r->elements; i++) {
        if (strncmp(r->element[i]->str, pfx, strlen(pfx)) || seen++ % 2)
            continue;
        const char *argv[] = {"MIGRATE", "127.0.0.1", dp, r->element[i]->str, "0", "5000"};
        redisReply *m = node_cmdv(src, 6, argv);
        ck_assert_msg(m && m->type == REDIS_REPLY_STATUS, "MIGRATE: %s", m ? m->str : "no answer");
        freeReplyObject(m);
        moved++;
    }
    freeReplyObject(r);
    return moved;
}

static void assert_json_eq(json_t *got, json_t *want, const char *what)
{
    ck_assert_msg(got && json_equal(got, want), "%s: other figures", what);
    json_decref(got);
}

START_TEST(test_rebuild_on_cluster)
{
    rc_setup();
    int p1, p2, on;
    const char *c1, *c2, *log1 = path_in("d1.log"), *log2 = path_in("d2.log");

    /* config 1 serves prefix old */
    pid_t d1 = start_http("c1.conf", "old", "", 0, log1, &p1, &c1);
    const char *evA = path_in("a.bin");
    gen_now(evA, 11, 800);
    long nA = count_records(evA);
    publish(c1, evA);
    cl_wait_sum(c1, nA, nA, 60);
    const char *c2pre = conf_write("c2pre.conf", "new", 0, SCHEMES2);
    json_t *j1 = replay(c1, evA, NULL, "rep1.json"), *j2 = replay(c2pre, evA, NULL, "rep2.json");
    ck_assert_msg(!json_equal(j1, j2), "the two configurations give the same figures: the test "
                                       "could not tell the prefixes apart");

    /* begin: the alias (on the master of its slot) names old */
    ck_assert_int_eq(ctl_rebuild("begin", c1, NULL, NULL), 0);
    char *ap = cl_alias_prefix();
    ck_assert_msg(ap && !strcmp(ap, "old"), "alias names %s", ap ? ap : "nothing");
    free(ap);
    wait_http_equals(p1, j1, "before the rebuild");
    ck_assert_int_eq(ctl_rebuild("switch", c2pre, NULL, NULL), 1); /* nothing folded into new */
    ck_assert(file_has(path_in("rebuild.err"), "has not caught up"));
    expect_refused(c1, 1, "is the active prefix"); /* --rebuild read the alias on the cluster */

    /* the rebuild: config 2 into prefix new */
    pid_t d2 = start_http("c2.conf", "new", SCHEMES2, 1, log2, &p2, &c2);
    ck_assert(file_has(log2, "as group g.rebuild"));
    const char *cbad = conf_write("cbad.conf", "new", 0, "[scheme *]\ngrace_days = 5\n");
    expect_refused(cbad, 1, "was begun with other fold settings"); /* its marker, routed */
    /* frozen half done: every reader serves old with config 1's settings */
    cl_wait_progress(c2, 1, 60);
    ck_assert_int_eq(kill(d2, SIGSTOP), 0);
    int64_t half = cl_stored_sum(c2);
    ck_assert_msg(half > 0 && half < nA, "the rebuild was not seen half done (%" PRId64 " of %ld)",
                  half, nA);
    assert_json_eq(http_json(p1, Q_AS_OF), j1, "d1, the rebuild half done");
    assert_json_eq(indicators(c1), j1, "circmonctl indicators (config 1), the rebuild half done");
    assert_json_eq(indicators(c2), j1, "circmonctl indicators (config 2), the rebuild half done");
    ck_assert_int_eq(ctl_rebuild("status", c2, "--format", "json"), 0);
    json_t *st = load_json(path_in("rebuild.out"));
    ck_assert(json_is_false(json_object_get(st, "caught_up")));
    ck_assert_str_eq(json_string_value(json_object_get(st, "active")), "old");
    json_int_t lag = json_integer_value(json_object_get(st, "lag"));
    ck_assert_msg(lag == nA - half, "status: lag %" JSON_INTEGER_FORMAT ", not %" PRId64, lag,
                  nA - half);
    json_decref(st);
    ck_assert_int_eq(ctl_rebuild("switch", c2, NULL, NULL), 1);
    ck_assert_int_eq(kill(d2, SIGCONT), 0);

    cl_wait_sum(c2, nA, nA, 60);
    wait_http_equals(p2, j1, "d2 before the switch"); /* old, with config 1's settings */
    assert_json_eq(http_json(p1, Q_AS_OF), j1, "d1, the rebuild caught up");
    ck_assert_int_eq(ctl_rebuild("status", c2, "--format", "json"), 0);
    st = load_json(path_in("rebuild.out"));
    ck_assert(json_is_true(json_object_get(st, "caught_up")));
    ck_assert_int_eq(json_integer_value(json_object_get(st, "lag")), 0);
    json_decref(st);
    ck_assert_int_eq(ctl_rebuild("switch", cbad, NULL, NULL), 1);
    ck_assert(file_has(path_in("rebuild.err"), "rebuilt with other fold settings"));

    /* the switch, the read side polled meanwhile: each answer one whole set */
    struct poller pl = {.port = p1, .j1 = j1, .j2 = j2};
    snprintf(pl.mix_file, sizeof(pl.mix_file), "%s/mix.json", dir);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, poll_main, &pl), 0);
    double end = now_s() + 10;
    while (pl.n1 < 3 && now_s() < end)
        nap_ms(5);
    ck_assert_int_eq(ctl_rebuild("switch", c2, NULL, NULL), 0);
    end = now_s() + 30;
    while (pl.n2 < 3 && now_s() < end)
        nap_ms(5);
    pl.stop = 1;
    pthread_join(th, NULL);
    ck_assert_msg(pl.nmix == 0, "%ld answers were neither set (first in %s)", pl.nmix,
                  pl.mix_file);
    ck_assert_msg(pl.nback == 0, "the old figures came back %ld times after the new ones",
                  pl.nback);
    ck_assert_int_ge(pl.n1, 3);
    ck_assert_int_ge(pl.n2, 3);
    ck_assert_int_eq(pl.nerr, 0);
    /* every reader serves new with config 2's settings */
    ap = cl_alias_prefix();
    ck_assert_msg(ap && !strcmp(ap, "new"), "alias names %s", ap ? ap : "nothing");
    free(ap);
    wait_http_equals(p1, j2, "d1 after the switch");
    wait_http_equals(p2, j2, "d2 after the switch");
    assert_json_eq(indicators(c1), j2, "circmonctl indicators (config 1) after the switch");
    stop_daemon(d1);
    stop_daemon(d2);
    forget(d1);
    forget(d2);

    /* old is spread over the masters; one of its slots half moved to another
     * master: its keys are on both, and UNLINK meets ASK and MOVED */
    long old_keys = cluster_keys("old", &on), new_keys;
    ck_assert_int_gt(old_keys, 100);
    ck_assert_int_eq(on, 3);
    new_keys = cluster_keys("new", &on);
    ck_assert_int_gt(new_keys, 100);
    int slot = part_slot(0), src = slot_owner(cl_port[0], slot), dst = -1;
    for (int i = 0; i < CL_N && dst < 0; i++)
        if (cl_port[i] != src && is_master(cl_port[i]))
            dst = cl_port[i];
    ck_assert_int_eq(migrate_slot_begin(slot, src, dst, 0), 0);
    long half_old = migrate_some(slot, src, dst, "old:");
    ck_assert_int_gt(half_old, 0);
    ck_assert_int_gt(slot_prefix_keys(src, slot, "old:"), 0);
    ck_assert_int_eq(slot_prefix_keys(dst, slot, "old:"), half_old);
    ck_assert_int_eq(ctl_rebuild("delete", c2, "--prefix", "new"), 1);
    ck_assert(file_has(path_in("rebuild.err"), "the active prefix"));
    ck_assert_int_eq(ctl_rebuild("delete", c2, "--step", "20"), 1);
    ck_assert(file_has(path_in("rebuild.err"), "not verified"));
    ck_assert(file_has(path_in("rebuild.out"), "keys of old deleted"));
    ck_assert_int_eq(cluster_keys("old", &on), 0); /* deleted all the same, on both sides */
    ck_assert_int_eq(cluster_keys("new", &on), new_keys);

    /* the move finished: the deletion verifies, and new is whole */
    migrate_slot_end(slot, src, dst);
    ck_assert_int_eq(slot_owner(cl_port[0], slot), dst);
    ck_assert_int_eq(ctl_rebuild("delete", c2, "--step", "20"), 0);
    ck_assert(file_has(path_in("rebuild.out"), "over 3 nodes"));
    ck_assert_int_eq(cluster_keys("old", &on), 0);
    ck_assert_int_eq(cluster_keys("new", &on), new_keys);
    assert_json_eq(indicators(c1), j2, "circmonctl indicators after the deletion");
    json_decref(j1);
    json_decref(j2);
    svc_dir_remove();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rebuild_cluster");
    TCase *tc = new_case(s, "rebuild", 120);
    tcase_add_test(tc, test_rebuild_on_cluster);
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
