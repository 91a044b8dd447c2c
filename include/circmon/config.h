/* config.h - circmond/circmonctl configuration, read from an INI file. */
#ifndef CIRCMON_CONFIG_H
#define CIRCMON_CONFIG_H

#include <stddef.h>

#include "circmon/alert.h"
#include "circmon/slot.h"

#define CM_ID_MAX 256 /* longest scheme id, like every contract string */
#define CM_MAX_WINDOW_EVENTS_MAX 65536 /* upper bound of max_window_events */
#define CM_STATE_BUCKETS_DEFAULT 256 /* [redis] state_buckets; README "Data in Redis" */

struct cm_scheme_conf {
    char id[CM_ID_MAX + 1]; /* "" for the [scheme *] defaults */
    int grace_days;         /* >= 0, default 0 */
    int stay_n, stay_w;     /* stay_limit = N/W; both 0 when unset */
};

struct cm_kv {
    char *key;
    char *value;
    int line; /* in the file, 0 when not from one */
};

struct cm_config {
    char *path; /* file it was read from, or NULL for built-in defaults */

    /* [circmon] */
    int reorder_window_days; /* default 30 */
    int max_window_events;   /* too late behind this many later events, default 256 */
    int batch_size;          /* events per atomic apply, default 10000 */
    int max_in_flight;       /* batches in flight, default 8 */
    int batch_linger_ms;     /* a partial batch waits at most this, default 20 */
    char *log_level;         /* "debug", "info", "warning", "error"; default info */
    int nationality_cohorts; /* yes: the fold keeps cohorts per (scheme, nationality,
                                month), which [alert] nationality rules need; default 0 */

    /* [kafka] */
    char *brokers;   /* default "127.0.0.1:9092" */
    char *topic;     /* default "circmon.events" */
    char *group_id;  /* default "circmond" */
    char *dlq_topic; /* default "<topic>.dlq" */
    char *alert_topic; /* default "<topic>.alerts" */
    struct cm_kv *rdkafka; /* rdkafka.<property> pass-through, in file order */
    size_t n_rdkafka;

    /* [redis] */
    char *redis_host;     /* default "127.0.0.1" */
    int redis_port;       /* default 6379 */
    char *redis_unix_socket; /* default NULL */
    char *redis_user;     /* default NULL */
    char *redis_password; /* default NULL; never logged */
    int redis_db;         /* default 0; must be 0 with redis_cluster */
    int redis_cluster;    /* [redis] cluster = yes: route by hash slot, default 0 */
    struct cm_node_addr *redis_nodes; /* [redis] nodes: the seed nodes (cluster only) */
    size_t n_redis_nodes;
    char *redis_nodes_spec; /* [redis] nodes as written (NULL when unset) */
    char *key_prefix;     /* default "circmon": where circmond writes */
    char *redis_alias;    /* default NULL: the key naming the prefix readers read (alias.h) */
    int state_buckets;    /* hash buckets of migrant states per partition (0: one string
                             key per migrant), default CM_STATE_BUCKETS_DEFAULT; store_layout.h */
    int connect_timeout_ms; /* default 2000 */
    int command_timeout_ms; /* default 5000 */

    /* [http] */
    char *http_listen;         /* default "127.0.0.1" */
    int http_port;             /* default 9464 (0 disables) */
    int http_refresh_ms;       /* figures read from Redis every this, default 5000 */
    int http_max_connections;  /* connections served at once, default 64 */
    int http_request_timeout_ms; /* a request must arrive within this, default 10000 */
    int http_metrics_cohort_months; /* cohort months on /metrics, default 24 */

    /* [alerts] and [alert NAME] sections (in file order, at most CM_ALERT_MAX_RULES) */
    int alerts_interval_s;          /* rules evaluated every this, default 60 */
    struct cm_alert_rule *alerts;
    size_t n_alerts;

    /* [scheme ID] sections, in file order; [scheme *] in scheme_default */
    struct cm_scheme_conf *schemes;
    size_t n_schemes;
    struct cm_scheme_conf scheme_default;

    /* not a key of the file: circmond --rebuild (daemon/rebuild.c) */
    int rebuild_run;
};

/* Fills cfg with the built-in defaults. Returns 0, or -ENOMEM (cfg then holds
 * nothing that needs freeing). */
int cm_config_defaults(struct cm_config *cfg);

/* Fills cfg with the defaults, then reads the INI file at path over them (cfg
 * need not be initialised; anything it held is overwritten, not freed). Not
 * thread-safe: it sets libinih's option globals for the call. Returns 0 on
 * success. On error returns a negative errno-style code, writes a message
 * naming the file, the line and the key into err (errlen bytes, always
 * NUL-terminated) and leaves cfg freed (cm_config_free is harmless on it).
 * Unknown sections and keys, duplicate keys and sections and malformed values
 * are errors, and so is an [alert] with a nationality key unless [circmon]
 * nationality_cohorts = yes. */
int cm_config_load(struct cm_config *cfg, const char *path, char *err, size_t errlen);

/* The settings of scheme id: its [scheme id] section, else [scheme *], else
 * the built-in defaults. A [scheme id] section takes the keys it does not set
 * from [scheme *]. Never NULL. */
const struct cm_scheme_conf *cm_config_scheme(const struct cm_config *cfg, const char *id);

/* Frees everything cfg owns and zeroes it. Accepts a zeroed cfg. */
void cm_config_free(struct cm_config *cfg);

#endif
