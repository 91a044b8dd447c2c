/* fuzz_engine.c - libFuzzer target: a sequence of varint-delimited messages
 * into an in-memory engine (lib/engine.c), then the indicators as of the
 * latest event, as JSON. Every message must be taken (valid or counted
 * invalid), and the document must exist and serialise. */
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "circmon/engine.h"
#include "fuzz_common.h"

static struct cm_config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cmf_load_conf(&cfg);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size, *bufs[CM_ENGINE_BATCH];
    size_t lens[CM_ENGINE_BATCH], n = 0;
    int results[CM_ENGINE_BATCH];
    struct cm_engine *en = cm_engine_new(&cfg);
    if (!en)
        cmf_fail("cm_engine_new");
    for (;;) {
        int more = cmf_next_record(&p, end, &bufs[n], &lens[n]);
        if (more)
            n++;
        if (n == CM_ENGINE_BATCH || (!more && n > 0)) {
            if (cm_engine_feed_batch(en, bufs, lens, n, results) < 0)
                cmf_fail("cm_engine_feed_batch failed");
            for (size_t i = 0; i < n; i++)
                if (results[i] < 0 || results[i] >= CM_REJ__COUNT)
                    cmf_fail("a message neither taken nor rejected with a reason");
            n = 0;
        }
        if (!more)
            break;
    }
    json_t *doc = cm_engine_indicators(en, cm_engine_latest(en));
    if (!doc)
        cmf_fail("no indicators document as of the latest event");
    char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s)
        cmf_fail("the indicators document does not serialise");
    free(s);
    json_decref(doc);
    cm_engine_free(en);
    return 0;
}
