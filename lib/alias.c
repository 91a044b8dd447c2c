/* alias.c - the active prefix: the alias key read, checked and switched. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "circmon/alias.h"
#include "circmon/cluster_sync.h"
#include "circmon/decimal.h"
#include "circmon/errbuf.h"
#include "circmon/event.h"

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static json_t *triple(const struct cm_scheme_conf *sc)
{
    return json_pack("[i, i, i]", sc->grace_days, sc->stay_n, sc->stay_w);
}

char *cm_alias_settings_format(const struct cm_config *cfg)
{
    json_t *list = json_array(), *doc = NULL;
    char *s = NULL;
    if (!list)
        return NULL;
    for (size_t i = 0; i < cfg->n_schemes; i++) {
        const struct cm_scheme_conf *sc = &cfg->schemes[i];
        json_t *id = json_stringn(sc->id, strlen(sc->id)); /* NULL when not UTF-8 */
        json_t *e = id ? json_pack("[o, i, i, i]", id, sc->grace_days, sc->stay_n, sc->stay_w)
                       : NULL;
        if (!e || json_array_append_new(list, e) < 0)
            goto out;
    }
    doc = json_pack("{s:i, s:[i, i], s:o, s:O}", "v", 1, "window", cfg->reorder_window_days,
                    cfg->max_window_events, "default", triple(&cfg->scheme_default), "schemes",
                    list);
    /* nationality_cohorts = yes only: the text of a prefix without them is
     * what it was before the key existed */
    if (doc && cfg->nationality_cohorts &&
        json_object_set_new(doc, "nationality_cohorts", json_true()) < 0)
        goto out;
    if (doc)
        s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    json_decref(list);
    if (doc)
        json_decref(doc);
    return s;
}

/* [g, n, w] at *sc, checked as the configuration checks them. */
static int parse_triple(json_t *a, size_t at, struct cm_scheme_conf *sc)
{
    json_int_t v[3];
    for (int k = 0; k < 3; k++) {
        json_t *x = json_array_get(a, at + (size_t)k);
        if (!json_is_integer(x))
            return -1;
        v[k] = json_integer_value(x);
    }
    if (v[0] < 0 || v[0] > 3650)
        return -1;
    if (!((v[1] == 0 && v[2] == 0) || (v[1] >= 1 && v[1] <= 3650 && v[2] >= 1 && v[2] <= 3650)))
        return -1;
    sc->grace_days = (int)v[0];
    sc->stay_n = (int)v[1];
    sc->stay_w = (int)v[2];
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(((const struct cm_scheme_conf *)a)->id, ((const struct cm_scheme_conf *)b)->id);
}

int cm_alias_settings_parse(const char *s, size_t len, struct cm_config *fold, char *err,
                            size_t errlen)
{
    json_error_t je;
    memset(fold, 0, sizeof(*fold));
    json_t *doc = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
    json_t *def = doc ? json_object_get(doc, "default") : NULL;
    json_t *list = doc ? json_object_get(doc, "schemes") : NULL;
    json_t *v = doc ? json_object_get(doc, "v") : NULL;
    json_t *win = doc ? json_object_get(doc, "window") : NULL;
    json_t *nat = doc ? json_object_get(doc, "nationality_cohorts") : NULL;
    struct cm_scheme_conf *sc = NULL;
    int r = -EPROTO;
    if (!doc) {
        cm_errf(err, errlen, "settings: not JSON: %s at byte %d", je.text, je.position);
        return -EPROTO;
    }
    if (nat && !json_is_true(nat)) {
        cm_errf(err, errlen, "settings: nationality_cohorts: true or absent expected");
        goto out;
    }
    fold->nationality_cohorts = nat != NULL;
    if (!json_is_object(doc) || json_object_size(doc) != 4 + (nat != NULL) || !json_is_integer(v) ||
        json_integer_value(v) != 1 || !json_is_array(def) || json_array_size(def) != 3 ||
        !json_is_array(list) || !json_is_array(win) || json_array_size(win) != 2) {
        cm_errf(err, errlen, "settings: not {\"v\":1,\"window\":[r,m],\"default\":[g,n,w],"
                          "\"schemes\":[...]}");
        goto out;
    }
    json_t *wr = json_array_get(win, 0), *wm = json_array_get(win, 1);
    if (!json_is_integer(wr) || !json_is_integer(wm) || json_integer_value(wr) < 0 ||
        json_integer_value(wr) > 3650 || json_integer_value(wm) < 1 ||
        json_integer_value(wm) > CM_MAX_WINDOW_EVENTS_MAX) {
        cm_errf(err, errlen, "settings: window: reorder_window_days 0..3650 and max_window_events "
                          "1..%d expected", CM_MAX_WINDOW_EVENTS_MAX);
        goto out;
    }
    fold->reorder_window_days = (int)json_integer_value(wr);
    fold->max_window_events = (int)json_integer_value(wm);
    if (parse_triple(def, 0, &fold->scheme_default) < 0) {
        cm_errf(err, errlen, "settings: default: grace_days 0..3650 and stay_limit N/W 1..3650 "
                          "(or 0,0) expected");
        goto out;
    }
    size_t n = json_array_size(list);
    if (n > CM_ALIAS_SCHEMES_MAX) {
        cm_errf(err, errlen, "settings: %zu schemes, more than %d", n, CM_ALIAS_SCHEMES_MAX);
        goto out;
    }
    if (n && !(sc = calloc(n, sizeof(*sc)))) {
        cm_errf(err, errlen, "out of memory for %zu scheme settings", n);
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(list, i), *id = json_array_get(e, 0);
        size_t il = id ? json_string_length(id) : 0;
        const char *is = id ? json_string_value(id) : NULL;
        if (!json_is_array(e) || json_array_size(e) != 4 || !json_is_string(id) || !il ||
            il > CM_ID_MAX || memchr(is, 0, il) || memchr(is, ']', il) ||
            parse_triple(e, 1, &sc[i]) < 0) {
            cm_errf(err, errlen, "settings: scheme %zu: [id, grace_days, N, W] expected (an id of "
                              "1..%d bytes without ']' or NUL, values as in the configuration)",
                 i, CM_ID_MAX);
            goto out;
        }
        memcpy(sc[i].id, is, il);
        sc[i].id[il] = 0;
    }
    if (n > 1) { /* no id twice: the configuration refuses a [scheme ID] given twice */
        struct cm_scheme_conf *t = malloc(n * sizeof(*t));
        if (!t) {
            cm_errf(err, errlen, "out of memory checking %zu scheme settings", n);
            r = -ENOMEM;
            goto out;
        }
        memcpy(t, sc, n * sizeof(*t));
        qsort(t, n, sizeof(*t), cmp_id);
        size_t dup = 0;
        for (size_t i = 1; i < n && !dup; i++)
            if (!strcmp(t[i - 1].id, t[i].id))
                dup = i;
        if (dup)
            cm_errf(err, errlen, "settings: scheme '%s' given twice", t[dup].id);
        free(t);
        if (dup)
            goto out;
    }
    fold->schemes = sc;
    fold->n_schemes = n;
    sc = NULL;
    r = 0;
out:
    free(sc);
    json_decref(doc);
    return r;
}

int cm_alias_settings_equal(const struct cm_config *a, const struct cm_config *b)
{
    const struct cm_config *both[2] = {a, b};
    if (a->reorder_window_days != b->reorder_window_days ||
        a->max_window_events != b->max_window_events ||
        !a->nationality_cohorts != !b->nationality_cohorts)
        return 0;
    if (a->scheme_default.grace_days != b->scheme_default.grace_days ||
        a->scheme_default.stay_n != b->scheme_default.stay_n ||
        a->scheme_default.stay_w != b->scheme_default.stay_w)
        return 0;
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < both[k]->n_schemes; i++) {
            const char *id = both[k]->schemes[i].id;
            const struct cm_scheme_conf *x = cm_config_scheme(a, id), *y = cm_config_scheme(b, id);
            if (x->grace_days != y->grace_days || x->stay_n != y->stay_n || x->stay_w != y->stay_w)
                return 0;
        }
    return 1;
}

static int copy_fold(const struct cm_config *cfg, struct cm_config *fold)
{
    memset(fold, 0, sizeof(*fold));
    fold->reorder_window_days = cfg->reorder_window_days;
    fold->max_window_events = cfg->max_window_events;
    fold->nationality_cohorts = cfg->nationality_cohorts;
    fold->scheme_default = cfg->scheme_default;
    if (cfg->n_schemes) {
        fold->schemes = malloc(cfg->n_schemes * sizeof(*fold->schemes));
        if (!fold->schemes)
            return -ENOMEM;
        memcpy(fold->schemes, cfg->schemes, cfg->n_schemes * sizeof(*fold->schemes));
        fold->n_schemes = cfg->n_schemes;
    }
    return 0;
}

/* A prefix as [redis] key_prefix allows it, and short enough for a key. */
static int prefix_ok(const char *s, size_t len)
{
    if (!len || len > CM_ALIAS_PREFIX_MAX || memchr(s, 0, len))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (strchr("{} \t\r\n", s[i]))
            return 0;
    return 1;
}

void cm_alias_free(struct cm_alias *a)
{
    if (!a)
        return;
    free(a->prefix);
    free(a->previous);
    cm_config_free(&a->fold);
    memset(a, 0, sizeof(*a));
}

int cm_alias_from_reply(const redisReply *rep, const struct cm_config *cfg, struct cm_alias *out,
                        char *err, size_t errlen)
{
    const char *name = cfg->redis_alias ? cfg->redis_alias : "";
    memset(out, 0, sizeof(*out));
    if (!rep || (rep->type == REDIS_REPLY_ARRAY && rep->elements == 0)) {
        if (!(out->prefix = strdup(cfg->key_prefix)) || !(out->previous = strdup("")) ||
            copy_fold(cfg, &out->fold) < 0)
            goto oom;
        return 0;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2) {
        cm_errf(err, errlen, "alias %s: HGETALL: %s", name,
             rep->type == REDIS_REPLY_ERROR ? rep->str : "not a hash");
        return -EPROTO;
    }
    const redisReply *pf = NULL, *st = NULL, *pv = NULL, *sn = NULL;
    for (size_t i = 0; i < rep->elements; i += 2) {
        const redisReply *f = rep->element[i], *v = rep->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            cm_errf(err, errlen, "alias %s: a field or value is not a string", name);
            return -EPROTO;
        }
        const redisReply **slot = !strcmp(f->str, "prefix")     ? &pf
                                  : !strcmp(f->str, "settings") ? &st
                                  : !strcmp(f->str, "previous") ? &pv
                                  : !strcmp(f->str, "since")    ? &sn
                                                                : NULL;
        if (!slot || f->len != strlen(f->str)) {
            cm_errf(err, errlen, "alias %s: unknown field '%.*s'", name,
                 (int)(f->len > 60 ? 60 : f->len), f->str);
            return -EPROTO;
        }
        *slot = v;
    }
    if (!pf || !st || !pv || !sn) {
        cm_errf(err, errlen, "alias %s: a field of prefix, settings, previous, since is missing",
             name);
        return -EPROTO;
    }
    if (!prefix_ok(pf->str, pf->len) || (pv->len && !prefix_ok(pv->str, pv->len))) {
        cm_errf(err, errlen, "alias %s: prefix '%.*s' (or previous) is not a key prefix (1..%d "
                          "bytes, no braces or blanks)",
             name, (int)(pf->len > 60 ? 60 : pf->len), pf->str, CM_ALIAS_PREFIX_MAX);
        return -EPROTO;
    }
    if (cm_decimal_i64(sn->str, sn->len, &out->since) < 0 || out->since < 0) {
        cm_errf(err, errlen, "alias %s: since '%.*s' is not a decimal >= 0", name,
             (int)(sn->len > 40 ? 40 : sn->len), sn->str);
        return -EPROTO;
    }
    if (st->len > CM_ALIAS_SETTINGS_MAX) {
        cm_errf(err, errlen, "alias %s: settings of %zu bytes, more than %u", name, st->len,
             CM_ALIAS_SETTINGS_MAX);
        return -EPROTO;
    }
    char why[400];
    int r = cm_alias_settings_parse(st->str, st->len, &out->fold, why, sizeof(why));
    if (r < 0) {
        cm_errf(err, errlen, "alias %s: %s", name, why);
        memset(out, 0, sizeof(*out));
        return r;
    }
    if (!(out->prefix = dupn(pf->str, pf->len)) || !(out->previous = dupn(pv->str, pv->len)))
        goto oom;
    out->from_alias = 1;
    return 0;
oom:
    cm_alias_free(out);
    cm_errf(err, errlen, "out of memory reading the alias");
    return -ENOMEM;
}

int cm_alias_read_sync(struct cm_rsync *c, const struct cm_config *cfg, struct cm_alias *out,
                       char *err, size_t errlen)
{
    if (!cfg->redis_alias)
        return cm_alias_from_reply(NULL, cfg, out, err, errlen);
    char why[400];
    const char *argv[] = {"HGETALL", cfg->redis_alias};
    redisReply *rep = cm_rsync_command(c, 2, argv, NULL, why, sizeof(why));
    if (!rep) {
        cm_errf(err, errlen, "alias %s: HGETALL: %s", cfg->redis_alias, why);
        memset(out, 0, sizeof(*out));
        return -EPROTO;
    }
    int r = cm_alias_from_reply(rep, cfg, out, err, errlen);
    freeReplyObject(rep);
    return r;
}

int cm_alias_apply(struct cm_config *cfg, struct cm_alias *a)
{
    char *p = strdup(a->prefix);
    if (!p)
        return -ENOMEM;
    free(cfg->key_prefix);
    cfg->key_prefix = p;
    free(cfg->schemes);
    cfg->schemes = a->fold.schemes;
    cfg->n_schemes = a->fold.n_schemes;
    cfg->scheme_default = a->fold.scheme_default;
    a->fold.schemes = NULL;
    a->fold.n_schemes = 0;
    return 0;
}

char *cm_alias_marker_key(const char *prefix)
{
    size_t n = strlen(prefix) + sizeof(":{rebuild}:settings");
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s:{rebuild}:settings", prefix);
    return k;
}

/* KEYS[1] the alias; ARGV: expected prefix ("" = none), new prefix,
 * settings, since. {1} when switched, {0, prefix found} when not. */
static const char lua_switch[] =
    "local cur = redis.call('HGET', KEYS[1], 'prefix')\n"
    "if not cur then cur = '' end\n"
    "if cur ~= ARGV[1] then return {0, cur} end\n"
    "redis.call('HSET', KEYS[1], 'prefix', ARGV[2], 'settings', ARGV[3], 'previous', ARGV[1],"
    " 'since', ARGV[4])\n"
    "return {1, ARGV[2]}\n";

int cm_alias_switch_sync(struct cm_rsync *c, const struct cm_config *cfg, const char *expect,
                         const char *to, const char *settings, int64_t now, char **cur,
                         char *err, size_t errlen)
{
    if (cur)
        *cur = NULL;
    if (!cfg->redis_alias) {
        cm_errf(err, errlen, "[redis] alias is not set in %s", cfg->path ? cfg->path : "the configuration");
        return -EINVAL;
    }
    if (!prefix_ok(to, strlen(to)) || (*expect && !prefix_ok(expect, strlen(expect)))) {
        cm_errf(err, errlen, "'%s' is not a key prefix", to);
        return -EINVAL;
    }
    char since[24];
    snprintf(since, sizeof(since), "%" PRId64, now);
    char why[400] = "";
    const char *argv[] = {"EVAL", lua_switch, "1", cfg->redis_alias, expect, to, settings, since};
    redisReply *rep = cm_rsync_command(c, 8, argv, NULL, why, sizeof(why));
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_STRING) {
        cm_errf(err, errlen, "alias %s: the switch failed: %s", cfg->redis_alias,
             !rep ? why : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        if (rep)
            freeReplyObject(rep);
        return -EPROTO;
    }
    int done = rep->element[0]->integer == 1;
    if (!done && cur && !(*cur = dupn(rep->element[1]->str, rep->element[1]->len))) {
        freeReplyObject(rep);
        cm_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    freeReplyObject(rep);
    return done;
}
