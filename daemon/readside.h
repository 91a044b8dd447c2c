/* readside.h - circmond's read side: every partition's aggregate read from Redis, evaluated, cached.
 *
 * Every refresh_ms the read side first resolves [redis] alias (one HGETALL,
 * alias.h; without an alias: key_prefix and the configured settings), then
 * reads, under that one prefix, each partition's aggregate (its hashes
 * <prefix>:{P}:agg and <prefix>:{P}:agg:<n>, store_layout.h, in one script:
 * read atomically, as one apply wrote it) and
 * <prefix>:{P}:pos for every partition P of the topic, whoever owns it (no
 * SCAN: each command touches one hash slot), on a Redis connection of its
 * own (lib/redis_conn.c) with at most RS_IN_FLIGHT partitions in flight.
 * Its own connection because a read that times out drops its connection:
 * on the store's connection that would fail the pipeline's applies and make
 * it resynchronise, and a big aggregate reply would sit in front of the
 * applies' replies.
 *
 * Each field is parsed (cm_agg_key_parse) and each value checked (a decimal
 * int64, no overflow when partitions are summed) into a fresh aggregate; a
 * malformed one fails the refresh (logged once per distinct error, counted)
 * and the last good figures stay. A complete read is evaluated as of the
 * read instant (cm_indicators_json) on a thread of its own (the loop only
 * parses the replies) and kept: the aggregate (for as_of requests), the
 * document, its JSON text (the form of circmonctl replay), and the /metrics
 * indicator part (cm_prom_indicators). Readers never wait: they get the last
 * complete figures or none. One refresh at a time, evaluation included. */
#ifndef CIRCMOND_READSIDE_H
#define CIRCMOND_READSIDE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "circmon/agg.h"
#include "circmon/alias.h"
#include "circmon/config.h"
#include "circmon/metrics.h"
#include "circmon/names.h"

#define RS_IN_FLIGHT 4 /* partitions read at once */

struct event_base;
struct cmd_readside;

/* The last complete read. Everything is owned by the read side and valid
 * until the next call into it that may refresh (i.e. until the loop runs). */
struct cmd_figures {
    int64_t as_of;        /* the read instant (unix s): the document's as_of */
    int64_t read_at_ms;   /* when the read completed (unix ms) */
    int64_t took_us;      /* how long the read and evaluation took */
    struct cm_agg *ag;    /* the sum over every partition */
    struct cm_names *nm;  /* its names */
    json_t *doc;          /* cm_indicators_json(ag, nm, cfg, as_of) */
    int nat_cohorts;      /* doc has the cohorts of every nationality (an alert rule had a
                           * nationality when it was made) */
    char *json;           /* doc as circmonctl prints it, with its final newline */
    size_t json_len;
    char *prom;           /* cm_prom_indicators of doc */
    size_t prom_len;
    int64_t *pos;         /* stored position of each partition (0 when absent) */
    int n_parts;
    struct cm_alias al;   /* the one prefix read, and the settings doc was evaluated with
                             (al.fold: use it for any other evaluation of ag) */
};

/* A read side on base over cfg (both borrowed). It connects at once and
 * reads nothing until cmd_readside_start. h_refresh (refresh durations, us)
 * and c_fail (failed refreshes) are borrowed from the daemon's registry and
 * may be NULL. Returns NULL when out of memory. */
struct cmd_readside *cmd_readside_new(struct event_base *base, const struct cm_config *cfg,
                                      struct cm_hist *h_refresh, struct cm_counter *c_fail);

/* Starts (or restarts) the refreshes over partitions 0..n_parts-1 (n_parts >
 * 0): one at once, then every refresh_ms. Returns 0 or -EINVAL. */
int cmd_readside_start(struct cmd_readside *rs, int n_parts);

/* Asks for a refresh now (if none runs); for tests and operators. */
void cmd_readside_kick(struct cmd_readside *rs);

/* The last complete figures, or NULL before the first one. */
const struct cmd_figures *cmd_readside_figures(const struct cmd_readside *rs);

/* 1 when the read side's Redis connection is up. */
int cmd_readside_connected(const struct cmd_readside *rs);

/* The partition count given to cmd_readside_start (0 before). */
int cmd_readside_parts(const struct cmd_readside *rs);

/* Why the last refresh failed ("" when it did not), and when (unix ms, 0). */
const char *cmd_readside_error(const struct cmd_readside *rs, int64_t *at_ms);

/* Frees rs (a refresh in flight is dropped). Accepts NULL; returns NULL. */
struct cmd_readside *cmd_readside_free(struct cmd_readside *rs);

#endif
