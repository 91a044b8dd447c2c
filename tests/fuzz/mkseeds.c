/* mkseeds.c - writes the seed corpora of the fuzz targets from a circmon-gen
 * stream: single messages (fuzz_decode), runs of messages (fuzz_engine),
 * packed migrant states each followed by that migrant's next message
 * (fuzz_state), and the targets' own configuration (fuzz_config).
 *
 * Usage: mkseeds STREAM OUTDIR (OUTDIR/<target>/ must exist). Exit 0, or 1
 * with a message. Deterministic: the same stream gives the same files. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/event.h"
#include "circmon/fold.h"
#include "circmon/framing.h"
#include "circmon/names.h"
#include "fuzz_common.h"

#define MAX_RECORDS 20000
#define DECODE_SEEDS 400
#define ENGINE_RUNS 30  /* runs in arrival order */
#define ENGINE_MIGRANTS 60 /* all of one migrant's messages, and the next one's */
#define STATE_MIGRANTS 150

struct rec {
    uint8_t *data;
    size_t len;
    char *migrant; /* "" when the message does not decode */
    size_t idx;    /* arrival order */
};

static struct rec recs[MAX_RECORDS];
static size_t nrecs;
static const char *outdir;
static unsigned nfiles;

static void die(const char *what)
{
    fprintf(stderr, "mkseeds: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    exit(1);
}

static FILE *seed_open(const char *target, unsigned n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s/seed-%04u", outdir, target, n);
    FILE *fp = fopen(path, "wb");
    if (!fp)
        die(path);
    nfiles++;
    return fp;
}

static void seed_close(FILE *fp)
{
    if (ferror(fp) | fclose(fp))
        die("write error");
}

static int by_migrant(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    int c = strcmp(x->migrant, y->migrant);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: mkseeds STREAM OUTDIR\n");
        return 2;
    }
    outdir = argv[2];
    FILE *in = fopen(argv[1], "rb");
    if (!in)
        die(argv[1]);
    struct cm_decoder *dec = cm_decoder_new();
    if (!dec)
        die("cm_decoder_new");
    struct cm_frame_reader fr;
    cm_frame_reader_init(&fr, in);
    const uint8_t *data;
    size_t len;
    int rc;
    while (nrecs < MAX_RECORDS && (rc = cm_frame_read(&fr, &data, &len)) == 1) {
        struct rec *r = &recs[nrecs];
        struct cm_event ev;
        r->data = malloc(len ? len : 1);
        if (!r->data)
            die("out of memory");
        memcpy(r->data, data, len);
        r->len = len;
        r->idx = nrecs++;
        r->migrant = strdup(cm_decode(dec, data, len, &ev) == CM_OK ? ev.migrant_id : "");
        if (!r->migrant)
            die("out of memory");
    }
    cm_frame_reader_free(&fr);
    fclose(in);
    if (nrecs < 100)
        die("the stream has fewer than 100 records");

    /* fuzz_decode: single messages, spread over the stream */
    size_t step = nrecs / DECODE_SEEDS ? nrecs / DECODE_SEEDS : 1;
    for (size_t i = 0, n = 0; i < nrecs && n < DECODE_SEEDS; i += step, n++) {
        FILE *fp = seed_open("fuzz_decode", (unsigned)n);
        fwrite(recs[i].data, 1, recs[i].len, fp);
        seed_close(fp);
    }

    /* fuzz_engine: runs in arrival order ... */
    unsigned ne = 0;
    size_t run = nrecs / ENGINE_RUNS < 40 ? nrecs / ENGINE_RUNS : 40;
    for (size_t k = 0; k < ENGINE_RUNS; k++) {
        FILE *fp = seed_open("fuzz_engine", ne++);
        for (size_t i = k * (nrecs / ENGINE_RUNS); i < k * (nrecs / ENGINE_RUNS) + run; i++)
            if (cm_frame_write(fp, recs[i].data, recs[i].len) < 0)
                die("write error");
        seed_close(fp);
    }

    /* ... and the messages of one migrant and the next, in arrival order */
    qsort(recs, nrecs, sizeof(recs[0]), by_migrant);
    size_t g0 = 0; /* first record of the current migrant */
    while (g0 < nrecs && !*recs[g0].migrant)
        g0++;
    struct cm_config cfg;
    cmf_load_conf(&cfg);
    unsigned nmig = 0, ns = 0;
    while (g0 < nrecs) {
        size_t g1 = g0;
        while (g1 < nrecs && !strcmp(recs[g1].migrant, recs[g0].migrant))
            g1++;
        size_t g2 = g1;
        while (g2 < nrecs && g1 < nrecs && !strcmp(recs[g2].migrant, recs[g1].migrant))
            g2++;
        if (nmig < ENGINE_MIGRANTS) {
            FILE *fp = seed_open("fuzz_engine", ne++);
            for (size_t i = g0; i < g2; i++)
                if (cm_frame_write(fp, recs[i].data, recs[i].len) < 0)
                    die("write error");
            seed_close(fp);
        }
        /* fuzz_state: the state after 1, 2, 4, 8 ... events, then the next */
        if (nmig < STATE_MIGRANTS) {
            struct cm_names *nm = cm_names_new();
            struct cm_fold_ctx *fc = nm ? cm_fold_ctx_new(&cfg, nm) : NULL;
            struct cm_mstate *st = fc ? cm_mstate_new(fc) : NULL;
            struct cm_item *items = NULL;
            size_t ni = 0, cap = 0;
            if (!st)
                die("out of memory");
            for (size_t i = g0, k = 1; i < g1; i++, k++) {
                struct cm_event ev;
                ni = 0;
                if (cm_decode(dec, recs[i].data, recs[i].len, &ev) != CM_OK)
                    continue;
                if (cm_fold_event(fc, st, &ev, &items, &ni, &cap) < 0)
                    die("cm_fold_event failed");
                if ((k & (k - 1)) != 0 && i + 2 != g1)
                    continue;
                uint8_t *b = NULL;
                long bl = cm_mstate_pack(fc, st, &b);
                if (bl < 0)
                    die("cm_mstate_pack failed");
                FILE *fp = seed_open("fuzz_state", ns++);
                if (cm_frame_write(fp, b, (size_t)bl) < 0)
                    die("write error");
                if (i + 1 < g1)
                    fwrite(recs[i + 1].data, 1, recs[i + 1].len, fp);
                seed_close(fp);
                free(b);
            }
            free(items);
            cm_mstate_free(fc, st);
            cm_fold_ctx_free(fc);
            cm_names_free(nm);
        }
        nmig++;
        g0 = g1;
    }
    cm_config_free(&cfg);

    /* fuzz_config: the configuration the other targets run under */
    FILE *fp = seed_open("fuzz_config", 0);
    fputs(cmf_conf_text, fp);
    seed_close(fp);

    for (size_t i = 0; i < nrecs; i++) {
        free(recs[i].data);
        free(recs[i].migrant);
    }
    cm_decoder_free(dec);
    fprintf(stderr, "mkseeds: %zu records, %u migrants: %u seed files in %s\n", nrecs, nmig,
            nfiles, outdir);
    return 0;
}
