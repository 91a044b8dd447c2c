/* circmon-gen.c - writes a synthetic, deterministic stream of circmon.v1.Event messages.
 *
 * Every migrant's life is generated as events with their occurrence times, each
 * event gets an arrival time (occurrence + a delivery delay that depends on the
 * system that reports it), and the stream is written in arrival order. Events
 * are kept compact in memory and turned into protobuf only when written. This
 * file is the command line; tools/gen_life.c generates, tools/gen_write.c
 * writes. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "circmon/decimal.h"
#include "circmon/timeutil.h"
#include "gen.h"

/* --- command line ------------------------------------------------------------- */

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: circmon-gen --migrants N --out FILE [--seed N] [--start-year Y] [--years N]\n"
            "\n"
            "Writes a synthetic stream of circmon.v1.Event messages (varint-length-delimited,\n"
            "in arrival order) for N migrants over the years Y .. Y+N-1 (default 2019, 6),\n"
            "deterministic for a seed (default 1). FILE may be - for standard output.\n");
}

static int parse_u64(const char *s, uint64_t max, uint64_t *v)
{
    return cm_decimal_u64(s, strlen(s), max, v);
}

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "circmon-gen: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    struct gen g = {.seed = 1};
    uint64_t migrants = 0, v;
    int start_year = 2019, years = 6, have_migrants = 0;
    const char *out = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        const char *eq = strchr(a, '=');
        char name[32];
        if (strncmp(a, "--", 2) != 0)
            return bad("unexpected argument '%s'", a);
        if (eq) {
            size_t n = (size_t)(eq - a);
            if (n >= sizeof name)
                return bad("unknown option '%s'", a);
            memcpy(name, a, n);
            name[n] = '\0';
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
            if (i + 1 >= argc)
                return bad("option '%s' needs a value", a);
            val = argv[++i];
        }
        if (!strcmp(name, "--seed")) {
            if (parse_u64(val, UINT64_MAX, &g.seed))
                return bad("--seed: '%s' is not a non-negative integer", val);
        } else if (!strcmp(name, "--migrants")) {
            if (parse_u64(val, 50000000, &migrants) || migrants == 0)
                return bad("--migrants: '%s' is not an integer in 1..50000000", val);
            have_migrants = 1;
        } else if (!strcmp(name, "--out")) {
            if (!*val)
                return bad("--out: empty file name%s", "");
            out = val;
        } else if (!strcmp(name, "--start-year")) {
            if (parse_u64(val, 2200, &v) || v < 1972)
                return bad("--start-year: '%s' is not a year in 1972..2200", val);
            start_year = (int)v;
        } else if (!strcmp(name, "--years")) {
            if (parse_u64(val, 50, &v) || v < 1)
                return bad("--years: '%s' is not an integer in 1..50", val);
            years = (int)v;
        } else {
            return bad("unknown option '%s'", name);
        }
    }
    if (!have_migrants)
        return bad("--migrants is required%s", "");
    if (!out)
        return bad("--out is required%s", "");

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    g.migrants = (uint32_t)migrants;
    struct gen_written w;
    if (gen_generate(&g, start_year, years) != 0 || gen_write(&g, out, &w) != 0)
        return 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);

    char asof[16];
    cm_month_str(cm_month_of_day(g.horizon / CM_DAY), asof);
    fprintf(stderr,
            "circmon-gen: seed %" PRIu64 ": %" PRIu64 " events (%" PRIu64 " entries, %" PRIu64
            " exits, %" PRIu64 " granted, %" PRIu64 " extended, %" PRIu64 " revoked, %" PRIu64
            " status changes; %" PRIu64 " undecodable, %" PRIu64 " invalid, %zu duplicates)"
            " for %" PRIu32 " migrants, %" PRIu64 " bytes, %.2f s; as of %s-01 all delivered\n",
            g.seed, w.records, w.per_kind[K_ENTRY], w.per_kind[K_EXIT], w.per_kind[K_GRANT],
            w.per_kind[K_EXTEND], w.per_kind[K_REVOKE], w.per_kind[K_STATUS], w.undecodable,
            w.invalid, g.ndup, g.migrants, w.bytes,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, asof);
    free(g.all.v);
    return 0;
}
