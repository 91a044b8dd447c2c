/* alerts_int.h - what daemon/alerts.c (evaluation) and daemon/alerts_pub.c (delivery) share. */
#ifndef CIRCMOND_ALERTS_INT_H
#define CIRCMOND_ALERTS_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#include "alerts.h"
#include "circmon/alert.h"
#include "daemon.h"

#define AL_MAX_INSTANCES 65536 /* instances held, over every rule */
#define AL_HIST 5              /* last transitions shown per instance */
#define AL_PUB_MAX 64          /* outbox events delivered per publisher job */
#define AL_LEASE_MS 30000      /* a publisher's lease: > read-back (10 s) + delivery (5 s) */
#define AL_READBACK_MS 10000   /* the read-back of one alert partition gives up after this */
#define AL_DELIVERY_MS 5000    /* message.timeout.ms of the alert producer */

struct cm_rconn;
struct redisReply;

struct al_inst {
    uint64_t id;   /* unique in this process */
    size_t rule;   /* index in cfg->alerts */
    char name[CM_ALERT_NAME_MAX + 1];
    char scheme[CM_ALERT_SCHEME_MAX + 1];
    char nationality[CM_ALERT_SCHEME_MAX + 1]; /* "" for a rule without nationality */
    char hex[17];  /* cm_alert_instance_hash, the Redis key's hash tag */
    int known;     /* its stored state was read */
    int state;     /* enum cm_alert_state, as stored */
    int64_t seq, since, at, outbox;
    struct cm_alert_figures f; /* of the last evaluation */
    int64_t eval_at;
    int present; /* this evaluation: 1 in the figures, 0 not (n = 0), 2 its rule not evaluated */
    int evaluated, in_flight, tries;
    char hist[AL_HIST][256];
    int n_hist;
};

struct al_job; /* alerts_pub.c */

struct cmd_alerts {
    struct daemon *d;
    const struct cm_config *cfg;
    struct cm_rconn *rc;
    struct event *tick;
    int tick_ms;
    uint64_t gen, next_id;
    struct al_inst *v;
    size_t n, cap;
    size_t pending; /* compare-and-sets in flight */
    int full_logged, err_logged, members_read;
    int64_t last_eval_ms, last_read_at;
    uint64_t last_applies, evaluations;
    uint64_t (*trans)[2]; /* per rule: [0] RESOLVED, [1] FIRING */
    uint64_t redis_errors;
    int crash_after_cas, crash_after_delivery;
    /* the publisher (alerts_pub.c) */
    rd_kafka_t *pk;
    struct event *pk_timer;
    struct al_job *job;
    struct al_job *dead_job; /* dropped while its read-back runs */
    size_t rr;
    int lease_ms;
    char token[96];
    int32_t n_parts; /* alert topic partitions, once known */
    uint64_t published, skipped;
};

void al_key(const struct cmd_alerts *a, const struct al_inst *in, const char *what, char *buf,
            size_t cap);
void al_ignore_reply(struct cm_rconn *c, struct redisReply *rep, int err, void *ud);

/* alerts_pub.c */
int al_pub_setup(struct cmd_alerts *a);
/* Starts a publisher job for an instance with events in its outbox, if none runs. */
void al_pub_kick(struct cmd_alerts *a);
/* Drops the running job (rules re-applied). */
void al_pub_reset(struct cmd_alerts *a);
void al_pub_free(struct cmd_alerts *a);

#endif
