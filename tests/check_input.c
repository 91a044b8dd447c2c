/* check_input.c - malformed input: never a crash, always counted as invalid,
 * and the stream goes on (INDICATORS.md section 2, step 1; DESIGN.md
 * principle 6: bad input is data). */
#include "cm_test.h"

#include <inttypes.h>
#include <unistd.h>

#include "circmon/framing.h"

#include "circmon/indicators.h"
#include "cm_bin.h"
#include "ref_decode.h"

#define B0 DN(2024, 3, 1)

static struct fx *F;
static void setup(void) { F = fx_new(30, "A:0 B:2"); }
static void teardown(void) { fx_free(F); F = NULL; }

static int feed_raw(const uint8_t *buf, size_t len) { return cm_engine_feed(F->en, buf, len); }

static void assert_reason_in_range(int rc)
{
    ck_assert_msg(rc >= CM_OK && rc < CM_REJ__COUNT && rc != CM_REJ_TOO_LATE &&
                      rc != CM_REJ_KEY_MISMATCH,
                  "feed returned %d", rc);
}

static long dq_now(const char *name)
{
    json_t *d = doc_at(F, T(B0 + 1000));
    long v = dq(d, name);
    json_decref(d);
    return v;
}

/* A grant with every field set. */
static struct tev full_grant(const char *eid, const char *mid)
{
    struct tev e = ev_grant(eid, mid, T(B0), "permit-1", "A", "UKR", T(B0), T(B0 + 90));
    snprintf(e.source, TS, "registry");
    snprintf(e.ms, TS, "DE");
    snprintf(e.sector, TS, "A01.13");
    e.recorded_at = T(B0 + 3);
    return e;
}

START_TEST(test_empty_buffer)
{
    static const uint8_t none[1] = {0};
    int rc = feed_raw(none, 0);
    ck_assert_int_ne(rc, CM_OK); /* decodes to nothing: no event_id */
    assert_reason_in_range(rc);
    ck_assert_int_eq(dq_now("invalid"), 1);
    ck_assert_uint_eq(cm_engine_migrants(F->en), 0);
}
END_TEST

START_TEST(test_random_bytes)
{
    uint64_t r = 42;
    uint8_t buf[512];
    long invalid = 0;
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)rng_range(&r, 0, sizeof buf);
        for (size_t k = 0; k < len; k++)
            buf[k] = (uint8_t)rng_next(&r);
        int rc = feed_raw(buf, len);
        assert_reason_in_range(rc);
        invalid += rc != CM_OK;
    }
    ck_assert_int_gt(invalid, 19000);
    ck_assert_int_eq(dq_now("invalid"), invalid);
}
END_TEST

START_TEST(test_random_protobuf_like_bytes)
{
    /* random sequences of well-formed-looking fields (tags of the Event and
     * its bodies, random wire types and lengths): exercises the decoder deeper */
    uint64_t r = 7;
    uint8_t buf[600];
    long invalid = 0, decoded = 0, by_rc[CM_REJ__COUNT] = {0};
    for (int i = 0; i < 20000; i++) {
        size_t n = 0;
        int nf = (int)rng_range(&r, 0, 8);
        for (int f = 0; f < nf && n < 500; f++) {
            int field = (int)rng_range(&r, 1, 16), wt = (int)rng_range(&r, 0, 5);
            buf[n++] = (uint8_t)(field << 3 | wt);
            if (wt == 0) {
                int k = (int)rng_range(&r, 1, 10);
                for (int j = 0; j < k - 1; j++)
                    buf[n++] = (uint8_t)(0x80 | rng_next(&r));
                buf[n++] = (uint8_t)(rng_next(&r) & 0x7f);
            } else if (wt == 2) {
                int len = (int)rng_range(&r, 0, 40);
                buf[n++] = (uint8_t)rng_range(&r, 0, 60); /* may lie */
                for (int j = 0; j < len; j++)
                    buf[n++] = (uint8_t)rng_next(&r);
            } else {
                int len = (int)rng_range(&r, 0, 8);
                for (int j = 0; j < len; j++)
                    buf[n++] = (uint8_t)rng_next(&r);
            }
        }
        int rc = feed_raw(buf, n);
        assert_reason_in_range(rc);
        invalid += rc != CM_OK;
        decoded += rc != CM_REJ_DECODE;
        by_rc[rc]++;
    }
    ck_assert_int_eq(dq_now("invalid"), invalid);
    /* "deeper" must happen: inputs that protobuf-c would take, refused (or
     * not) by the checks after decoding, and more than one of those checks */
    int reasons = 0;
    for (int k = CM_REJ_DECODE + 1; k < CM_REJ__COUNT; k++)
        reasons += by_rc[k] > 0;
    ck_assert_msg(decoded >= 1000 && reasons >= 3,
                  "%ld of 20000 inputs got past \"does not decode\", %d reasons after it",
                  decoded, reasons);
}
END_TEST

START_TEST(test_truncated_messages)
{
    /* every proper prefix of a valid message is invalid: the body comes last
     * on the wire, so a prefix either cuts it (does not decode) or lacks it */
    struct tev evs[] = {
        full_grant("g1", "m1"),
        ev_entry("e1", "m1", T(B0 + 1)),
        ev_extend("x1", "m1", T(B0 + 2), "permit-1", T(B0 + 100)),
        ev_revoke("r1", "m1", T(B0 + 3), "permit-1", T(B0 + 50)),
        ev_status("s1", "m1", T(B0 + 4), 2),
    };
    long invalid = 0;
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++) {
        struct msg m = tev_pack(&evs[i]);
        for (size_t len = 0; len < m.len; len++) {
            uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees overreads */
            memcpy(copy, m.buf, len);
            int rc = feed_raw(copy, len);
            free(copy);
            ck_assert_msg(rc != CM_OK, "event %zu: prefix of %zu/%zu bytes accepted", i, len,
                          m.len);
            assert_reason_in_range(rc);
            invalid++;
        }
        /* the whole message is valid */
        ck_assert_int_eq(feed_raw(m.buf, m.len), CM_OK);
    }
    /* the 5 whole messages fold: grant, entry on it, extension, revocation
     * (both applied: d <= E), status change: nothing in data quality but the
     * invalid prefixes */
    json_t *d = doc_at(F, T(B0 + 200));
    char spec[64];
    snprintf(spec, sizeof spec, "invalid=%ld", invalid);
    CHECK_DQ(d, spec);
    json_decref(d);
}
END_TEST

START_TEST(test_bit_flips)
{
    struct tev e = full_grant("g1", "m1");
    struct msg m = tev_pack(&e);
    for (size_t i = 0; i < m.len * 8; i++) {
        uint8_t *copy = malloc(m.len);
        memcpy(copy, m.buf, m.len);
        copy[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_reason_in_range(feed_raw(copy, m.len));
        free(copy);
    }
    /* still working: a fresh migrant's exit is an exit without entry */
    long before = dq_now("exits_without_entry");
    FEED(F, ev_exit("z", "fresh", T(B0 + 500)));
    ck_assert_int_eq(dq_now("exits_without_entry"), before + 1);
}
END_TEST

START_TEST(test_wrong_wire_type)
{
    /* event_id (field 1) as a varint, then a valid-looking rest */
    struct tev e = ev_exit("e1", "m1", T(B0));
    struct msg m = tev_pack(&e);
    ck_assert_uint_eq(m.buf[0], 0x0a); /* field 1, length-delimited */
    uint8_t buf[sizeof m.buf + 2];
    buf[0] = 0x08; /* field 1, varint */
    buf[1] = 0x01;
    memcpy(buf + 2, m.buf, m.len);
    int rc = feed_raw(buf, m.len + 2);
    ck_assert_int_ne(rc, CM_OK);
    assert_reason_in_range(rc);
    /* the body as a varint instead of a message */
    uint8_t b2[] = {0x0a, 0x01, 'e', 0x12, 0x01, 'm', 0x18, 0x05, 0x50, 0x01};
    rc = feed_raw(b2, sizeof b2);
    ck_assert_int_ne(rc, CM_OK);
    ck_assert_int_eq(dq_now("invalid"), 2);
    ck_assert_int_eq(dq_now("exits_without_entry"), 0);
}
END_TEST

START_TEST(test_length_prefix_lies)
{
    /* event_id claims 100 bytes, 3 follow; then a huge 10-byte varint length */
    uint8_t b1[] = {0x0a, 100, 'a', 'b', 'c'};
    uint8_t b2[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'};
    uint8_t b3[] = {0x0a, 0x80}; /* varint cut short */
    ck_assert_int_ne(feed_raw(b1, sizeof b1), CM_OK);
    ck_assert_int_ne(feed_raw(b2, sizeof b2), CM_OK);
    ck_assert_int_ne(feed_raw(b3, sizeof b3), CM_OK);
    ck_assert_int_eq(dq_now("invalid"), 3);
}
END_TEST

START_TEST(test_unknown_field_is_valid)
{
    /* proto3 ignores unknown fields: field 99 (varint 1) appended */
    struct tev e = ev_exit("e1", "m1", T(B0));
    struct msg m = tev_pack(&e);
    m.buf[m.len++] = 0x98; /* (99 << 3 | 0) = 792 = 0x318 as varint: 0x98 0x06 */
    m.buf[m.len++] = 0x06;
    m.buf[m.len++] = 0x01;
    ck_assert_int_eq(feed_raw(m.buf, m.len), CM_OK);
    json_t *d = doc_at(F, T(B0 + 1));
    CHECK_DQ(d, "exits_without_entry=1");
    json_decref(d);
}
END_TEST

START_TEST(test_valid_after_garbage)
{
    uint8_t junk[] = {0xff, 0xff, 0xff, 0x00, 0x13, 0x37};
    ck_assert_int_ne(feed_raw(junk, sizeof junk), CM_OK);
    ck_assert_int_ne(feed_raw(junk, 3), CM_OK);
    FEED(F, ev_grant(NULL, "m1", T(B0), "P", "A", "UKR", T(B0), T(B0 + 10)));
    ck_assert_int_ne(feed_raw(junk + 1, 4), CM_OK);
    FEED(F, ev_entry(NULL, "m1", T(B0 + 1)));
    FEED(F, ev_exit(NULL, "m1", T(B0 + 5)));
    /* the valid events all count: P used, exit b+5 <= E b+10, in time */
    json_t *d = doc_at(F, T(B0 + 11));
    CHECK_DQ(d, "invalid=3");
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 in_time_departures=1");
    json_decref(d);
}
END_TEST

START_TEST(test_huge_strings)
{
    /* strings far over 256 bytes, up to 1 MiB: invalid, no crash */
    size_t sizes[] = {257, 1000, 65536, 1 << 20};
    for (size_t i = 0; i < 4; i++) {
        char *big = malloc(sizes[i] + 1);
        memset(big, 'y', sizes[i]);
        big[sizes[i]] = 0;
        for (int field = 0; field < 3; field++) {
            Circmon__V1__Event ev = CIRCMON__V1__EVENT__INIT;
            Circmon__V1__PermitRevoked pr = CIRCMON__V1__PERMIT_REVOKED__INIT;
            ev.event_id = field == 0 ? big : "e";
            ev.migrant_id = field == 1 ? big : "m";
            ev.occurred_at = T(B0);
            pr.permit_id = "p";
            pr.reason = field == 2 ? big : "";
            ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_REVOKED;
            ev.permit_revoked = &pr;
            size_t n = circmon__v1__event__get_packed_size(&ev);
            uint8_t *buf = malloc(n);
            circmon__v1__event__pack(&ev, buf);
            ck_assert_int_eq(feed_raw(buf, n), CM_REJ_STRING_TOO_LONG);
            free(buf);
        }
        free(big);
    }
    ck_assert_int_eq(dq_now("invalid"), 12);
    ck_assert_int_eq(dq_now("unknown_permit"), 0);
}
END_TEST

static size_t put_varint(uint8_t *w, size_t at, uint64_t x)
{
    for (; x >= 0x80; x >>= 7)
        w[at++] = (uint8_t)(x | 0x80);
    w[at++] = (uint8_t)x;
    return at;
}

/* Appends a length-delimited field (tag, wire type 2) to w at at. */
static size_t put_ld(uint8_t *w, size_t at, unsigned tag, const void *v, size_t n)
{
    at = put_varint(w, at, tag << 3 | 2);
    at = put_varint(w, at, n);
    memcpy(w + at, v, n);
    return at + n;
}

/* An event written by hand: protobuf-c's packer cannot write strings that
 * hold a NUL byte, which other producers can. */
static size_t raw_event(uint8_t *w, const void *eid, size_t el, const void *mid, size_t ml,
                        const void *pid, size_t pl)
{
    size_t at = put_ld(w, 0, 1, eid, el);
    at = put_ld(w, at, 2, mid, ml);
    at = put_varint(w, at, 3 << 3); /* occurred_at, varint */
    at = put_varint(w, at, (uint64_t)T(B0));
    if (!pid)
        return put_ld(w, at, 10, "", 0); /* Entry, empty */
    uint8_t body[400];
    size_t bl = put_ld(body, 0, 1, pid, pl);
    return put_ld(w, at, 14, body, bl); /* PermitRevoked */
}

START_TEST(test_strings_with_nul)
{
    /* A NUL inside a string: invalid (circmon would see the string cut at
     * it: "a\0b" and "a\0c" would be one id); a string over 256 bytes is
     * too long even when a NUL comes first. */
    uint8_t w[1024], big[302];
    memset(big, 'x', sizeof big);
    big[1] = 0;
    size_t n = raw_event(w, big, sizeof big, "m", 1, NULL, 0);
    ck_assert_int_eq(feed_raw(w, n), CM_REJ_STRING_TOO_LONG);
    n = raw_event(w, "a\0b", 3, "m", 1, NULL, 0);
    ck_assert_int_eq(feed_raw(w, n), CM_REJ_NUL_IN_STRING);
    n = raw_event(w, "e1", 2, "m\0a", 3, NULL, 0);
    ck_assert_int_eq(feed_raw(w, n), CM_REJ_NUL_IN_STRING);
    n = raw_event(w, "e2", 2, "m", 1, "p\0a", 3); /* in a nested message */
    ck_assert_int_eq(feed_raw(w, n), CM_REJ_NUL_IN_STRING);
    /* the hand writer itself is right: the same shapes without NUL pass */
    n = raw_event(w, "e3", 2, "m", 1, NULL, 0);
    ck_assert_int_eq(feed_raw(w, n), CM_OK);
    n = raw_event(w, "e4", 2, "m", 1, "pa", 2);
    ck_assert_int_eq(feed_raw(w, n), CM_OK);
    ck_assert_int_eq(dq_now("invalid"), 4);
    ck_assert_int_eq(dq_now("entries_without_permit"), 1);
    ck_assert_int_eq(dq_now("unknown_permit"), 1);
    ck_assert_str_eq(cm_reject_name(CM_REJ_NUL_IN_STRING), "nul_in_string");
}
END_TEST

/* Code points of a UTF-8 line up to its newline. */
static size_t line_cols(const char *s)
{
    size_t n = 0;
    for (; *s && *s != '\n'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

START_TEST(test_table_aligns_non_ascii_schemes)
{
    /* scheme ids of 5 code points in 7 bytes, and of 3 in 3: every row of
     * the table (header included) has the same width on a terminal */
    FEED(F, ev_grant(NULL, "m1", T(B0), "P", "\xc3\xb1" "and" "\xc3\xba", "UKR", T(B0), T(B0 + 5)));
    FEED(F, ev_grant(NULL, "m2", T(B0), "P", "abc", "UKR", T(B0), T(B0 + 5)));
    json_t *d = doc_at(F, T(B0 + 10));
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(cm_indicators_print_table(d, fp), 0);
    fclose(fp);
    json_decref(d);
    size_t w = line_cols(buf), rows = 0;
    for (const char *l = buf; *l && *l != '\n' && rows < 3; rows++) {
        ck_assert_msg(line_cols(l) == w, "row %zu is %zu columns, the header %zu:\n%s", rows,
                      line_cols(l), w, buf);
        l = strchr(l, '\n');
        if (!l)
            break;
        l++;
    }
    ck_assert_int_eq(rows, 3);
    free(buf);
}
END_TEST

START_TEST(test_invalid_input_creates_no_migrant)
{
    uint64_t r = 99;
    uint8_t buf[64];
    long rejected = 0;
    /* every rejected input leaves the count of migrants as it was (one that
     * random bytes happen to make valid may add one, and is not counted) */
    for (int i = 0; i < 1000; i++) {
        for (size_t k = 0; k < sizeof buf; k++)
            buf[k] = (uint8_t)rng_next(&r);
        size_t before = cm_engine_migrants(F->en);
        int rc = feed_raw(buf, (size_t)rng_range(&r, 0, sizeof buf));
        if (rc != CM_OK) {
            ck_assert_uint_eq(cm_engine_migrants(F->en), before);
            rejected++;
        }
    }
    ck_assert_int_ge(rejected, 990);
    /* a well-formed message refused by a check after decoding: no migrant */
    size_t before = cm_engine_migrants(F->en);
    struct tev e = ev_grant("g", "m1", T(B0), "P", "A", "UKR", T(B0), T(B0) - 1);
    ck_assert_int_eq(feed(F, e), CM_REJ_VALIDITY_ORDER);
    ck_assert_uint_eq(cm_engine_migrants(F->en), before);
    json_t *d = doc_at(F, T(B0 + 1));
    ck_assert_int_eq(dq(d, "invalid"), rejected + 1);
    json_decref(d);
}
END_TEST

START_TEST(test_invalid_reasons)
{
    /* one message per reason of step 1, each counted once */
    struct tev e;
    e = ev_exit("", "m", T(B0));
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_EVENT_ID);
    e = ev_exit("e", "", T(B0));
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_MIGRANT_ID);
    e = ev_nobody("e", "m", T(B0));
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_BODY);
    e = ev_exit("e", "m", 0);
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_OCCURRED_AT);
    e = ev_grant("e", "m", T(B0), "", "A", "", T(B0), T(B0));
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_PERMIT_ID);
    e = ev_grant("e", "m", T(B0), "p", "", "", T(B0), T(B0));
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_SCHEME_ID);
    e = ev_grant("e", "m", T(B0), "p", "A", "", 0, T(B0));
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_VALID_FROM);
    e = ev_grant("e", "m", T(B0), "p", "A", "", T(B0), 0);
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_VALID_UNTIL);
    e = ev_grant("e", "m", T(B0), "p", "A", "", T(B0), T(B0) - 1);
    ck_assert_int_eq(feed(F, e), CM_REJ_VALIDITY_ORDER);
    e = ev_extend("e", "m", T(B0), "", T(B0));
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_PERMIT_ID);
    e = ev_extend("e", "m", T(B0), "p", 0);
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_VALID_UNTIL);
    e = ev_revoke("e", "m", T(B0), "", 0);
    ck_assert_int_eq(feed(F, e), CM_REJ_NO_PERMIT_ID);
    e = ev_exit("e", "m", T(B0));
    memset(e.bp, 'b', 257);
    ck_assert_int_eq(feed(F, e), CM_REJ_STRING_TOO_LONG);
    /* the same event_id "e" is then still free: nothing above was accepted */
    FEED(F, ev_exit("e", "m", T(B0)));
    json_t *d = doc_at(F, T(B0 + 1));
    CHECK_DQ(d, "invalid=13 exits_without_entry=1");
    json_decref(d);
    ck_assert_uint_eq(cm_engine_migrants(F->en), 1);
}
END_TEST

/* ---- the decoder against protobuf-c (tests/ref_decode.c) ---- */

/* cm_decode and the reference agree on buf: the same verdict, and on CM_OK
 * the same event. Returns the verdict. */
static enum cm_reject agree(struct cm_decoder *d, const uint8_t *buf, size_t len)
{
    struct cm_event a, b;
    struct ref_strings s;
    enum cm_reject ra = cm_decode(d, buf, len, &a), rb = ref_decode(buf, len, &b, &s);
    if (ra != rb) {
        char hex[3 * 64 + 1] = "";
        for (size_t i = 0; i < len && i < 64; i++)
            snprintf(hex + 3 * i, 4, "%02x ", buf[i]);
        ck_abort_msg("cm_decode says %s, protobuf-c %s, on %zu bytes: %s", cm_reject_name(ra),
                     cm_reject_name(rb), len, hex);
    }
    if (ra != CM_OK)
        return ra;
    ck_assert_int_eq(a.type, b.type);
    ck_assert_str_eq(a.event_id, b.event_id);
    ck_assert_str_eq(a.migrant_id, b.migrant_id);
    ck_assert_str_eq(a.permit_id, b.permit_id);
    ck_assert_str_eq(a.scheme_id, b.scheme_id);
    ck_assert_str_eq(a.nationality, b.nationality);
    ck_assert(a.occurred_at == b.occurred_at && a.valid_from == b.valid_from &&
              a.valid_until == b.valid_until && a.effective_at == b.effective_at);
    ck_assert_int_eq(a.kind, b.kind);
    ck_assert_int_eq(a.status, b.status);
    return ra;
}

/* Messages of every body with every field set, some with faults. */
static size_t seeds(struct msg *out, uint64_t *r)
{
    size_t n = 0;
    struct tev e = full_grant("g1", "m1");
    e.kind = 5;
    out[n++] = tev_pack(&e);
    e = ev_extend("x1", "m1", T(B0 + 1), "permit-1", T(B0 + 120));
    out[n++] = tev_pack(&e);
    e = ev_revoke("r1", "m1", T(B0 + 2), "permit-1", T(B0 + 50));
    snprintf(e.reason, TS, "fraud");
    out[n++] = tev_pack(&e);
    e = ev_status("s1", "m1", T(B0 + 3), 2);
    snprintf(e.detail, TS, "long-term");
    out[n++] = tev_pack(&e);
    e = ev_entry("n1", "m1", T(B0 + 4));
    snprintf(e.ms, TS, "FR");
    snprintf(e.bp, TS, "CDG");
    out[n++] = tev_pack(&e);
    e = ev_exit("o1", "m2", T(B0 + 5));
    snprintf(e.bp, TS, "%s", "x");
    out[n++] = tev_pack(&e);
    e = ev_nobody("z1", "m2", T(B0));
    out[n++] = tev_pack(&e);
    e = ev_grant("g2", "m2", -T(B0), "p", "B", "", T(B0) + (int64_t)rng_range(r, -5, 5), T(B0));
    e.kind = -3;
    out[n++] = tev_pack(&e);
    e = ev_exit("o2", "m3", T(B0));
    memset(e.ms, 'm', 256);
    out[n++] = tev_pack(&e);
    e = ev_entry("n2", "m3", T(B0));
    memset(e.bp, 'b', 257);
    out[n++] = tev_pack(&e);
    e = ev_grant("g3", "m3", T(B0), "p", "", "SEN", T(B0), T(B0 + 1));
    out[n++] = tev_pack(&e);
    e = ev_extend("x2", "m3", T(B0 + 1), "", T(B0 + 120));
    out[n++] = tev_pack(&e);
    e = ev_exit("o3", "m\xc3\xa9\xf0\x9f\x98\x80", 0);
    out[n++] = tev_pack(&e);
    e = ev_grant("g4", "m4", T(B0), "p\xe2\x82", "A", "UKR", T(B0), INT64_C(253402300799) + 1);
    out[n++] = tev_pack(&e);
    e = ev_revoke("r2", "m4", T(B0), "p", -1);
    snprintf(e.reason, TS, "\xed\xa0\x80");
    out[n++] = tev_pack(&e);
    return n;
}

/* Swaps two random top-level fields of m; leaves m alone when its bytes do
 * not split into fields. */
static void shuffle_fields(struct msg *m, uint64_t *r)
{
    size_t start[64], nf = 0, i = 0;
    while (i < m->len && nf < 63) {
        start[nf++] = i;
        uint64_t key = 0, v = 0;
        unsigned shift = 0;
        do { /* the key */
            if (i == m->len || shift > 28)
                return;
            key |= (uint64_t)(m->buf[i] & 0x7f) << shift;
            shift += 7;
        } while (m->buf[i++] & 0x80);
        if ((key & 7) == 0 || (key & 7) == 2) { /* a varint: the value or the length */
            shift = 0;
            do {
                if (i == m->len || shift > 63)
                    return;
                v |= (uint64_t)(m->buf[i] & 0x7f) << shift;
                shift += 7;
            } while (m->buf[i++] & 0x80);
        }
        size_t body = (key & 7) == 2 ? (size_t)v : (key & 7) == 1 ? 8 : (key & 7) == 5 ? 4 : 0;
        if ((key & 7) != 0 && (key & 7) != 1 && (key & 7) != 2 && (key & 7) != 5)
            return;
        if (body > m->len - i)
            return;
        i += body;
    }
    if (i != m->len || nf < 2)
        return;
    start[nf] = m->len;
    size_t a = (size_t)rng_range(r, 0, (int64_t)nf - 2), b = (size_t)rng_range(r, (int64_t)a + 1, (int64_t)nf - 1);
    /* [a][middle][b] -> [b][middle][a] */
    uint8_t tmp[sizeof m->buf];
    size_t la = start[a + 1] - start[a], lm = start[b] - start[a + 1], lb = start[b + 1] - start[b];
    memcpy(tmp, m->buf + start[b], lb);
    memcpy(tmp + lb, m->buf + start[a + 1], lm);
    memcpy(tmp + lb + lm, m->buf + start[a], la);
    memcpy(m->buf + start[a], tmp, la + lm + lb);
}

START_TEST(test_decoder_agrees_with_protobuf_c)
{
    uint64_t r = 2026;
    struct cm_decoder *d = cm_decoder_new();
    ck_assert_ptr_nonnull(d);
    struct msg base[16], m;
    size_t nbase = seeds(base, &r);
    long verdicts[CM_REJ__COUNT] = {0};
    for (int it = 0; it < 300000; it++) {
        /* one to three messages back to back: fields repeat, bodies replace each other */
        m.len = 0;
        int parts = (int)rng_range(&r, 1, 3);
        for (int k = 0; k < parts; k++) {
            const struct msg *b = &base[rng_range(&r, 0, (int64_t)nbase - 1)];
            memcpy(m.buf + m.len, b->buf, b->len);
            m.len += b->len;
        }
        int muts = (int)rng_range(&r, 0, 3);
        for (int k = 0; k < muts && m.len; k++) {
            size_t at = (size_t)rng_range(&r, 0, (int64_t)m.len - 1);
            switch (rng_range(&r, 0, 7)) {
            case 0: /* any byte */
                m.buf[at] = (uint8_t)rng_next(&r);
                break;
            case 1: /* one bit */
                m.buf[at] ^= (uint8_t)(1u << rng_range(&r, 0, 7));
                break;
            case 2: /* cut */
                m.len = at;
                break;
            case 3: /* a byte out */
                memmove(m.buf + at, m.buf + at + 1, m.len - at - 1);
                m.len--;
                break;
            case 4: /* a byte in: often a continuation bit or a NUL */
                if (m.len < 4000) {
                    static const uint8_t picks[] = {0x00, 0x80, 0xff, 0x01, 0x7f, 0x08};
                    memmove(m.buf + at + 1, m.buf + at, m.len - at);
                    m.buf[at] = rng_range(&r, 0, 1) ? picks[rng_range(&r, 0, 5)] : (uint8_t)rng_next(&r);
                    m.len++;
                }
                break;
            case 5: { /* a field: any number and wire type, a short payload */
                if (m.len > 4000)
                    break;
                uint8_t f[16];
                size_t fl = 0;
                uint32_t key = (uint32_t)rng_range(&r, 0, 20) << 3 | (uint32_t)rng_range(&r, 0, 7);
                do {
                    f[fl++] = (uint8_t)((key & 0x7f) | (key > 0x7f ? 0x80 : 0));
                    key >>= 7;
                } while (key);
                size_t pl = (size_t)rng_range(&r, 0, 10);
                if (rng_range(&r, 0, 1))
                    f[fl++] = (uint8_t)pl;
                while (fl < sizeof f && pl--)
                    f[fl++] = (uint8_t)rng_next(&r);
                memmove(m.buf + at + fl, m.buf + at, m.len - at);
                memcpy(m.buf + at, f, fl);
                m.len += fl;
                break;
            }
            case 6: /* the fields in another order, as another writer may put them */
                shuffle_fields(&m, &r);
                break;
            default: /* a slice repeated */
                if (m.len < 4000) {
                    size_t l = (size_t)rng_range(&r, 1, (int64_t)(m.len - at));
                    memmove(m.buf + at + l, m.buf + at, m.len - at);
                    m.len += l;
                }
                break;
            }
        }
        verdicts[agree(d, m.buf, m.len)]++;
    }
    /* the mutations reached every kind of verdict the bytes can give */
    static const enum cm_reject must[] = {CM_OK, CM_REJ_DECODE, CM_REJ_NO_EVENT_ID,
                                          CM_REJ_NO_MIGRANT_ID, CM_REJ_NO_BODY,
                                          CM_REJ_NO_OCCURRED_AT, CM_REJ_NO_PERMIT_ID,
                                          CM_REJ_NO_SCHEME_ID, CM_REJ_NO_VALID_UNTIL,
                                          CM_REJ_VALIDITY_ORDER, CM_REJ_STRING_TOO_LONG,
                                          CM_REJ_NUL_IN_STRING, CM_REJ_INVALID_UTF8,
                                          CM_REJ_OUT_OF_RANGE};
    for (size_t k = 0; k < sizeof must / sizeof must[0]; k++)
        ck_assert_msg(verdicts[must[k]] > 20, "%s: %ld", cm_reject_name(must[k]), verdicts[must[k]]);
    cm_decoder_free(d);
}
END_TEST

START_TEST(test_decoder_edge_cases)
{
    /* wire forms where readers of protobuf differ: cm_decode reads them as
     * protobuf-c 1.4 does */
    static const struct {
        size_t len;
        uint8_t b[24];
    } cases[] = {
        /* a length written in 6 bytes */
        {11, {0x0a, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 'e', 0x12, 0x01, 'm'}},
        /* a key of field number 0 written in two bytes, then in one */
        {9, {0x80, 0x00, 0x01, 0x0a, 0x01, 'e', 0x12, 0x01, 'm'}},
        {8, {0x00, 0x01, 0x0a, 0x01, 'e', 0x12, 0x01, 'm'}},
        /* a key in 6 bytes */
        {12, {0xd8, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0a, 0x01, 'e', 0x12, 0x01, 'm'}},
        /* an 11-byte varint */
        {17, {0x18, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0a, 0x01, 'e', 0x12, 0x01}},
        /* a 10-byte varint with bits past 64 */
        {18, {0x0a, 0x01, 'e', 0x12, 0x01, 'm', 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x5a}},
        /* a group */
        {8, {0x0a, 0x01, 'e', 0x12, 0x01, 'm', 0x1b, 0x1c}},
        /* status with a 64-bit value: an enum keeps its low 32 bits */
        {23, {0x0a, 0x01, 'e', 0x12, 0x01, 'm', 0x18, 0x05, 0x7a, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0x8f, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00, 0x00}},
        /* occurred_at 5, then 0 written out: the last one counts */
        {12, {0x0a, 0x01, 'e', 0x12, 0x01, 'm', 0x18, 0x05, 0x18, 0x00, 0x5a, 0x00}},
        /* an exit body, then an empty grant: the grant replaces it */
        {10, {0x0a, 0x01, 'e', 0x12, 0x01, 'm', 0x18, 0x05, 0x5a, 0x00}},
        /* a grant, then an entry: the entry replaces it */
        {22, {0x0a, 0x01, 'e', 0x12, 0x01, 'm', 0x18, 0x05, 0x62, 0x08, 0x0a, 0x01, 'p', 0x12, 0x01, 'A', 0x20, 0x01, 0x52, 0x00, 0x00, 0x00}},
        /* an unknown field holding garbage */
        {14, {0x0a, 0x01, 'e', 0x12, 0x01, 'm', 0x18, 0x05, 0x5a, 0x00, 0xa2, 0x01, 0x01, 0xff}},
        /* a string fault inside a replaced body still counts */
        {18, {0x0a, 0x01, 'e', 0x12, 0x01, 'm', 0x18, 0x05, 0x5a, 0x03, 0x0a, 0x01, 0x00, 0x52, 0x00, 0x00, 0x00, 0x00}},
    };
    struct cm_decoder *d = cm_decoder_new();
    ck_assert_ptr_nonnull(d);
    int ok = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        /* trailing padding bytes of the table are cut off by len */
        for (size_t cut = cases[k].len; cut + 3 >= cases[k].len && cut > 0; cut--)
            ok += agree(d, cases[k].b, cut) == CM_OK;
    }
    ck_assert_int_gt(ok, 0);
    cm_decoder_free(d);
}
END_TEST


/* ---- step 1: instants within [0, 253402300799], strings strict UTF-8 ---- */

/* Feeds m to the engine and checks that cm_decode and the reference agree
 * on it; returns the engine's verdict. */
static int feed_agree(const struct msg *m)
{
    struct cm_decoder *d = cm_decoder_new();
    ck_assert_ptr_nonnull(d);
    enum cm_reject r = agree(d, m->buf, m->len);
    cm_decoder_free(d);
    int rc = feed_raw(m->buf, m->len);
    ck_assert_msg(rc == (int)r, "engine says %d, decoder %s", rc, cm_reject_name(r));
    return rc;
}

static int feed_tev(const struct tev *e)
{
    struct msg m = tev_pack(e);
    return feed_agree(&m);
}

START_TEST(test_reason_names_are_stable)
{
    /* dead-letter header values: the old numbers stay, the new are appended */
    ck_assert_int_eq(CM_REJ_NUL_IN_STRING, 14);
    ck_assert_int_eq(CM_REJ_INVALID_UTF8, 15);
    ck_assert_int_eq(CM_REJ_OUT_OF_RANGE, 16);
    ck_assert_int_eq(CM_REJ__COUNT, 17);
    ck_assert_str_eq(cm_reject_name(CM_REJ_INVALID_UTF8), "invalid_utf8");
    ck_assert_str_eq(cm_reject_name(CM_REJ_OUT_OF_RANGE), "out_of_range");
    ck_assert_str_eq(cm_reject_name(CM_REJ_DECODE), "decode");
    ck_assert_str_eq(cm_reject_name(CM_REJ__COUNT), "unknown");
    ck_assert(CM_TIME_MAX == INT64_C(253402300799));
}
END_TEST

#define TMAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z, as the contract writes it */

enum ifield { I_OCCURRED, I_RECORDED, I_VALID_FROM, I_GRANT_UNTIL, I_EXT_UNTIL, I_EFFECTIVE, I__N };

/* A valid event of migrant mid whose instant f is v. */
static struct tev with_instant(enum ifield f, int64_t v, const char *mid)
{
    struct tev e;
    switch (f) {
    case I_OCCURRED:
        e = ev_exit(NULL, mid, v);
        break;
    case I_RECORDED:
        e = ev_entry(NULL, mid, T(B0));
        e.recorded_at = v;
        break;
    case I_VALID_FROM:
        e = ev_grant(NULL, mid, T(B0), "p", "A", "UKR", v, TMAX);
        break;
    case I_GRANT_UNTIL:
        e = ev_grant(NULL, mid, T(B0), "p", "A", "UKR", 1, v);
        break;
    case I_EXT_UNTIL:
        e = ev_extend(NULL, mid, T(B0), "p", v);
        break;
    default:
        e = ev_revoke(NULL, mid, T(B0), "p", v);
        break;
    }
    return e;
}

START_TEST(test_instant_boundaries)
{
    /* each instant field at 0, -1, the last second of 9999 and the first of
     * 10000, and at the ends of int64: below 0 or above 253402300799 is
     * out_of_range; 0 is absent, which only some fields allow */
    static const int64_t vals[] = {0, -1, TMAX, TMAX + 1, INT64_MIN, INT64_MAX, 1, TMAX - 1};
    static const enum cm_reject at_zero[I__N] = {CM_REJ_NO_OCCURRED_AT, CM_OK,
                                                 CM_REJ_NO_VALID_FROM,  CM_REJ_NO_VALID_UNTIL,
                                                 CM_REJ_NO_VALID_UNTIL, CM_OK};
    long invalid = 0, n = 0;
    for (int f = 0; f < I__N; f++)
        for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
            int64_t v = vals[k];
            enum cm_reject want = v == 0              ? at_zero[f]
                                  : v < 0 || v > TMAX ? CM_REJ_OUT_OF_RANGE
                                                      : CM_OK;
            char mid[32];
            snprintf(mid, sizeof mid, "m%d-%zu", f, k);
            struct tev e = with_instant((enum ifield)f, v, mid);
            int rc = feed_tev(&e);
            ck_assert_msg(rc == (int)want, "field %d = %" PRId64 ": %s, want %s", f, v,
                          cm_reject_name(rc), cm_reject_name(want));
            invalid += rc != CM_OK;
            n++;
        }
    ck_assert_int_eq(n, 48);
    ck_assert_int_eq(invalid, 4 * 6 + 4); /* four out of range per field, four absent */
    ck_assert_int_eq(dq_now("invalid"), invalid);
}
END_TEST

/* Strings of every kind of malformation, and well-formed neighbours. */
static const struct {
    const char *s;
    int ok;
} UTF8_CASES[] = {
    {"\x80", 0},                 /* a continuation byte alone */
    {"a\xbf" "b", 0},
    {"\xc0\x80", 0},             /* overlong U+0000 */
    {"\xc1\xbf", 0},             /* overlong U+007F */
    {"\xe0\x80\x80", 0},         /* overlong 3-byte forms */
    {"\xe0\x9f\xbf", 0},
    {"\xf0\x80\x80\x80", 0},     /* overlong 4-byte forms */
    {"\xf0\x8f\xbf\xbf", 0},
    {"\xed\xa0\x80", 0},         /* U+D800 */
    {"\xed\xbf\xbf", 0},         /* U+DFFF */
    {"\xed\xa0\xbd\xed\xb8\x80", 0}, /* a CESU-8 surrogate pair */
    {"\xf4\x90\x80\x80", 0},     /* U+110000 */
    {"\xf5\x80\x80\x80", 0},
    {"\xf8\x88\x80\x80\x80", 0}, /* 5-byte form */
    {"\xfe", 0},
    {"\xff", 0},
    {"\xc3", 0},                 /* cut sequences: at the end */
    {"\xe2\x82", 0},
    {"\xf0\x9f\x98", 0},
    {"\xc3" "A", 0},             /* and before an ASCII byte */
    {"\xe2\x82" "A", 0},
    {"\xf0\x9f\x98" "AAAAAAAA", 0},
    {"abcdefgh\xe9", 0},         /* Latin-1, after an ASCII word */
    {"\xc3\xa9", 1},             /* U+00E9 */
    {"\xc2\x80", 1},             /* U+0080, the least 2-byte */
    {"\xdf\xbf", 1},             /* U+07FF */
    {"\xe0\xa0\x80", 1},         /* U+0800 */
    {"\xe2\x82\xac", 1},         /* U+20AC */
    {"\xed\x9f\xbf", 1},         /* U+D7FF */
    {"\xee\x80\x80", 1},         /* U+E000 */
    {"\xef\xbf\xbf", 1},         /* U+FFFF: a noncharacter, well-formed */
    {"\xf0\x90\x80\x80", 1},     /* U+10000 */
    {"\xf0\x9f\x98\x80", 1},     /* U+1F600 */
    {"\xf4\x8f\xbf\xbf", 1},     /* U+10FFFF */
    {"abcdefgh\xc3\xa9" "abcdefgh\xf0\x9f\x98\x80", 1},
    {"\x7f", 1},
};
#define N_UTF8 (sizeof UTF8_CASES / sizeof UTF8_CASES[0])

/* String fields of the events, one at a time. */
enum sfield { S_EVENT_ID, S_MIGRANT_ID, S_SOURCE, S_ENTRY_MS, S_EXIT_BP, S_PERMIT_ID, S_SCHEME,
              S_NAT, S_GRANT_MS, S_SECTOR, S_EXT_PERMIT, S_REV_PERMIT, S_REASON, S_DETAIL, S__N };

static struct tev with_string(enum sfield f, const char *v, int k)
{
    char mid[32], eid[32];
    snprintf(mid, sizeof mid, "m%d-%d", (int)f, k);
    snprintf(eid, sizeof eid, "e%d-%d", (int)f, k);
    struct tev e;
    switch (f) {
    case S_ENTRY_MS:
        e = ev_entry(eid, mid, T(B0));
        snprintf(e.ms, TS, "%s", v);
        break;
    case S_EXIT_BP:
        e = ev_exit(eid, mid, T(B0));
        snprintf(e.bp, TS, "%s", v);
        break;
    case S_PERMIT_ID:
    case S_SCHEME:
    case S_NAT:
    case S_GRANT_MS:
    case S_SECTOR:
        e = ev_grant(eid, mid, T(B0), f == S_PERMIT_ID ? v : "p", f == S_SCHEME ? v : "A",
                     f == S_NAT ? v : "UKR", T(B0), T(B0 + 10));
        if (f == S_GRANT_MS)
            snprintf(e.ms, TS, "%s", v);
        if (f == S_SECTOR)
            snprintf(e.sector, TS, "%s", v);
        break;
    case S_EXT_PERMIT:
        e = ev_extend(eid, mid, T(B0), v, T(B0 + 20));
        break;
    case S_REV_PERMIT:
    case S_REASON:
        e = ev_revoke(eid, mid, T(B0), f == S_REV_PERMIT ? v : "p", 0);
        if (f == S_REASON)
            snprintf(e.reason, TS, "%s", v);
        break;
    case S_DETAIL:
        e = ev_status(eid, mid, T(B0), 2);
        snprintf(e.detail, TS, "%s", v);
        break;
    default:
        e = ev_entry(f == S_EVENT_ID ? v : eid, f == S_MIGRANT_ID ? v : mid, T(B0));
        if (f == S_SOURCE)
            snprintf(e.source, TS, "%s", v);
        break;
    }
    return e;
}

START_TEST(test_utf8_every_string)
{
    /* every malformation class in every string field: invalid_utf8; the
     * well-formed neighbours (2-, 3- and 4-byte characters) pass */
    long invalid = 0;
    for (int f = 0; f < S__N; f++)
        for (size_t k = 0; k < N_UTF8; k++) {
            struct tev e = with_string((enum sfield)f, UTF8_CASES[k].s, (int)k);
            int rc = feed_tev(&e);
            int want = UTF8_CASES[k].ok ? CM_OK : CM_REJ_INVALID_UTF8;
            ck_assert_msg(rc == want, "field %d, case %zu: %s, want %s", f, k,
                          cm_reject_name(rc), cm_reject_name(want));
            ck_assert_int_eq(cm_utf8_valid(UTF8_CASES[k].s, strlen(UTF8_CASES[k].s)),
                             UTF8_CASES[k].ok);
            invalid += rc != CM_OK;
        }
    ck_assert_int_eq(dq_now("invalid"), invalid);
    ck_assert_int_eq(invalid, 23 * S__N);
    ck_assert_int_eq(cm_utf8_valid("", 0), 1);

    /* 4-byte characters in a scheme id and a nationality are kept byte for
     * byte as JSON keys */
    const char *scheme = "S\xf0\x9f\x8c\xbe" "\xc3\xa9t\xc3\xa9", *nat = "\xe2\x82\xac\xf4\x8f\xbf\xbf";
    FEED(F, ev_grant(NULL, "m1", T(B0), "P", scheme, nat, T(B0), T(B0 + 5)));
    FEED(F, ev_entry(NULL, "m1", T(B0 + 1)));
    json_t *d = doc_at(F, T(B0 + 10));
    char group[64];
    snprintf(group, sizeof group, "nat:%s", nat);
    ck_assert_int_eq(get(d, scheme, group, "expected_departures"), 1);
    ck_assert_int_eq(get(d, scheme, group, "in_country_overstays"), 1);
    char *txt = json_dumps(d, JSON_SORT_KEYS);
    ck_assert_ptr_nonnull(txt);
    ck_assert_ptr_nonnull(strstr(txt, scheme));
    free(txt);
    json_decref(d);
}
END_TEST


START_TEST(test_length_limit_in_bytes)
{
    /* 256 bytes, counted in bytes: multi-byte characters at the edge */
    static const struct {
        size_t ascii;
        const char *tail;
        int want;
    } cases[] = {
        {254, "\xc3\xa9", CM_OK},                       /* 256 */
        {255, "\xc3\xa9", CM_REJ_STRING_TOO_LONG},      /* 257 */
        {253, "\xe2\x82\xac", CM_OK},                   /* 256 */
        {254, "\xe2\x82\xac", CM_REJ_STRING_TOO_LONG},
        {252, "\xf0\x9f\x98\x80", CM_OK},               /* 256 */
        {253, "\xf0\x9f\x98\x80", CM_REJ_STRING_TOO_LONG},
        {255, "\xc3", CM_REJ_INVALID_UTF8},             /* 256, the last one cut */
        {253, "\xf0\x9f\x98", CM_REJ_INVALID_UTF8},
        {256, "\xc3", CM_REJ_STRING_TOO_LONG},          /* both: too long wins */
        {0, NULL, CM_OK},                               /* 64 4-byte characters */
        {0, "", CM_REJ_STRING_TOO_LONG},                /* 65 of them */
    };
    long invalid = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char v[TS] = "";
        size_t n = 0;
        if (cases[k].tail) {
            memset(v, 'a', cases[k].ascii);
            n = cases[k].ascii;
            memcpy(v + n, cases[k].tail, strlen(cases[k].tail) + 1);
        }
        if (!cases[k].tail || !*cases[k].tail) {
            int chars = cases[k].tail ? 65 : 64;
            for (int c = 0; c < chars; c++)
                memcpy(v + 4 * c, "\xf0\x9f\x98\x80", 5);
        }
        for (int f = 0; f < S__N; f++) {
            struct tev e = with_string((enum sfield)f, v, (int)(k * 100 + (size_t)f));
            int rc = feed_tev(&e);
            ck_assert_msg(rc == cases[k].want, "case %zu (%zu bytes), field %d: %s", k,
                          strlen(v), f, cm_reject_name(rc));
            invalid += rc != CM_OK;
        }
    }
    ck_assert_int_eq(dq_now("invalid"), invalid);
}
END_TEST

/* Appends a varint field (tag, wire type 0). */
static size_t put_vi(uint8_t *w, size_t at, unsigned tag, uint64_t v)
{
    at = put_varint(w, at, tag << 3);
    return put_varint(w, at, v);
}

START_TEST(test_fault_order)
{
    /* several faults in one message: the order of event.h decides, whatever
     * the order of the fields on the wire */
    char big[300];
    uint8_t w[1024], body[512];
    memset(big, 'x', sizeof big);
    size_t n, bl;
    struct msg m;
#define EXPECT(want)                                                                           \
    do {                                                                                       \
        m.len = n;                                                                             \
        memcpy(m.buf, w, n);                                                                   \
        int rc_ = feed_agree(&m);                                                              \
        ck_assert_msg(rc_ == (want), "line %d: %s, want %s", __LINE__, cm_reject_name(rc_),   \
                      cm_reject_name(want));                                                   \
    } while (0)

    /* a NUL, then a string over 256 bytes: too long wins; and reversed */
    n = put_ld(w, 0, 1, "a\0b", 3);
    n = put_ld(w, n, 2, big, 299);
    n = put_vi(w, n, 3, (uint64_t)T(B0));
    n = put_ld(w, n, 10, "", 0);
    EXPECT(CM_REJ_STRING_TOO_LONG);
    n = put_ld(w, 0, 2, big, 299);
    n = put_ld(w, n, 1, "a\0b", 3);
    n = put_vi(w, n, 3, (uint64_t)T(B0));
    n = put_ld(w, n, 10, "", 0);
    EXPECT(CM_REJ_STRING_TOO_LONG);
    /* bad UTF-8, then a NUL: the NUL wins */
    n = put_ld(w, 0, 1, "\xff", 1);
    n = put_ld(w, n, 2, "m\0", 2);
    n = put_vi(w, n, 3, (uint64_t)T(B0));
    n = put_ld(w, n, 10, "", 0);
    EXPECT(CM_REJ_NUL_IN_STRING);
    /* a NUL and bad UTF-8 in one string: the NUL */
    n = put_ld(w, 0, 1, "\xff\0", 2);
    n = put_ld(w, n, 2, "m", 1);
    n = put_vi(w, n, 3, (uint64_t)T(B0));
    n = put_ld(w, n, 10, "", 0);
    EXPECT(CM_REJ_NUL_IN_STRING);
    /* an instant out of range first, bad UTF-8 later: invalid_utf8 */
    n = put_vi(w, 0, 3, (uint64_t)-1);
    n = put_ld(w, n, 1, "e", 1);
    n = put_ld(w, n, 2, "m\xc0\xaf", 3);
    n = put_ld(w, n, 10, "", 0);
    EXPECT(CM_REJ_INVALID_UTF8);
    /* occurred_at -1: out_of_range, not missing_occurred_at */
    n = put_ld(w, 0, 1, "e", 1);
    n = put_ld(w, n, 2, "m", 1);
    n = put_vi(w, n, 3, (uint64_t)-1);
    n = put_ld(w, n, 10, "", 0);
    EXPECT(CM_REJ_OUT_OF_RANGE);
    /* out of range and no event_id, no body: out_of_range */
    n = put_ld(w, 0, 2, "m", 1);
    n = put_vi(w, n, 4, (uint64_t)TMAX + 1); /* recorded_at */
    EXPECT(CM_REJ_OUT_OF_RANGE);
    /* a grant in the year 10000 that also ends before it starts */
    bl = put_ld(body, 0, 1, "p", 1);
    bl = put_ld(body, bl, 2, "A", 1);
    bl = put_vi(body, bl, 4, (uint64_t)TMAX + 86400);
    bl = put_vi(body, bl, 5, (uint64_t)TMAX + 1);
    n = put_ld(w, 0, 1, "e", 1);
    n = put_ld(w, n, 2, "m", 1);
    n = put_vi(w, n, 3, (uint64_t)T(B0));
    n = put_ld(w, n, 12, body, bl);
    EXPECT(CM_REJ_OUT_OF_RANGE);
    /* faults in a body that a later one replaces still count */
    n = put_ld(w, 0, 1, "e", 1);
    n = put_ld(w, n, 2, "m", 1);
    n = put_vi(w, n, 3, (uint64_t)T(B0));
    n = put_ld(w, n, 12, body, bl);
    n = put_ld(w, n, 10, "", 0);
    EXPECT(CM_REJ_OUT_OF_RANGE);
    bl = put_ld(body, 0, 2, "\xed\xa0\x80", 3); /* Entry.border_point U+D800 */
    n = put_ld(w, 0, 1, "e", 1);
    n = put_ld(w, n, 2, "m", 1);
    n = put_vi(w, n, 3, (uint64_t)T(B0));
    n = put_ld(w, n, 10, body, bl);
    n = put_ld(w, n, 11, "", 0);
    EXPECT(CM_REJ_INVALID_UTF8);
    /* an occurred_at out of range written first, then a valid one: the
     * field's last value is valid, but every instant on the wire counts */
    n = put_ld(w, 0, 1, "e", 1);
    n = put_ld(w, n, 2, "m", 1);
    n = put_vi(w, n, 3, (uint64_t)TMAX + 1);
    n = put_vi(w, n, 3, (uint64_t)T(B0));
    n = put_ld(w, n, 10, "", 0);
    EXPECT(CM_REJ_OUT_OF_RANGE);
    /* what does not decode is decode, whatever else is wrong */
    n = put_ld(w, 0, 1, "\xff", 1);
    n = put_vi(w, n, 3, (uint64_t)-1);
    w[n++] = 0x0f; /* wire type 7 */
    EXPECT(CM_REJ_DECODE);
    /* an unknown int64-looking field out of range is skipped */
    n = put_ld(w, 0, 1, "e", 1);
    n = put_ld(w, n, 2, "m", 1);
    n = put_vi(w, n, 3, (uint64_t)T(B0));
    n = put_vi(w, n, 6, (uint64_t)-1);
    n = put_ld(w, n, 10, "", 0);
    EXPECT(CM_OK);
#undef EXPECT
}
END_TEST


START_TEST(test_gen_faults_reach_every_reason)
{
    /* circmon-gen's stream: exactly the records it means to be invalid are
     * (none by accident, e.g. an instant out of range), and its faults
     * include the reasons of step 1, the new ones included */
    const char *top = getenv("CM_TOP");
    ck_assert_msg(top && *top, "CM_TOP is not set (the repository top)");
    char path[] = "/tmp/check_input_gen.XXXXXX", cmd[8192];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    char gen[4096];
    cm_bin_path(gen, sizeof gen, "circmon-gen");
    snprintf(cmd, sizeof cmd, "'%s' --seed 11 --migrants 6000 --out '%s' 2>'%s.err'", gen, path,
             path);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s.err", path);
    FILE *ef = fopen(cmd, "r");
    ck_assert_ptr_nonnull(ef);
    char line[1024] = "";
    ck_assert_ptr_nonnull(fgets(line, sizeof line, ef));
    fclose(ef);
    unlink(cmd);
    unsigned long undecodable = 0, invalid = 0;
    const char *u = strstr(line, " undecodable, ");
    ck_assert_msg(u != NULL, "summary: %s", line);
    while (u > line && u[-1] >= '0' && u[-1] <= '9')
        u--;
    ck_assert_int_eq(sscanf(u, "%lu undecodable, %lu invalid", &undecodable, &invalid), 2);

    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    struct cm_decoder *d = cm_decoder_new();
    ck_assert_ptr_nonnull(d);
    unsigned long by[CM_REJ__COUNT] = {0}, records = 0;
    const uint8_t *buf;
    size_t len;
    int rc;
    while ((rc = cm_frame_read(&r, &buf, &len)) == 1) {
        struct cm_event ev;
        by[cm_decode(d, buf, len, &ev)]++;
        records++;
    }
    ck_assert_int_eq(rc, 0);
    cm_frame_reader_free(&r);
    fclose(fp);
    unlink(path);
    cm_decoder_free(d);
    ck_assert_uint_eq(records - by[CM_OK], undecodable + invalid);
    ck_assert_uint_eq(by[CM_REJ_DECODE], undecodable);
    static const enum cm_reject must[] = {
        CM_REJ_NO_EVENT_ID,   CM_REJ_NO_MIGRANT_ID,   CM_REJ_NO_BODY,
        CM_REJ_NO_OCCURRED_AT, CM_REJ_STRING_TOO_LONG, CM_REJ_NO_SCHEME_ID,
        CM_REJ_VALIDITY_ORDER, CM_REJ_NO_PERMIT_ID,    CM_REJ_INVALID_UTF8,
        CM_REJ_OUT_OF_RANGE};
    for (size_t k = 0; k < sizeof must / sizeof must[0]; k++)
        ck_assert_msg(by[must[k]] > 0, "no record of reason %s", cm_reject_name(must[k]));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("input");
    TCase *tc = tcase_create("input");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_empty_buffer);
    tcase_add_test(tc, test_random_bytes);
    tcase_add_test(tc, test_random_protobuf_like_bytes);
    tcase_add_test(tc, test_truncated_messages);
    tcase_add_test(tc, test_bit_flips);
    tcase_add_test(tc, test_wrong_wire_type);
    tcase_add_test(tc, test_length_prefix_lies);
    tcase_add_test(tc, test_unknown_field_is_valid);
    tcase_add_test(tc, test_valid_after_garbage);
    tcase_add_test(tc, test_huge_strings);
    tcase_add_test(tc, test_strings_with_nul);
    tcase_add_test(tc, test_table_aligns_non_ascii_schemes);
    tcase_add_test(tc, test_invalid_input_creates_no_migrant);
    tcase_add_test(tc, test_invalid_reasons);
    tcase_add_test(tc, test_decoder_agrees_with_protobuf_c);
    tcase_add_test(tc, test_decoder_edge_cases);
    tcase_add_test(tc, test_reason_names_are_stable);
    tcase_add_test(tc, test_instant_boundaries);
    tcase_add_test(tc, test_utf8_every_string);
    tcase_add_test(tc, test_length_limit_in_bytes);
    tcase_add_test(tc, test_fault_order);
    tcase_add_test(tc, test_gen_faults_reach_every_reason);
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
