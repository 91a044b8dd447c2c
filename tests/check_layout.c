/* check_layout.c - the layout of migrant states in Redis: buckets, the stored
 * layout and its checks, both layouts through the store, migrate-layout.
 *
 * The pure part (bucket function, layout values, the check) needs nothing;
 * the rest runs against a redis-server on a unix socket started by the test
 * and stopped by the teardown whatever happens. Expected values come from
 * the layout's definition (store_layout.h): FNV-1a 64 computed by hand, key
 * names written out, values read back with plain redis commands. */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "circmon/agg.h"
#include "circmon/config.h"
#include "circmon/names.h"
#include "circmon/store.h"
#include "circmon/store_layout.h"
#include "cm_proc.h"
#include "cm_svc.h"

/* ------------------------------------------------------------ pure */

START_TEST(test_bucket_function)
{
    /* FNV-1a 64: "" is the offset basis, "a" is 0xaf63dc4c8601ec8c */
    ck_assert_uint_eq(cm_layout_bucket("", 0, 1000), UINT64_C(0xcbf29ce484222325) % 1000);
    ck_assert_uint_eq(cm_layout_bucket("a", 1, 1000), UINT64_C(0xaf63dc4c8601ec8c) % 1000);
    ck_assert_uint_eq(cm_layout_bucket("a", 1, 1000), 996);
    ck_assert_uint_eq(cm_layout_bucket("broken-state", 12, 256), 216);
    ck_assert_uint_eq(cm_layout_bucket("a", 1, 0), 0);
    ck_assert_uint_eq(cm_layout_bucket("a", 1, 1), 0);
    /* every byte counts, NUL included */
    ck_assert_uint_ne(cm_layout_bucket("a\0b", 3, 1u << 31), cm_layout_bucket("a\0c", 3, 1u << 31));
    /* 64,000 ids over 64 buckets: each within 15% of the mean of 1000 */
    unsigned cnt[64] = {0};
    char id[32];
    for (int i = 0; i < 64000; i++) {
        int n = snprintf(id, sizeof(id), "m%07d", i);
        uint32_t b = cm_layout_bucket(id, (size_t)n, 64);
        ck_assert_uint_lt(b, 64);
        cnt[b]++;
    }
    for (int b = 0; b < 64; b++)
        ck_assert_msg(cnt[b] > 850 && cnt[b] < 1150, "bucket %d holds %u of 64000", b, cnt[b]);
}
END_TEST

START_TEST(test_layout_values)
{
    char buf[32];
    ck_assert_int_eq(cm_layout_format(0, buf, sizeof(buf)), 7);
    ck_assert_str_eq(buf, "strings");
    ck_assert_int_eq(cm_layout_format(256, buf, sizeof(buf)), 11);
    ck_assert_str_eq(buf, "buckets 256");
    ck_assert_int_eq(cm_layout_format(-1, buf, sizeof(buf)), -EINVAL);
    ck_assert_int_eq(cm_layout_format(CM_LAYOUT_BUCKETS_MAX + 1, buf, sizeof(buf)), -EINVAL);
    ck_assert_int_eq(cm_layout_format(256, buf, 5), -EINVAL);
    int32_t b = -7;
    ck_assert_int_eq(cm_layout_parse("strings", 7, &b), 0);
    ck_assert_int_eq(b, 0);
    ck_assert_int_eq(cm_layout_parse("buckets 1", 9, &b), 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(cm_layout_parse("buckets 65536", 13, &b), 0);
    ck_assert_int_eq(b, 65536);
    static const char *bad[] = {"", "string", "strings ", "Strings", "buckets", "buckets ",
                                "buckets 0", "buckets 01", "buckets -1", "buckets +1",
                                "buckets  1", "buckets 1 ", "buckets 65537", "bucket 5",
                                "buckets 99999999999999999999", "moving to buckets 4"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(cm_layout_parse(bad[i], strlen(bad[i]), &b) == -EINVAL, "'%s' parsed",
                      bad[i]);
    ck_assert_int_eq(cm_layout_parse("strings\0", 8, &b), -EINVAL);
    ck_assert_int_eq(cm_layout_parse("buckets 4\0", 10, &b), -EINVAL);
}
END_TEST

START_TEST(test_layout_check)
{
    char msg[600];
    /* a new partition takes any layout; equal layouts pass */
    ck_assert_int_eq(cm_layout_check(3, -1, 0, 256, msg, sizeof(msg)), 0);
    ck_assert_int_eq(cm_layout_check(3, -1, 0, 0, msg, sizeof(msg)), 0);
    ck_assert_int_eq(cm_layout_check(3, 256, 1, 256, msg, sizeof(msg)), 0);
    ck_assert_int_eq(cm_layout_check(3, 0, 1, 0, msg, sizeof(msg)), 0);
    /* a partition written before layouts were stored holds string keys */
    ck_assert_int_eq(cm_layout_check(3, -1, 1, 0, msg, sizeof(msg)), 0);
    ck_assert_int_eq(cm_layout_check(3, -1, 1, 256, msg, sizeof(msg)), -ESTALE);
    ck_assert_str_eq(msg, "partition 3: Redis holds its states in one string key per migrant (no "
                          "layout key), [redis] state_buckets = 256 asks for 256 hash buckets: set "
                          "state_buckets = 0, or convert with circmonctl migrate-layout (circmond "
                          "stopped), or rebuild into a new key_prefix");
    /* the longest fits the store's error string (511 bytes) */
    ck_assert_int_eq(cm_layout_check(INT32_MAX, -1, 1, 65536, msg, sizeof(msg)), -ESTALE);
    ck_assert_uint_lt(strlen(msg), 400);
    /* a stored layout never changes under existing data, even when a new
     * partition has no position yet; migrate-layout does not change a
     * bucket count */
    ck_assert_int_eq(cm_layout_check(9, 64, 0, 256, msg, sizeof(msg)), -ESTALE);
    ck_assert_str_eq(msg, "partition 9: Redis holds its states in 64 hash buckets, [redis] "
                          "state_buckets = 256 asks for 256 hash buckets: set state_buckets = 64, "
                          "or rebuild into a new key_prefix");
    ck_assert_int_eq(cm_layout_check(9, 0, 1, 4, msg, sizeof(msg)), -ESTALE);
    ck_assert_ptr_nonnull(strstr(msg, "migrate-layout"));
    ck_assert_int_eq(cm_layout_check(9, 4, 1, 0, msg, sizeof(msg)), -ESTALE);
    ck_assert_ptr_null(strstr(msg, "migrate-layout"));
    /* a short buffer still ends in NUL */
    ck_assert_int_eq(cm_layout_check(9, 4, 1, 0, msg, 10), -ESTALE);
    ck_assert_uint_eq(strlen(msg), 9);
}
END_TEST

START_TEST(test_key_names)
{
    size_t kl = 0;
    char *k = cm_layout_key_bucket("cm", 7, 13, &kl);
    ck_assert_str_eq(k, "cm:{7}:s:13");
    ck_assert_uint_eq(kl, 11);
    free(k);
    k = cm_layout_key_agg_bucket("cm", 7, 63, &kl);
    ck_assert_str_eq(k, "cm:{7}:agg:63");
    ck_assert_uint_eq(kl, 13);
    free(k);
    k = cm_layout_key("cm", 7);
    ck_assert_str_eq(k, "cm:{7}:layout");
    free(k);
    k = cm_layout_key_string("cm", 7, "a\0b", 3, &kl);
    ck_assert_uint_eq(kl, 12);
    ck_assert_int_eq(memcmp(k, "cm:{7}:m:a\0b", 13), 0);
    free(k);
    k = cm_store_key_state("cm", 7, "xy", 2);
    ck_assert_str_eq(k, "cm:{7}:m:xy");
    free(k);
}
END_TEST

/* ------------------------------------------------------------ store */

static void setup(void)
{
    svc_dir_make("check_layout");
    redis_start(0);
}

static void teardown(void)
{
    svc_dir_remove();
}

static const char *write_conf(const char *name, int buckets)
{
    const char *p = path_in(name);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp, "[redis]\nunix_socket = %s\ncommand_timeout_ms = 5000\n", redis_sock);
    if (buckets >= 0)
        fprintf(fp, "state_buckets = %d\n", buckets);
    fclose(fp);
    return p;
}

struct res {
    int done, err, applied;
    int64_t stored, pos;
    size_t nvals;
    char **vals; /* copies of the values read (NULL: absent) */
    size_t *lens;
};

static void on_up(struct cm_store *s, int up, void *ud)
{
    (void)s;
    *(int *)ud = up ? 1 : -1;
}

static void on_apply(int err, int applied, int64_t stored, void *ud)
{
    struct res *r = ud;
    r->done = 1;
    r->err = err;
    r->applied = applied;
    r->stored = stored;
}

static void on_pos(int err, const struct cm_store_pos *pos, size_t n, void *ud)
{
    struct res *r = ud;
    r->done = 1;
    r->err = err;
    if (!err && n == 1)
        r->pos = pos[0].pos;
}

static void on_vals(int err, const struct cm_store_val *v, size_t n, void *ud)
{
    struct res *r = ud;
    r->done = 1;
    r->err = err;
    if (err)
        return;
    r->nvals = n;
    r->vals = calloc(n, sizeof(*r->vals));
    r->lens = calloc(n, sizeof(*r->lens));
    ck_assert(r->vals && r->lens);
    for (size_t i = 0; i < n; i++)
        if (v[i].data) {
            r->vals[i] = malloc(v[i].len + 1);
            memcpy(r->vals[i], v[i].data, v[i].len);
            r->vals[i][v[i].len] = '\0';
            r->lens[i] = v[i].len;
        }
}

static void res_free(struct res *r)
{
    for (size_t i = 0; i < r->nvals; i++)
        free(r->vals[i]);
    free(r->vals);
    free(r->lens);
}

/* Runs the loop until r->done, at most 10 s (each store command has its
 * own deadline, which ends a loop iteration too). */
static void run_until(struct event_base *base, int *done)
{
    double end = now_s() + 10;
    while (!*done) {
        ck_assert_msg(now_s() < end, "no store reply in 10 s");
        event_base_loop(base, EVLOOP_ONCE);
    }
}

struct env {
    struct cm_config cfg;
    struct event_base *base;
    struct cm_store *st;
};

static void env_open(struct env *e, int buckets)
{
    char err[512];
    char name[32];
    snprintf(name, sizeof(name), "c%d.conf", buckets);
    ck_assert_msg(cm_config_load(&e->cfg, write_conf(name, buckets), err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_ptr_nonnull(e->base = event_base_new());
    int up = 0;
    ck_assert_ptr_nonnull(e->st = cm_store_new(e->base, &e->cfg, on_up, &up));
    double end = now_s() + 10;
    while (up != 1) {
        ck_assert_msg(now_s() < end && up == 0, "the store did not connect: %s",
                      cm_store_errstr(e->st));
        event_base_loop(e->base, EVLOOP_ONCE);
    }
}

static void env_close(struct env *e)
{
    cm_store_free(e->st);
    event_base_free(e->base);
    cm_config_free(&e->cfg);
}

static struct res apply_states(struct env *e, int32_t part, int64_t expected, int64_t new_pos,
                               char **mids, char **vals, size_t n)
{
    struct res r = {0};
    struct cm_store_apply *ap = cm_store_apply_new(e->cfg.key_prefix, part, expected, new_pos);
    ck_assert_ptr_nonnull(ap);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(cm_store_apply_state(ap, mids[i], strlen(mids[i]),
                                              (const uint8_t *)vals[i], strlen(vals[i])),
                         0);
    ck_assert_int_eq(cm_store_apply_send(e->st, ap, on_apply, &r), 0);
    run_until(e->base, &r.done);
    return r;
}

static struct res read_states(struct env *e, int32_t part, char **mids, size_t n)
{
    struct res r = {0};
    size_t *lens = malloc(n * sizeof(*lens));
    ck_assert_ptr_nonnull(lens);
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(mids[i]);
    ck_assert_int_eq(cm_store_get_states(e->st, part, (const char *const *)mids, lens, n,
                                         on_vals, &r),
                     0);
    run_until(e->base, &r.done);
    free(lens);
    return r;
}

static struct res take(struct env *e, int32_t part)
{
    struct res r = {0};
    ck_assert_int_eq(cm_store_take_positions(e->st, &part, 1, on_pos, &r), 0);
    run_until(e->base, &r.done);
    return r;
}

/* A plain redis command's reply (the caller frees it). */
static redisReply *rq(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    ck_assert_ptr_nonnull(r);
    return r;
}

static long long rint_(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void assert_str(redisContext *c, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    ck_assert_ptr_nonnull(r);
    if (!want)
        ck_assert_msg(r->type == REDIS_REPLY_NIL, "%s: not absent", fmt);
    else
        ck_assert_msg(r->type == REDIS_REPLY_STRING && r->len == strlen(want) &&
                          !memcmp(r->str, want, r->len),
                      "%s: '%s' wanted, got '%.*s'", fmt, want,
                      r->type == REDIS_REPLY_STRING ? (int)r->len : 0,
                      r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}

/* The states of n migrants "mig-<i>" with values "state-<i>-<pad>". */
static void make_states(size_t n, char ***mids, char ***vals, int tag)
{
    *mids = calloc(n, sizeof(**mids));
    *vals = calloc(n, sizeof(**vals));
    ck_assert(*mids && *vals);
    for (size_t i = 0; i < n; i++) {
        char b[64];
        snprintf(b, sizeof(b), "mig-%zu", i);
        (*mids)[i] = strdup(b);
        snprintf(b, sizeof(b), "state-%zu-%d", i, tag);
        (*vals)[i] = strdup(b);
    }
}

static void free_states(size_t n, char **mids, char **vals)
{
    for (size_t i = 0; i < n; i++) {
        free(mids[i]);
        free(vals[i]);
    }
    free(mids);
    free(vals);
}

/* Bucket layout: every state is the field of the bucket FNV-1a names, the
 * layout is stored, nothing else is written; a read gives the values back in
 * the order asked, absent ones as absent; a state set to "" is deleted. */
START_TEST(test_buckets_through_the_store)
{
    setup();
    struct env e;
    env_open(&e, 4);
    char **mids, **vals;
    make_states(40, &mids, &vals, 1);
    struct res r = apply_states(&e, 2, 0, 100, mids, vals, 40);
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.applied, 1);
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    assert_str(c, "buckets 4", "GET circmon:{2}:layout");
    assert_str(c, "100", "GET circmon:{2}:pos");
    long long total = 0;
    for (int b = 0; b < 4; b++)
        total += rint_(c, "HLEN circmon:{2}:s:%d", b);
    ck_assert_int_eq(total, 40);
    for (size_t i = 0; i < 40; i++)
        assert_str(c, vals[i], "HGET circmon:{2}:s:%u %s",
                   (unsigned)cm_layout_bucket(mids[i], strlen(mids[i]), 4), mids[i]);
    /* nothing but pos, layout and the buckets (no epoch was taken, no mark,
     * no aggregate) */
    ck_assert_int_eq(rint_(c, "DBSIZE"), 2 + 4);
    ck_assert_int_eq(rint_(c, "EXISTS circmon:{2}:m:mig-0"), 0);

    /* read back, in an order that is not the buckets', with absent ones */
    char *ask[] = {mids[39], "nobody", mids[0], mids[17], "mig-999", mids[5], mids[0]};
    struct res v = read_states(&e, 2, ask, 7);
    ck_assert_int_eq(v.err, 0);
    ck_assert_uint_eq(v.nvals, 7);
    const char *want[] = {vals[39], NULL, vals[0], vals[17], NULL, vals[5], vals[0]};
    for (size_t i = 0; i < 7; i++) {
        if (!want[i])
            ck_assert_msg(!v.vals[i], "value %zu should be absent", i);
        else
            ck_assert_msg(v.vals[i] && v.lens[i] == strlen(want[i]) &&
                              !memcmp(v.vals[i], want[i], v.lens[i]),
                          "value %zu", i);
    }
    res_free(&v);
    /* another partition's buckets are other keys */
    struct res o = read_states(&e, 3, mids, 2);
    ck_assert(o.err == 0 && !o.vals[0] && !o.vals[1]);
    res_free(&o);

    /* deletions and sets in one apply */
    char *m2[] = {mids[0], mids[1], "new-one"};
    char *v2[] = {"", "changed", "fresh"};
    r = apply_states(&e, 2, 100, 120, m2, v2, 3);
    ck_assert(r.err == 0 && r.applied == 1);
    ck_assert_int_eq(rint_(c, "HEXISTS circmon:{2}:s:%u mig-0",
                           (unsigned)cm_layout_bucket("mig-0", 5, 4)), 0);
    assert_str(c, "changed", "HGET circmon:{2}:s:%u mig-1", (unsigned)cm_layout_bucket("mig-1", 5, 4));
    assert_str(c, "fresh", "HGET circmon:{2}:s:%u new-one", (unsigned)cm_layout_bucket("new-one", 7, 4));
    total = 0;
    for (int b = 0; b < 4; b++)
        total += rint_(c, "HLEN circmon:{2}:s:%d", b);
    ck_assert_int_eq(total, 40);

    /* after SCRIPT FLUSH both scripts are sent again (NOSCRIPT) */
    freeReplyObject(rq(c, "SCRIPT FLUSH"));
    v = read_states(&e, 2, mids, 3);
    ck_assert(v.err == 0 && !v.vals[0] && v.vals[1] && !strcmp(v.vals[1], "changed") &&
              v.vals[2] && !strcmp(v.vals[2], vals[2]));
    res_free(&v);
    r = apply_states(&e, 2, 120, 130, mids + 2, vals + 2, 1);
    ck_assert(r.err == 0 && r.applied == 1);

    /* a refused apply (wrong position) writes nothing */
    char *v3[] = {"x", "y", "z"};
    r = apply_states(&e, 2, 0, 999, m2, v3, 3);
    ck_assert(r.err == 0 && r.applied == 0 && r.stored == 130);
    assert_str(c, "changed", "HGET circmon:{2}:s:%u mig-1", (unsigned)cm_layout_bucket("mig-1", 5, 4));
    redisFree(c);
    free_states(40, mids, vals);
    env_close(&e);
}
END_TEST

/* More states in one bucket than one HSET chunk (1000 pairs) or one HMGET
 * chunk (4000 fields) holds. */
START_TEST(test_big_bucket_chunks)
{
    setup();
    struct env e;
    env_open(&e, 1);
    char **mids, **vals;
    size_t n = 4500;
    make_states(n, &mids, &vals, 2);
    struct res r = apply_states(&e, 0, 0, 1, mids, vals, n);
    ck_assert(r.err == 0 && r.applied == 1);
    redisContext *c = redis_conn();
    ck_assert_int_eq(rint_(c, "HLEN circmon:{0}:s:0"), (long long)n);
    redisFree(c);
    struct res v = read_states(&e, 0, mids, n);
    ck_assert_int_eq(v.err, 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(v.vals[i] && !strcmp(v.vals[i], vals[i]), "state %zu", i);
    res_free(&v);
    free_states(n, mids, vals);
    env_close(&e);
}
END_TEST

/* state_buckets = 0: one string key per migrant, as before layouts, and the
 * layout stored as "strings". */
START_TEST(test_strings_through_the_store)
{
    setup();
    struct env e;
    env_open(&e, 0);
    char **mids, **vals;
    make_states(5, &mids, &vals, 3);
    struct res r = apply_states(&e, 1, 0, 5, mids, vals, 5);
    ck_assert(r.err == 0 && r.applied == 1);
    redisContext *c = redis_conn();
    assert_str(c, "strings", "GET circmon:{1}:layout");
    for (size_t i = 0; i < 5; i++)
        assert_str(c, vals[i], "GET circmon:{1}:m:%s", mids[i]);
    ck_assert_int_eq(rint_(c, "DBSIZE"), 2 + 5);
    struct res v = read_states(&e, 1, mids, 5);
    ck_assert_int_eq(v.err, 0);
    for (size_t i = 0; i < 5; i++)
        ck_assert(v.vals[i] && !strcmp(v.vals[i], vals[i]));
    res_free(&v);
    redisFree(c);
    free_states(5, mids, vals);
    env_close(&e);
}
END_TEST

/* The aggregate's buckets (store_layout.h): in either state layout an apply
 * writes each field into <prefix>:{P}:agg:<n>, n = FNV-1a 64 of the field
 * modulo 64, and deletes the fields that become 0; the hash of earlier
 * versions (<prefix>:{P}:agg) is only read: a field of it that an apply
 * changes moves into its bucket (the two values added), one it does not
 * change stays and is read along; a value there that is not an integer, or a
 * bucket of another type, fails the apply before any write. */
static void agg_put(struct cm_agg *ag, struct cm_names *nm, const char *scheme, int64_t month,
                    int64_t v)
{
    struct cm_agg_key k = {.kind = CM_AK_MONTH, .ctr = CM_C_EXPECTED,
                           .scheme = cm_names_intern(nm, scheme, strlen(scheme)), .a = month};
    ck_assert_int_eq(cm_agg_add(ag, &k, v), 0);
}

static void agg_field(struct cm_names *nm, const char *scheme, int64_t month, char *f,
                      size_t cap)
{
    struct cm_agg_key k = {.kind = CM_AK_MONTH, .ctr = CM_C_EXPECTED,
                           .scheme = cm_names_intern(nm, scheme, strlen(scheme)), .a = month};
    int n = cm_agg_key_format(&k, nm, f, cap);
    ck_assert(n > 0 && (size_t)n < cap);
}

static struct res apply_agg(struct env *e, int32_t part, int64_t expected, int64_t new_pos,
                            const struct cm_agg *ag, const struct cm_names *nm)
{
    struct res r = {0};
    struct cm_store_apply *ap = cm_store_apply_new(e->cfg.key_prefix, part, expected, new_pos);
    ck_assert_ptr_nonnull(ap);
    char st[32];
    int sl = snprintf(st, sizeof st, "st-%" PRId64, new_pos);
    ck_assert_int_eq(cm_store_apply_state(ap, "mig-1", 5, (const uint8_t *)st, (size_t)sl), 0);
    ck_assert_int_eq(cm_store_apply_agg(ap, ag, nm), 0);
    ck_assert_int_eq(cm_store_apply_send(e->st, ap, on_apply, &r), 0);
    run_until(e->base, &r.done);
    return r;
}

/* The value of field f in the bucket the layout names ("" when absent). */
static void assert_in_bucket(redisContext *c, int32_t part, const char *f, const char *want)
{
    unsigned b = (unsigned)cm_layout_bucket(f, strlen(f), 64);
    assert_str(c, want[0] ? want : NULL, "HGET circmon:{%d}:agg:%u %s", (int)part, b, f);
}

START_TEST(test_aggregate_buckets)
{
    setup();
    int layouts[] = {4, 0};
    for (int li = 0; li < 2; li++) {
        struct env e;
        env_open(&e, layouts[li]);
        int32_t part = 2 + li;
        redisContext *c = redis_conn();
        ck_assert_ptr_nonnull(c);
        freeReplyObject(rq(c, "FLUSHALL"));
        struct cm_names *nm = cm_names_new();
        struct cm_agg *ag = cm_agg_new();
        ck_assert(nm && ag);
        /* 200 fields: spread over the buckets, each holding month m + 1 */
        for (int m = 0; m < 200; m++)
            agg_put(ag, nm, "SAWS", 600 + m, m + 1);
        struct res r = apply_agg(&e, part, 0, 10, ag, nm);
        ck_assert(r.err == 0 && r.applied == 1);
        long long fields = 0, used = 0;
        for (int b = 0; b < 64; b++) {
            long long h = rint_(c, "HLEN circmon:{%d}:agg:%d", (int)part, b);
            fields += h;
            used += h > 0;
        }
        ck_assert_int_eq(fields, 200);
        ck_assert_int_eq(rint_(c, "EXISTS circmon:{%d}:agg", (int)part), 0);
        char f[256], v[32];
        for (int m = 0; m < 200; m++) {
            agg_field(nm, "SAWS", 600 + m, f, sizeof f);
            snprintf(v, sizeof v, "%d", m + 1);
            assert_in_bucket(c, part, f, v);
        }
        /* pos, layout, one state key or bucket, and the aggregate buckets */
        ck_assert_int_eq(rint_(c, "DBSIZE"), 3 + used);

        /* the fields of an earlier version's hash: one changed to 0, one
         * changed to 12, one not changed */
        agg_field(nm, "SAWS", 100, f, sizeof f);
        freeReplyObject(rq(c, "HSET circmon:{%d}:agg %s 4", (int)part, f));
        agg_field(nm, "SAWS", 101, f, sizeof f);
        freeReplyObject(rq(c, "HSET circmon:{%d}:agg %s 9", (int)part, f));
        agg_field(nm, "SAWS", 102, f, sizeof f);
        freeReplyObject(rq(c, "HSET circmon:{%d}:agg %s 7", (int)part, f));
        cm_agg_free(ag);
        ag = cm_agg_new();
        agg_put(ag, nm, "SAWS", 100, -4);
        agg_put(ag, nm, "SAWS", 101, 3);
        agg_put(ag, nm, "SAWS", 600, -1); /* 1 - 1: deleted */
        agg_put(ag, nm, "SAWS", 601, 5);  /* 2 + 5 */
        r = apply_agg(&e, part, 10, 20, ag, nm);
        ck_assert(r.err == 0 && r.applied == 1);
        agg_field(nm, "SAWS", 100, f, sizeof f);
        assert_in_bucket(c, part, f, "");
        assert_str(c, NULL, "HGET circmon:{%d}:agg %s", (int)part, f);
        agg_field(nm, "SAWS", 101, f, sizeof f);
        assert_in_bucket(c, part, f, "12");
        assert_str(c, NULL, "HGET circmon:{%d}:agg %s", (int)part, f);
        agg_field(nm, "SAWS", 102, f, sizeof f);
        assert_in_bucket(c, part, f, "");
        assert_str(c, "7", "HGET circmon:{%d}:agg %s", (int)part, f);
        agg_field(nm, "SAWS", 600, f, sizeof f);
        assert_in_bucket(c, part, f, "");
        agg_field(nm, "SAWS", 601, f, sizeof f);
        assert_in_bucket(c, part, f, "7");

        /* the readers add up both: 199 bucket fields and the one left behind */
        char err[512];
        struct cm_agg *got = cm_agg_new();
        struct cm_names *gnm = cm_names_new();
        ck_assert(got && gnm);
        ck_assert_msg(cm_store_read_agg_of(&e.cfg, &part, 1, got, gnm, err, sizeof err) == 0,
                      "%s", err);
        ck_assert_uint_eq(cm_agg_count(got), 201);
        struct cm_agg_key k = {.kind = CM_AK_MONTH, .ctr = CM_C_EXPECTED,
                               .scheme = cm_names_intern(gnm, "SAWS", 4)};
        int64_t want[] = {[0] = 0, [1] = 12, [2] = 7};
        for (int m = 0; m < 3; m++) {
            k.a = 100 + m;
            ck_assert_int_eq(cm_agg_get(got, &k), want[m]);
        }
        k.a = 601;
        ck_assert_int_eq(cm_agg_get(got, &k), 7);
        k.a = 799;
        ck_assert_int_eq(cm_agg_get(got, &k), 200);
        cm_agg_free(got);
        got = cm_agg_new();
        ck_assert_msg(cm_store_read_agg(&e.cfg, got, gnm, err, sizeof err) == 0, "%s", err);
        ck_assert_uint_eq(cm_agg_count(got), 201);
        cm_agg_free(got);
        cm_names_free(gnm);

        /* hostile values fail the apply before any write: neither the state
         * nor the position nor any bucket changes (a value HINCRBY would
         * refuse: not digits, a leading zero, past int64) */
        cm_agg_free(ag);
        ag = cm_agg_new();
        agg_put(ag, nm, "SAWS", 102, 1);
        agg_put(ag, nm, "SAWS", 601, 1);
        char *who[] = {"mig-1"};
        static const char *const bad[] = {"1x", "01", "-0", "9223372036854775808", "", " 1"};
        for (size_t x = 0; x < sizeof bad / sizeof bad[0]; x++) {
            agg_field(nm, "SAWS", 102, f, sizeof f);
            freeReplyObject(rq(c, "HSET circmon:{%d}:agg %s %s", (int)part, f, bad[x]));
            r = apply_agg(&e, part, 20, 30, ag, nm);
            ck_assert_msg(r.err == -EPROTO && r.done, "'%s'", bad[x]);
            ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "is not an integer"));
            assert_str(c, "20", "GET circmon:{%d}:pos", (int)part);
            agg_field(nm, "SAWS", 601, f, sizeof f);
            assert_in_bucket(c, part, f, "7");
            struct res sv = read_states(&e, part, who, 1);
            ck_assert_msg(sv.err == 0 && sv.vals[0] && !strcmp(sv.vals[0], "st-20"), "'%s'",
                          bad[x]);
            res_free(&sv);
        }
        /* the largest values HINCRBY takes are moved */
        agg_field(nm, "SAWS", 102, f, sizeof f);
        freeReplyObject(rq(c, "HSET circmon:{%d}:agg %s -9223372036854775807", (int)part, f));
        r = apply_agg(&e, part, 20, 30, ag, nm);
        ck_assert(r.err == 0 && r.applied == 1);
        assert_in_bucket(c, part, f, "-9223372036854775806");
        assert_str(c, NULL, "HGET circmon:{%d}:agg %s", (int)part, f);
        agg_field(nm, "SAWS", 601, f, sizeof f);
        assert_in_bucket(c, part, f, "8");
        unsigned b = (unsigned)cm_layout_bucket(f, strlen(f), 64);
        freeReplyObject(rq(c, "SET circmon:{%d}:agg:%u not-a-hash", (int)part, b));
        r = apply_agg(&e, part, 30, 40, ag, nm);
        ck_assert(r.err == -EPROTO && r.done);
        ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "WRONGTYPE"));
        assert_str(c, "30", "GET circmon:{%d}:pos", (int)part);
        struct res sv = read_states(&e, part, who, 1);
        ck_assert(sv.err == 0 && sv.vals[0] && !strcmp(sv.vals[0], "st-30"));
        res_free(&sv);
        redisFree(c);
        cm_agg_free(ag);
        cm_names_free(nm);
        env_close(&e);
    }
}
END_TEST

/* The stored layout never changes under data: a take reports the mismatch
 * (-ESTALE, a message naming the fixes), the apply script refuses it
 * (LAYOUT) and changes nothing; a partition written before layouts (a
 * position, string keys, no layout key) is "strings"; a hostile layout value
 * is refused; a bucket key of another type fails the apply before any write. */
START_TEST(test_layout_mismatch)
{
    setup();
    redisContext *c = redis_conn();
    /* partition 5 as an earlier version left it */
    freeReplyObject(rq(c, "SET circmon:{5}:pos 10"));
    freeReplyObject(rq(c, "SET circmon:{5}:m:old state-old"));
    /* partition 6 written with 4 buckets */
    freeReplyObject(rq(c, "SET circmon:{6}:pos 3"));
    freeReplyObject(rq(c, "SET circmon:{6}:layout %s", "buckets 4"));

    struct env e;
    env_open(&e, 8);
    struct res t = take(&e, 5);
    ck_assert_int_eq(t.err, -ESTALE);
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "partition 5:"));
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "migrate-layout"));
    t = take(&e, 6);
    ck_assert_int_eq(t.err, -ESTALE);
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "in 4 hash buckets"));
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "set state_buckets = 4,"));
    /* the script refuses too, whatever the position */
    char *m[] = {"a"}, *v[] = {"b"};
    struct res r = apply_states(&e, 6, 3, 4, m, v, 1);
    ck_assert_int_eq(r.err, -EPROTO);
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "LAYOUT"));
    r = apply_states(&e, 5, 10, 11, m, v, 1);
    ck_assert_int_eq(r.err, -EPROTO);
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "one string key per migrant"));
    assert_str(c, "3", "GET circmon:{6}:pos");
    assert_str(c, "10", "GET circmon:{5}:pos");
    assert_str(c, NULL, "GET circmon:{5}:layout");
    ck_assert_int_eq(rint_(c, "EXISTS circmon:{6}:s:%u circmon:{5}:s:%u",
                           (unsigned)cm_layout_bucket("a", 1, 8), (unsigned)cm_layout_bucket("a", 1, 8)),
                     0);
    /* hostile layout values */
    freeReplyObject(rq(c, "SET circmon:{7}:layout %s", "buckets 04"));
    t = take(&e, 7);
    ck_assert_int_eq(t.err, -ESTALE);
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "not one circmon writes"));
    freeReplyObject(rq(c, "SET circmon:{7}:layout %s", "moving to buckets 8"));
    t = take(&e, 7);
    ck_assert_int_eq(t.err, -ESTALE);
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "did not finish"));
    freeReplyObject(rq(c, "DEL circmon:{7}:layout"));
    /* a layout key of another type reads as absent to MGET; the script's
     * GET of it fails before any write */
    freeReplyObject(rq(c, "HSET circmon:{7}:layout x y"));
    t = take(&e, 7);
    ck_assert_int_eq(t.err, 0);
    r = apply_states(&e, 7, 0, 1, m, v, 1);
    ck_assert_int_eq(r.err, -EPROTO);
    assert_str(c, NULL, "GET circmon:{7}:pos");
    env_close(&e);

    /* the same partitions with the layout they hold */
    env_open(&e, 0);
    t = take(&e, 5);
    ck_assert_int_eq(t.err, 0);
    ck_assert_int_eq(t.pos, 10);
    char *mo[] = {"old"};
    struct res rv = read_states(&e, 5, mo, 1);
    ck_assert(rv.err == 0 && rv.vals[0] && !strcmp(rv.vals[0], "state-old"));
    res_free(&rv);
    r = apply_states(&e, 5, 10, 11, m, v, 1);
    ck_assert(r.err == 0 && r.applied == 1);
    assert_str(c, "strings", "GET circmon:{5}:layout");
    assert_str(c, "b", "GET circmon:{5}:m:a");
    env_close(&e);

    env_open(&e, 4);
    t = take(&e, 6);
    ck_assert_int_eq(t.err, 0);
    /* a bucket key of another type: refused before any write */
    char *m2[] = {"p", "q"}, *v2[] = {"1", "2"};
    uint32_t bp = cm_layout_bucket("p", 1, 4), bq = cm_layout_bucket("q", 1, 4);
    ck_assert_uint_ne(bp, bq);
    freeReplyObject(rq(c, "SET circmon:{6}:s:%u not-a-hash", (unsigned)bq));
    r = apply_states(&e, 6, 3, 4, m2, v2, 2);
    ck_assert_int_eq(r.err, -EPROTO);
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(e.st), "WRONGTYPE"));
    ck_assert_int_eq(rint_(c, "EXISTS circmon:{6}:s:%u", (unsigned)bp), 0);
    assert_str(c, "3", "GET circmon:{6}:pos");
    env_close(&e);
    redisFree(c);
}
END_TEST

/* circmonctl migrate-layout: string keys into buckets, byte for byte; the
 * epoch is taken (a running owner is fenced); run again, nothing to do; a
 * daemon's store then reads the states in the new layout; another bucket
 * count is refused. */
START_TEST(test_migrate_layout)
{
    setup();
    struct env e;
    env_open(&e, 0);
    char **mids, **vals;
    size_t n = 1234; /* more than one SCAN / move chunk */
    make_states(n, &mids, &vals, 4);
    struct res r = apply_states(&e, 0, 0, 7, mids, vals, n);
    ck_assert(r.err == 0 && r.applied == 1);
    r = apply_states(&e, 3, 0, 9, mids, vals, 10);
    ck_assert(r.err == 0 && r.applied == 1);
    env_close(&e);
    redisContext *c = redis_conn();
    freeReplyObject(rq(c, "DEL circmon:{3}:layout")); /* as an earlier version left it */
    /* a value with every byte, NUL included */
    char bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (char)i;
    freeReplyObject(rq(c, "SET circmon:{0}:m:%b %b", "bin\0id", (size_t)6, bin, sizeof(bin)));

    const char *conf = write_conf("m.conf", 16);
    char *args[] = {"migrate-layout", "--config", (char *)conf, NULL};
    const char *out = path_in("m.out"), *err = path_in("m.err");
    ck_assert_int_eq(run_bin("circmonctl", args, out, err), 0);
    ck_assert_msg(file_has(out, "2 partitions converted to 16 state buckets (1245 states moved)"),
                  "%s", out);
    assert_str(c, "buckets 16", "GET circmon:{0}:layout");
    assert_str(c, "buckets 16", "GET circmon:{3}:layout");
    assert_str(c, "1", "GET circmon:{0}:epoch");
    redisReply *k = rq(c, "KEYS *:m:*");
    ck_assert_uint_eq(k->elements, 0);
    freeReplyObject(k);
    for (size_t i = 0; i < n; i++)
        assert_str(c, vals[i], "HGET circmon:{0}:s:%u %s",
                   (unsigned)cm_layout_bucket(mids[i], strlen(mids[i]), 16), mids[i]);
    redisReply *b = rq(c, "HGET circmon:{0}:s:%u %b",
                       (unsigned)cm_layout_bucket("bin\0id", 6, 16), "bin\0id", (size_t)6);
    ck_assert(b->type == REDIS_REPLY_STRING && b->len == 256 && !memcmp(b->str, bin, 256));
    freeReplyObject(b);
    assert_str(c, "7", "GET circmon:{0}:pos");

    ck_assert_int_eq(run_bin("circmonctl", args, out, err), 0);
    ck_assert_msg(file_has(out, "0 partitions converted to 16 state buckets (0 states moved), 2 in "
                                "that layout already"),
                  "%s", out);

    env_open(&e, 16);
    struct res t = take(&e, 0);
    ck_assert_int_eq(t.err, 0);
    ck_assert_int_eq(t.pos, 7);
    struct res v = read_states(&e, 0, mids, n);
    ck_assert_int_eq(v.err, 0);
    for (size_t i = 0; i < n; i++)
        ck_assert(v.vals[i] && !strcmp(v.vals[i], vals[i]));
    res_free(&v);
    env_close(&e);

    /* another bucket count: refused, nothing moved */
    const char *conf2 = write_conf("m2.conf", 32);
    char *args2[] = {"migrate-layout", "--config", (char *)conf2, NULL};
    ck_assert_int_eq(run_bin("circmonctl", args2, out, err), 1);
    ck_assert_msg(file_has(err, "converts only from one string key per migrant"), "%s", err);
    assert_str(c, "buckets 16", "GET circmon:{0}:layout");
    /* and to state_buckets = 0 */
    const char *conf0 = write_conf("m0.conf", 0);
    char *args0[] = {"migrate-layout", "--config", (char *)conf0, NULL};
    ck_assert_int_eq(run_bin("circmonctl", args0, out, err), 1);
    ck_assert_msg(file_has(err, "no layout to migrate to"), "%s", err);
    redisFree(c);
    free_states(n, mids, vals);
}
END_TEST

/* An interrupted migration ("moving to buckets B", a part of the keys moved)
 * is finished by running it again; a hand-made key of another type under the
 * string keys stops it with its name. */
START_TEST(test_migrate_again)
{
    setup();
    redisContext *c = redis_conn();
    freeReplyObject(rq(c, "SET circmon:{1}:pos 4"));
    freeReplyObject(rq(c, "SET circmon:{1}:layout %s", "moving to buckets 2"));
    freeReplyObject(rq(c, "SET circmon:{1}:m:left v-left"));
    freeReplyObject(rq(c, "HSET circmon:{1}:s:%u moved v-moved", (unsigned)cm_layout_bucket("moved", 5, 2)));
    freeReplyObject(rq(c, "SET circmon:{2}:pos 4"));
    freeReplyObject(rq(c, "HSET circmon:{2}:m:junk a b"));
    const char *conf = write_conf("a.conf", 2);
    char *args[] = {"migrate-layout", "--config", (char *)conf, NULL};
    const char *out = path_in("a.out"), *err = path_in("a.err");
    ck_assert_int_eq(run_bin("circmonctl", args, out, err), 1);
    ck_assert_msg(file_has(err, "circmon:{2}:m:junk is a hash"), "%s", err);
    ck_assert_msg(file_has(err, "stopped after 1 partitions converted, 1 states moved"), "%s", err);
    assert_str(c, "buckets 2", "GET circmon:{1}:layout");
    assert_str(c, "v-left", "HGET circmon:{1}:s:%u left", (unsigned)cm_layout_bucket("left", 4, 2));
    assert_str(c, "v-moved", "HGET circmon:{1}:s:%u moved", (unsigned)cm_layout_bucket("moved", 5, 2));
    assert_str(c, "moving to buckets 2", "GET circmon:{2}:layout");
    freeReplyObject(rq(c, "DEL circmon:{2}:m:junk"));
    ck_assert_int_eq(run_bin("circmonctl", args, out, err), 0);
    ck_assert_msg(file_has(out, "1 partitions converted to 2 state buckets (0 states moved), 1 in"),
                  "%s", out);
    assert_str(c, "buckets 2", "GET circmon:{2}:layout");
    redisFree(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("layout");
    TCase *tc = tcase_create("pure");
    tcase_add_test(tc, test_bucket_function);
    tcase_add_test(tc, test_layout_values);
    tcase_add_test(tc, test_layout_check);
    tcase_add_test(tc, test_key_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("redis");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_buckets_through_the_store);
    tcase_add_test(tc, test_big_bucket_chunks);
    tcase_add_test(tc, test_strings_through_the_store);
    tcase_add_test(tc, test_aggregate_buckets);
    tcase_add_test(tc, test_layout_mismatch);
    tcase_add_test(tc, test_migrate_layout);
    tcase_add_test(tc, test_migrate_again);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
