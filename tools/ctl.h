/* ctl.h - circmonctl's subcommands and the option handling they share.
 *
 * Each subcommand parses its own arguments (argv[0] is the subcommand's
 * name) with cm_ctl_parse, prints its own errors to stderr and returns the
 * process exit status: 0 success, 1 failure, 2 usage error. */
#ifndef CIRCMON_CTL_H
#define CIRCMON_CTL_H

#include <stdint.h>

#include "circmon/agg.h"
#include "circmon/config.h"
#include "circmon/names.h"

int cm_ctl_replay(int argc, char **argv);     /* tools/ctl_replay.c */
int cm_ctl_publish(int argc, char **argv);    /* tools/ctl_publish.c */
int cm_ctl_indicators(int argc, char **argv); /* tools/ctl_indicators.c */
int cm_ctl_status(int argc, char **argv);     /* tools/ctl_status.c */
int cm_ctl_dlq(int argc, char **argv);        /* tools/ctl_dlq.c */
int cm_ctl_alerts(int argc, char **argv);     /* tools/ctl_alerts.c */
int cm_ctl_rebuild(int argc, char **argv);    /* tools/ctl_rebuild.c */
int cm_ctl_migrate_layout(int argc, char **argv); /* tools/ctl_migrate.c */

/* ---- tools/ctl_opts.c: shared option handling ---- */

/* The options a subcommand takes (bits of cm_ctl_cmd.opts / .required). */
enum {
    CM_CTL_CONFIG = 1u << 0, /* --config FILE */
    CM_CTL_AS_OF = 1u << 1,  /* --as-of TIME, within [CM_TIME_MIN, CM_TIME_MAX] */
    CM_CTL_FORMAT = 1u << 2, /* --format json|table */
    CM_CTL_TOPIC = 1u << 3,  /* --topic NAME, not empty */
    CM_CTL_RATE = 1u << 4,   /* --rate N, an integer in 1..CM_CTL_RATE_MAX (per second) */
};

#define CM_CTL_RATE_MAX 100000000

struct cm_ctl_cmd {
    const char *name;      /* "replay": messages read "circmonctl replay: ..." */
    const char *usage;     /* --help text (stdout), also after a usage error (stderr) */
    unsigned opts;         /* CM_CTL_* it takes; --help always */
    unsigned required;     /* CM_CTL_* it needs */
    const char *format;    /* --format default */
    int min_args, max_args; /* operands; max_args < 0: any number */
    const char *args_name; /* what the operands are ("FILE", "EVENTS_FILE") */
};

struct cm_ctl_args {
    const char *config; /* NULL when not given */
    const char *format; /* given or the command's default */
    const char *topic;  /* NULL when not given */
    int have_as_of;
    int64_t as_of;
    uint64_t rate; /* 0 when not given */
    char **args; /* the operands, nargs of them (pointers into argv) */
    int nargs;
};

/* Parses argv for cmd into *a. Returns -1 when the command goes on, or the
 * exit status to return at once: 0 after --help (usage on stdout), 2 after
 * a usage error (what is wrong, then the usage, on stderr). */
int cm_ctl_parse(const struct cm_ctl_cmd *cmd, int argc, char **argv, struct cm_ctl_args *a);

/* Prints "circmonctl NAME: <message>\n" to stderr. */
void cm_ctl_err(const struct cm_ctl_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Loads the configuration at path (NULL: the built-in defaults) into cfg,
 * reporting what went wrong. Returns 0 or 1 (the exit status; cfg then holds
 * nothing to free). */
int cm_ctl_config(const struct cm_ctl_cmd *cmd, const char *path, struct cm_config *cfg);

/* When cfg names an alias ([redis] alias), reads it and makes cfg read
 * what it names: key_prefix and the scheme settings become those of the
 * active prefix (alias.h), so that one read uses one prefix with the
 * settings it was folded with. Without an alias, changes nothing. Returns 0
 * or 1 after saying what went wrong (cfg is still the caller's to free). */
int cm_ctl_resolve(const struct cm_ctl_cmd *cmd, struct cm_config *cfg);

/* The number of partitions of cfg's topic, from Kafka's metadata (with
 * [redis] cluster = yes Redis is read by partition name, not by SCAN).
 * Returns it (>= 0), or -1 after saying what went wrong. */
int cm_ctl_topic_parts(const struct cm_ctl_cmd *cmd, const struct cm_config *cfg);

/* The start of the subcommands that read the aggregate (indicators,
 * alerts): parses argv for cmd into *a (--as-of defaults to now), loads the
 * configuration into cfg, resolves its alias (cm_ctl_resolve) and reads the
 * aggregate of that prefix from its Redis into a new *ag and *nm (with
 * [redis] cluster = yes: the partitions of the topic, by name). Returns -1
 * when the command goes on (cfg, *ag and *nm are
 * then the caller's to free), or the exit status to return at once, after
 * saying what went wrong (nothing left to free). */
int cm_ctl_load_agg(const struct cm_ctl_cmd *cmd, int argc, char **argv, struct cm_ctl_args *a,
                    struct cm_config *cfg, struct cm_agg **ag, struct cm_names **nm);

/* One partition of the topic (tools/ctl_status.c). */
struct cm_ctl_part {
    int32_t partition;
    int64_t position;  /* next offset to fold, from Redis; 0 when absent */
    int64_t low, high; /* Kafka watermarks */
};

/* Sets the positions of rows[0..n) from Redis. Returns 0, or -1 after saying
 * what went wrong. */
typedef int cm_ctl_positions_fn(const struct cm_ctl_cmd *cmd, const struct cm_config *cfg,
                                struct cm_ctl_part *rows, int n);

/* The positions of rows[0..n), each partition's key read by name (routed by
 * its slot on Redis Cluster). */
cm_ctl_positions_fn cm_ctl_positions_of;

/* Fills *rows (malloc'd, *n of them, indexed by partition id) with the
 * topic's partitions and their watermarks. positions, when not NULL, sets
 * the positions (else they are 0), read before the watermarks: a lag high -
 * position is then never below the true one. Returns 0, or -1 after saying
 * what went wrong (nothing to free). */
int cm_ctl_read_kafka(const struct cm_ctl_cmd *cmd, const struct cm_config *cfg,
                      struct cm_ctl_part **rows, int *n, cm_ctl_positions_fn *positions);

/* Makes the indicators document of ag as of as_of and prints it to stdout
 * in format. When the document cannot be made, says why: a scheme id or
 * nationality that JSON cannot hold as a key (not UTF-8, or holding U+0000:
 * named, escaped), else out of memory. Returns 0 or 1. */
int cm_ctl_print_indicators(const struct cm_ctl_cmd *cmd, const struct cm_agg *ag,
                            const struct cm_names *nm, const struct cm_config *cfg,
                            int64_t as_of, const char *format);

#endif
