/* ctl_opts.c - what circmonctl's subcommands share: options, configuration,
 * printing the indicators. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include <hiredis/hiredis.h>

#include "circmon/alias.h"
#include "circmon/cluster_sync.h"
#include "circmon/decimal.h"
#include "circmon/event.h"
#include "circmon/indicators.h"
#include "circmon/store.h"
#include "circmon/timeutil.h"
#include "ctl.h"

void cm_ctl_err(const struct cm_ctl_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "circmonctl %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int usage_error(const struct cm_ctl_cmd *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "circmonctl %s: ", cmd->name);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    fputs(cmd->usage, stderr);
    return 2;
}

/* The option's name as the user wrote it, for messages. */
static const char *const opt_names[] = {"--config", "--as-of", "--format", "--topic",
                                        "--rate"};
#define N_OPTS (sizeof(opt_names) / sizeof(opt_names[0]))

int cm_ctl_parse(const struct cm_ctl_cmd *cmd, int argc, char **argv, struct cm_ctl_args *a)
{
    static const struct option all[] = {
        {"config", required_argument, NULL, 'c'}, {"as-of", required_argument, NULL, 'a'},
        {"format", required_argument, NULL, 'f'}, {"topic", required_argument, NULL, 't'},
        {"rate", required_argument, NULL, 'r'},   {"help", no_argument, NULL, 'h'},
    };
    static const unsigned bit[] = {CM_CTL_CONFIG, CM_CTL_AS_OF, CM_CTL_FORMAT, CM_CTL_TOPIC,
                                   CM_CTL_RATE, 0};
    struct option opts[N_OPTS + 2];
    int n = 0;
    for (size_t i = 0; i < N_OPTS + 1; i++)
        if (!bit[i] || (cmd->opts & bit[i]))
            opts[n++] = all[i];
    memset(&opts[n], 0, sizeof(opts[n]));

    memset(a, 0, sizeof(*a));
    a->format = cmd->format;
    unsigned given = 0;
    int c, bad = 0;
    optind = 1;
    opterr = 0; /* our own messages */
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->config = optarg;
            given |= CM_CTL_CONFIG;
            break;
        case 'a':
            if (cm_time_parse(optarg, &a->as_of) < 0)
                return usage_error(cmd,
                                   "--as-of: '%s' is not a time (unix seconds, YYYY-MM-DD or "
                                   "YYYY-MM-DDTHH:MM[:SS][Z], UTC)",
                                   optarg);
            if (a->as_of < CM_TIME_MIN || a->as_of > CM_TIME_MAX)
                return usage_error(cmd,
                                   "--as-of: '%s' is outside the instants the contract knows, "
                                   "0 (1970-01-01T00:00:00Z) to 253402300799 "
                                   "(9999-12-31T23:59:59Z)",
                                   optarg);
            a->have_as_of = 1;
            given |= CM_CTL_AS_OF;
            break;
        case 'f':
            if (strcmp(optarg, "json") && strcmp(optarg, "table"))
                return usage_error(cmd, "--format: json or table, not '%s'", optarg);
            a->format = optarg;
            given |= CM_CTL_FORMAT;
            break;
        case 't':
            if (!*optarg)
                return usage_error(cmd, "--topic: empty name%s", "");
            a->topic = optarg;
            given |= CM_CTL_TOPIC;
            break;
        case 'r':
            if (cm_decimal_u64(optarg, strlen(optarg), CM_CTL_RATE_MAX, &a->rate) < 0 ||
                a->rate == 0)
                return usage_error(cmd, "--rate: '%s' is not an integer in 1..100000000", optarg);
            given |= CM_CTL_RATE;
            break;
        case 'h':
            fputs(cmd->usage, stdout);
            return 0;
        case ':':
            return usage_error(cmd, "%s needs a value", argv[optind - 1]);
        default:
            bad = 1;
            break;
        }
        if (bad)
            return usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    }
    for (size_t i = 0; i < N_OPTS; i++)
        if ((cmd->required & (1u << i)) && !(given & (1u << i)))
            return usage_error(cmd, "%s is required", opt_names[i]);
    a->args = argv + optind;
    a->nargs = argc - optind;
    if (a->nargs < cmd->min_args)
        return usage_error(cmd, "no %s given", cmd->args_name ? cmd->args_name : "operand");
    if (cmd->max_args >= 0 && a->nargs > cmd->max_args)
        return usage_error(cmd, "unexpected argument '%s'", a->args[cmd->max_args]);
    return -1;
}

int cm_ctl_config(const struct cm_ctl_cmd *cmd, const char *path, struct cm_config *cfg)
{
    char err[512];
    if (path) {
        if (cm_config_load(cfg, path, err, sizeof(err)) < 0) {
            cm_ctl_err(cmd, "%s", err);
            return 1;
        }
    } else if (cm_config_defaults(cfg) < 0) {
        cm_ctl_err(cmd, "out of memory for the default configuration");
        return 1;
    }
    return 0;
}

/* s (len bytes) for a message: printable ASCII as is, other bytes \xNN, at
 * most 60 bytes of s. */
static void escaped(const char *s, size_t len, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < len && i < 60 && j + 5 < cap; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b >= 0x20 && b < 0x7f && b != '\\')
            out[j++] = (char)b;
        else
            j += (size_t)snprintf(out + j, cap - j, "\\x%02x", b);
    }
    if (len > 60 && j + 4 < cap)
        j += (size_t)snprintf(out + j, cap - j, "...");
    out[j] = 0;
}

int cm_ctl_resolve(const struct cm_ctl_cmd *cmd, struct cm_config *cfg)
{
    char err[512];
    struct cm_alias al;
    if (!cfg->redis_alias)
        return 0;
    struct cm_rsync *c = cm_rsync_open(cfg, err, sizeof(err)); /* one Redis, or the cluster */
    if (!c) {
        cm_ctl_err(cmd, "%s", err);
        return 1;
    }
    int r = cm_alias_read_sync(c, cfg, &al, err, sizeof(err));
    cm_rsync_close(c);
    if (r < 0) {
        cm_ctl_err(cmd, "%s", err);
        return 1;
    }
    r = cm_alias_apply(cfg, &al);
    cm_alias_free(&al);
    if (r < 0) {
        cm_ctl_err(cmd, "out of memory");
        return 1;
    }
    return 0;
}

int cm_ctl_load_agg(const struct cm_ctl_cmd *cmd, int argc, char **argv, struct cm_ctl_args *a,
                    struct cm_config *cfg, struct cm_agg **ag, struct cm_names **nm)
{
    char err[512];
    *ag = NULL;
    *nm = NULL;
    int rc = cm_ctl_parse(cmd, argc, argv, a);
    if (rc >= 0)
        return rc;
    if (!a->have_as_of)
        a->as_of = (int64_t)time(NULL);
    if (cm_ctl_config(cmd, a->config, cfg))
        return 1;
    if (cm_ctl_resolve(cmd, cfg))
        goto fail;
    if (!(*ag = cm_agg_new()) || !(*nm = cm_names_new())) {
        cm_ctl_err(cmd, "out of memory for the aggregate");
        goto fail;
    }
    if (cfg->redis_cluster) {
        int np = cm_ctl_topic_parts(cmd, cfg);
        int32_t *parts = np > 0 ? calloc((size_t)np, sizeof(*parts)) : NULL;
        if (np < 0)
            goto fail;
        if (np > 0 && !parts) {
            cm_ctl_err(cmd, "out of memory for %d partitions", np);
            goto fail;
        }
        for (int i = 0; i < np; i++)
            parts[i] = i;
        int r = np ? cm_store_read_agg_of(cfg, parts, (size_t)np, *ag, *nm, err, sizeof(err)) : 0;
        free(parts);
        if (r < 0) {
            cm_ctl_err(cmd, "%s", err);
            goto fail;
        }
    } else if (cm_store_read_agg(cfg, *ag, *nm, err, sizeof(err)) < 0) {
        cm_ctl_err(cmd, "%s", err);
        goto fail;
    }
    return -1;
fail:
    *nm = cm_names_free(*nm);
    *ag = cm_agg_free(*ag);
    cm_config_free(cfg);
    return 1;
}

int cm_ctl_print_indicators(const struct cm_ctl_cmd *cmd, const struct cm_agg *ag,
                            const struct cm_names *nm, const struct cm_config *cfg,
                            int64_t as_of, const char *format)
{
    json_t *doc = ag ? cm_indicators_json(ag, nm, cfg, as_of) : NULL;
    if (!doc) {
        /* jansson refuses keys that are not UTF-8 (and C strings end at a
         * NUL): name the first such scheme id or nationality */
        for (size_t i = 0; i < cm_names_count(nm); i++) {
            size_t len;
            const char *s = cm_names_get(nm, (int32_t)i, &len);
            if (s && (!cm_utf8_valid(s, len) || memchr(s, 0, len))) {
                char e[320];
                escaped(s, len, e, sizeof(e));
                cm_ctl_err(cmd,
                           "cannot make the indicators document: the scheme id or nationality "
                           "\"%s\" (%zu bytes) %s, which a JSON key cannot hold",
                           e, len, memchr(s, 0, len) ? "holds U+0000" : "is not valid UTF-8");
                return 1;
            }
        }
        cm_ctl_err(cmd, "cannot make the indicators document: out of memory");
        return 1;
    }
    int r = cm_indicators_print(doc, format, stdout);
    json_decref(doc);
    if (r < 0) {
        cm_ctl_err(cmd, "cannot write the indicators to standard output: %s",
                   strerror(r == -EIO && errno ? errno : -r));
        return 1;
    }
    return 0;
}
