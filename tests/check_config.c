/* check_config.c - the configuration file: defaults, every key, scheme lookups, errors. */
#include "circmon/config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[4096];
static char conf_path[4200];
static struct cm_config cfg;
static char err[512];

static void setup(void) {
    const char *base = getenv("TMPDIR");

    snprintf(tmpdir, sizeof tmpdir, "%s/cm-config-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    memset(&cfg, 0, sizeof cfg);
    err[0] = '\0';
}

static void teardown(void) {
    char cmd[4300];

    cm_config_free(&cfg);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Writes text to a new file in tmpdir (mkstemp) and returns its path. */
static const char *write_file(const char *name, const char *text) {
    static char path[4300];
    size_t n = strlen(text);
    int fd;

    snprintf(path, sizeof path, "%s/%s-XXXXXX", tmpdir, name);
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static int load(const char *text) {
    snprintf(conf_path, sizeof conf_path, "%s", write_file("circmond.conf", text));
    return cm_config_load(&cfg, conf_path, err, sizeof err);
}

/* The error message, with the temp path replaced by "F". */
static const char *msg(void) {
    static char out[600];
    size_t pl = strlen(conf_path);

    if (strncmp(err, conf_path, pl) == 0)
        snprintf(out, sizeof out, "F%s", err + pl);
    else
        snprintf(out, sizeof out, "%s", err);
    return out;
}

static void assert_zeroed(void) {
    ck_assert_ptr_null(cfg.path);
    ck_assert_ptr_null(cfg.brokers);
    ck_assert_ptr_null(cfg.schemes);
    ck_assert_uint_eq(cfg.n_schemes, 0);
    ck_assert_uint_eq(cfg.n_rdkafka, 0);
}

#define ASSERT_ERR(text, code, expected)                                                   \
    do {                                                                                   \
        ck_assert_int_eq(load(text), (code));                                              \
        ck_assert_str_eq(msg(), (expected));                                               \
        assert_zeroed();                                                                   \
    } while (0)

/* ---- defaults ---------------------------------------------------------- */

START_TEST(test_builtin_defaults) {
    ck_assert_int_eq(cm_config_defaults(&cfg), 0);
    ck_assert_ptr_null(cfg.path);
    ck_assert_int_eq(cfg.reorder_window_days, 30);
    ck_assert_int_eq(cfg.max_window_events, 256);
    ck_assert_int_eq(cfg.batch_size, 10000);
    ck_assert_int_eq(cfg.max_in_flight, 8);
    ck_assert_int_eq(cfg.batch_linger_ms, 20);
    ck_assert_str_eq(cfg.log_level, "info");
    ck_assert_int_eq(cfg.nationality_cohorts, 0);
    ck_assert_str_eq(cfg.brokers, "127.0.0.1:9092");
    ck_assert_str_eq(cfg.topic, "circmon.events");
    ck_assert_str_eq(cfg.group_id, "circmond");
    ck_assert_str_eq(cfg.dlq_topic, "circmon.events.dlq");
    ck_assert_str_eq(cfg.alert_topic, "circmon.events.alerts");
    ck_assert_uint_eq(cfg.n_rdkafka, 0);
    ck_assert_str_eq(cfg.redis_host, "127.0.0.1");
    ck_assert_int_eq(cfg.redis_port, 6379);
    ck_assert_ptr_null(cfg.redis_unix_socket);
    ck_assert_ptr_null(cfg.redis_user);
    ck_assert_ptr_null(cfg.redis_password);
    ck_assert_int_eq(cfg.redis_db, 0);
    ck_assert_str_eq(cfg.key_prefix, "circmon");
    ck_assert_int_eq(cfg.connect_timeout_ms, 2000);
    ck_assert_int_eq(cfg.command_timeout_ms, 5000);
    ck_assert_str_eq(cfg.http_listen, "127.0.0.1");
    ck_assert_int_eq(cfg.http_port, 9464);
    ck_assert_int_eq(cfg.http_refresh_ms, 5000);
    ck_assert_int_eq(cfg.http_max_connections, 64);
    ck_assert_int_eq(cfg.http_request_timeout_ms, 10000);
    ck_assert_int_eq(cfg.http_metrics_cohort_months, 24);
    ck_assert_uint_eq(cfg.n_schemes, 0);
    ck_assert_int_eq(cm_config_scheme(&cfg, "ANY")->grace_days, 0);
    ck_assert_int_eq(cm_config_scheme(&cfg, "ANY")->stay_n, 0);
    ck_assert_int_eq(cm_config_scheme(&cfg, "ANY")->stay_w, 0);
}
END_TEST

START_TEST(test_empty_file_gives_defaults) {
    ck_assert_int_eq(load("; nothing but a comment\n\n# another\n"), 0);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(cfg.path, conf_path);
    ck_assert_int_eq(cfg.reorder_window_days, 30);
    ck_assert_str_eq(cfg.topic, "circmon.events");
    ck_assert_str_eq(cfg.dlq_topic, "circmon.events.dlq");
    ck_assert_str_eq(cfg.alert_topic, "circmon.events.alerts");
    ck_assert_int_eq(cfg.http_port, 9464);
}
END_TEST

START_TEST(test_free_twice_and_zeroed) {
    ck_assert_int_eq(load("[circmon]\nbatch_size = 5\n"), 0);
    cm_config_free(&cfg);
    assert_zeroed();
    cm_config_free(&cfg); /* harmless on a zeroed config */
    cm_config_free(NULL);
}
END_TEST

/* ---- every key ----------------------------------------------------------- */

START_TEST(test_every_key) {
    ck_assert_int_eq(load("[circmon]\n"
                          "reorder_window_days = 45\n"
                          "batch_size = 500\n"
                          "max_in_flight = 2\n"
                          "batch_linger_ms = 75\n"
                          "log_level = debug\n"
                          "nationality_cohorts = yes\n"
                          "\n"
                          "[kafka]\n"
                          "brokers = k1:9092,k2:9092\n"
                          "topic = border.events\n"
                          "group_id = g1\n"
                          "dlq_topic = dead\n"
                          "alert_topic = alarms\n"
                          "rdkafka.security.protocol = SASL_SSL\n"
                          "rdkafka.sasl.mechanisms = PLAIN\n"
                          "rdkafka.session.timeout.ms = 6000\n"
                          "\n"
                          "[redis]\n"
                          "host = redis.local\n"
                          "port = 6380\n"
                          "unix_socket = /run/redis/redis.sock\n"
                          "user = circmon\n"
                          "password = s3cret\n"
                          "db = 3\n"
                          "key_prefix = cm\n"
                          "connect_timeout_ms = 100\n"
                          "command_timeout_ms = 250\n"
                          "\n"
                          "[http]\n"
                          "listen = 0.0.0.0\n"
                          "port = 0\n"
                          "refresh_ms = 250\n"
                          "max_connections = 3\n"
                          "request_timeout_ms = 1500\n"
                          "metrics_cohort_months = 6\n"),
                     0);
    ck_assert_int_eq(cfg.reorder_window_days, 45);
    ck_assert_int_eq(cfg.batch_size, 500);
    ck_assert_int_eq(cfg.max_in_flight, 2);
    ck_assert_int_eq(cfg.batch_linger_ms, 75);
    ck_assert_str_eq(cfg.log_level, "debug");
    ck_assert_int_eq(cfg.nationality_cohorts, 1);
    ck_assert_str_eq(cfg.brokers, "k1:9092,k2:9092");
    ck_assert_str_eq(cfg.topic, "border.events");
    ck_assert_str_eq(cfg.group_id, "g1");
    ck_assert_str_eq(cfg.dlq_topic, "dead");
    ck_assert_str_eq(cfg.alert_topic, "alarms");
    ck_assert_uint_eq(cfg.n_rdkafka, 3);
    ck_assert_str_eq(cfg.rdkafka[0].key, "security.protocol");
    ck_assert_str_eq(cfg.rdkafka[0].value, "SASL_SSL");
    ck_assert_str_eq(cfg.rdkafka[1].key, "sasl.mechanisms");
    ck_assert_str_eq(cfg.rdkafka[1].value, "PLAIN");
    ck_assert_str_eq(cfg.rdkafka[2].key, "session.timeout.ms");
    ck_assert_str_eq(cfg.rdkafka[2].value, "6000");
    ck_assert_str_eq(cfg.redis_host, "redis.local");
    ck_assert_int_eq(cfg.redis_port, 6380);
    ck_assert_str_eq(cfg.redis_unix_socket, "/run/redis/redis.sock");
    ck_assert_str_eq(cfg.redis_user, "circmon");
    ck_assert_str_eq(cfg.redis_password, "s3cret");
    ck_assert_int_eq(cfg.redis_db, 3);
    ck_assert_str_eq(cfg.key_prefix, "cm");
    ck_assert_int_eq(cfg.connect_timeout_ms, 100);
    ck_assert_int_eq(cfg.command_timeout_ms, 250);
    ck_assert_str_eq(cfg.http_listen, "0.0.0.0");
    ck_assert_int_eq(cfg.http_port, 0);
    ck_assert_int_eq(cfg.http_refresh_ms, 250);
    ck_assert_int_eq(cfg.http_max_connections, 3);
    ck_assert_int_eq(cfg.http_request_timeout_ms, 1500);
    ck_assert_int_eq(cfg.http_metrics_cohort_months, 6);
}
END_TEST

START_TEST(test_derived_topics_follow_topic) {
    ck_assert_int_eq(load("[kafka]\ntopic = t1\n"), 0);
    ck_assert_str_eq(cfg.dlq_topic, "t1.dlq");
    ck_assert_str_eq(cfg.alert_topic, "t1.alerts");
    cm_config_free(&cfg);
    /* Set before the topic: still the explicit value. */
    ck_assert_int_eq(load("[kafka]\ndlq_topic = d\ntopic = t2\n"), 0);
    ck_assert_str_eq(cfg.dlq_topic, "d");
    ck_assert_str_eq(cfg.alert_topic, "t2.alerts");
}
END_TEST

START_TEST(test_whitespace_comments_and_sections_reopened) {
    ck_assert_int_eq(load("  [ circmon ]   ; the daemon\n"
                          "\tbatch_size=7   ; inline comment\n"
                          "[kafka]\n"
                          "topic = a\n"
                          "[circmon]\n"
                          "max_in_flight = 3\n"),
                     0);
    ck_assert_int_eq(cfg.batch_size, 7);
    ck_assert_int_eq(cfg.max_in_flight, 3);
    ck_assert_str_eq(cfg.topic, "a");
}
END_TEST

START_TEST(test_range_bounds_accepted) {
    ck_assert_int_eq(load("[circmon]\nreorder_window_days = 0\nbatch_size = 100000\n"
                          "max_in_flight = 64\n[redis]\nport = 65535\ndb = 1000000\n"
                          "connect_timeout_ms = 3600000\ncommand_timeout_ms = 1\n"),
                     0);
    ck_assert_int_eq(cfg.reorder_window_days, 0);
    ck_assert_int_eq(cfg.batch_size, 100000);
    ck_assert_int_eq(cfg.max_in_flight, 64);
    ck_assert_int_eq(cfg.redis_port, 65535);
    ck_assert_int_eq(cfg.redis_db, 1000000);
    ck_assert_int_eq(cfg.connect_timeout_ms, 3600000);
    ck_assert_int_eq(cfg.command_timeout_ms, 1);
    cm_config_free(&cfg);
    ck_assert_int_eq(load("[circmon]\nmax_window_events = 1\n"), 0);
    ck_assert_int_eq(cfg.max_window_events, 1);
    cm_config_free(&cfg);
    ck_assert_int_eq(load("[circmon]\nmax_window_events = 65536\n"), 0);
    ck_assert_int_eq(cfg.max_window_events, 65536);
}
END_TEST

START_TEST(test_log_levels) {
    static const char *const levels[] = {"debug", "info", "warning", "error"};
    char text[64];

    for (size_t i = 0; i < 4; i++) {
        snprintf(text, sizeof text, "[circmon]\nlog_level = %s\n", levels[i]);
        ck_assert_int_eq(load(text), 0);
        ck_assert_str_eq(cfg.log_level, levels[i]);
        cm_config_free(&cfg);
    }
}
END_TEST

START_TEST(test_empty_optional_strings_unset) {
    ck_assert_int_eq(load("[redis]\nunix_socket =\nuser =\npassword =\n"), 0);
    ck_assert_ptr_null(cfg.redis_unix_socket);
    ck_assert_ptr_null(cfg.redis_user);
    ck_assert_ptr_null(cfg.redis_password);
}
END_TEST

/* ---- schemes ------------------------------------------------------------ */

START_TEST(test_scheme_lookup) {
    ck_assert_int_eq(load("[scheme SAWP-ES]\ngrace_days = 7\n"
                          "[scheme SHORTSTAY]\nstay_limit = 90/180\n"
                          "[scheme *]\ngrace_days = 2\nstay_limit = 30 / 60\n"
                          "[scheme NOLIMIT]\nstay_limit = none\n"),
                     0);
    ck_assert_uint_eq(cfg.n_schemes, 3);
    ck_assert_str_eq(cfg.schemes[0].id, "SAWP-ES");
    ck_assert_str_eq(cfg.schemes[1].id, "SHORTSTAY");
    ck_assert_str_eq(cfg.schemes[2].id, "NOLIMIT");

    const struct cm_scheme_conf *s = cm_config_scheme(&cfg, "SAWP-ES");
    ck_assert_str_eq(s->id, "SAWP-ES");
    ck_assert_int_eq(s->grace_days, 7);
    ck_assert_int_eq(s->stay_n, 30); /* inherited from [scheme *], which comes later */
    ck_assert_int_eq(s->stay_w, 60);

    s = cm_config_scheme(&cfg, "SHORTSTAY");
    ck_assert_int_eq(s->grace_days, 2);
    ck_assert_int_eq(s->stay_n, 90);
    ck_assert_int_eq(s->stay_w, 180);

    s = cm_config_scheme(&cfg, "NOLIMIT");
    ck_assert_int_eq(s->grace_days, 2);
    ck_assert_int_eq(s->stay_n, 0);
    ck_assert_int_eq(s->stay_w, 0);

    s = cm_config_scheme(&cfg, "UNNAMED");
    ck_assert_ptr_eq(s, &cfg.scheme_default);
    ck_assert_str_eq(s->id, "");
    ck_assert_int_eq(s->grace_days, 2);
    ck_assert_int_eq(s->stay_n, 30);
    ck_assert_int_eq(s->stay_w, 60);

    /* Lookups are exact: case and prefixes matter. */
    ck_assert_ptr_eq(cm_config_scheme(&cfg, "sawp-es"), &cfg.scheme_default);
    ck_assert_ptr_eq(cm_config_scheme(&cfg, "SAWP"), &cfg.scheme_default);
    ck_assert_ptr_eq(cm_config_scheme(&cfg, NULL), &cfg.scheme_default);
}
END_TEST

START_TEST(test_scheme_builtin_without_star) {
    ck_assert_int_eq(load("[scheme A]\ngrace_days = 3\n"), 0);
    const struct cm_scheme_conf *s = cm_config_scheme(&cfg, "B");
    ck_assert_int_eq(s->grace_days, 0);
    ck_assert_int_eq(s->stay_n, 0);
    ck_assert_int_eq(s->stay_w, 0);
    s = cm_config_scheme(&cfg, "A");
    ck_assert_int_eq(s->grace_days, 3);
    ck_assert_int_eq(s->stay_n, 0);
}
END_TEST

START_TEST(test_scheme_empty_section_and_long_id) {
    char text[600], id[CM_ID_MAX + 1];

    memset(id, 'x', CM_ID_MAX);
    id[CM_ID_MAX] = '\0';
    snprintf(text, sizeof text, "[scheme EMPTY]\n[scheme %s]\ngrace_days = 1\n", id);
    ck_assert_int_eq(load(text), 0);
    ck_assert_uint_eq(cfg.n_schemes, 2);
    ck_assert_str_eq(cfg.schemes[0].id, "EMPTY");
    ck_assert_int_eq(cm_config_scheme(&cfg, id)->grace_days, 1);
    ck_assert_str_eq(cm_config_scheme(&cfg, id)->id, id);
}
END_TEST

START_TEST(test_stay_limit_n_ge_w_accepted) {
    ck_assert_int_eq(load("[scheme A]\nstay_limit = 180/90\n[scheme B]\nstay_limit = 3650/3650\n"),
                     0);
    ck_assert_int_eq(cm_config_scheme(&cfg, "A")->stay_n, 180);
    ck_assert_int_eq(cm_config_scheme(&cfg, "A")->stay_w, 90);
    ck_assert_int_eq(cm_config_scheme(&cfg, "B")->stay_w, 3650);
}
END_TEST

START_TEST(test_many_schemes) {
    char *text = malloc(100 * 64), *p = text;

    ck_assert_ptr_nonnull(text);
    for (int i = 0; i < 100; i++)
        p += sprintf(p, "[scheme S%d]\ngrace_days = %d\n", i, i);
    ck_assert_int_eq(load(text), 0);
    free(text);
    ck_assert_uint_eq(cfg.n_schemes, 100);
    for (int i = 0; i < 100; i++) {
        char id[16];

        snprintf(id, sizeof id, "S%d", i);
        ck_assert_int_eq(cm_config_scheme(&cfg, id)->grace_days, i);
    }
}
END_TEST

/* ---- password_file -------------------------------------------------------- */

START_TEST(test_password_file_absolute) {
    char text[4500];
    const char *pw = write_file("pw", "hunter2\nsecond line\n");

    snprintf(text, sizeof text, "[redis]\npassword_file = %s\n", pw);
    ck_assert_int_eq(load(text), 0);
    ck_assert_str_eq(cfg.redis_password, "hunter2");
}
END_TEST

START_TEST(test_password_file_relative_crlf_no_newline) {
    FILE *fp;
    char pw[4400];

    snprintf(pw, sizeof pw, "%s/secret", tmpdir);
    fp = fopen(pw, "w");
    ck_assert_ptr_nonnull(fp);
    fputs("pa ss;word\r\n", fp);
    fclose(fp);
    ck_assert_int_eq(load("[redis]\npassword_file = secret\n"), 0);
    ck_assert_str_eq(cfg.redis_password, "pa ss;word");
    cm_config_free(&cfg);

    fp = fopen(pw, "w");
    ck_assert_ptr_nonnull(fp);
    fputs("nonewline", fp);
    fclose(fp);
    ck_assert_int_eq(load("[redis]\npassword_file = secret\n"), 0);
    ck_assert_str_eq(cfg.redis_password, "nonewline");
}
END_TEST

START_TEST(test_password_file_errors) {
    char text[4500], expected[4600];

    ck_assert_int_eq(load("[redis]\n\npassword_file = missing\n"), -ENOENT);
    snprintf(expected, sizeof expected,
             "F:3: [redis] password_file: cannot read \"%s/missing\": %s", tmpdir,
             strerror(ENOENT));
    ck_assert_str_eq(msg(), expected);
    assert_zeroed();

    char empty[4400];

    snprintf(empty, sizeof empty, "%s", write_file("pw", ""));
    snprintf(text, sizeof text, "[redis]\npassword_file = %s\n", empty);
    ck_assert_int_eq(load(text), -EINVAL);
    snprintf(expected, sizeof expected, "F:2: [redis] password_file: \"%s\" is empty", empty);
    ck_assert_str_eq(msg(), expected);

    ASSERT_ERR("[redis]\npassword = a\npassword_file = b\n", -EINVAL,
               "F:3: [redis] password_file: password and password_file exclude each other");
    ASSERT_ERR("[redis]\npassword_file =\n", -EINVAL, "F:2: [redis] password_file: empty value");
}
END_TEST

/* The first line of a password file is read up to 4096 bytes, never further:
 * /dev/zero (no end, no newline) and a longer line are refused with the file
 * and the limit named; exactly 4096 bytes (with or without "\r\n") pass. */
START_TEST(test_password_file_bounded) {
    char text[4500], expected[4600], pwpath[4400];
    static char big[4096 + 8 + 32];
    FILE *fp;

    ck_assert_int_eq(load("[redis]\npassword_file = /dev/zero\n"), -EINVAL);
    ck_assert_str_eq(msg(), "F:2: [redis] password_file: the first line of \"/dev/zero\" is "
                            "longer than 4096 bytes");
    assert_zeroed();

    snprintf(pwpath, sizeof pwpath, "%s/long", tmpdir);
    memset(big, 'p', 4097);
    big[4097] = '\0';
    fp = fopen(pwpath, "w");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_ge(fputs(big, fp), 0);
    ck_assert_int_ge(fputs("\nsecond line\n", fp), 0);
    ck_assert_int_eq(fclose(fp), 0);
    snprintf(text, sizeof text, "[redis]\npassword_file = %s\n", pwpath);
    ck_assert_int_eq(load(text), -EINVAL);
    snprintf(expected, sizeof expected,
             "F:2: [redis] password_file: the first line of \"%s\" is longer than 4096 bytes",
             pwpath);
    ck_assert_str_eq(msg(), expected);
    assert_zeroed();

    /* 4096 bytes and "\r\n": accepted, the terminator not counted */
    big[4096] = '\0';
    fp = fopen(pwpath, "w");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_ge(fputs(big, fp), 0);
    ck_assert_int_ge(fputs("\r\n", fp), 0);
    ck_assert_int_eq(fclose(fp), 0);
    ck_assert_int_eq(load(text), 0);
    ck_assert_str_eq(cfg.redis_password, big);
    cm_config_free(&cfg);

    /* 4096 bytes and the end of the file */
    fp = fopen(pwpath, "w");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_ge(fputs(big, fp), 0);
    ck_assert_int_eq(fclose(fp), 0);
    ck_assert_int_eq(load(text), 0);
    ck_assert_str_eq(cfg.redis_password, big);
    cm_config_free(&cfg);

    /* a NUL byte would cut the password short */
    fp = fopen(pwpath, "w");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fwrite("ab\0cd\n", 1, 6, fp), 6);
    ck_assert_int_eq(fclose(fp), 0);
    ck_assert_int_eq(load(text), -EINVAL);
    snprintf(expected, sizeof expected,
             "F:2: [redis] password_file: the first line of \"%s\" holds a NUL byte", pwpath);
    ck_assert_str_eq(msg(), expected);
    assert_zeroed();
}
END_TEST

/* ---- errors ----------------------------------------------------------------- */

START_TEST(test_error_unknown_section) {
    ASSERT_ERR("[circmon]\nbatch_size = 10\n\n[kafkaa]\n", -EINVAL,
               "F:4: unknown section [kafkaa]");
    ASSERT_ERR("[schemeX]\n", -EINVAL, "F:1: unknown section [schemeX]");
    ASSERT_ERR("[scheme]\n", -EINVAL, "F:1: unknown section [scheme]");
}
END_TEST

START_TEST(test_error_unknown_key) {
    ASSERT_ERR("[redis]\nhost = h\nprot = 1\n", -EINVAL, "F:3: [redis] prot: unknown key");
    ASSERT_ERR("[circmon]\nbatchsize = 1\n", -EINVAL, "F:2: [circmon] batchsize: unknown key");
    ASSERT_ERR("[kafka]\nrdkafka. = x\n", -EINVAL, "F:2: [kafka] rdkafka.: unknown key");
    ASSERT_ERR("[http]\nhost = x\n", -EINVAL, "F:2: [http] host: unknown key");
    ASSERT_ERR("[scheme A]\ngrace = 1\n", -EINVAL, "F:2: [scheme A] grace: unknown key");
}
END_TEST

START_TEST(test_error_not_an_integer) {
    ASSERT_ERR("; c\n\n[redis]\nport = abc\n", -EINVAL,
               "F:4: [redis] port: not an integer: \"abc\"");
    ASSERT_ERR("[circmon]\nbatch_size = 12x\n", -EINVAL,
               "F:2: [circmon] batch_size: not an integer: \"12x\"");
    ASSERT_ERR("[circmon]\nbatch_size = +12\n", -EINVAL,
               "F:2: [circmon] batch_size: not an integer: \"+12\"");
    ASSERT_ERR("[circmon]\nbatch_size = 1.5\n", -EINVAL,
               "F:2: [circmon] batch_size: not an integer: \"1.5\"");
    ASSERT_ERR("[circmon]\nbatch_size =\n", -EINVAL,
               "F:2: [circmon] batch_size: not an integer: \"\"");
    ASSERT_ERR("[scheme A]\ngrace_days = seven\n", -EINVAL,
               "F:2: [scheme A] grace_days: not an integer: \"seven\"");
}
END_TEST

START_TEST(test_error_out_of_range) {
    ASSERT_ERR("[circmon]\nreorder_window_days = 3651\n", -ERANGE,
               "F:2: [circmon] reorder_window_days: out of range 0..3650: \"3651\"");
    ASSERT_ERR("[circmon]\nmax_window_events = 0\n", -ERANGE,
               "F:2: [circmon] max_window_events: out of range 1..65536: \"0\"");
    ASSERT_ERR("[circmon]\nmax_window_events = 65537\n", -ERANGE,
               "F:2: [circmon] max_window_events: out of range 1..65536: \"65537\"");
    ASSERT_ERR("[circmon]\nbatch_size = 0\n", -ERANGE,
               "F:2: [circmon] batch_size: out of range 1..100000: \"0\"");
    ASSERT_ERR("[circmon]\nmax_in_flight = 65\n", -ERANGE,
               "F:2: [circmon] max_in_flight: out of range 1..64: \"65\"");
    ASSERT_ERR("[redis]\nport = 65536\n", -ERANGE,
               "F:2: [redis] port: out of range 0..65535: \"65536\"");
    ASSERT_ERR("[redis]\ndb = -1\n", -ERANGE, "F:2: [redis] db: out of range 0..1000000: \"-1\"");
    ASSERT_ERR("[redis]\nconnect_timeout_ms = 0\n", -ERANGE,
               "F:2: [redis] connect_timeout_ms: out of range 1..3600000: \"0\"");
    ASSERT_ERR("[redis]\ncommand_timeout_ms = 99999999999999999999\n", -ERANGE,
               "F:2: [redis] command_timeout_ms: out of range 1..3600000: "
               "\"99999999999999999999\"");
    ASSERT_ERR("[http]\nport = -1\n", -ERANGE, "F:2: [http] port: out of range 0..65535: \"-1\"");
    ASSERT_ERR("[http]\nlisten = not an address\n", -EINVAL,
               "F:2: [http] listen: not an IPv4 or IPv6 address: \"not an address\"");
    ASSERT_ERR("[http]\nlisten = localhost\n", -EINVAL,
               "F:2: [http] listen: not an IPv4 or IPv6 address: \"localhost\"");
    ASSERT_ERR("[http]\nrefresh_ms = 99\n", -ERANGE,
               "F:2: [http] refresh_ms: out of range 100..3600000: \"99\"");
    ASSERT_ERR("[http]\nrefresh_ms = 5s\n", -EINVAL,
               "F:2: [http] refresh_ms: not an integer: \"5s\"");
    ASSERT_ERR("[http]\nmax_connections = 0\n", -ERANGE,
               "F:2: [http] max_connections: out of range 1..10000: \"0\"");
    ASSERT_ERR("[http]\nmax_connections = 10001\n", -ERANGE,
               "F:2: [http] max_connections: out of range 1..10000: \"10001\"");
    ASSERT_ERR("[http]\nrequest_timeout_ms = 3600001\n", -ERANGE,
               "F:2: [http] request_timeout_ms: out of range 100..3600000: \"3600001\"");
    ASSERT_ERR("[http]\nmetrics_cohort_months = 0\n", -ERANGE,
               "F:2: [http] metrics_cohort_months: out of range 1..1200: \"0\"");
    ASSERT_ERR("[http]\nmetrics_cohort_months = 1201\n", -ERANGE,
               "F:2: [http] metrics_cohort_months: out of range 1..1200: \"1201\"");
    ASSERT_ERR("[http]\nrefresh_ms = 1000\nrefresh_ms = 2000\n", -EINVAL,
               "F:3: [http] refresh_ms: duplicate key (first at line 2)");
    ASSERT_ERR("[scheme A]\ngrace_days = -1\n", -ERANGE,
               "F:2: [scheme A] grace_days: out of range 0..3650: \"-1\"");
}
END_TEST

START_TEST(test_error_malformed_strings) {
    ASSERT_ERR("[circmon]\nlog_level = verbose\n", -EINVAL,
               "F:2: [circmon] log_level: not one of debug, info, warning, error: \"verbose\"");
    ASSERT_ERR("[kafka]\nbrokers =\n", -EINVAL, "F:2: [kafka] brokers: empty value");
    ASSERT_ERR("[kafka]\ntopic =\n", -EINVAL, "F:2: [kafka] topic: empty value");
    ASSERT_ERR("[redis]\nkey_prefix = a{b}\n", -EINVAL,
               "F:2: [redis] key_prefix: must not contain braces or blanks: \"a{b}\"");
}
END_TEST

START_TEST(test_error_stay_limit) {
    static const char *const bad[] = {"90",    "90/",   "/180",   "0/180", "90/0",
                                      "a/180", "90/1x", "3651/1", "90/180/1", "-1/5"};
    char text[128], expected[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "[scheme S]\n\nstay_limit = %s\n", bad[i]);
        snprintf(expected, sizeof expected,
                 "F:3: [scheme S] stay_limit: not N/W with 1 <= N, W <= 3650, nor none: \"%s\"",
                 bad[i]);
        ASSERT_ERR(text, -EINVAL, expected);
    }
}
END_TEST

START_TEST(test_error_duplicates) {
    ASSERT_ERR("[scheme A]\ngrace_days = 1\n[scheme B]\n[scheme A]\n", -EINVAL,
               "F:4: [scheme A]: duplicate section (first at line 1)");
    ASSERT_ERR("[scheme *]\n\n[scheme *]\n", -EINVAL,
               "F:3: [scheme *]: duplicate section (first at line 1)");
    ASSERT_ERR("[redis]\nport = 1\nport = 2\n", -EINVAL,
               "F:3: [redis] port: duplicate key (first at line 2)");
    ASSERT_ERR("[kafka]\nrdkafka.acks = 1\nrdkafka.acks = all\n", -EINVAL,
               "F:3: [kafka] rdkafka.acks: duplicate key (first at line 2)");
    ASSERT_ERR("[redis]\nport = 1\n[http]\nport = 2\n[redis]\nport = 3\n", -EINVAL,
               "F:6: [redis] port: duplicate key (first at line 2)");
}
END_TEST

START_TEST(test_error_scheme_id_too_long) {
    char text[600];

    memset(text, 0, sizeof text);
    strcpy(text, "\n[scheme ");
    memset(text + strlen(text), 'y', CM_ID_MAX + 1);
    strcat(text, "]\ngrace_days = 1\n");
    ASSERT_ERR(text, -ENAMETOOLONG, "F:2: [scheme ...]: scheme id longer than 256 bytes");
}
END_TEST

START_TEST(test_error_syntax) {
    ASSERT_ERR("[circmon]\nbatch_size = 1\njust words\n", -EINVAL,
               "F:3: syntax error: expected [section] or key = value");
    ASSERT_ERR("batch_size = 1\n", -EINVAL, "F:1: batch_size: key outside any section");
    ASSERT_ERR("\n[circmon\n", -EINVAL, "F:2: malformed section header: no ']'");
    ASSERT_ERR("[circmon] x\n", -EINVAL, "F:1: malformed section header: text after ']'");
}
END_TEST

START_TEST(test_error_line_too_long) {
    size_t n = 5000;
    char *text = malloc(n + 32);

    ck_assert_ptr_nonnull(text);
    strcpy(text, "[kafka]\nbrokers = ");
    memset(text + strlen(text), 'b', n);
    strcpy(text + 18 + n, "\n");
    ck_assert_int_eq(load(text), -E2BIG);
    free(text);
    ck_assert_str_eq(msg(), "F:2: line longer than 4093 bytes");
    assert_zeroed();
}
END_TEST

START_TEST(test_error_missing_file) {
    char path[4300];

    snprintf(path, sizeof path, "%s/nope.conf", tmpdir);
    ck_assert_int_eq(cm_config_load(&cfg, path, err, sizeof err), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "nope.conf: cannot open: "));
    assert_zeroed();
}
END_TEST

START_TEST(test_error_small_buffer) {
    char small[8];

    snprintf(conf_path, sizeof conf_path, "%s", write_file("c", "[nope]\n"));
    ck_assert_int_eq(cm_config_load(&cfg, conf_path, small, sizeof small), -EINVAL);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    ck_assert_int_eq(cm_config_load(&cfg, conf_path, NULL, 0), -EINVAL);
}
END_TEST

/* ---- the shipped example --------------------------------------------------- */

/* [alert NAME] nationality (INDICATORS.md section 5): absent, a code or *;
 * a bad value names the file, the line and the key. */
START_TEST(test_alert_nationality) {
    const char *R = "[alert r]\nscheme = S\nindicator = overstay_rate\nabove = 0.1\n";
    const char *Y = "[circmon]\nnationality_cohorts = yes\n";
    char t[1024];
    snprintf(t, sizeof t, "%s%snationality = GTM\n[alert s]\nscheme = *\nnationality = *\n"
                          "indicator = return_compliance_rate\nbelow = 0.9\n", Y, R);
    ck_assert_msg(load(t) == 0, "%s", err);
    ck_assert_uint_eq(cfg.n_alerts, 2);
    ck_assert_str_eq(cfg.alerts[0].nationality, "GTM");
    ck_assert_str_eq(cfg.alerts[1].nationality, "*");
    cm_config_free(&cfg);
    ck_assert_msg(load(R) == 0, "%s", err);
    ck_assert_str_eq(cfg.alerts[0].nationality, ""); /* absent: all together */
    cm_config_free(&cfg);
    snprintf(t, sizeof t, "%s%s\nnationality =\n", Y, R);
    ck_assert_int_eq(load(t), -EINVAL);
    ck_assert_str_eq(msg(), "F:8: [alert r] nationality: not a nationality code of 1..256 bytes "
                            "of UTF-8 nor *: \"\"");
    snprintf(t, sizeof t, "%s%snationality = \xff\n", Y, R);
    ck_assert_int_eq(load(t), -EINVAL);
    ck_assert_str_eq(msg(), "F:7: [alert r] nationality: not a nationality code of 1..256 bytes "
                            "of UTF-8 nor *: \"\xff\"");
}
END_TEST

/* [circmon] nationality_cohorts: yes or no, default no; a nationality rule
 * needs yes wherever [circmon] is in the file, and without it is an error
 * naming the file, the line of the first nationality key and the rule. */
START_TEST(test_nationality_cohorts) {
    const char *R = "[alert r]\nscheme = S\nindicator = overstay_rate\nabove = 0.1\n";
    const char *WHY = ": needs [circmon] nationality_cohorts = yes (the fold then keeps cohorts "
                      "per nationality; over existing data rebuild the aggregate: README "
                      "Operations \"Rebuild without downtime\")";
    char t[1024], want[512];

    ck_assert_msg(load("[circmon]\nnationality_cohorts = no\n") == 0, "%s", err);
    ck_assert_int_eq(cfg.nationality_cohorts, 0);
    cm_config_free(&cfg);
    ck_assert_msg(load("[circmon]\nnationality_cohorts = yes\n") == 0, "%s", err);
    ck_assert_int_eq(cfg.nationality_cohorts, 1);
    cm_config_free(&cfg);
    ASSERT_ERR("[circmon]\nnationality_cohorts = 1\n", -EINVAL,
               "F:2: [circmon] nationality_cohorts: not yes or no: \"1\"");
    ASSERT_ERR("[circmon]\nnationality_cohorts = YES\n", -EINVAL,
               "F:2: [circmon] nationality_cohorts: not yes or no: \"YES\"");
    ASSERT_ERR("[circmon]\nnationality_cohorts =\n", -EINVAL,
               "F:2: [circmon] nationality_cohorts: not yes or no: \"\"");
    ASSERT_ERR("[circmon]\nnationality_cohorts = yes\nnationality_cohorts = no\n", -EINVAL,
               "F:3: [circmon] nationality_cohorts: duplicate key (first at line 2)");
    /* without the key (default no), with no: the first nationality key is named */
    snprintf(t, sizeof t, "%s%snationality = GTM\n[alert s]\nscheme = S\nnationality = *\n"
                          "indicator = overstay_rate\nabove = 0.1\n", R, "");
    snprintf(want, sizeof want, "F:5: [alert r] nationality%s", WHY);
    ASSERT_ERR(t, -EINVAL, want);
    snprintf(t, sizeof t, "[circmon]\nnationality_cohorts = no\n%s[alert s]\nscheme = S\n"
                          "nationality = *\nindicator = overstay_rate\nabove = 0.1\n", R);
    snprintf(want, sizeof want, "F:9: [alert s] nationality%s", WHY);
    ASSERT_ERR(t, -EINVAL, want);
    /* yes after the rules is as good as before them */
    snprintf(t, sizeof t, "%snationality = GTM\n[circmon]\nnationality_cohorts = yes\n", R);
    ck_assert_msg(load(t) == 0, "%s", err);
    ck_assert_str_eq(cfg.alerts[0].nationality, "GTM");
    ck_assert_int_eq(cfg.nationality_cohorts, 1);
    cm_config_free(&cfg);
}
END_TEST

START_TEST(test_example_file_loads) {
    const char *top = getenv("CM_TOP");
    char path[4300];

    snprintf(path, sizeof path, "%s/config/circmond.conf.example", top ? top : ".");
    ck_assert_msg(cm_config_load(&cfg, path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(cfg.reorder_window_days, 30);
    ck_assert_str_eq(cfg.dlq_topic, "circmon.events.dlq");
    ck_assert_int_eq(cm_config_scheme(&cfg, "SAWP-ES")->grace_days, 7);
    ck_assert_int_eq(cm_config_scheme(&cfg, "SHORTSTAY")->stay_n, 90);
    ck_assert_int_eq(cm_config_scheme(&cfg, "SHORTSTAY")->stay_w, 180);
}
END_TEST

static Suite *config_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc;

    tc = tcase_create("defaults");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_builtin_defaults);
    tcase_add_test(tc, test_empty_file_gives_defaults);
    tcase_add_test(tc, test_free_twice_and_zeroed);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_every_key);
    tcase_add_test(tc, test_derived_topics_follow_topic);
    tcase_add_test(tc, test_whitespace_comments_and_sections_reopened);
    tcase_add_test(tc, test_range_bounds_accepted);
    tcase_add_test(tc, test_log_levels);
    tcase_add_test(tc, test_empty_optional_strings_unset);
    suite_add_tcase(s, tc);

    tc = tcase_create("schemes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_scheme_lookup);
    tcase_add_test(tc, test_scheme_builtin_without_star);
    tcase_add_test(tc, test_scheme_empty_section_and_long_id);
    tcase_add_test(tc, test_stay_limit_n_ge_w_accepted);
    tcase_add_test(tc, test_many_schemes);
    suite_add_tcase(s, tc);

    tc = tcase_create("password_file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_password_file_absolute);
    tcase_add_test(tc, test_password_file_relative_crlf_no_newline);
    tcase_add_test(tc, test_password_file_errors);
    tcase_add_test(tc, test_password_file_bounded);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_error_unknown_section);
    tcase_add_test(tc, test_error_unknown_key);
    tcase_add_test(tc, test_error_not_an_integer);
    tcase_add_test(tc, test_error_out_of_range);
    tcase_add_test(tc, test_error_malformed_strings);
    tcase_add_test(tc, test_error_stay_limit);
    tcase_add_test(tc, test_error_duplicates);
    tcase_add_test(tc, test_error_scheme_id_too_long);
    tcase_add_test(tc, test_error_syntax);
    tcase_add_test(tc, test_error_line_too_long);
    tcase_add_test(tc, test_error_missing_file);
    tcase_add_test(tc, test_error_small_buffer);
    suite_add_tcase(s, tc);

    tc = tcase_create("example");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_example_file_loads);
    tcase_add_test(tc, test_alert_nationality);
    tcase_add_test(tc, test_nationality_cohorts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
