/* rebuild.h - circmond --rebuild: a second consumer group folding a new key prefix from the beginning of the topic.
 *
 * A rebuild run is circmond with the configuration the state is to be
 * rebuilt with (a new [redis] key_prefix, the new fold settings), while the
 * daemons of the prefix in use keep folding and serving it. It differs from
 * a normal run in three things only:
 * - its consumer group is `<group_id>.rebuild` (never the group of the
 *   daemons in use, whose partitions it would take);
 * - it writes no dead letters and reads none back (the daemons in use send
 *   them for the same messages; the daemons started on the new prefix after
 *   the switch read the topic back from its beginning, find them there and
 *   send only what is missing: deadletter.c);
 * - it evaluates no alert rules (the daemons in use do; alert state stays
 *   under their prefix).
 * Its read side serves whatever the alias names, like every reader. It
 * refuses to start unless [redis] alias is set and names another prefix
 * than its own key_prefix (circmonctl rebuild begin). */
#ifndef CIRCMOND_REBUILD_H
#define CIRCMOND_REBUILD_H

#include <stddef.h>

#include "circmon/config.h"

/* Makes cfg a rebuild run's: group_id gets ".rebuild" appended, the alert
 * rules are dropped, cfg->rebuild_run = 1. Applied at start and to every
 * configuration a reload reads. Returns 0 or -ENOMEM/-EINVAL (no alias)
 * with err. */
int cmd_rebuild_prepare(struct cm_config *cfg, char *err, size_t errlen);

/* The start-up check, when [redis] alias is set (blocking, before the loop
 * exists; returns 0 at once without an alias). A rebuild run: the alias must
 * name a prefix, and not cfg's key_prefix, and the settings marker
 * cm_alias_marker_key(key_prefix) is written (SET NX) or must agree with
 * cfg's settings (a prefix is folded with one set of settings, also across
 * restarts of the rebuild). A normal run: refused when its key_prefix is the
 * active prefix and the alias records other settings than cfg's; Redis
 * unreachable is only a warning (the pipeline waits for Redis by itself).
 * Returns 0 or -1 with err. */
int cmd_rebuild_check(const struct cm_config *cfg, char *err, size_t errlen);

#endif
