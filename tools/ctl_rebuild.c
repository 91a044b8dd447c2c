/* ctl_rebuild.c - circmonctl rebuild: the alias begun, a rebuild's progress, the switch, the old prefix deleted. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "circmon/alias.h"
#include "circmon/cluster_sync.h"
#include "circmon/purge.h"
#include "circmon/store.h"
#include "ctl.h"

static const struct cm_ctl_cmd CMD = {
    .name = "rebuild",
    .usage =
        "usage: circmonctl rebuild begin  --config FILE\n"
        "       circmonctl rebuild status --config FILE [--format table|json]\n"
        "       circmonctl rebuild switch --config FILE [--max-lag N]\n"
        "       circmonctl rebuild delete --config FILE [--prefix OLD] [--step N] [--pause-ms MS]\n"
        "\n"
        "Rebuilds the state from Kafka into a new key prefix while the old one is served\n"
        "(README, Operations, Rebuild). FILE's [redis] alias names the key that tells\n"
        "every reader which prefix to read.\n"
        "  begin   makes the alias name FILE's key_prefix (the one in use) with FILE's\n"
        "          fold settings, if it names none yet\n"
        "  status  per partition: the position of FILE's key_prefix (the prefix being\n"
        "          rebuilt by 'circmond --rebuild'), the high watermark, the lag\n"
        "  switch  once every partition of FILE's key_prefix is within N (default 0) of\n"
        "          the topic's high watermark, makes the alias name it, with FILE's fold\n"
        "          settings: one atomic compare-and-set; every reader reads it from its\n"
        "          next refresh on\n"
        "  delete  deletes every key of prefix OLD (default: the one the alias replaced)\n"
        "          in steps of N keys (default 500), pausing MS ms (default 10) between\n"
        "          steps, on every master of a Redis Cluster, then verifies that none is\n"
        "          left; refuses the active prefix and FILE's key_prefix\n",
    .opts = CM_CTL_CONFIG | CM_CTL_FORMAT,
    .required = CM_CTL_CONFIG,
    .format = "table",
};

struct opts {
    const char *action, *config, *format, *prefix;
    int64_t max_lag, step, pause_ms;
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "circmonctl rebuild: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    fputs(CMD.usage, stderr);
    return 2;
}

static int number(const char *name, const char *v, int64_t lo, int64_t hi, int64_t *out)
{
    char *e;
    errno = 0;
    long long x = strtoll(v, &e, 10);
    if (!*v || *e || errno || x < lo || x > hi || *v == '+' || *v == ' ') {
        fprintf(stderr, "circmonctl rebuild: %s: '%s' is not an integer in %" PRId64 "..%" PRId64 "\n",
                name, v, lo, hi);
        fputs(CMD.usage, stderr);
        return -1;
    }
    *out = x;
    return 0;
}

/* -1: go on; else the exit status. */
static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option all[] = {
        {"config", required_argument, NULL, 'c'},   {"format", required_argument, NULL, 'f'},
        {"max-lag", required_argument, NULL, 'l'},  {"prefix", required_argument, NULL, 'p'},
        {"step", required_argument, NULL, 's'},     {"pause-ms", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.format = "table", .step = 500, .pause_ms = 10};
    int c, given_lag = 0, given_del = 0, given_fmt = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", all, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "json") && strcmp(optarg, "table"))
                return usage_error("--format: json or table, not '%s'", optarg);
            o->format = optarg;
            given_fmt = 1;
            break;
        case 'l':
            if (number("--max-lag", optarg, 0, INT64_MAX, &o->max_lag) < 0)
                return 2;
            given_lag = 1;
            break;
        case 'p':
            if (!*optarg || strpbrk(optarg, "{} \t"))
                return usage_error("--prefix: '%s' is not a key prefix (no braces or blanks)",
                                   optarg);
            o->prefix = optarg;
            given_del = 1;
            break;
        case 's':
            if (number("--step", optarg, 1, CM_PURGE_COUNT_MAX, &o->step) < 0)
                return 2;
            given_del = 1;
            break;
        case 'w':
            if (number("--pause-ms", optarg, 0, 600000, &o->pause_ms) < 0)
                return 2;
            given_del = 1;
            break;
        case 'h':
            fputs(CMD.usage, stdout);
            return 0;
        case ':':
            return usage_error("%s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("no action given (begin, status, switch or delete)%s", "");
    o->action = argv[optind];
    if (strcmp(o->action, "begin") && strcmp(o->action, "status") && strcmp(o->action, "switch") &&
        strcmp(o->action, "delete"))
        return usage_error("unknown action '%s'", o->action);
    if (optind + 1 < argc)
        return usage_error("unexpected argument '%s'", argv[optind + 1]);
    if (!o->config)
        return usage_error("--config is required%s", "");
    if (given_lag && strcmp(o->action, "switch"))
        return usage_error("--max-lag is an option of switch, not of %s", o->action);
    if (given_del && strcmp(o->action, "delete"))
        return usage_error("--prefix, --step and --pause-ms are options of delete, not of %s",
                           o->action);
    if (given_fmt && strcmp(o->action, "status"))
        return usage_error("--format is an option of status, not of %s", o->action);
    return -1;
}

/* The alias as Redis holds it (out->from_alias 0: no key yet). */
static int read_alias(struct cm_rsync *c, const struct cm_config *cfg, struct cm_alias *out)
{
    char err[512];
    if (cm_alias_read_sync(c, cfg, out, err, sizeof(err)) < 0) {
        cm_ctl_err(&CMD, "%s", err);
        return -1;
    }
    return 0;
}

static int act_begin(struct cm_rsync *c, const struct cm_config *cfg)
{
    char err[512];
    struct cm_alias al;
    char *settings = cm_alias_settings_format(cfg), *cur = NULL;
    int rc = 1;
    if (!settings) {
        cm_ctl_err(&CMD, "cannot write the fold settings (a scheme id that is not UTF-8, or "
                         "out of memory)");
        return 1;
    }
    int r = cm_alias_switch_sync(c, cfg, "", cfg->key_prefix, settings, (int64_t)time(NULL),
                                 &cur, err, sizeof(err));
    if (r < 0) {
        cm_ctl_err(&CMD, "%s", err);
    } else if (r == 1) {
        printf("alias %s names %s: every reader reads it\n", cfg->redis_alias, cfg->key_prefix);
        rc = 0;
    } else if (!strcmp(cur, cfg->key_prefix)) {
        /* begun before: fine when it was with these settings */
        if (read_alias(c, cfg, &al) == 0) {
            if (cm_alias_settings_equal(&al.fold, cfg)) {
                printf("alias %s names %s already\n", cfg->redis_alias, cfg->key_prefix);
                rc = 0;
            } else {
                cm_ctl_err(&CMD, "alias %s names %s with other fold settings than %s's",
                           cfg->redis_alias, cur, cfg->path);
            }
            cm_alias_free(&al);
        }
    } else {
        cm_ctl_err(&CMD, "alias %s names %s, not %s: nothing changed", cfg->redis_alias, cur,
                   cfg->key_prefix);
    }
    free(cur);
    free(settings);
    return rc;
}

/* The topic's partitions with their watermarks and the positions of cfg's key_prefix. */
static int progress(const struct cm_config *cfg, struct cm_ctl_part **rows, int *n)
{
    return cm_ctl_read_kafka(&CMD, cfg, rows, n, cm_ctl_positions_of);
}

static int act_status(struct cm_rsync *c, const struct cm_config *cfg, const char *format)
{
    struct cm_alias al;
    struct cm_ctl_part *rows = NULL;
    int n = 0;
    if (read_alias(c, cfg, &al) < 0)
        return 1;
    if (progress(cfg, &rows, &n) < 0) {
        cm_alias_free(&al);
        return 1;
    }
    int64_t tlag = 0, behind = 0;
    for (int i = 0; i < n; i++) {
        int64_t lag = rows[i].high > rows[i].position ? rows[i].high - rows[i].position : 0;
        tlag += lag;
        behind += lag > 0;
    }
    const char *active = al.from_alias ? al.prefix : NULL;
    if (!strcmp(format, "json")) {
        json_t *parts = json_array();
        for (int i = 0; parts && i < n; i++) {
            int64_t lag = rows[i].high > rows[i].position ? rows[i].high - rows[i].position : 0;
            json_array_append_new(parts, json_pack("{s:i, s:I, s:I, s:I}", "partition",
                                                   (int)rows[i].partition, "position",
                                                   (json_int_t)rows[i].position, "high",
                                                   (json_int_t)rows[i].high, "lag",
                                                   (json_int_t)lag));
        }
        json_t *doc = json_pack("{s:s, s:s?, s:s, s:b, s:o, s:I, s:I}", "alias",
                                cfg->redis_alias, "active", active, "prefix", cfg->key_prefix,
                                "caught_up", behind == 0, "partitions",
                                parts ? parts : json_array(), "lag", (json_int_t)tlag,
                                "partitions_behind", (json_int_t)behind);
        if (!doc || json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0) {
            cm_ctl_err(&CMD, "cannot write the status");
            if (doc)
                json_decref(doc);
            free(rows);
            cm_alias_free(&al);
            return 1;
        }
        putchar('\n');
        json_decref(doc);
    } else {
        printf("alias %s names %s; rebuilding %s\n", cfg->redis_alias,
               active ? active : "nothing yet (circmonctl rebuild begin)", cfg->key_prefix);
        printf("%9s %14s %14s %12s\n", "partition", "position", "high", "lag");
        for (int i = 0; i < n; i++) {
            int64_t lag = rows[i].high > rows[i].position ? rows[i].high - rows[i].position : 0;
            printf("%9" PRId32 " %14" PRId64 " %14" PRId64 " %12" PRId64 "\n", rows[i].partition,
                   rows[i].position, rows[i].high, lag);
        }
        printf("lag %" PRId64 " on %" PRId64 " of %d partitions: %s\n", tlag, behind, n,
               behind ? "not caught up" : "caught up");
    }
    free(rows);
    cm_alias_free(&al);
    return fflush(stdout) ? 1 : 0;
}

/* The settings the prefix was rebuilt with (circmond --rebuild's marker)
 * are cfg's: 0, or -1 after saying why not. */
static int marker_agrees(struct cm_rsync *c, const struct cm_config *cfg)
{
    char *k = cm_alias_marker_key(cfg->key_prefix), why[400];
    struct cm_config fold;
    int r = -1;
    if (!k) {
        cm_ctl_err(&CMD, "out of memory");
        return -1;
    }
    char cerr[400] = "";
    const char *argv[] = {"GET", k};
    redisReply *rep = cm_rsync_command(c, 2, argv, NULL, cerr, sizeof(cerr));
    if (!rep || (rep->type != REDIS_REPLY_STRING && rep->type != REDIS_REPLY_NIL)) {
        cm_ctl_err(&CMD, "GET %s: %s", k,
                   !rep ? cerr : rep->type == REDIS_REPLY_ERROR ? rep->str : "not a string");
    } else if (rep->type == REDIS_REPLY_NIL) {
        cm_ctl_err(&CMD, "%s holds no %s: it was not folded by 'circmond --rebuild', so its "
                         "settings are not known; the alias still names the old prefix",
                   cfg->key_prefix, k);
    } else if (cm_alias_settings_parse(rep->str, rep->len, &fold, why, sizeof(why)) < 0) {
        cm_ctl_err(&CMD, "%s: %s", k, why);
    } else {
        if (cm_alias_settings_equal(&fold, cfg))
            r = 0;
        else
            cm_ctl_err(&CMD, "%s was rebuilt with other fold settings than %s's (%s): give "
                             "the configuration the rebuild ran with",
                       cfg->key_prefix, cfg->path, k);
        cm_config_free(&fold);
    }
    if (rep)
        freeReplyObject(rep);
    free(k);
    return r;
}

static int act_switch(struct cm_rsync *c, const struct cm_config *cfg, int64_t max_lag)
{
    char err[512];
    struct cm_alias al;
    struct cm_ctl_part *rows = NULL;
    int n = 0, rc = 1;
    char *settings = NULL, *cur = NULL;
    if (read_alias(c, cfg, &al) < 0)
        return 1;
    if (!al.from_alias) {
        cm_ctl_err(&CMD, "alias %s names no prefix yet: run 'circmonctl rebuild begin' with the "
                         "configuration of the prefix in use, before the rebuild",
                   cfg->redis_alias);
        goto out;
    }
    if (!strcmp(al.prefix, cfg->key_prefix)) {
        printf("alias %s names %s already\n", cfg->redis_alias, al.prefix);
        rc = 0;
        goto out;
    }
    if (progress(cfg, &rows, &n) < 0)
        goto out;
    int64_t behind = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].high - rows[i].position > max_lag) {
            if (behind++ < 8)
                cm_ctl_err(&CMD, "%s partition %" PRId32 ": position %" PRId64
                                 ", high watermark %" PRId64 ": lag above %" PRId64,
                           cfg->key_prefix, rows[i].partition, rows[i].position, rows[i].high,
                           max_lag);
        }
    if (behind) {
        cm_ctl_err(&CMD, "%s has not caught up on %" PRId64 " of %d partitions: the alias still "
                         "names %s",
                   cfg->key_prefix, behind, n, al.prefix);
        goto out;
    }
    if (!(settings = cm_alias_settings_format(cfg))) {
        cm_ctl_err(&CMD, "cannot write the fold settings (a scheme id that is not UTF-8, or "
                         "out of memory)");
        goto out;
    }
    if (marker_agrees(c, cfg) < 0)
        goto out;
    int r = cm_alias_switch_sync(c, cfg, al.prefix, cfg->key_prefix, settings,
                                 (int64_t)time(NULL), &cur, err, sizeof(err));
    if (r < 0) {
        cm_ctl_err(&CMD, "%s", err);
    } else if (r == 0) {
        cm_ctl_err(&CMD, "alias %s changed meanwhile (it names %s now): nothing changed",
                   cfg->redis_alias, cur);
    } else {
        printf("alias %s names %s (was %s): readers read it from their next refresh on\n",
               cfg->redis_alias, cfg->key_prefix, al.prefix);
        rc = 0;
    }
out:
    free(cur);
    free(settings);
    free(rows);
    cm_alias_free(&al);
    return rc;
}

static int act_delete(struct cm_rsync *c, const struct cm_config *cfg, const struct opts *o)
{
    char err[512];
    struct cm_alias al;
    int rc = 1;
    char *pat = NULL;
    if (read_alias(c, cfg, &al) < 0)
        return 1;
    const char *victim = o->prefix ? o->prefix : al.from_alias ? al.previous : "";
    if (!*victim) {
        cm_ctl_err(&CMD, "no prefix to delete: the alias %s replaced none; give --prefix",
                   cfg->redis_alias);
        goto out;
    }
    if (!al.from_alias) {
        cm_ctl_err(&CMD, "alias %s names no prefix: nothing is known to be unused", cfg->redis_alias);
        goto out;
    }
    if (!strcmp(victim, al.prefix) || !strcmp(victim, cfg->key_prefix)) {
        cm_ctl_err(&CMD, "%s is %s: it is not deleted", victim,
                   !strcmp(victim, al.prefix) ? "the active prefix" : "this configuration's key_prefix");
        goto out;
    }
    if (!(pat = cm_purge_pattern(victim))) {
        cm_ctl_err(&CMD, "out of memory");
        goto out;
    }
    /* every master of the slot map on a cluster (each SCANs its own keys only),
     * verified after each pass: a reshard meanwhile moves keys between them */
    struct cm_purge_result res;
    int r = cm_purge_prefix(c, pat, (size_t)o->step, o->pause_ms, &res, err, sizeof(err));
    if (r < 0) {
        cm_ctl_err(&CMD, "%s (%zu keys of %s deleted so far; run again to go on)", err,
                   res.deleted, victim);
        goto out;
    }
    printf("%zu keys of %s deleted in %zu steps (%zu pass%s over %zu node%s)\n", res.deleted,
           victim, res.steps, res.passes, res.passes == 1 ? "" : "es", cm_rsync_n_masters(c),
           cm_rsync_n_masters(c) == 1 ? "" : "s");
    if (r == 1 && res.left) {
        cm_ctl_err(&CMD, "%zu keys of %s appeared during the deletion: something still writes "
                         "it (a circmond with key_prefix = %s?); stop it and run again",
                   res.left, victim, victim);
        goto out;
    }
    if (r == 1) {
        cm_ctl_err(&CMD, "slots of the cluster kept moving during %zu passes (a reshard): the "
                         "deletion of %s is not verified; run again after the reshard",
                   res.passes, victim);
        goto out;
    }
    rc = 0;
out:
    free(pat);
    cm_alias_free(&al);
    return rc;
}

int cm_ctl_rebuild(int argc, char **argv)
{
    struct opts o;
    struct cm_config cfg = {0};
    char err[512];
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (cm_ctl_config(&CMD, o.config, &cfg))
        return 1;
    rc = 1;
    if (!cfg.redis_alias) {
        cm_ctl_err(&CMD, "%s: [redis] alias is not set: every reader must name the alias "
                         "before a rebuild (README, Operations, Rebuild)",
                   o.config);
        goto out;
    }
    struct cm_rsync *c = cm_rsync_open(&cfg, err, sizeof(err)); /* one Redis, or the cluster */
    if (!c) {
        cm_ctl_err(&CMD, "%s", err);
        goto out;
    }
    if (!strcmp(o.action, "begin"))
        rc = act_begin(c, &cfg);
    else if (!strcmp(o.action, "status"))
        rc = act_status(c, &cfg, o.format);
    else if (!strcmp(o.action, "switch"))
        rc = act_switch(c, &cfg, o.max_lag);
    else
        rc = act_delete(c, &cfg, &o);
    cm_rsync_close(c);
out:
    cm_config_free(&cfg);
    return rc;
}
