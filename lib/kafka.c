/* kafka.c - librdkafka configuration from cm_config, logging, dead letters. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "circmon/dlq.h"
#include "circmon/kafka.h"
#include "circmon/log.h"

int cm_kafka_prop_is_secret(const char *name)
{
    /* librdkafka's own list of sensitive properties (_RK_SENSITIVE), matched
     * by pattern so that later additions are covered too. */
    static const char *const pats[] = {"password", "secret", "ssl.key.pem", "ssl_key",
                                       "sasl.oauthbearer.config", "jaas"};

    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++)
        if (strstr(name, pats[i]))
            return 1;
    return 0;
}

/* Sets one property, reporting a rejection as "rdkafka.<name>: why". */
static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                    size_t errlen)
{
    char why[512];
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, name, value, why, sizeof(why));

    if (res == RD_KAFKA_CONF_OK)
        return 0;
    if (res == RD_KAFKA_CONF_UNKNOWN)
        snprintf(err, errlen, "rdkafka.%s: unknown librdkafka property", name);
    else if (cm_kafka_prop_is_secret(name))
        /* librdkafka's message may quote the value */
        snprintf(err, errlen, "rdkafka.%s: invalid value (not shown)", name);
    else
        snprintf(err, errlen, "rdkafka.%s: %s", name, why);
    return -EINVAL;
}

rd_kafka_conf_t *cm_kafka_conf_new(const struct cm_config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (errlen)
        err[0] = '\0';
    if (!conf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, cm_kafka_log_cb);
    if (cfg->brokers && conf_set(conf, "bootstrap.servers", cfg->brokers, err, errlen) < 0) {
        /* name it as the operator wrote it */
        snprintf(err, errlen, "kafka.brokers: invalid value '%s'", cfg->brokers);
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_rdkafka; i++)
        if (conf_set(conf, cfg->rdkafka[i].key, cfg->rdkafka[i].value, err, errlen) < 0) {
            if (cfg->path && cfg->rdkafka[i].line > 0 && errlen) {
                /* where the operator wrote it, as the file's other errors */
                char why[512];
                snprintf(why, sizeof(why), "%s", err);
                snprintf(err, errlen, "%s:%d: [kafka] %s", cfg->path, cfg->rdkafka[i].line,
                         why);
            }
            goto fail;
        }
    return conf;

fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int cm_kafka_conf_default(rd_kafka_conf_t *conf, const struct cm_config *cfg,
                          const char *name, const char *value, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n_rdkafka; i++)
        if (!strcmp(cfg->rdkafka[i].key, name))
            return 0;
    return conf_set(conf, name, value, err, errlen);
}

void cm_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: emerg..err are errors; notice, info and debug (the
     * latter only when the operator sets rdkafka.debug) are info */
    enum cm_log_level lvl = level <= 3 ? CM_LOG_ERROR : level == 4 ? CM_LOG_WARNING : CM_LOG_INFO;

    /* rdkafka.* properties go to every client of a program, so a consumer
     * property on a producer (and the reverse) is expected, not news. */
    if (!strcmp(fac, "CONFWARN") && (strstr(buf, "is a consumer property and will be ignored") ||
                                     strstr(buf, "is a producer property and will be ignored")))
        return;
    cm_log(lvl, "rdkafka %s: %s: %s", rk ? rd_kafka_name(rk) : "-", fac, buf);
}

int cm_dlq_send_opaque(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
                       const void *value, size_t len, const char *reason,
                       const char *src_topic, int32_t partition, int64_t offset,
                       int32_t dlq_partition, void *msg_opaque)
{
    /* epoch 0: the same dead letter without the owner-epoch header */
    return cm_dlq_produce(rk, topic, dlq_partition, key, keylen, value, len, reason, src_topic,
                          partition, offset, 0, msg_opaque);
}

int cm_dlq_send(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
                const void *value, size_t len, const char *reason, const char *src_topic,
                int32_t partition, int64_t offset)
{
    return cm_dlq_send_opaque(rk, topic, key, keylen, value, len, reason, src_topic, partition,
                              offset, RD_KAFKA_PARTITION_UA, NULL);
}

/* cm_dlq_scan is cm_dlq_scan_recs reduced to the source partition and offset. */
struct seen_of_rec {
    cm_dlq_seen_cb cb;
    void *ud;
};

static int seen_of_rec(const struct cm_dlq_rec *r, void *ud)
{
    const struct seen_of_rec *a = ud;
    return a->cb(r->partition, r->offset, a->ud);
}

int cm_dlq_scan(rd_kafka_t *rk, const char *dlq_topic, int32_t dlq_partition, int64_t from,
                const char *src_topic, int timeout_ms, cm_dlq_seen_cb cb, void *ud,
                int64_t *end, char *err, size_t errlen)
{
    struct seen_of_rec a = {cb, ud};
    return cm_dlq_scan_recs(rk, dlq_topic, dlq_partition, from, src_topic, timeout_ms, NULL,
                            seen_of_rec, &a, end, err, errlen);
}

/* ---- a destroy with a bound ---- */

/* Shared by the caller and the destroying thread; the last of the two to
 * let go frees it. */
struct destroy_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rd_kafka_t *rk;
    int flags;
    int done, left; /* destroyed; the caller stopped waiting */
};

static void job_free(struct destroy_job *j)
{
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void *destroy_main(void *arg)
{
    struct destroy_job *j = arg;
    rd_kafka_destroy_flags(j->rk, j->flags);
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    int left = j->left;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (left)
        job_free(j);
    return NULL;
}

int cm_kafka_destroy_within(rd_kafka_t *rk, int flags, int timeout_ms)
{
    if (!rk)
        return 0;
    struct destroy_job *j = calloc(1, sizeof(*j));
    pthread_condattr_t ca;
    int r = j ? 0 : ENOMEM;
    if (!r && (r = pthread_condattr_init(&ca)) == 0) {
        r = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (!r && (r = pthread_mutex_init(&j->mu, NULL)) == 0 &&
            (r = pthread_cond_init(&j->cv, &ca)) != 0)
            pthread_mutex_destroy(&j->mu);
        pthread_condattr_destroy(&ca);
    }
    pthread_t t;
    pthread_attr_t ta;
    int made = 0;
    if (!r) {
        j->rk = rk;
        j->flags = flags;
        if ((r = pthread_attr_init(&ta)) == 0) {
            if ((r = pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED)) == 0 &&
                (r = pthread_create(&t, &ta, destroy_main, j)) == 0)
                made = 1;
            pthread_attr_destroy(&ta);
        }
        if (!made)
            job_free(j);
    } else {
        free(j);
    }
    if (!made) {
        rd_kafka_destroy_flags(rk, flags);
        return -r;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->mu);
    while (!j->done && pthread_cond_timedwait(&j->cv, &j->mu, &until) != ETIMEDOUT)
        ;
    int done = j->done;
    j->left = !done;
    pthread_mutex_unlock(&j->mu);
    if (done)
        job_free(j); /* the thread has let go: it read left as 0 */
    return done ? 0 : -ETIMEDOUT;
}
