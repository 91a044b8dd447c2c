/* ctl_replay.c - circmonctl replay: fold event files in memory, print the indicators. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "circmon/config.h"
#include "circmon/engine.h"
#include "circmon/framing.h"
#include "circmon/indicators.h"
#include "circmon/timeutil.h"
#include "ctl.h"

static void usage(FILE *fp)
{
    fputs("usage: circmonctl replay [--config FILE] --as-of TIME [--format json|table] FILE...\n"
          "\n"
          "Reads events (varint-length-delimited circmon.v1.Event records; '-' is stdin),\n"
          "folds them in memory and prints the indicators as of TIME (unix seconds,\n"
          "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC). Without --config the built-in\n"
          "defaults apply (every scheme: grace_days 0, no stay limit).\n",
          fp);
}

/* Feeds one file; returns 0, or 1 when it was cut short (reported). */
static int feed_file(struct cm_engine *en, const char *path, uint64_t *records)
{
    FILE *fp = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!fp) {
        fprintf(stderr, "circmonctl replay: %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct cm_frame_reader r;
    const uint8_t *bufs[CM_ENGINE_BATCH];
    size_t lens[CM_ENGINE_BATCH];
    long rc;
    int bad = 0;
    cm_frame_reader_init(&r, fp);
    /* records go to the engine CM_ENGINE_BATCH at a time, where they lie in
     * the reader's buffer */
    while ((rc = cm_frame_read_many(&r, bufs, lens, CM_ENGINE_BATCH)) > 0) {
        *records += (uint64_t)rc;
        if (cm_engine_feed_batch(en, bufs, lens, (size_t)rc, NULL) < 0) {
            rc = -ENOMEM;
            break;
        }
    }
    if (rc == -ENOMEM) {
        fprintf(stderr, "circmonctl replay: out of memory\n");
        bad = 1;
    }
    if (rc == -EPROTO) {
        fprintf(stderr,
                "circmonctl replay: %s: truncated or malformed record at byte offset %" PRIu64
                "; figures are those of the records before it\n",
                path, r.offset);
        bad = 1;
    } else if (rc < 0 && !bad) {
        fprintf(stderr, "circmonctl replay: %s: %s\n", path, strerror((int)-rc));
        bad = 1;
    }
    cm_frame_reader_free(&r);
    if (fp != stdin)
        fclose(fp);
    return bad;
}

int cm_ctl_replay(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"as-of", required_argument, NULL, 'a'},
        {"format", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *asof = NULL, *format = "json";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:a:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'a':
            asof = optarg;
            break;
        case 'f':
            format = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    int64_t as_of;
    if (!asof || cm_time_parse(asof, &as_of) < 0) {
        fprintf(stderr, "circmonctl replay: %s\n",
                asof ? "--as-of: not a time (unix seconds or ISO 8601 UTC)" : "--as-of is required");
        usage(stderr);
        return 2;
    }
    char aerr[160];
    if (cm_indicators_as_of_check(as_of, aerr, sizeof(aerr)) < 0) {
        fprintf(stderr, "circmonctl replay: --as-of: %s\n", aerr);
        return 2;
    }
    if (strcmp(format, "json") && strcmp(format, "table")) {
        fprintf(stderr, "circmonctl replay: --format: json or table, not '%s'\n", format);
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "circmonctl replay: no event file given\n");
        usage(stderr);
        return 2;
    }

    /* every file must be readable before anything is folded or printed */
    for (int i = optind; i < argc; i++)
        if (strcmp(argv[i], "-") && access(argv[i], R_OK) < 0) {
            fprintf(stderr, "circmonctl replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }

    struct cm_config cfg;
    char err[512];
    if (config ? cm_config_load(&cfg, config, err, sizeof(err)) < 0 : cm_config_defaults(&cfg) < 0) {
        fprintf(stderr, "circmonctl replay: %s\n", config ? err : "out of memory");
        return 1;
    }
    struct cm_engine *en = cm_engine_new(&cfg);
    if (!en) {
        fprintf(stderr, "circmonctl replay: out of memory\n");
        cm_config_free(&cfg);
        return 1;
    }
    int bad = 0;
    uint64_t records = 0;
    for (int i = optind; i < argc; i++)
        bad |= feed_file(en, argv[i], &records);

    int rc = bad ? 1 : 0;
    if (as_of < cm_engine_latest(en))
        fprintf(stderr,
                "circmonctl replay: warning: --as-of is earlier than the latest event folded "
                "(%" PRId64 "): the indicators are defined as of that instant or later\n",
                cm_engine_latest(en));
    json_t *doc = cm_engine_indicators(en, as_of);
    if (!doc) {
        fprintf(stderr, "circmonctl replay: out of memory\n");
        rc = 1;
    } else {
        if (cm_indicators_print(doc, format, stdout) < 0) {
            fprintf(stderr, "circmonctl replay: cannot write the output\n");
            rc = 1;
        }
        json_decref(doc);
    }
    cm_engine_free(en);
    cm_config_free(&cfg);
    return rc;
}
