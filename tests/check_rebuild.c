/* check_rebuild.c - a rebuild without downtime, end to end: a second consumer group
 * folds a new prefix under other settings while the old one is served, one atomic
 * switch of the alias, the old prefix deleted in steps.
 *
 * Services: redis-server on a unix socket and circmon-broker (cm_svc.h);
 * circmond with [http] on ports below the ephemeral range (a taken port: the
 * daemon is stopped and another port tried). Every figure is compared with
 * `circmonctl replay` of the same events under the configuration the prefix
 * was folded with (config 1: grace 0; config 2: other grace days), never with
 * the daemon's own output; the two sets are checked to differ, or the test
 * would prove nothing. Every wait polls with a deadline. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "circmon/alias.h"
#include "circmon/cluster_sync.h"
#include "circmon/config.h"
#include "circmon/purge.h"
#include "cm_e2e.h"

#include "cm_rebuild.h"

/* ------------------------------------------------------------ tests */


START_TEST(test_rebuild_end_to_end)
{
    svc_dir_make("check_rebuild");
    redis_start(0);
    broker_start(N_PARTS);
    int p1, p2, p3;
    const char *c1, *c2, *c3, *log1 = path_in("d1.log"), *log2 = path_in("d2.log");

    /* config 1 serves prefix old */
    pid_t d1 = start_http("c1.conf", "old", "", 0, log1, &p1, &c1);
    const char *evA = path_in("a.bin"), *evB = path_in("b.bin");
    gen_now(evA, 11, 1500);
    long nA = count_records(evA);
    publish(c1, evA);
    wait_caught_up(c1, nA, 120);
    /* config 2's file, written now to compute its replay (its daemon comes later) */
    const char *c2pre = conf_write("c2pre.conf", "new", 0, SCHEMES2);

    json_t *j1 = replay(c1, evA, NULL, "rep1.json"), *j2 = replay(c2pre, evA, NULL, "rep2.json");
    ck_assert_msg(!json_equal(j1, j2), "the two configurations give the same figures: the test "
                                       "could not tell the prefixes apart");
    long want_dl = (long)json_integer_value(
                       json_object_get(json_object_get(j1, "data_quality"), "invalid")) +
                   (long)json_integer_value(
                       json_object_get(json_object_get(j1, "data_quality"), "too_late"));
    ck_assert_int_gt(want_dl, 0);

    /* begin: the alias names old, with config 1's settings; twice is fine */
    ck_assert_int_eq(ctl_rebuild("begin", c1, NULL, NULL), 0);
    ck_assert_int_eq(ctl_rebuild("begin", c1, NULL, NULL), 0);
    char *ap = alias_prefix();
    ck_assert_str_eq(ap, "old");
    free(ap);
    wait_http_equals(p1, j1, "before the rebuild");
    cached_equals_replay(p1, c1, evA, NULL);
    double end = now_s() + 30;
    while (dlq_count() < want_dl) {
        ck_assert_msg(now_s() < end, "the dead letters of stream A did not arrive");
        nap_ms(100);
    }
    long dl_before = dlq_count();
    ck_assert_int_eq(dl_before, want_dl);

    /* nothing folded into new yet: the switch is refused and changes nothing */
    ck_assert_int_eq(ctl_rebuild("switch", c2pre, NULL, NULL), 1);
    ck_assert(file_has(path_in("rebuild.err"), "has not caught up"));
    ap = alias_prefix();
    ck_assert_str_eq(ap, "old");
    free(ap);

    /* a rebuild into the active prefix is refused */
    expect_refused(c1, 1, "is the active prefix");

    /* the rebuild: config 2, prefix new, group g.rebuild */
    pid_t d2 = start_http("c2.conf", "new", SCHEMES2, 1, log2, &p2, &c2);
    ck_assert(file_has(log2, "as group g.rebuild"));
    /* the prefix is being folded with config 2's settings: another rebuild run
     * of it with other settings is refused */
    const char *cbad = conf_write("cbad.conf", "new", 0, "[scheme *]\ngrace_days = 5\n");
    expect_refused(cbad, 1, "was begun with other fold settings");
    /* half done (frozen there by SIGSTOP, so that the readers are asked
     * while new holds part of the stream): every reader serves old */
    wait_progress(c2, 1, 60);
    ck_assert_int_eq(kill(d2, SIGSTOP), 0);
    int64_t half = stored_sum(c2);
    ck_assert_msg(half > 0 && half < nA, "the rebuild was not seen half done (%" PRId64 " of %ld)",
                  half, nA);
    {
        json_t *h1 = http_json(p1, Q_AS_OF), *i1 = indicators(c1), *i2 = indicators(c2);
        ck_assert_msg(h1 && json_equal(h1, j1), "d1 served other figures, the rebuild half done");
        ck_assert_msg(json_equal(i1, j1) && json_equal(i2, j1),
                      "circmonctl indicators, the rebuild half done");
        json_decref(h1);
        json_decref(i1);
        json_decref(i2);
    }
    ck_assert_int_eq(kill(d2, SIGCONT), 0);
    /* while it runs every reader serves old with config 1's settings: d1,
     * d2 (whose own settings are config 2's) and circmonctl under either file */
    int64_t s;
    long rounds = 0;
    end = now_s() + 120;
    do {
        s = stored_sum(c2);
        json_t *h1 = http_json(p1, Q_AS_OF), *h2 = http_json(p2, Q_AS_OF);
        json_t *i1 = indicators(c1);
        ck_assert_msg(h1 && json_equal(h1, j1), "d1 served other figures during the rebuild");
        ck_assert_msg(!h2 || json_equal(h2, j1), "d2 served other figures during the rebuild");
        ck_assert_msg(json_equal(i1, j1), "circmonctl indicators (config 1) during the rebuild");
        json_t *i2 = indicators(c2);
        ck_assert_msg(json_equal(i2, j1), "circmonctl indicators (config 2) during the rebuild");
        json_decref(h1);
        if (h2)
            json_decref(h2);
        json_decref(i1);
        json_decref(i2);
        rounds++;
        ck_assert_msg(now_s() < end, "the rebuild did not catch up: %" PRId64 " of %ld", s, nA);
    } while (s != nA);
    ck_assert_int_ge(rounds, 1);
    wait_http_equals(p2, j1, "d2 before the switch");
    cached_equals_replay(p2, c1, evA, NULL); /* old, with config 1's settings */
    /* the rebuild wrote no dead letter */
    ck_assert_int_eq(dlq_count(), dl_before);
    ck_assert_int_eq(ctl_rebuild("status", c2, "--format", "json"), 0);
    json_t *st = load_json(path_in("rebuild.out"));
    ck_assert(json_is_true(json_object_get(st, "caught_up")));
    ck_assert_str_eq(json_string_value(json_object_get(st, "active")), "old");
    json_decref(st);

    /* a switch with settings other than the rebuild's is refused */
    ck_assert_int_eq(ctl_rebuild("switch", cbad, NULL, NULL), 1);
    ck_assert(file_has(path_in("rebuild.err"), "rebuilt with other fold settings"));

    /* the switch, polled meanwhile: each answer is one whole set, never a mix */
    struct poller pl = {.port = p1, .j1 = j1, .j2 = j2};
    snprintf(pl.mix_file, sizeof(pl.mix_file), "%s/mix.json", dir);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, poll_main, &pl), 0);
    end = now_s() + 10;
    while (pl.n1 < 5 && now_s() < end)
        nap_ms(5);
    ck_assert_int_eq(ctl_rebuild("switch", c2, NULL, NULL), 0);
    end = now_s() + 30;
    while (pl.n2 < 5 && now_s() < end)
        nap_ms(5);
    pl.stop = 1;
    pthread_join(th, NULL);
    ck_assert_msg(pl.nmix == 0, "%ld answers were neither set (first in %s)", pl.nmix,
                  pl.mix_file);
    ck_assert_msg(pl.nback == 0, "the old figures came back %ld times after the new ones",
                  pl.nback);
    ck_assert_int_ge(pl.n1, 5);
    ck_assert_int_ge(pl.n2, 5);
    ck_assert_int_eq(pl.nerr, 0);

    /* after the switch: every reader serves new with config 2's settings */
    json_t *i1 = indicators(c1);
    ck_assert_msg(json_equal(i1, j2), "circmonctl indicators (config 1) after the switch");
    json_decref(i1);
    wait_http_equals(p2, j2, "d2 after the switch");
    wait_http_equals(p1, j2, "d1 after the switch");
    cached_equals_replay(p1, c2pre, evA, NULL); /* new, with config 2's settings */
    json_t *hs = http_json(p1, "/v1/status");
    ck_assert_ptr_nonnull(hs);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(hs, "figures"), "prefix")),
                     "new");
    json_decref(hs);
    json_t *sch = http_json(p1, "/v1/schemes");
    ck_assert_ptr_nonnull(sch);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(sch, "defaults"), "grace_days")), 21);
    json_decref(sch);
    char *met = http_body(p1, "/metrics");
    ck_assert_ptr_nonnull(met);
    ck_assert_ptr_nonnull(strstr(met, "circmon_indicators_prefix{prefix=\"new\"} 1"));
    free(met);
    ck_assert(file_has(log2, "names this rebuild run's prefix new now"));
    ck_assert(file_has(log1, "not this daemon's key_prefix old"));
    /* a normal daemon on the active prefix with other settings is refused */
    const char *c1new = conf_write("c1new.conf", "new", 0, "");
    expect_refused(c1new, 0, "folded with other settings");

    /* the daemons move: both stop, config 2 runs normally on new */
    stop_daemon(d1);
    stop_daemon(d2);
    forget(d1);
    forget(d2);
    gen_now(evB, 12, 300);
    long nB = count_records(evB);
    publish(c2, evB);
    pid_t d3 = start_http("c3.conf", "new", SCHEMES2, 0, path_in("d3.log"), &p3, &c3);
    wait_caught_up(c3, nA + nB, 120);
    json_t *j2b = replay(c3, evA, evB, "rep2b.json");
    wait_http_equals(p3, j2b, "d3 on new");
    /* dead letters: A's were on the topic (not sent again), B's once each */
    long want_b = (long)json_integer_value(
                      json_object_get(json_object_get(j2b, "data_quality"), "invalid")) +
                  (long)json_integer_value(
                      json_object_get(json_object_get(j2b, "data_quality"), "too_late"));
    end = now_s() + 30;
    while (dlq_count() < want_b) {
        ck_assert_msg(now_s() < end, "the dead letters of stream B did not arrive");
        nap_ms(100);
    }
    ck_assert_int_eq(read_dlq(), want_b); /* each source offset once */

    /* the old prefix goes, in steps; new stays whole */
    long old_keys = keys_of("old"), new_keys = keys_of("new");
    ck_assert_int_gt(old_keys, 100);
    ck_assert_int_eq(ctl_rebuild("delete", c3, "--prefix", "new"), 1);
    ck_assert(file_has(path_in("rebuild.err"), "the active prefix"));
    ck_assert_int_eq(ctl_rebuild("delete", c3, "--step", "50"), 0);
    ck_assert(file_has(path_in("rebuild.out"), "keys of old deleted"));
    ck_assert_int_eq(keys_of("old"), 0);
    ck_assert_int_eq(keys_of("new"), new_keys);
    json_t *i3 = indicators(c1);
    ck_assert_msg(json_equal(i3, j2b), "indicators after the deletion");
    json_decref(i3);
    ck_assert_int_eq(ctl_rebuild("delete", c3, NULL, NULL), 0); /* nothing left: fine */
    stop_daemon(d3);
    json_decref(j1);
    json_decref(j2);
    json_decref(j2b);
    svc_dir_remove();
}
END_TEST

/* What a reader accepts from the alias key, and the switch's compare-and-set. */
START_TEST(test_alias_checked)
{
    svc_dir_make("check_rebuild");
    redis_start(0);
    struct cm_config cfg = {0};
    char err[512];
    ck_assert_int_eq(cm_config_defaults(&cfg), 0);
    free(cfg.redis_unix_socket);
    cfg.redis_unix_socket = strdup(redis_sock);
    cfg.redis_alias = strdup(ALIAS);
    redisContext *c = cm_store_connect_sync(&cfg, err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    struct cm_rsync *rs = cm_rsync_open(&cfg, err, sizeof(err));
    ck_assert_msg(rs != NULL, "%s", err);
    struct cm_alias al;

    /* absent: the configuration's own */
    ck_assert_int_eq(cm_alias_read_sync(rs, &cfg, &al, err, sizeof(err)), 0);
    ck_assert_int_eq(al.from_alias, 0);
    ck_assert_str_eq(al.prefix, "circmon");
    cm_alias_free(&al);

    /* a switch from the wrong prefix is refused and tells what it found */
    struct cm_config c2 = {0};
    ck_assert_int_eq(cm_config_defaults(&c2), 0);
    c2.scheme_default.grace_days = 9;
    c2.schemes = calloc(1, sizeof(*c2.schemes));
    c2.n_schemes = 1;
    strcpy(c2.schemes[0].id, "SAWP-ES");
    c2.schemes[0].grace_days = 4;
    c2.schemes[0].stay_n = 90;
    c2.schemes[0].stay_w = 180;
    char *set = cm_alias_settings_format(&c2), *cur = NULL;
    ck_assert_ptr_nonnull(set);
    ck_assert_int_eq(cm_alias_switch_sync(rs, &cfg, "", "p1", set, 100, &cur, err, sizeof(err)), 1);
    ck_assert_int_eq(cm_alias_switch_sync(rs, &cfg, "", "p2", set, 101, &cur, err, sizeof(err)), 0);
    ck_assert_str_eq(cur, "p1");
    free(cur);
    ck_assert_int_eq(cm_alias_switch_sync(rs, &cfg, "p1", "p2", set, 102, &cur, err, sizeof(err)),
                     1);
    ck_assert_int_eq(cm_alias_read_sync(rs, &cfg, &al, err, sizeof(err)), 0);
    ck_assert_int_eq(al.from_alias, 1);
    ck_assert_str_eq(al.prefix, "p2");
    ck_assert_str_eq(al.previous, "p1");
    ck_assert_int_eq(al.since, 102);
    ck_assert(cm_alias_settings_equal(&al.fold, &c2));
    ck_assert(!cm_alias_settings_equal(&al.fold, &cfg));
    c2.reorder_window_days = 31; /* the window counts too */
    ck_assert(!cm_alias_settings_equal(&al.fold, &c2));
    c2.reorder_window_days = 30;
    ck_assert_int_eq(cm_config_scheme(&al.fold, "SAWP-ES")->grace_days, 4);
    ck_assert_int_eq(cm_config_scheme(&al.fold, "other")->grace_days, 9);
    cm_alias_free(&al);

    /* nationality_cohorts is a fold setting: absent from the text for no (the
     * text of earlier versions), true for yes, and settings that differ in it
     * are not equal */
    ck_assert_ptr_null(strstr(set, "nationality_cohorts"));
    ck_assert_int_eq(al.fold.nationality_cohorts, 0);
    c2.nationality_cohorts = 1;
    ck_assert(!cm_alias_settings_equal(&c2, &cfg));
    {
        char *sy = cm_alias_settings_format(&c2);
        struct cm_config back;
        ck_assert_ptr_nonnull(sy);
        ck_assert_msg(strstr(sy, ",\"nationality_cohorts\":true}"), "%s", sy);
        ck_assert_int_eq(cm_alias_settings_parse(sy, strlen(sy), &back, err, sizeof(err)), 0);
        ck_assert_int_eq(back.nationality_cohorts, 1);
        ck_assert(cm_alias_settings_equal(&back, &c2));
        c2.nationality_cohorts = 0;
        ck_assert(!cm_alias_settings_equal(&back, &c2));
        cm_config_free(&back);
        free(sy);
    }

    /* malformed values are refused, naming what is wrong */
    static const char *const bad[][3] = {
        {"prefix", "a{b", "not a key prefix"},
        {"prefix", "", "not a key prefix"},
        {"since", "-1", "since"},
        {"since", "x", "since"},
        {"settings", "{", "not JSON"},
        {"settings", "{\"v\":2,\"window\":[30,256],\"default\":[0,0,0],\"schemes\":[]}",
         "settings"},
        {"settings", "{\"v\":1,\"default\":[0,0,0],\"schemes\":[]}", "settings"},
        {"settings", "{\"v\":1,\"window\":[30,0],\"default\":[0,0,0],\"schemes\":[]}",
         "window"},
        {"settings", "{\"v\":1,\"window\":[3651,256],\"default\":[0,0,0],\"schemes\":[]}",
         "window"},
        {"settings", "{\"v\":1,\"window\":[30,256],\"default\":[3651,0,0],\"schemes\":[]}",
         "default"},
        {"settings", "{\"v\":1,\"window\":[30,256],\"default\":[0,90,0],\"schemes\":[]}",
         "default"},
        {"settings",
         "{\"v\":1,\"window\":[30,256],\"default\":[0,0,0],\"schemes\":[[\"a]\",1,0,0]]}",
         "scheme 0"},
        {"settings",
         "{\"v\":1,\"window\":[30,256],\"default\":[0,0,0],\"schemes\":[[\"a\",1,0,0],"
         "[\"a\",2,0,0]]}",
         "twice"},
        {"settings", "{\"v\":1,\"window\":[30,256],\"default\":[0,0,0],\"schemes\":[],"
                     "\"nationality_cohorts\":false}", "nationality_cohorts"},
        {"settings", "{\"v\":1,\"window\":[30,256],\"default\":[0,0,0],\"schemes\":[],"
                     "\"nationality_cohorts\":1}", "nationality_cohorts"},
        {"settings", "{\"v\":1,\"window\":[30,256],\"default\":[0,0,0],\"schemes\":[],"
                     "\"nat\":true}", "settings"},
        {"other", "1", "unknown field"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = redisCommand(c, "HSET " ALIAS " prefix p2 settings %s previous p1 since 1",
                                     set);
        freeReplyObject(r);
        r = redisCommand(c, "HSET " ALIAS " %s %s", bad[i][0], bad[i][1]);
        ck_assert(r && r->type == REDIS_REPLY_INTEGER);
        freeReplyObject(r);
        err[0] = 0;
        ck_assert_msg(cm_alias_read_sync(rs, &cfg, &al, err, sizeof(err)) == -EPROTO,
                      "%s = %s accepted", bad[i][0], bad[i][1]);
        ck_assert_msg(strstr(err, bad[i][2]) && strstr(err, ALIAS), "%s = %s: message '%s'",
                      bad[i][0], bad[i][1], err);
        r = redisCommand(c, "HDEL " ALIAS " other");
        freeReplyObject(r);
    }
    redisReply *r = redisCommand(c, "SET " ALIAS " x");
    freeReplyObject(r);
    ck_assert_int_eq(cm_alias_read_sync(rs, &cfg, &al, err, sizeof(err)), -EPROTO);
    free(set);
    cm_rsync_close(rs);
    redisFree(c);
    cm_config_free(&c2);
    cm_config_free(&cfg);
    svc_dir_remove();
}
END_TEST

/* The purge deletes every key of its prefix and nothing else. */
START_TEST(test_purge_only_its_prefix)
{
    svc_dir_make("check_rebuild");
    redis_start(0);
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    static const char *const keep[] = {"p:x:{0}:pos", "pp:{0}:pos", "p:active", "p", "p:", "q:{p}",
                                       "a*b:{1}:pos"};
    for (int part = 0; part < 16; part++)
        for (int k = 0; k < 40; k++) {
            redisReply *r = redisCommand(c, "SET p:{%d}:m:%d v", part, k);
            freeReplyObject(r);
        }
    redisReply *r = redisCommand(c, "SADD p:{alerts}:instances a");
    freeReplyObject(r);
    r = redisCommand(c, "HSET p:{alert:00ff}:st state ok");
    freeReplyObject(r);
    r = redisCommand(c, "SET a?b:{1}:pos 1"); /* another prefix that a glob 'a*b' would catch */
    freeReplyObject(r);
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        r = redisCommand(c, "SET %s 1", keep[i]);
        freeReplyObject(r);
    }
    char *pat = cm_purge_pattern("p"), cursor[32] = "0", err[256];
    size_t total = 0, steps = 0, found, del, left;
    ck_assert_int_eq(cm_purge_step(c, NULL, pat, cursor, 0, &found, &del, err, sizeof(err)), -EINVAL);
    do {
        ck_assert_int_eq(cm_purge_step(c, NULL, pat, cursor, 25, &found, &del, err, sizeof(err)), 0);
        ck_assert_int_le(found, 25 * 4); /* COUNT is a hint; bounded in practice */
        total += del;
        steps++;
    } while (strcmp(cursor, "0"));
    ck_assert_int_eq(total, 16 * 40 + 2);
    ck_assert_int_gt(steps, 1);
    ck_assert_int_eq(cm_purge_count(c, pat, &left, err, sizeof(err)), 0);
    ck_assert_int_eq(left, 0);
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        r = redisCommand(c, "EXISTS %s", keep[i]);
        ck_assert_int_eq(r->integer, 1);
        freeReplyObject(r);
    }
    free(pat);
    /* a prefix with glob characters matches itself only */
    pat = cm_purge_pattern("a*b");
    strcpy(cursor, "0");
    do
        ck_assert_int_eq(cm_purge_step(c, NULL, pat, cursor, 100, &found, &del, err, sizeof(err)), 0);
    while (strcmp(cursor, "0"));
    r = redisCommand(c, "EXISTS a?b:{1}:pos a*b:{1}:pos");
    ck_assert_int_eq(r->integer, 1);
    freeReplyObject(r);
    free(pat);
    /* the whole deletion through cm_rsync on one Redis: one master, one pass, verified */
    for (int k = 0; k < 300; k++) {
        r = redisCommand(c, "SET p:{%d}:m:%d v", k % 7, k);
        freeReplyObject(r);
    }
    struct cm_config cfg = {0};
    ck_assert_int_eq(cm_config_defaults(&cfg), 0);
    free(cfg.redis_unix_socket);
    cfg.redis_unix_socket = strdup(redis_sock);
    struct cm_rsync *rs = cm_rsync_open(&cfg, err, sizeof(err));
    ck_assert_msg(rs != NULL, "%s", err);
    ck_assert_int_eq(cm_rsync_n_masters(rs), 1);
    pat = cm_purge_pattern("p");
    struct cm_purge_result res;
    ck_assert_int_eq(cm_purge_prefix(rs, pat, 0, 0, &res, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(cm_purge_prefix(rs, pat, 40, 1, &res, err, sizeof(err)), 0);
    ck_assert_int_eq(res.deleted, 300);
    ck_assert_int_eq(res.passes, 1);
    ck_assert_int_eq(res.left, 0);
    ck_assert_int_eq(res.resharding, 0);
    ck_assert_int_gt(res.steps, 1);
    for (size_t i = 0; i + 1 < sizeof(keep) / sizeof(keep[0]); i++) { /* a*b's went above */
        r = redisCommand(c, "EXISTS %s", keep[i]);
        ck_assert_int_eq(r->integer, 1);
        freeReplyObject(r);
    }
    free(pat);
    cm_rsync_close(rs);
    cm_config_free(&cfg);
    redisFree(c);
    svc_dir_remove();
}
END_TEST

/* [redis] alias in the configuration, and what the commands refuse before
 * touching anything. */
START_TEST(test_config_and_usage)
{
    svc_dir_make("check_rebuild");
    struct cm_config cfg = {0};
    char err[512];
    static const char *const vals[][2] = {
        {"alias = a{b\n", "[redis] alias: must not contain braces"},
        {"alias = a b\n", "[redis] alias: must not contain braces"},
        {"alias = x\nalias = y\n", "alias"},
    };
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        const char *p = path_in("bad.conf");
        FILE *fp = fopen(p, "w");
        ck_assert_ptr_nonnull(fp);
        fprintf(fp, "[redis]\n%s", vals[i][0]);
        fclose(fp);
        ck_assert_int_lt(cm_config_load(&cfg, p, err, sizeof(err)), 0);
        ck_assert_msg(strstr(err, vals[i][1]) && strstr(err, "bad.conf:"), "'%s': %s",
                      vals[i][0], err);
    }
    const char *p = path_in("ok.conf");
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp, "[redis]\nunix_socket = %s/none.sock\nalias = circmon:active\n", dir);
    fclose(fp);
    ck_assert_msg(cm_config_load(&cfg, p, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(cfg.redis_alias, "circmon:active");
    cm_config_free(&cfg);
    const char *pn = path_in("none.conf");
    fp = fopen(pn, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp, "[redis]\nalias =\n");
    fclose(fp);
    ck_assert_msg(cm_config_load(&cfg, pn, err, sizeof(err)) == 0, "%s", err);
    ck_assert_ptr_null(cfg.redis_alias);
    cm_config_free(&cfg);

    /* usage errors: exit 2, before any connection */
    static const char *const usage[][4] = {
        {"rebuild", NULL, NULL, NULL},
        {"rebuild", "undo", NULL, NULL},
        {"rebuild", "delete", "--max-lag", "3"},
        {"rebuild", "switch", "--step", "0"},
        {"rebuild", "status", "--prefix", "a{"},
        {"rebuild", "switch", "--format", "json"},
    };
    for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
        char *a[8] = {0};
        int n = 0;
        for (int k = 0; k < 4 && usage[i][k]; k++)
            a[n++] = (char *)usage[i][k];
        a[n++] = "--config";
        a[n++] = (char *)p;
        ck_assert_msg(run_bin("circmonctl", a, NULL, path_in("usage.err")) == 2,
                      "case %zu: not a usage error", i);
    }
    /* without an alias: the rebuild commands and circmond --rebuild refuse */
    char *a[] = {"rebuild", "status", "--config", (char *)pn, NULL};
    ck_assert_int_eq(run_bin("circmonctl", a, NULL, path_in("noalias.err")), 1);
    ck_assert(file_has(path_in("noalias.err"), "[redis] alias is not set"));
    char path[600];
    cm_bin_path(path, sizeof(path), "circmond");
    char *argv[] = {path, "--config", (char *)pn, "--rebuild", NULL};
    pid_t r = spawn(argv, NULL, path_in("noalias.log"), NULL, NULL);
    int st = wait_pid(r, 30);
    forget(r);
    ck_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1);
    ck_assert(file_has(path_in("noalias.log"), "--rebuild needs [redis] alias"));
    svc_dir_remove();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rebuild");
    struct {
        const char *name;
        const TTest *t;
        int timeout;
    } cases[] = {
        {"end_to_end", test_rebuild_end_to_end, 400},
        {"alias_checked", test_alias_checked, 60},
        {"purge_only_its_prefix", test_purge_only_its_prefix, 60},
        {"config_and_usage", test_config_and_usage, 60},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, cases[i].timeout);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
