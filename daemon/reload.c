/* reload.c - SIGHUP: the configuration re-read, refused keys named, live keys applied. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "daemon.h"
#include "http.h"
#include "notify.h"
#include "rebuild.h"
#include "reload.h"

enum fkind { F_LIVE, F_RESTART, F_REFUSE };
enum ftype { T_INT, T_STR, T_SECRET };

struct field {
    const char *sec, *key;
    size_t off;
    enum ftype type;
    enum fkind kind;
};

#define FI(s, k, m, c) {s, k, offsetof(struct cm_config, m), T_INT, c}
#define FS(s, k, m, c) {s, k, offsetof(struct cm_config, m), T_STR, c}

/* Every key of the file but the [scheme] ones (compared per scheme) and
 * rdkafka.* (a list). Why each refused key is refused: reload.h. */
static const struct field fields[] = {
    FI("circmon", "reorder_window_days", reorder_window_days, F_REFUSE),
    FI("circmon", "max_window_events", max_window_events, F_REFUSE),
    FI("circmon", "batch_size", batch_size, F_RESTART),
    FI("circmon", "max_in_flight", max_in_flight, F_RESTART),
    FI("circmon", "batch_linger_ms", batch_linger_ms, F_RESTART),
    FS("circmon", "log_level", log_level, F_LIVE),
    FI("circmon", "nationality_cohorts", nationality_cohorts, F_REFUSE),
    FS("kafka", "brokers", brokers, F_RESTART),
    FS("kafka", "topic", topic, F_REFUSE),
    FS("kafka", "group_id", group_id, F_RESTART),
    FS("kafka", "dlq_topic", dlq_topic, F_REFUSE),
    FS("kafka", "alert_topic", alert_topic, F_REFUSE),
    FS("redis", "host", redis_host, F_RESTART),
    FI("redis", "port", redis_port, F_RESTART),
    FS("redis", "unix_socket", redis_unix_socket, F_RESTART),
    FS("redis", "user", redis_user, F_RESTART),
    {"redis", "password", offsetof(struct cm_config, redis_password), T_SECRET, F_RESTART},
    FI("redis", "db", redis_db, F_RESTART),
    FI("redis", "cluster", redis_cluster, F_RESTART),
    FS("redis", "nodes", redis_nodes_spec, F_RESTART),
    FS("redis", "key_prefix", key_prefix, F_REFUSE),
    FS("redis", "alias", redis_alias, F_RESTART),
    FI("redis", "state_buckets", state_buckets, F_REFUSE),
    FI("redis", "connect_timeout_ms", connect_timeout_ms, F_RESTART),
    FI("redis", "command_timeout_ms", command_timeout_ms, F_RESTART),
    FS("http", "listen", http_listen, F_RESTART),
    FI("http", "port", http_port, F_RESTART),
    FI("http", "refresh_ms", http_refresh_ms, F_LIVE),
    FI("http", "max_connections", http_max_connections, F_LIVE),
    FI("http", "request_timeout_ms", http_request_timeout_ms, F_LIVE),
    FI("http", "metrics_cohort_months", http_metrics_cohort_months, F_LIVE),
};

static int int_at(const struct cm_config *c, const struct field *f)
{
    return *(const int *)(const void *)((const char *)c + f->off);
}

static const char *str_at(const struct cm_config *c, const struct field *f)
{
    return *(char *const *)(const void *)((const char *)c + f->off);
}

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static int field_eq(const struct cm_config *a, const struct cm_config *b, const struct field *f)
{
    return f->type == T_INT ? int_at(a, f) == int_at(b, f) : str_eq(str_at(a, f), str_at(b, f));
}

static int rdkafka_eq(const struct cm_config *a, const struct cm_config *b)
{
    if (a->n_rdkafka != b->n_rdkafka)
        return 0;
    for (size_t i = 0; i < a->n_rdkafka; i++)
        if (strcmp(a->rdkafka[i].key, b->rdkafka[i].key) ||
            strcmp(a->rdkafka[i].value, b->rdkafka[i].value))
            return 0;
    return 1;
}

/* The first scheme whose effective settings differ, as "[scheme ID] key". */
static int schemes_check(const struct cm_config *cur, const struct cm_config *nc, char *err,
                         size_t errlen)
{
    for (int pass = 0; pass < 3; pass++) {
        /* pass 0: the defaults; 1: the schemes of cur; 2: those of nc */
        const struct cm_config *src = pass == 2 ? nc : cur;
        size_t n = pass == 0 ? 1 : src->n_schemes;
        for (size_t i = 0; i < n; i++) {
            const char *id = pass == 0 ? "*" : src->schemes[i].id;
            const struct cm_scheme_conf *a =
                pass == 0 ? &cur->scheme_default : cm_config_scheme(cur, id);
            const struct cm_scheme_conf *b =
                pass == 0 ? &nc->scheme_default : cm_config_scheme(nc, id);
            if (a->grace_days != b->grace_days) {
                snprintf(err, errlen, "[scheme %s] grace_days changed (%d -> %d)", id,
                         a->grace_days, b->grace_days);
                return -EPERM;
            }
            if (a->stay_n != b->stay_n || a->stay_w != b->stay_w) {
                snprintf(err, errlen, "[scheme %s] stay_limit changed", id);
                return -EPERM;
            }
        }
    }
    return 0;
}

int cmd_reload_check(const struct cm_config *cur, const struct cm_config *nc, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < NELEM(fields); i++) {
        const struct field *f = &fields[i];
        if (f->kind != F_REFUSE || field_eq(cur, nc, f))
            continue;
        if (f->type == T_INT)
            snprintf(err, errlen, "[%s] %s changed (%d -> %d)", f->sec, f->key, int_at(cur, f),
                     int_at(nc, f));
        else
            snprintf(err, errlen, "[%s] %s changed (\"%s\" -> \"%s\")", f->sec, f->key,
                     str_at(cur, f) ? str_at(cur, f) : "", str_at(nc, f) ? str_at(nc, f) : "");
        return -EPERM;
    }
    return schemes_check(cur, nc, err, errlen);
}

/* ------------------------------------------------------------ apply hooks */

static void apply_log(struct daemon *d, struct cm_config *nc)
{
    struct cm_config *c = d->cfg_rw;
    if (str_eq(c->log_level, nc->log_level))
        return;
    cm_log_info("reload: [circmon] log_level %s -> %s", c->log_level ? c->log_level : "info",
                nc->log_level ? nc->log_level : "info");
    free(c->log_level);
    c->log_level = nc->log_level; /* moved */
    nc->log_level = NULL;
    if (cm_log_set_level(c->log_level ? c->log_level : "info") < 0)
        cm_log_warn("reload: unknown log_level '%s'; the level stays", c->log_level);
}

static void apply_http(struct daemon *d, struct cm_config *nc)
{
    struct cm_config *c = d->cfg_rw;
    int changed = 0;
    for (size_t i = 0; i < NELEM(fields); i++) {
        const struct field *f = &fields[i];
        if (f->kind != F_LIVE || f->type != T_INT || field_eq(c, nc, f))
            continue;
        cm_log_info("reload: [%s] %s %d -> %d", f->sec, f->key, int_at(c, f), int_at(nc, f));
        *(int *)(void *)((char *)c + f->off) = int_at(nc, f);
        changed = 1;
    }
    if (changed)
        cmd_http_reconfigure(d);
}

/* The alert rules ([alerts], [alert NAME]): alerts.c takes them over. */
static void apply_alerts(struct daemon *d, struct cm_config *nc)
{
    if (cmd_alerts_apply(d, d->cfg_rw, nc) < 0)
        cm_log_warn("reload: the new alert rules could not be applied (logged above)");
}

/* Each subsystem's apply hook, in order, once the checks passed. A hook
 * takes what it needs from nc (it may move owned pointers out of it,
 * leaving NULL: nc is freed afterwards) into d->cfg_rw and its own state;
 * it cannot fail (what could fail is checked by the loading of nc). */
typedef void (*cmd_apply_fn)(struct daemon *d, struct cm_config *nc);
static const cmd_apply_fn hooks[] = {
    apply_log,
    apply_http,
    apply_alerts,
};

/* Warns about the changed keys that only a restart applies. */
static void warn_restart_keys(const struct cm_config *c, const struct cm_config *nc)
{
    for (size_t i = 0; i < NELEM(fields); i++)
        if (fields[i].kind == F_RESTART && !field_eq(c, nc, &fields[i]))
            cm_log_warn("reload: [%s] %s changed: takes effect at the next start",
                        fields[i].sec, fields[i].key);
    if (!rdkafka_eq(c, nc))
        cm_log_warn("reload: [kafka] rdkafka.* changed: takes effect at the next start");
}

int cmd_reload(struct daemon *d)
{
    struct cm_config *c = d->cfg_rw;
    const char *path = c->path;
    int notified = cmd_notify_reloading(d);
    char err[768];
    int rc;
    struct cm_config *nc = calloc(1, sizeof(*nc));
    cm_log_info("SIGHUP: reloading %s", path ? path : "(no file)");
    if (!nc || !path) {
        cm_log_err("reload: %s; the configuration stays as it was",
                   !nc ? "out of memory for the new configuration" : "no file to read");
        rc = !nc ? -ENOMEM : -EINVAL;
        goto out;
    }
    if ((rc = cm_config_load(nc, path, err, sizeof(err))) < 0) {
        cm_log_ev(CM_LOG_ERROR, CM_LOGID_RELOAD, NULL, 0,
                  "reload refused: %s; the configuration stays as it was", err);
        rc = -EINVAL;
        goto out;
    }
    if (c->rebuild_run && (rc = cmd_rebuild_prepare(nc, err, sizeof(err))) < 0) {
        cm_log_ev(CM_LOG_ERROR, CM_LOGID_RELOAD, NULL, 0,
                  "reload refused: %s; the configuration stays as it was", err);
        goto out;
    }
    if ((rc = cmd_reload_check(c, nc, err, sizeof(err))) < 0) {
        cm_log_ev(CM_LOG_ERROR, CM_LOGID_RELOAD, NULL, 0, "reload refused: %s in %s: the stored state was folded with the running"
                   " value (restart after a rebuild, see circmond(8)); the configuration stays"
                   " as it was",
                   err, path);
        goto out;
    }
    warn_restart_keys(c, nc);
    for (size_t i = 0; i < NELEM(hooks); i++)
        hooks[i](d, nc);
    cm_log_ev(CM_LOG_INFO, CM_LOGID_RELOAD, NULL, 0, "reload: %s applied", path);
    rc = 0;
out:
    if (nc) {
        cm_config_free(nc);
        free(nc);
    }
    if (notified)
        cmd_notify_ready(d, rc == 0 ? "ready: configuration reloaded"
                                    : "ready: reload refused, the configuration stays as it was");
    return rc;
}
