/* check_gen.c - circmon-gen: deterministic, decodable, and as faulty as intended. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "circmon/framing.h"
#include "circmon/timeutil.h"
#include "circmon/v1/events.pb-c.h"
#include "cm_bin.h"

static char gen[4096];
static char dir[] = "/tmp/check_gen.XXXXXX";

static void setup(void)
{
    const char *top = getenv("CM_TOP");
    ck_assert_msg(top && *top, "CM_TOP is not set (the repository top)");
    cm_bin_path(gen, sizeof gen, "circmon-gen");
    ck_assert_msg(access(gen, X_OK) == 0, "%s is missing: build it first", gen);
    strcpy(dir, "/tmp/check_gen.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Runs circmon-gen with args (stderr to a file); returns its exit status. */
static int run(const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s/stderr'", gen, args, dir);
    int st = system(cmd);
    ck_assert_msg(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
    return WEXITSTATUS(st);
}

static int generate(const char *name, const char *args)
{
    char a[4096];
    snprintf(a, sizeof a, "%s --out '%s/%s'", args, dir, name);
    return run(a);
}

static uint8_t *slurp(const char *name, size_t *len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    ck_assert_int_ge(n, 0);
    rewind(fp);
    uint8_t *b = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

static int same_file(const char *a, const char *b)
{
    size_t la, lb;
    uint8_t *x = slurp(a, &la), *y = slurp(b, &lb);
    int same = la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

START_TEST(gen_is_deterministic)
{
    ck_assert_int_eq(generate("a", "--seed 42 --migrants 2000"), 0);
    ck_assert_int_eq(generate("b", "--seed 42 --migrants 2000"), 0);
    ck_assert_int_eq(generate("c", "--seed 43 --migrants 2000"), 0);
    size_t n;
    free(slurp("a", &n));
    ck_assert_uint_gt(n, 100000);
    ck_assert_msg(same_file("a", "b"), "same seed, different streams");
    ck_assert_msg(!same_file("a", "c"), "different seeds, same stream");

    /* --out - writes the same bytes to standard output. */
    char a[4200];
    snprintf(a, sizeof a, "--seed 42 --migrants 2000 --out - >'%s/d'", dir);
    ck_assert_int_eq(run(a), 0);
    ck_assert_msg(same_file("a", "d"), "--out - differs from --out FILE");
}
END_TEST

/* A small open-addressing map: migrant id -> latest occurred_at seen. */
struct seen {
    char **id;
    int64_t *occ;
    size_t cap;
};

static int64_t *seen_slot(struct seen *s, const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->id[i]) {
            s->id[i] = strdup(id);
            ck_assert_ptr_nonnull(s->id[i]);
            s->occ[i] = INT64_MIN;
            return &s->occ[i];
        }
        if (!strcmp(s->id[i], id))
            return &s->occ[i];
    }
}

/* Records seen, by a 64-bit hash of their bytes: finds exact copies. */
struct bytes_seen {
    uint64_t *h; /* 0 = empty */
    size_t cap;
};

/* 1 when the same bytes were seen before; remembers them otherwise. */
static int seen_before(struct bytes_seen *s, const uint8_t *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    h |= 1;
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->h[i]) {
            s->h[i] = h;
            return 0;
        }
        if (s->h[i] == h)
            return 1;
    }
}

struct census {
    size_t records, undecodable, by_case[16];
    size_t no_event_id, no_migrant_id, no_body, zero_time, long_string, bad_range,
        no_scheme, no_permit_id, no_valid_until, out_of_order, arrival_steps_back;
    size_t copies;             /* records equal byte for byte to an earlier one */
    size_t steps_back_not_copy; /* arrival steps back on a record that is not a copy */
    size_t with_recorded;      /* decodable records with recorded_at set */
    size_t migrants;
    int64_t max_occ, max_recorded;
};

static int long_str(const char *s)
{
    return s && strlen(s) > 256;
}

static void take_census(const char *name, struct census *c)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    struct seen seen = {.cap = 1 << 16};
    seen.id = calloc(seen.cap, sizeof *seen.id);
    seen.occ = calloc(seen.cap, sizeof *seen.occ);
    struct bytes_seen bs = {.cap = 1 << 18};
    bs.h = calloc(bs.cap, sizeof *bs.h);
    ck_assert(seen.id && seen.occ && bs.h);
    memset(c, 0, sizeof *c);

    const uint8_t *data;
    size_t len;
    int rc;
    int64_t prev_rec = INT64_MIN;
    while ((rc = cm_frame_read(&r, &data, &len)) == 1) {
        c->records++;
        ck_assert_uint_lt(c->records, bs.cap / 2);
        int copy = seen_before(&bs, data, len);
        c->copies += copy;
        Circmon__V1__Event *ev = circmon__v1__event__unpack(NULL, len, data);
        if (!ev) {
            c->undecodable++;
            continue;
        }
        ck_assert_int_ge(ev->body_case, 0);
        ck_assert_int_lt(ev->body_case, 16);
        c->by_case[ev->body_case]++;
        c->no_event_id += !*ev->event_id;
        c->no_migrant_id += !*ev->migrant_id;
        c->no_body += ev->body_case == CIRCMON__V1__EVENT__BODY__NOT_SET;
        c->zero_time += ev->occurred_at == 0;
        c->long_string += long_str(ev->source) || long_str(ev->event_id);
        if (ev->body_case == CIRCMON__V1__EVENT__BODY_PERMIT_GRANTED) {
            c->bad_range += ev->permit_granted->valid_until < ev->permit_granted->valid_from;
            c->no_scheme += !*ev->permit_granted->scheme_id;
            c->no_permit_id += !*ev->permit_granted->permit_id;
        }
        if (ev->body_case == CIRCMON__V1__EVENT__BODY_PERMIT_EXTENDED) {
            c->no_valid_until += ev->permit_extended->valid_until == 0;
            c->no_permit_id += !*ev->permit_extended->permit_id;
        }
        if (ev->body_case == CIRCMON__V1__EVENT__BODY_PERMIT_REVOKED)
            c->no_permit_id += !*ev->permit_revoked->permit_id;
        c->with_recorded += ev->recorded_at > 0;
        if (ev->occurred_at > c->max_occ)
            c->max_occ = ev->occurred_at;
        if (ev->recorded_at > c->max_recorded)
            c->max_recorded = ev->recorded_at;
        /* recorded_at is the arrival: the stream is in arrival order, but for
         * duplicates re-sent a little later. */
        if (ev->recorded_at < prev_rec) {
            c->arrival_steps_back++;
            c->steps_back_not_copy += !copy;
        }
        prev_rec = ev->recorded_at;
        if (*ev->migrant_id && ev->occurred_at > 0 &&
            ev->body_case != CIRCMON__V1__EVENT__BODY__NOT_SET) {
            int64_t *last = seen_slot(&seen, ev->migrant_id);
            if (*last == INT64_MIN)
                c->migrants++;
            if (ev->occurred_at < *last)
                c->out_of_order++;
            else
                *last = ev->occurred_at;
        }
        circmon__v1__event__free_unpacked(ev, NULL);
    }
    ck_assert_msg(rc == 0, "stream does not end cleanly: %d at offset %llu", rc,
                  (unsigned long long)r.offset);
    cm_frame_reader_free(&r);
    fclose(fp);
    for (size_t i = 0; i < seen.cap; i++)
        free(seen.id[i]);
    free(seen.id);
    free(seen.occ);
    free(bs.h);
}

START_TEST(gen_stream_contents)
{
    ck_assert_int_eq(generate("s", "--seed 7 --migrants 3000"), 0);
    struct census c;
    take_census("s", &c);

    /* About 8-10 events per migrant, from almost every migrant. */
    ck_assert_uint_gt(c.records, 3000 * 6);
    ck_assert_uint_lt(c.records, 3000 * 14);
    ck_assert_uint_gt(c.migrants, 2700);
    ck_assert_uint_le(c.migrants, 3000);

    /* Every body case, in plausible proportions. */
    ck_assert_uint_gt(c.by_case[CIRCMON__V1__EVENT__BODY_ENTRY], c.records / 5);
    ck_assert_uint_gt(c.by_case[CIRCMON__V1__EVENT__BODY_EXIT], c.records / 5);
    ck_assert_uint_gt(c.by_case[CIRCMON__V1__EVENT__BODY_PERMIT_GRANTED], c.records / 10);
    ck_assert_uint_gt(c.by_case[CIRCMON__V1__EVENT__BODY_PERMIT_EXTENDED], 0);
    ck_assert_uint_gt(c.by_case[CIRCMON__V1__EVENT__BODY_PERMIT_REVOKED], 0);
    ck_assert_uint_gt(c.by_case[CIRCMON__V1__EVENT__BODY_STATUS_CHANGED], 0);

    /* Some records are not messages at all; only a small share. */
    ck_assert_uint_gt(c.undecodable, 0);
    ck_assert_uint_lt(c.undecodable, c.records / 50);

    /* Each kind of invalid message is there, each a small share. */
    size_t small = c.records / 100;
    ck_assert_uint_gt(c.no_event_id, 0);
    ck_assert_uint_lt(c.no_event_id, small);
    ck_assert_uint_gt(c.no_migrant_id, 0);
    ck_assert_uint_lt(c.no_migrant_id, small);
    ck_assert_uint_gt(c.no_body, 0);
    ck_assert_uint_lt(c.no_body, small);
    ck_assert_uint_gt(c.zero_time, 0);
    ck_assert_uint_lt(c.zero_time, small);
    ck_assert_uint_gt(c.long_string, 0);
    ck_assert_uint_lt(c.long_string, small);
    ck_assert_uint_gt(c.bad_range, 0);
    ck_assert_uint_lt(c.bad_range, small);
    ck_assert_uint_gt(c.no_scheme, 0);
    ck_assert_uint_lt(c.no_scheme, small);
    ck_assert_uint_gt(c.no_permit_id, 0);
    ck_assert_uint_lt(c.no_permit_id, small);
    ck_assert_uint_gt(c.no_valid_until, 0);
    ck_assert_uint_lt(c.no_valid_until, small);

    /* Every decodable record carries its arrival time: the checks on
     * recorded_at below would hold vacuously otherwise. */
    ck_assert_uint_eq(c.with_recorded, c.records - c.undecodable);

    /* Arrival order is not occurrence order, and duplicates step back a
     * little: exact copies are there, and they are what steps back. */
    ck_assert_uint_gt(c.out_of_order, c.records / 500);
    ck_assert_uint_gt(c.copies, 0);
    ck_assert_uint_lt(c.copies, c.records / 50);
    ck_assert_uint_gt(c.arrival_steps_back, 0);
    ck_assert_uint_lt(c.arrival_steps_back, c.records / 50);
    ck_assert_uint_eq(c.steps_back_not_copy, 0);

    /* Default horizon: 2019 .. 2024, everything delivered by 2025-01-01. */
    int64_t end;
    ck_assert_int_eq(cm_time_parse("2025-01-01", &end), 0);
    ck_assert_int_lt(c.max_occ, end);
    ck_assert_int_lt(c.max_recorded, end);
    ck_assert_int_gt(c.max_occ, end - 30 * CM_DAY);
}
END_TEST

START_TEST(gen_horizon_options)
{
    ck_assert_int_eq(generate("h", "--seed 3 --migrants 500 --start-year 2021 --years 2"), 0);
    struct census c;
    take_census("h", &c);
    int64_t end;
    ck_assert_int_eq(cm_time_parse("2023-01-01", &end), 0);
    ck_assert_uint_gt(c.records, 500);
    ck_assert_uint_eq(c.with_recorded, c.records - c.undecodable); /* else vacuous below */
    ck_assert_int_lt(c.max_recorded, end);
    ck_assert_int_lt(c.max_occ, end);
    ck_assert_int_gt(c.max_occ, end - 60 * CM_DAY);
}
END_TEST

START_TEST(gen_usage_errors)
{
    ck_assert_int_eq(run("--seed 1 --out /dev/null"), 2); /* no --migrants */
    ck_assert_int_eq(run("--seed 1 --migrants 10"), 2);   /* no --out */
    ck_assert_int_eq(run("--seed x --migrants 10 --out /dev/null"), 2);
    ck_assert_int_eq(run("--seed 1 --migrants 0 --out /dev/null"), 2);
    ck_assert_int_eq(run("--seed 1 --migrants -5 --out /dev/null"), 2);
    ck_assert_int_eq(run("--seed 1 --migrants 10 --out /dev/null --years 0"), 2);
    ck_assert_int_eq(run("--seed 1 --migrants 10 --out /dev/null --start-year 19x"), 2);
    ck_assert_int_eq(run("--seed 1 --migrants 10 --out /dev/null --bogus 1"), 2);
    ck_assert_int_eq(run("--seed 1 --migrants 10 --out /dev/null stray"), 2);
    ck_assert_int_eq(run("--seed 1 --migrants"), 2);
    ck_assert_int_eq(run("--help >/dev/null"), 0);
    ck_assert_int_eq(run("--seed=5 --migrants=10 --out=/dev/null"), 0);

    /* The usage error says what is wrong. */
    size_t n;
    run("--seed 1 --out /dev/null");
    uint8_t *err = slurp("stderr", &n);
    err[n] = 0;
    ck_assert_ptr_nonnull(strstr((char *)err, "--migrants"));
    free(err);
}
END_TEST

START_TEST(gen_summary_line)
{
    ck_assert_int_eq(generate("x", "--seed 9 --migrants 100"), 0);
    size_t n, nx;
    uint8_t *err = slurp("stderr", &n);
    free(slurp("x", &nx));
    err[n] = 0;
    char bytes[64];
    snprintf(bytes, sizeof bytes, " %zu bytes", nx);
    ck_assert_msg(strstr((char *)err, bytes) != NULL, "summary lacks '%s': %s", bytes, err);
    ck_assert_ptr_nonnull(strstr((char *)err, "100 migrants"));
    ck_assert_ptr_eq(strchr((char *)err, '\n'), (char *)err + n - 1); /* one line */
    free(err);
}
END_TEST

static Suite *gen_suite(void)
{
    Suite *s = suite_create("circmon-gen");
    TCase *tc = tcase_create("gen");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, gen_is_deterministic);
    tcase_add_test(tc, gen_stream_contents);
    tcase_add_test(tc, gen_horizon_options);
    tcase_add_test(tc, gen_usage_errors);
    tcase_add_test(tc, gen_summary_line);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(gen_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
