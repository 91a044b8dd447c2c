/* alerts.h - circmond's alert rules: evaluation on the read side's figures, states in Redis, exactly-once alert events.
 *
 * Every [alerts] interval_s, and after applied batches changed the figures
 * (at most once per interval_s / 10), every rule is evaluated (lib/alert.c)
 * on the read side's last figures, as of their read instant. Each instance's
 * state lives in Redis in keys of one hash slot, <prefix>:{alert:<hex>}:st
 * (hash: state, seq, since, at, v, n), :outbox (list of circmon.v1.Alert),
 * :hist (the last transitions, JSON), :mark and :lease. A transition is one
 * Lua compare-and-set on seq (the transition count read) that refuses
 * figures older than the stored `at` and appends the event, with its
 * idempotency key <hex>-<seq>, to the outbox. A publisher holding the
 * instance's lease reads the alert partition back from the mark (skipping
 * the idempotency keys found there), produces the rest keyed by the
 * instance, and once they are delivered removes them and moves the mark.
 * The read-back runs on a thread of its own; everything else on the loop.
 * Alerts need the read side: they are off when [http] port is 0. */
#ifndef CIRCMOND_ALERTS_H
#define CIRCMOND_ALERTS_H

#include <jansson.h>

#include "circmon/config.h"
#include "circmon/prom.h"

struct daemon;
struct cmd_alerts;

/* Starts the alerts of d (d->http must exist; no rules: nothing to do).
 * Returns 0 or a negative errno (logged). */
int cmd_alerts_start(struct daemon *d);

/* A reload's apply hook: moves the rules of nc ([alerts] interval_s and the
 * [alert NAME] sections) into live, the running configuration the alerts
 * were started with (nc is left without them, live's old rules are freed),
 * and applies them: instances of rules that stay (by name) keep their state
 * and counters, those of rules that are gone are forgotten here (their Redis
 * state stays), new rules are evaluated at the next tick; a publisher job in
 * flight is dropped (its events stay in the outbox). Rules given to a daemon
 * started without any start the alerts. Returns 0, or a negative errno
 * (logged) when they cannot start or memory runs out (the rules are then
 * those of live, unchanged, or moved but not evaluated). */
int cmd_alerts_apply(struct daemon *d, struct cm_config *live, struct cm_config *nc);

/* GET /v1/alerts: every instance known here. A new reference or NULL. */
json_t *cmd_alerts_json(struct daemon *d);

/* The alert metrics (circmon_alert_*). Returns 0 or -ENOMEM. */
int cmd_alerts_metrics(struct daemon *d, struct cm_strbuf *b);

/* Frees d's alerts (in-flight work is dropped: the outbox keeps it). */
void cmd_alerts_free(struct daemon *d);

#endif
