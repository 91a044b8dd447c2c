/* config.c - circmond/circmonctl configuration: built-in defaults and the INI file.
 *
 * libinih does the key = value lexing. Debian's libinih (r55) is built without
 * INI_HANDLER_LINENO, truncates section names to 49 bytes and never reports a
 * section that holds no keys, so the reader below feeds inih one line at a
 * time and tracks the line number and the current section itself.
 */
#include "circmon/config.h"
#include "circmon/decimal.h"
#include "circmon/errbuf.h"
#include "circmon/store_layout.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#define CM_CONF_MAX_LINE 4096 /* longest line accepted, newline included */
#define CM_STAY_MAX 3650
#define CM_PASSWORD_FILE_MAX 4096 /* longest password read from password_file, in bytes */

enum section_kind { SEC_NONE, SEC_CIRCMON, SEC_KAFKA, SEC_REDIS, SEC_HTTP, SEC_SCHEME, SEC_ALERTS,
                    SEC_ALERT };

/* Which keys a [scheme] section set, so that named schemes inherit the rest
 * from [scheme *] wherever it appears in the file. */
#define SET_GRACE 1u
#define SET_STAY 2u

struct seen_key {
    char *name;
    int line;
};

struct parser {
    struct cm_config *cfg;
    FILE *fp;
    const char *path;
    int lineno;       /* line being parsed */
    enum section_kind kind;
    char section[CM_CONF_MAX_LINE]; /* current section name, as written */
    struct cm_scheme_conf *scheme;  /* current [scheme] target */
    unsigned *scheme_set;           /* its SET_* mask */
    unsigned *set;                  /* SET_* per cfg->schemes entry */
    int *scheme_line;               /* line of each [scheme ID] header */
    size_t cap_schemes;
    unsigned default_set;
    int default_line;               /* line of [scheme *], 0 if none */
    struct cm_alert_rule *alert;    /* current [alert NAME] target */
    size_t cap_alerts;
    bool password_seen, password_file_seen;
    int cluster_line, nodes_line, db_line, unix_line; /* [redis] keys checked together */
    int nat_line;                   /* first [alert] nationality key, 0 if none */
    size_t nat_alert;               /* its rule, an index of cfg->alerts */
    struct seen_key *keys;          /* every key so far, for duplicates */
    size_t n_keys, cap_keys;
    int rc;                         /* first error, 0 if none */
    char *err;
    size_t errlen;
};

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p)
        memcpy(p, s, n);
    return p;
}

/* Records the first error only; later ones are consequences. */
static int fail(struct parser *ps, int rc, const char *fmt, ...) {
    if (ps->rc == 0) {
        int n = 0;
        va_list ap;

        ps->rc = rc;
        if (ps->err && ps->errlen > 0) {
            n = snprintf(ps->err, ps->errlen, "%s:%d: ", ps->path, ps->lineno);
            if (n >= 0 && (size_t)n < ps->errlen) {
                va_start(ap, fmt);
                vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
                va_end(ap);
            }
        }
    }
    return 0; /* inih: handler failed */
}

/* Strict decimal integer (cm_decimal_i64: optional '-', digits only) in
 * [lo, hi]: -EINVAL when s is not one, -ERANGE when it is outside (digits
 * past int64_t included). */
static int parse_int(const char *s, long lo, long hi, int *out) {
    size_t len = strlen(s), neg = s[0] == '-';
    int64_t v;

    if (cm_decimal_i64(s, len, &v) < 0)
        return len > neg && strspn(s + neg, "0123456789") == len - neg ? -ERANGE : -EINVAL;
    if (v < lo || v > hi)
        return -ERANGE;
    *out = (int)v;
    return 0;
}

static int set_int(struct parser *ps, const char *key, const char *value, long lo, long hi,
                   int *out) {
    int r = parse_int(value, lo, hi, out);

    if (r == -EINVAL)
        return fail(ps, -EINVAL, "[%s] %s: not an integer: \"%s\"", ps->section, key, value);
    if (r == -ERANGE)
        return fail(ps, -ERANGE, "[%s] %s: out of range %ld..%ld: \"%s\"", ps->section, key, lo,
                    hi, value);
    return 1;
}

static int set_str(struct parser *ps, const char *key, const char *value, char **out) {
    char *p;

    if (*value == '\0')
        return fail(ps, -EINVAL, "[%s] %s: empty value", ps->section, key);
    p = xstrdup(value);
    if (!p)
        return fail(ps, -ENOMEM, "[%s] %s: out of memory", ps->section, key);
    free(*out);
    *out = p;
    return 1;
}

/* An empty value leaves an optional string unset. */
static int set_opt_str(struct parser *ps, const char *key, const char *value, char **out) {
    if (*value == '\0') {
        free(*out);
        *out = NULL;
        return 1;
    }
    return set_str(ps, key, value, out);
}

/* "N/W", both integers 1..3650, blanks allowed around the '/'; or "none". */
static int parse_stay(const char *value, int *n, int *w) {
    char buf[64], *slash, *a, *b, *e;
    size_t len = strlen(value);

    if (strcmp(value, "none") == 0) {
        *n = *w = 0;
        return 0;
    }
    if (len >= sizeof buf)
        return -EINVAL;
    memcpy(buf, value, len + 1);
    slash = strchr(buf, '/');
    if (!slash)
        return -EINVAL;
    *slash = '\0';
    a = buf;
    for (e = slash; e > a && (e[-1] == ' ' || e[-1] == '\t'); e--)
        e[-1] = '\0';
    b = slash + 1;
    while (*b == ' ' || *b == '\t')
        b++;
    if (parse_int(a, 1, CM_STAY_MAX, n) < 0 || parse_int(b, 1, CM_STAY_MAX, w) < 0)
        return -EINVAL;
    return 0;
}

/* Reads the first line of a secret file; relative paths are taken from the
 * directory of the configuration file. At most CM_PASSWORD_FILE_MAX bytes of
 * the first line are read (its "\n" or "\r\n" not counted): a longer line, or
 * a file with no end such as /dev/zero, is refused without reading further. A
 * NUL byte in the line is refused too (it would cut the password short). */
static int read_password_file(struct parser *ps, const char *file) {
    char *full = NULL, *line = NULL;
    size_t n = 0;
    bool nul = false, more = false;
    FILE *fp;
    int c, e;

    if (file[0] != '/' && strchr(ps->path, '/')) {
        size_t dl = (size_t)(strrchr(ps->path, '/') - ps->path);

        full = malloc(dl + 1 + strlen(file) + 1);
        if (!full)
            return fail(ps, -ENOMEM, "[redis] password_file: out of memory for the path of \"%s\"",
                        file);
        memcpy(full, ps->path, dl);
        full[dl] = '/';
        strcpy(full + dl + 1, file);
    }
    fp = fopen(full ? full : file, "r");
    if (!fp) {
        e = errno;
        fail(ps, -e, "[redis] password_file: cannot read \"%s\": %s", full ? full : file,
             strerror(e));
        free(full);
        return 0;
    }
    /* +2: room for a "\r" before the newline, and the terminator */
    line = malloc(CM_PASSWORD_FILE_MAX + 2);
    if (!line) {
        fclose(fp);
        fail(ps, -ENOMEM, "[redis] password_file: out of memory for a line of %d bytes",
             CM_PASSWORD_FILE_MAX);
        free(full);
        return 0;
    }
    errno = 0;
    while ((c = getc(fp)) != EOF && c != '\n') {
        if (n == CM_PASSWORD_FILE_MAX + 1) {
            more = true;
            break;
        }
        if (c == '\0')
            nul = true;
        line[n++] = (char)c;
    }
    e = ferror(fp) ? (errno ? errno : EIO) : 0;
    fclose(fp);
    if (n > 0 && line[n - 1] == '\r' && !more)
        n--;
    else if (n > CM_PASSWORD_FILE_MAX)
        more = true;
    line[n] = '\0';
    if (e || more || nul || n == 0) {
        if (e)
            fail(ps, -e, "[redis] password_file: cannot read \"%s\": %s", full ? full : file,
                 strerror(e));
        else if (more)
            fail(ps, -EINVAL,
                 "[redis] password_file: the first line of \"%s\" is longer than %d bytes",
                 full ? full : file, CM_PASSWORD_FILE_MAX);
        else if (nul)
            fail(ps, -EINVAL, "[redis] password_file: the first line of \"%s\" holds a NUL byte",
                 full ? full : file);
        else if (c == EOF)
            fail(ps, -EINVAL, "[redis] password_file: \"%s\" is empty", full ? full : file);
        else
            fail(ps, -EINVAL, "[redis] password_file: \"%s\" has an empty first line",
                 full ? full : file);
        free(line);
        free(full);
        return 0;
    }
    free(full);
    free(ps->cfg->redis_password);
    ps->cfg->redis_password = line;
    return 1;
}

static int handle_circmon(struct parser *ps, const char *key, const char *value) {
    struct cm_config *cfg = ps->cfg;

    if (strcmp(key, "reorder_window_days") == 0)
        return set_int(ps, key, value, 0, 3650, &cfg->reorder_window_days);
    if (strcmp(key, "max_window_events") == 0)
        return set_int(ps, key, value, 1, CM_MAX_WINDOW_EVENTS_MAX, &cfg->max_window_events);
    if (strcmp(key, "batch_size") == 0)
        return set_int(ps, key, value, 1, 100000, &cfg->batch_size);
    if (strcmp(key, "max_in_flight") == 0)
        return set_int(ps, key, value, 1, 64, &cfg->max_in_flight);
    if (strcmp(key, "batch_linger_ms") == 0)
        return set_int(ps, key, value, 0, 60000, &cfg->batch_linger_ms);
    if (strcmp(key, "log_level") == 0) {
        static const char *const levels[] = {"debug", "info", "warning", "error"};

        for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
            if (strcmp(value, levels[i]) == 0)
                return set_str(ps, key, value, &cfg->log_level);
        return fail(ps, -EINVAL, "[circmon] log_level: not one of debug, info, warning, "
                                 "error: \"%s\"", value);
    }
    if (strcmp(key, "nationality_cohorts") == 0) {
        if (strcmp(value, "yes") && strcmp(value, "no"))
            return fail(ps, -EINVAL, "[circmon] nationality_cohorts: not yes or no: \"%s\"", value);
        cfg->nationality_cohorts = strcmp(value, "yes") == 0;
        return 1;
    }
    return fail(ps, -EINVAL, "[circmon] %s: unknown key", key);
}

static int handle_kafka(struct parser *ps, const char *key, const char *value) {
    struct cm_config *cfg = ps->cfg;

    if (strcmp(key, "brokers") == 0)
        return set_str(ps, key, value, &cfg->brokers);
    if (strcmp(key, "topic") == 0)
        return set_str(ps, key, value, &cfg->topic);
    if (strcmp(key, "group_id") == 0)
        return set_str(ps, key, value, &cfg->group_id);
    if (strcmp(key, "dlq_topic") == 0)
        return set_str(ps, key, value, &cfg->dlq_topic);
    if (strcmp(key, "alert_topic") == 0)
        return set_str(ps, key, value, &cfg->alert_topic);
    if (strncmp(key, "rdkafka.", 8) == 0 && key[8] != '\0') {
        struct cm_kv *kv = realloc(cfg->rdkafka, (cfg->n_rdkafka + 1) * sizeof *kv);

        if (!kv)
            return fail(ps, -ENOMEM, "[kafka] %s: out of memory", key);
        cfg->rdkafka = kv;
        kv = &cfg->rdkafka[cfg->n_rdkafka];
        kv->key = xstrdup(key + 8);
        kv->value = xstrdup(value);
        kv->line = ps->lineno;
        if (!kv->key || !kv->value) {
            free(kv->key);
            free(kv->value);
            return fail(ps, -ENOMEM, "[kafka] %s: out of memory", key);
        }
        cfg->n_rdkafka++;
        return 1;
    }
    return fail(ps, -EINVAL, "[kafka] %s: unknown key", key);
}

static int handle_redis(struct parser *ps, const char *key, const char *value) {
    struct cm_config *cfg = ps->cfg;

    if (strcmp(key, "host") == 0)
        return set_str(ps, key, value, &cfg->redis_host);
    if (strcmp(key, "port") == 0)
        return set_int(ps, key, value, 0, 65535, &cfg->redis_port);
    if (strcmp(key, "unix_socket") == 0) {
        ps->unix_line = ps->lineno;
        return set_opt_str(ps, key, value, &cfg->redis_unix_socket);
    }
    if (strcmp(key, "user") == 0)
        return set_opt_str(ps, key, value, &cfg->redis_user);
    if (strcmp(key, "password") == 0 || strcmp(key, "password_file") == 0) {
        bool is_file = key[8] == '_';

        if (is_file ? ps->password_seen : ps->password_file_seen)
            return fail(ps, -EINVAL, "[redis] %s: password and password_file exclude each "
                                     "other", key);
        if (is_file) {
            ps->password_file_seen = true;
            if (*value == '\0')
                return fail(ps, -EINVAL, "[redis] password_file: empty value");
            return read_password_file(ps, value);
        }
        ps->password_seen = true;
        return set_opt_str(ps, key, value, &cfg->redis_password);
    }
    if (strcmp(key, "db") == 0) {
        ps->db_line = ps->lineno;
        return set_int(ps, key, value, 0, 1000000, &cfg->redis_db);
    }
    if (strcmp(key, "cluster") == 0) {
        ps->cluster_line = ps->lineno;
        if (strcmp(value, "yes") && strcmp(value, "no"))
            return fail(ps, -EINVAL, "[redis] cluster: not yes or no: \"%s\"", value);
        cfg->redis_cluster = strcmp(value, "yes") == 0;
        return 1;
    }
    if (strcmp(key, "nodes") == 0) {
        char e[300];
        struct cm_node_addr *v = calloc(CM_NODES_MAX, sizeof(*v));
        if (!v)
            return fail(ps, -ENOMEM, "[redis] nodes: out of memory");
        int n = cm_slot_nodes_parse(value, v, CM_NODES_MAX, e, sizeof(e));
        if (n < 0) {
            free(v);
            return fail(ps, -EINVAL, "[redis] nodes: %s", e);
        }
        char *spec = xstrdup(value);
        if (!spec) {
            free(v);
            return fail(ps, -ENOMEM, "[redis] nodes: out of memory");
        }
        free(cfg->redis_nodes);
        free(cfg->redis_nodes_spec);
        cfg->redis_nodes = v;
        cfg->redis_nodes_spec = spec;
        cfg->n_redis_nodes = (size_t)n;
        ps->nodes_line = ps->lineno;
        return 1;
    }
    if (strcmp(key, "key_prefix") == 0) {
        if (strpbrk(value, "{} \t"))
            return fail(ps, -EINVAL, "[redis] key_prefix: must not contain braces or "
                                     "blanks: \"%s\"", value);
        return set_str(ps, key, value, &cfg->key_prefix);
    }
    if (strcmp(key, "alias") == 0) {
        /* no braces: the name can never match <prefix>:{*, the keys of a prefix */
        if (strpbrk(value, "{} \t"))
            return fail(ps, -EINVAL, "[redis] alias: must not contain braces or "
                                     "blanks: \"%s\"", value);
        return set_opt_str(ps, key, value, &cfg->redis_alias);
    }
    if (strcmp(key, "state_buckets") == 0)
        return set_int(ps, key, value, 0, CM_LAYOUT_BUCKETS_MAX, &cfg->state_buckets);
    if (strcmp(key, "connect_timeout_ms") == 0)
        return set_int(ps, key, value, 1, 3600000, &cfg->connect_timeout_ms);
    if (strcmp(key, "command_timeout_ms") == 0)
        return set_int(ps, key, value, 1, 3600000, &cfg->command_timeout_ms);
    return fail(ps, -EINVAL, "[redis] %s: unknown key", key);
}

static int handle_http(struct parser *ps, const char *key, const char *value) {
    if (strcmp(key, "listen") == 0) {
        unsigned char a[16];
        if (inet_pton(AF_INET, value, a) != 1 && inet_pton(AF_INET6, value, a) != 1)
            return fail(ps, -EINVAL, "[http] listen: not an IPv4 or IPv6 address: \"%s\"",
                        value);
        return set_str(ps, key, value, &ps->cfg->http_listen);
    }
    if (strcmp(key, "port") == 0)
        return set_int(ps, key, value, 0, 65535, &ps->cfg->http_port);
    if (strcmp(key, "refresh_ms") == 0)
        return set_int(ps, key, value, 100, 3600000, &ps->cfg->http_refresh_ms);
    if (strcmp(key, "max_connections") == 0)
        return set_int(ps, key, value, 1, 10000, &ps->cfg->http_max_connections);
    if (strcmp(key, "request_timeout_ms") == 0)
        return set_int(ps, key, value, 100, 3600000, &ps->cfg->http_request_timeout_ms);
    if (strcmp(key, "metrics_cohort_months") == 0)
        return set_int(ps, key, value, 1, 1200, &ps->cfg->http_metrics_cohort_months);
    return fail(ps, -EINVAL, "[http] %s: unknown key", key);
}

static int handle_scheme(struct parser *ps, const char *key, const char *value) {
    struct cm_scheme_conf *sc = ps->scheme;

    if (strcmp(key, "grace_days") == 0) {
        if (!set_int(ps, key, value, 0, 3650, &sc->grace_days))
            return 0;
        *ps->scheme_set |= SET_GRACE;
        return 1;
    }
    if (strcmp(key, "stay_limit") == 0) {
        if (parse_stay(value, &sc->stay_n, &sc->stay_w) < 0)
            return fail(ps, -EINVAL, "[%s] stay_limit: not N/W with 1 <= N, W <= %d, nor "
                                     "none: \"%s\"", ps->section, CM_STAY_MAX, value);
        *ps->scheme_set |= SET_STAY;
        return 1;
    }
    return fail(ps, -EINVAL, "[%s] %s: unknown key", ps->section, key);
}

static int handle_alerts(struct parser *ps, const char *key, const char *value) {
    if (strcmp(key, "interval_s") == 0)
        return set_int(ps, key, value, 1, 86400, &ps->cfg->alerts_interval_s);
    return fail(ps, -EINVAL, "[alerts] %s: unknown key", key);
}

static int handle_alert(struct parser *ps, const char *key, const char *value) {
    char why[512];
    int r = cm_alert_rule_set(ps->alert, key, value, why, sizeof why);

    if (r < 0)
        return fail(ps, r, "[%s] %s: %s", ps->section, key, why);
    if (strcmp(key, "nationality") == 0 && !ps->nat_line) {
        ps->nat_line = ps->lineno;
        ps->nat_alert = (size_t)(ps->alert - ps->cfg->alerts);
    }
    return 1;
}

/* The [alert] section that ends here is complete (its keys were checked one
 * by one; here the ones it must have). */
static int end_alert(struct parser *ps) {
    char why[128];
    int line = ps->lineno;

    if (!ps->alert)
        return 0;
    if (cm_alert_rule_check(ps->alert, why, sizeof why) < 0) {
        ps->lineno = ps->alert->line;
        fail(ps, -EINVAL, "[alert %s]: %s", ps->alert->name, why);
        ps->lineno = line;
        return -EINVAL;
    }
    ps->alert = NULL;
    return 0;
}

static int begin_alert(struct parser *ps, const char *name) {
    struct cm_config *cfg = ps->cfg;

    if (!cm_alert_name_ok(name, strlen(name)))
        return fail(ps, -EINVAL, "[alert %s]: not a rule name (letters, digits, _ - .; 1..%d "
                                 "bytes)", name, CM_ALERT_NAME_MAX), -EINVAL;
    for (size_t i = 0; i < cfg->n_alerts; i++)
        if (strcmp(cfg->alerts[i].name, name) == 0)
            return fail(ps, -EINVAL, "[alert %s]: duplicate section (first at line %d)", name,
                        cfg->alerts[i].line), -EINVAL;
    if (cfg->n_alerts == CM_ALERT_MAX_RULES)
        return fail(ps, -E2BIG, "[alert %s]: more than %d alert rules", name,
                    CM_ALERT_MAX_RULES), -E2BIG;
    if (cfg->n_alerts == ps->cap_alerts) {
        size_t cap = ps->cap_alerts ? 2 * ps->cap_alerts : 8;
        struct cm_alert_rule *a = realloc(cfg->alerts, cap * sizeof *a);

        if (!a)
            return fail(ps, -ENOMEM, "[alert %s]: out of memory for the rules", name), -ENOMEM;
        cfg->alerts = a;
        ps->cap_alerts = cap;
    }
    ps->alert = &cfg->alerts[cfg->n_alerts++];
    cm_alert_rule_init(ps->alert, name, ps->lineno);
    ps->kind = SEC_ALERT;
    return 0;
}

static int handler(void *user, const char *section, const char *key, const char *value) {
    struct parser *ps = user;

    (void)section; /* truncated by inih; ps->section is the real one */
    if (ps->rc)
        return 0;
    if (ps->kind == SEC_NONE)
        return fail(ps, -EINVAL, "%s: key outside any section", key);
    /* Keys are remembered as "section\nkey": a reopened section keeps its keys. */
    size_t sl = strlen(ps->section), kl = strlen(key);
    for (size_t i = 0; i < ps->n_keys; i++)
        if (strncmp(ps->keys[i].name, ps->section, sl) == 0 && ps->keys[i].name[sl] == '\n' &&
            strcmp(ps->keys[i].name + sl + 1, key) == 0)
            return fail(ps, -EINVAL, "[%s] %s: duplicate key (first at line %d)", ps->section,
                        key, ps->keys[i].line);
    if (ps->n_keys == ps->cap_keys) {
        size_t cap = ps->cap_keys ? 2 * ps->cap_keys : 16;
        struct seen_key *k = realloc(ps->keys, cap * sizeof *k);

        if (!k)
            return fail(ps, -ENOMEM, "out of memory");
        ps->keys = k;
        ps->cap_keys = cap;
    }
    ps->keys[ps->n_keys].name = malloc(sl + 1 + kl + 1);
    if (!ps->keys[ps->n_keys].name)
        return fail(ps, -ENOMEM, "out of memory");
    memcpy(ps->keys[ps->n_keys].name, ps->section, sl);
    ps->keys[ps->n_keys].name[sl] = '\n';
    memcpy(ps->keys[ps->n_keys].name + sl + 1, key, kl + 1);
    ps->keys[ps->n_keys++].line = ps->lineno;

    switch (ps->kind) {
    case SEC_CIRCMON: return handle_circmon(ps, key, value);
    case SEC_KAFKA: return handle_kafka(ps, key, value);
    case SEC_REDIS: return handle_redis(ps, key, value);
    case SEC_HTTP: return handle_http(ps, key, value);
    case SEC_SCHEME: return handle_scheme(ps, key, value);
    case SEC_ALERTS: return handle_alerts(ps, key, value);
    case SEC_ALERT: return handle_alert(ps, key, value);
    case SEC_NONE: break;
    }
    return 0;
}

static void clear_keys(struct parser *ps) {
    for (size_t i = 0; i < ps->n_keys; i++)
        free(ps->keys[i].name);
    ps->n_keys = 0;
}

/* A new section starts at this line: check it and make it current. Returns 0
 * or a negative code (the error is recorded). */
static int begin_section(struct parser *ps, const char *name, size_t len) {
    struct cm_config *cfg = ps->cfg;
    static const struct { const char *name; enum section_kind kind; } fixed[] = {
        {"circmon", SEC_CIRCMON}, {"kafka", SEC_KAFKA}, {"redis", SEC_REDIS},
        {"http", SEC_HTTP}, {"alerts", SEC_ALERTS},
    };
    const char *id;
    size_t idlen;

    while (len > 0 && (*name == ' ' || *name == '\t'))
        name++, len--;
    while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t'))
        len--;
    memcpy(ps->section, name, len);
    ps->section[len] = '\0';
    if (end_alert(ps) < 0)
        return -EINVAL;
    ps->scheme = NULL;
    ps->kind = SEC_NONE;

    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (strcmp(ps->section, fixed[i].name) == 0) {
            ps->kind = fixed[i].kind;
            return 0;
        }
    }
    if (strncmp(ps->section, "alert", 5) == 0 && (ps->section[5] == ' ' || ps->section[5] == '\t')) {
        const char *an = ps->section + 6;
        while (*an == ' ' || *an == '\t')
            an++;
        return begin_alert(ps, an);
    }
    if (strncmp(ps->section, "scheme", 6) != 0 || (ps->section[6] != ' ' && ps->section[6] != '\t')) {
        fail(ps, -EINVAL, "unknown section [%s]", ps->section);
        return ps->rc;
    }
    id = ps->section + 7;
    while (*id == ' ' || *id == '\t')
        id++;
    idlen = strlen(id);
    if (idlen > CM_ID_MAX) {
        fail(ps, -ENAMETOOLONG, "[scheme ...]: scheme id longer than %d bytes", CM_ID_MAX);
        return ps->rc;
    }
    ps->kind = SEC_SCHEME;
    if (strcmp(id, "*") == 0) {
        if (ps->default_line) {
            fail(ps, -EINVAL, "[scheme *]: duplicate section (first at line %d)",
                 ps->default_line);
            return ps->rc;
        }
        ps->default_line = ps->lineno;
        ps->scheme = &cfg->scheme_default;
        ps->scheme_set = &ps->default_set;
        return 0;
    }
    for (size_t i = 0; i < cfg->n_schemes; i++) {
        if (strcmp(cfg->schemes[i].id, id) == 0) {
            fail(ps, -EINVAL, "[scheme %s]: duplicate section (first at line %d)", id,
                 ps->scheme_line[i]);
            return ps->rc;
        }
    }
    if (cfg->n_schemes == ps->cap_schemes) {
        size_t cap = ps->cap_schemes ? 2 * ps->cap_schemes : 8;
        struct cm_scheme_conf *s = realloc(cfg->schemes, cap * sizeof *s);
        unsigned *set;
        int *line;

        if (s)
            cfg->schemes = s;
        set = realloc(ps->set, cap * sizeof *set);
        if (set)
            ps->set = set;
        line = realloc(ps->scheme_line, cap * sizeof *line);
        if (line)
            ps->scheme_line = line;
        if (!s || !set || !line) {
            fail(ps, -ENOMEM, "out of memory");
            return ps->rc;
        }
        ps->cap_schemes = cap;
    }
    ps->scheme = &cfg->schemes[cfg->n_schemes];
    memset(ps->scheme, 0, sizeof *ps->scheme);
    memcpy(ps->scheme->id, id, idlen + 1);
    ps->scheme_set = &ps->set[cfg->n_schemes];
    *ps->scheme_set = 0;
    ps->scheme_line[cfg->n_schemes] = ps->lineno;
    cfg->n_schemes++;
    return 0;
}

/* fgets-like reader for inih: counts lines and recognises section headers
 * before inih sees them. Returning NULL ends the parse. */
static char *reader(char *buf, int size, void *user) {
    struct parser *ps = user;
    char *p;
    size_t len;

    if (ps->rc)
        return NULL;
    if (!fgets(buf, size, ps->fp))
        return NULL;
    ps->lineno++;
    len = strlen(buf);
    if ((len == 0 || buf[len - 1] != '\n') && !feof(ps->fp)) {
        fail(ps, -E2BIG, "line longer than %d bytes", CM_CONF_MAX_LINE - 3);
        return NULL;
    }
    p = buf;
    if (ps->lineno == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '[') {
        char *end = strchr(p + 1, ']');

        const char *rest;

        if (!end) {
            fail(ps, -EINVAL, "malformed section header: no ']'");
            return NULL;
        }
        for (rest = end + 1; *rest == ' ' || *rest == '\t'; rest++)
            ;
        if (*rest != '\0' && *rest != '\n' && *rest != '\r' && *rest != ';' && *rest != '#') {
            fail(ps, -EINVAL, "malformed section header: text after ']'");
            return NULL;
        }
        if (begin_section(ps, p + 1, (size_t)(end - p - 1)) < 0)
            return NULL;
    }
    return buf;
}

int cm_config_defaults(struct cm_config *cfg) {
    *cfg = (struct cm_config){
        .reorder_window_days = 30,
        .max_window_events = 256,
        .batch_size = 10000,
        .max_in_flight = 8,
        .batch_linger_ms = 20,
        .nationality_cohorts = 0,
        .log_level = xstrdup("info"),
        .brokers = xstrdup("127.0.0.1:9092"),
        .topic = xstrdup("circmon.events"),
        .group_id = xstrdup("circmond"),
        .dlq_topic = xstrdup("circmon.events.dlq"),
        .alert_topic = xstrdup("circmon.events.alerts"),
        .redis_host = xstrdup("127.0.0.1"),
        .redis_port = 6379,
        .redis_db = 0,
        .key_prefix = xstrdup("circmon"),
        .state_buckets = CM_STATE_BUCKETS_DEFAULT,
        .connect_timeout_ms = 2000,
        .command_timeout_ms = 5000,
        .http_listen = xstrdup("127.0.0.1"),
        .http_port = 9464,
        .http_refresh_ms = 5000,
        .http_max_connections = 64,
        .http_request_timeout_ms = 10000,
        .http_metrics_cohort_months = 24,
        .alerts_interval_s = 60,
    };
    if (!cfg->log_level || !cfg->brokers || !cfg->topic || !cfg->group_id ||
        !cfg->dlq_topic || !cfg->alert_topic || !cfg->redis_host || !cfg->key_prefix ||
        !cfg->http_listen) {
        cm_config_free(cfg);
        return -ENOMEM;
    }
    return 0;
}

/* "<topic><suffix>" */
static char *derived_topic(const char *topic, const char *suffix) {
    size_t a = strlen(topic), b = strlen(suffix);
    char *p = malloc(a + b + 1);

    if (p) {
        memcpy(p, topic, a);
        memcpy(p + a, suffix, b + 1);
    }
    return p;
}

int cm_config_load(struct cm_config *cfg, const char *path, char *err, size_t errlen) {
    struct parser ps = {.cfg = cfg, .path = path, .err = err, .errlen = errlen};
    bool dlq_set, alert_set;
    int saved_max_line, r;
    bool saved_multiline, saved_stop;

    if (err && errlen)
        err[0] = '\0';
    r = cm_config_defaults(cfg);
    if (r < 0) {
        cm_errf(err, errlen, "%s: out of memory", path);
        return r;
    }
    /* The defaults of the derived topics are computed after the parse. */
    free(cfg->dlq_topic);
    free(cfg->alert_topic);
    cfg->dlq_topic = cfg->alert_topic = NULL;
    cfg->path = xstrdup(path);
    if (!cfg->path) {
        cm_errf(err, errlen, "%s: out of memory", path);
        r = -ENOMEM;
        goto fail;
    }
    ps.fp = fopen(path, "r");
    if (!ps.fp) {
        r = -errno;
        cm_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }

    /* Debian's inih exposes its compile-time options as globals. Not
     * thread-safe: load configuration before starting threads. */
    saved_max_line = ini_max_line;
    saved_multiline = ini_allow_multiline;
    saved_stop = ini_stop_on_first_error;
    ini_max_line = CM_CONF_MAX_LINE;
    ini_allow_multiline = false; /* an indented line is a line of its own */
    ini_stop_on_first_error = true;
    r = ini_parse_stream(reader, &ps, handler, &ps);
    ini_max_line = saved_max_line;
    ini_allow_multiline = saved_multiline;
    ini_stop_on_first_error = saved_stop;

    if (ps.rc == 0 && r == 0)
        end_alert(&ps); /* the last section */
    if (ps.rc == 0 && ferror(ps.fp)) {
        cm_errf(err, errlen, "%s: read error", path);
        ps.rc = -EIO;
    }
    fclose(ps.fp);
    if (ps.rc == 0 && r == -2) {
        cm_errf(err, errlen, "%s: out of memory", path);
        ps.rc = -ENOMEM;
    } else if (ps.rc == 0 && r != 0) {
        cm_errf(err, errlen, "%s:%d: syntax error: expected [section] or key = value", path,
                r > 0 ? r : ps.lineno);
        ps.rc = -EINVAL;
    }
    if (ps.rc < 0) {
        r = ps.rc;
        goto fail;
    }

    /* Named schemes take the keys they do not set from [scheme *]. */
    for (size_t i = 0; i < cfg->n_schemes; i++) {
        if (!(ps.set[i] & SET_GRACE))
            cfg->schemes[i].grace_days = cfg->scheme_default.grace_days;
        if (!(ps.set[i] & SET_STAY)) {
            cfg->schemes[i].stay_n = cfg->scheme_default.stay_n;
            cfg->schemes[i].stay_w = cfg->scheme_default.stay_w;
        }
    }
    /* Redis Cluster has one database and no unix sockets between its nodes. */
    if (cfg->redis_cluster && !cfg->n_redis_nodes) {
        cm_errf(err, errlen, "%s:%d: [redis] cluster = yes needs nodes = host:port[,...]", path,
                ps.cluster_line);
        r = -EINVAL;
        goto fail;
    }
    if (cfg->redis_cluster && cfg->redis_db) {
        cm_errf(err, errlen, "%s:%d: [redis] db: a Redis Cluster has database 0 only (no "
                "SELECT): remove db or set cluster = no", path, ps.db_line);
        r = -EINVAL;
        goto fail;
    }
    if (cfg->redis_cluster && cfg->redis_unix_socket) {
        cm_errf(err, errlen, "%s:%d: [redis] unix_socket: with cluster = yes the nodes are "
                "reached by TCP at the addresses the cluster announces: use nodes", path,
                ps.unix_line);
        r = -EINVAL;
        goto fail;
    }
    if (!cfg->redis_cluster && cfg->n_redis_nodes) {
        cm_errf(err, errlen, "%s:%d: [redis] nodes: only used with cluster = yes (a single "
                "Redis is host and port)", path, ps.nodes_line);
        r = -EINVAL;
        goto fail;
    }
    /* A rule per nationality reads the cohorts per nationality, which the
     * fold writes only when asked to ([circmon] may follow the rules). */
    if (ps.nat_line && !cfg->nationality_cohorts) {
        cm_errf(err, errlen, "%s:%d: [alert %s] nationality: needs [circmon] "
                "nationality_cohorts = yes (the fold then keeps cohorts per nationality; over "
                "existing data rebuild the aggregate: README Operations \"Rebuild without "
                "downtime\")", path, ps.nat_line, cfg->alerts[ps.nat_alert].name);
        r = -EINVAL;
        goto fail;
    }
    dlq_set = cfg->dlq_topic != NULL;
    alert_set = cfg->alert_topic != NULL;
    if (!dlq_set)
        cfg->dlq_topic = derived_topic(cfg->topic, ".dlq");
    if (!alert_set)
        cfg->alert_topic = derived_topic(cfg->topic, ".alerts");
    if (!cfg->dlq_topic || !cfg->alert_topic) {
        cm_errf(err, errlen, "%s: out of memory", path);
        r = -ENOMEM;
        goto fail;
    }
    r = 0;
    goto out;

fail:
    cm_config_free(cfg);
out:
    clear_keys(&ps);
    free(ps.keys);
    free(ps.set);
    free(ps.scheme_line);
    return r;
}

const struct cm_scheme_conf *cm_config_scheme(const struct cm_config *cfg, const char *id) {
    static const struct cm_scheme_conf builtin = {.id = "", .grace_days = 0};

    if (!cfg)
        return &builtin;
    if (id)
        for (size_t i = 0; i < cfg->n_schemes; i++)
            if (strcmp(cfg->schemes[i].id, id) == 0)
                return &cfg->schemes[i];
    return &cfg->scheme_default; /* [scheme *], or the built-in values it starts from */
}

void cm_config_free(struct cm_config *cfg) {
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->log_level);
    free(cfg->brokers);
    free(cfg->topic);
    free(cfg->group_id);
    free(cfg->dlq_topic);
    free(cfg->alert_topic);
    for (size_t i = 0; i < cfg->n_rdkafka; i++) {
        free(cfg->rdkafka[i].key);
        free(cfg->rdkafka[i].value);
    }
    free(cfg->rdkafka);
    free(cfg->redis_host);
    free(cfg->redis_unix_socket);
    free(cfg->redis_user);
    free(cfg->redis_password);
    free(cfg->redis_nodes);
    free(cfg->redis_nodes_spec);
    free(cfg->key_prefix);
    free(cfg->redis_alias);
    free(cfg->http_listen);
    free(cfg->schemes);
    free(cfg->alerts);
    *cfg = (struct cm_config){0};
}
