/* reload.h - SIGHUP: re-read the configuration file and apply what can change live.
 *
 * A reload is all or nothing at the file level:
 *  - a file that does not load (syntax, a bad value) changes nothing; the
 *    error names the file, the line and the key;
 *  - a change to a key the stored state depends on is refused, naming the
 *    key, and changes nothing: reorder_window_days, max_window_events,
 *    nationality_cohorts (whether the aggregate has cohorts per nationality),
 *    every scheme's grace_days and stay_limit ([scheme *] and [scheme ID]:
 *    compared as each scheme's effective settings), [kafka] topic,
 *    dlq_topic and alert_topic (positions and the dead-letter and alert
 *    marks in Redis are offsets of those topics) and [redis] key_prefix and
 *    state_buckets (where the states are);
 *  - otherwise the live keys are applied: log_level, [http] refresh_ms,
 *    max_connections, request_timeout_ms, metrics_cohort_months, then each
 *    subsystem's apply hook (the alert rules); every other key that changed
 *    is kept at its running value and named in a warning ("takes effect at
 *    the next start").
 * Around it, systemd hears RELOADING=1 then READY=1 (notify.h) when the
 * daemon had been ready. */
#ifndef CIRCMOND_RELOAD_H
#define CIRCMOND_RELOAD_H

#include <stddef.h>

struct daemon;
struct cm_config;

/* Compares the running configuration cur with nc (a freshly loaded file).
 * Returns 0 when nc may be applied, or -EPERM with err naming the first
 * refused key ("[section] key"). */
int cmd_reload_check(const struct cm_config *cur, const struct cm_config *nc, char *err,
                     size_t errlen);

/* Reloads d's configuration from its file (see above). Returns 0 (applied),
 * -EINVAL (the file did not load), -EPERM (refused) or -ENOMEM; each logged. */
int cmd_reload(struct daemon *d);

#endif
