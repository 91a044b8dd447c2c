/* fuzz_engine.c - libFuzzer target: a sequence of varint-delimited messages
 * into an in-memory engine (lib/engine.c), then the indicators as of the
 * latest event, as JSON. Every message must be taken (valid or counted
 * invalid), the document must exist and serialise, and feeding the messages
 * one by one (cm_engine_feed) must give the same document as in batches
 * (cm_engine_feed_batch, what circmonctl replay uses). */
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

    struct cm_engine *one = cm_engine_new(&cfg);
    if (!one)
        cmf_fail("cm_engine_new");
    const uint8_t *rec;
    size_t len;
    for (p = data; cmf_next_record(&p, end, &rec, &len);) {
        int r = cm_engine_feed(one, rec, len);
        if (r < 0 || r >= CM_REJ__COUNT)
            cmf_fail("cm_engine_feed: a message neither taken nor rejected with a reason");
    }
    if (cm_engine_latest(one) != cm_engine_latest(en))
        cmf_fail("one by one and in batches, the latest event differs");
    json_t *doc1 = cm_engine_indicators(one, cm_engine_latest(one));
    if (!doc1 || !json_equal(doc, doc1))
        cmf_fail("one by one and in batches, the indicators differ");
    json_decref(doc1);
    json_decref(doc);
    cm_engine_free(one);
    cm_engine_free(en);
    return 0;
}
