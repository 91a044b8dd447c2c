/* bench_fold.c - replay throughput: decode only, decode + fold, fold only.
 *
 * usage: bench_fold CONFIG EVENTS_FILE
 *        bench_fold --heavy N OUT   writes a heavy migrant's stream (see heavy())
 * Reads the whole file into memory first, so that no figure includes I/O.
 * Prints one line per measure: events per second on one core (CPU time of
 * this process), then peak RSS and state bytes per migrant. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "circmon/config.h"
#include "circmon/engine.h"
#include "circmon/event.h"
#include "circmon/framing.h"
#include "circmon/grow.h"
#include "circmon/v1/events.pb-c.h"

struct rec {
    const uint8_t *p;
    size_t len;
};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *dup_or_die(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        perror("strdup");
        exit(1);
    }
    return d;
}

/* Writes n events of one migrant "heavy", 50 s apart from 2024-03-01 (16,000
 * span 9 days: all in a 30-day reorder window): a grant valid for the whole
 * span, then entries and exits by turns; every eighth event arrives after
 * the next three (out of order, behind 3 later events), the rest in order.
 * Returns 0, or 1 with a message. */
static int heavy(long n, const char *out)
{
    FILE *fp = fopen(out, "wb");
    if (!fp) {
        fprintf(stderr, "bench_fold: %s: %s\n", out, strerror(errno));
        return 1;
    }
    const int64_t t0 = 1709251200; /* 2024-03-01T00:00:00Z */
    int rc = 0;
    for (long k = 0; k <= n && !rc; k++) {
        long i = k; /* arrival k carries event i */
        if (k > 0 && k % 8 == 5)
            i = k - 3; /* late by three */
        else if (k > 0 && k % 8 >= 2 && k % 8 <= 4)
            i = k + 1;
        if (k == n)
            break;
        char eid[32];
        snprintf(eid, sizeof(eid), "h%ld", i);
        Circmon__V1__Event ev = CIRCMON__V1__EVENT__INIT;
        Circmon__V1__Entry en = CIRCMON__V1__ENTRY__INIT;
        Circmon__V1__Exit ex = CIRCMON__V1__EXIT__INIT;
        Circmon__V1__PermitGranted pg = CIRCMON__V1__PERMIT_GRANTED__INIT;
        ev.event_id = eid;
        ev.migrant_id = "heavy";
        ev.occurred_at = t0 + 50 * (int64_t)i;
        if (i == 0) {
            pg.permit_id = "p1";
            pg.scheme_id = "SHORTSTAY";
            pg.nationality = "UKR";
            pg.valid_from = t0;
            pg.valid_until = t0 + 50 * (int64_t)n + 86400;
            ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_GRANTED;
            ev.permit_granted = &pg;
        } else if (i % 2) {
            ev.body_case = CIRCMON__V1__EVENT__BODY_ENTRY;
            ev.entry = &en;
        } else {
            ev.body_case = CIRCMON__V1__EVENT__BODY_EXIT;
            ev.exit = &ex;
        }
        uint8_t buf[256], hdr[10];
        size_t len = circmon__v1__event__get_packed_size(&ev), h = 0;
        if (len > sizeof(buf)) {
            rc = 1;
            break;
        }
        circmon__v1__event__pack(&ev, buf);
        for (size_t v = len; ; v >>= 7) {
            hdr[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
            if (v <= 0x7f)
                break;
        }
        if (fwrite(hdr, 1, h, fp) != h || fwrite(buf, 1, len, fp) != len)
            rc = 1;
    }
    if (fclose(fp) != 0)
        rc = 1;
    if (rc)
        fprintf(stderr, "bench_fold: %s: cannot write\n", out);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--heavy"))
        return heavy(atol(argv[2]), argv[3]);
    if (argc != 3) {
        fprintf(stderr, "usage: bench_fold CONFIG EVENTS_FILE\n");
        return 2;
    }
    struct cm_config cfg;
    char err[512];
    if (cm_config_load(&cfg, argv[1], err, sizeof(err)) < 0) {
        fprintf(stderr, "bench_fold: %s\n", err);
        return 1;
    }
    FILE *fp = fopen(argv[2], "rb");
    if (!fp) {
        fprintf(stderr, "bench_fold: %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    /* all records in one buffer */
    struct cm_frame_reader r;
    const uint8_t *data;
    size_t len, n = 0, cap = 0, blen = 0, bcap = 0;
    struct rec *recs = NULL;
    uint8_t *buf = NULL;
    int rd;
    cm_frame_reader_init(&r, fp);
    while ((rd = cm_frame_read(&r, &data, &len)) == 1) {
        if (cm_grow(&recs, &cap, n + 1, sizeof(*recs), 1 << 16) < 0 ||
            cm_grow(&buf, &bcap, blen + len, 1, 1 << 24) < 0) {
            fprintf(stderr, "bench_fold: out of memory for %zu records of %zu bytes in all\n",
                    n + 1, blen + len);
            return 1;
        }
        memcpy(buf + blen, data, len);
        recs[n++] = (struct rec){.p = (const uint8_t *)blen, .len = len};
        blen += len;
    }
    cm_frame_reader_free(&r);
    fclose(fp);
    if (rd < 0) {
        fprintf(stderr, "bench_fold: %s: cannot read record %zu: %s\n", argv[2], n + 1,
                strerror(-rd));
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        recs[i].p = buf + (size_t)recs[i].p;

    /* 1: decode only, keeping the valid events for pass 3 */
    struct cm_decoder *dec = cm_decoder_new();
    struct cm_event *evs = calloc(n ? n : 1, sizeof(*evs));
    size_t nev = 0;
    double t0 = cpu_now();
    for (size_t i = 0; i < n; i++) {
        struct cm_event ev;
        if (cm_decode(dec, recs[i].p, recs[i].len, &ev) == CM_OK)
            nev++;
    }
    double t_decode = cpu_now() - t0;
    for (size_t i = 0, k = 0; i < n; i++) {
        struct cm_event ev;
        if (cm_decode(dec, recs[i].p, recs[i].len, &ev) != CM_OK)
            continue;
        ev.event_id = dup_or_die(ev.event_id);
        ev.migrant_id = dup_or_die(ev.migrant_id);
        ev.permit_id = dup_or_die(ev.permit_id);
        ev.scheme_id = dup_or_die(ev.scheme_id);
        ev.nationality = dup_or_die(ev.nationality);
        evs[k++] = ev;
    }

    /* 2: decode + fold, as circmonctl replay does (a first run warms the
     * allocator, as a long replay would be warm after its first seconds) */
    double t_start_cold = cpu_now();
    struct cm_engine *en = cm_engine_new(&cfg);
    for (size_t i = 0; i < n; i++)
        if (cm_engine_feed(en, recs[i].p, recs[i].len) == -ENOMEM)
            return 1;
    double t_cold = cpu_now() - t_start_cold;
    en = cm_engine_free(en);
    en = cm_engine_new(&cfg);
    t0 = cpu_now();
    for (size_t i = 0; i < n; i += CM_ENGINE_BATCH) {
        const uint8_t *bufs[CM_ENGINE_BATCH];
        size_t lens[CM_ENGINE_BATCH], m = n - i < CM_ENGINE_BATCH ? n - i : CM_ENGINE_BATCH;
        for (size_t j = 0; j < m; j++) {
            bufs[j] = recs[i + j].p;
            lens[j] = recs[i + j].len;
        }
        if (cm_engine_feed_batch(en, bufs, lens, m, NULL) < 0) {
            fprintf(stderr, "bench_fold: out of memory\n");
            return 1;
        }
    }
    json_t *doc = cm_engine_indicators(en, INT64_C(4102444800));
    double t_full = cpu_now() - t0;
    size_t migrants = cm_engine_migrants(en), bytes = cm_engine_state_bytes(en);
    json_decref(doc);
    cm_engine_free(en);

    /* 3: fold only, on events decoded beforehand */
    en = cm_engine_new(&cfg);
    t0 = cpu_now();
    for (size_t i = 0; i < nev; i++)
        if (cm_engine_fold(en, &evs[i]) < 0) {
            fprintf(stderr, "bench_fold: out of memory\n");
            return 1;
        }
    double t_fold = cpu_now() - t0;
    cm_engine_free(en);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("records            %zu (%zu valid), %zu migrants\n", n, nev, migrants);
    printf("decode only        %10.0f events/s\n", n / t_decode);
    printf("decode + fold      %10.0f events/s  (one message at a time, first run in the process)\n", n / t_cold);
    printf("decode + fold      %10.0f events/s  (again, in batches as replay does)\n", n / t_full);
    printf("fold only          %10.0f events/s  (events decoded beforehand)\n", nev / t_fold);
    printf("state              %10.0f bytes per migrant\n", migrants ? (double)bytes / migrants : 0.0);
    printf("peak RSS           %10ld KiB (includes the input held in memory)\n", ru.ru_maxrss);

    for (size_t i = 0; i < nev; i++) {
        free((char *)evs[i].event_id);
        free((char *)evs[i].migrant_id);
        free((char *)evs[i].permit_id);
        free((char *)evs[i].scheme_id);
        free((char *)evs[i].nationality);
    }
    free(evs);
    cm_decoder_free(dec);
    free(recs);
    free(buf);
    cm_config_free(&cfg);
    return 0;
}
