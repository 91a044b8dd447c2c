/* alias.h - the active prefix: the key that names which prefix readers read.
 *
 * `[redis] alias = NAME` (a key name without braces or blanks, so no
 * `<prefix>:{*` pattern ever matches it) is a Redis hash:
 *   prefix    the active prefix (validated as [redis] key_prefix is)
 *   settings  the fold settings that prefix was folded with: reorder_window_days,
 *             max_window_events, nationality_cohorts and every scheme's grace_days and stay_limit
 *             (cm_alias_settings_format); the indicators need the grace when
 *             read (an outcome is read off against the as-of day and the grace)
 *   previous  the prefix it replaced ("" for the first)
 *   since     unix seconds of the switch
 * Writers (circmond) always write their own key_prefix. Readers (the HTTP
 * read side, circmonctl indicators/alerts/status) resolve the alias once per
 * read, then read every partition of that one prefix and evaluate with its
 * settings: a figure set never mixes two prefixes, nor a prefix with
 * settings it was not folded with. An unset alias, or a key that does not
 * exist, means the configuration's own key_prefix and settings (what circmon
 * did before the alias existed).
 *
 * The switch is one Lua compare-and-set on that one key (one hash slot):
 * HSET of all four fields only if `prefix` still names the expected one.
 *
 * Error convention: negative errno-style codes with a message in err (errlen
 * bytes, always NUL-terminated). -EPROTO: Redis answered with an error, or
 * the alias holds something malformed (named in the message); -ENOMEM. */
#ifndef CIRCMON_ALIAS_H
#define CIRCMON_ALIAS_H

#include <stddef.h>
#include <stdint.h>

#include "circmon/config.h"

#define CM_ALIAS_PREFIX_MAX 1024  /* longest prefix the alias may name */
#define CM_ALIAS_SETTINGS_MAX (1u << 24) /* longest settings text read back */
#define CM_ALIAS_SCHEMES_MAX 65536 /* schemes one settings text may hold */

struct redisReply;
struct cm_rsync;

/* What a reader reads: the prefix, and the settings to evaluate it with. */
struct cm_alias {
    char *prefix;   /* malloc'd */
    char *previous; /* malloc'd, "" when none (or not from the alias) */
    int64_t since;  /* 0 when not from the alias */
    int from_alias; /* 1: read from the alias key; 0: the configuration's own */
    /* The fold settings: only reorder_window_days, max_window_events,
     * nationality_cohorts, schemes, n_schemes and scheme_default are set
     * (owned), enough for cm_config_scheme and so for cm_indicators_json. */
    struct cm_config fold;
};

/* The settings text of cfg: JSON {"v":1,"window":[r,m],"default":[g,n,w],
 * "schemes":[[id,g,n,w],...]} (reorder_window_days, max_window_events;
 * grace_days, stay_limit N/W, both 0 for none), schemes in file order, and
 * "nationality_cohorts":true last when cfg has nationality_cohorts = yes
 * (absent for no: the text of earlier versions). Returns a malloc'd string
 * or NULL (out of memory). */
char *cm_alias_settings_format(const struct cm_config *cfg);

/* Parses a settings text (len bytes) into fold (as in struct cm_alias: only
 * the fold fields set; free with cm_config_free). Every value is checked
 * as the configuration checks it (reorder_window_days 0..3650,
 * max_window_events 1..65536, grace_days 0..3650, N and W 1..3650 or
 * both 0, ids of at most 256 bytes without ']' or NUL, at most
 * CM_ALIAS_SCHEMES_MAX, no id twice; nationality_cohorts true or absent).
 * Returns 0 or -EPROTO/-ENOMEM with err. */
int cm_alias_settings_parse(const char *s, size_t len, struct cm_config *fold, char *err,
                            size_t errlen);

/* 1 when two configurations' fold settings agree (reorder_window_days,
 * max_window_events, nationality_cohorts, each scheme's effective
 * grace_days and stay_limit, as reload compares them); 0 otherwise. */
int cm_alias_settings_equal(const struct cm_config *a, const struct cm_config *b);

/* The reader's view from an HGETALL reply of the alias key (rep; NULL or
 * an empty array: the key is absent): fills *out (free with cm_alias_free).
 * Without the key, out is cfg's key_prefix and settings. Returns 0 or
 * -EPROTO/-ENOMEM with err (out then holds nothing). */
int cm_alias_from_reply(const struct redisReply *rep, const struct cm_config *cfg,
                        struct cm_alias *out, char *err, size_t errlen);

/* cm_alias_from_reply of an HGETALL on c (blocking; routed to the alias
 * key's slot on a cluster, cluster_sync.h); with cfg's alias unset, no
 * command is sent. Same contract. */
int cm_alias_read_sync(struct cm_rsync *c, const struct cm_config *cfg,
                       struct cm_alias *out, char *err, size_t errlen);

/* Frees what a holds and zeroes it. Accepts a zeroed one. */
void cm_alias_free(struct cm_alias *a);

/* Makes cfg read what a names: cfg's key_prefix becomes a's prefix and its
 * scheme settings a's (taken over: a is emptied). For circmonctl's readers,
 * which then read and evaluate through cfg. Returns 0 or -ENOMEM (cfg and a
 * unchanged). */
int cm_alias_apply(struct cm_config *cfg, struct cm_alias *a);

/* "<prefix>:{rebuild}:settings", malloc'd, or NULL: the settings a prefix
 * is being rebuilt with, written by its first `circmond --rebuild` (SET NX),
 * compared by every later one and by the switch (a key of the prefix: the
 * deletion takes it with the rest). */
char *cm_alias_marker_key(const char *prefix);

/* The switch, on c (routed to the alias key's slot): sets the alias key of cfg to name prefix `to` with
 * settings (text of cm_alias_settings_format), `previous` = expect and
 * `since` = now, only if its `prefix` field is still `expect` ("" = the key
 * has no prefix yet). Returns 1 when switched, 0 when refused (*cur, when
 * not NULL, gets the prefix found, malloc'd: "" when none), or a negative
 * code with err. */
int cm_alias_switch_sync(struct cm_rsync *c, const struct cm_config *cfg, const char *expect,
                         const char *to, const char *settings, int64_t now, char **cur,
                         char *err, size_t errlen);

#endif
