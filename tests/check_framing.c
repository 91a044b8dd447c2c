/* check_framing.c - the record framing and the UTC day/month arithmetic. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "circmon/framing.h"
#include "circmon/timeutil.h"

/* --- framing ----------------------------------------------------------------- */

static size_t varint_len(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *pattern(size_t len, unsigned salt)
{
    uint8_t *b = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)(i * 31 + salt);
    return b;
}

static long file_size(FILE *fp)
{
    ck_assert_int_eq(fflush(fp), 0);
    ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    rewind(fp);
    return n;
}

START_TEST(frame_round_trip_edge_lengths)
{
    static const size_t lens[] = {0, 1, 127, 128, 300, 16383, 16384, 100000, 2097151, 2097152};
    const size_t n = sizeof lens / sizeof lens[0];
    FILE *fp = tmpfile();
    ck_assert_ptr_nonnull(fp);

    size_t expect = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *b = pattern(lens[i], (unsigned)i);
        ck_assert_int_eq(cm_frame_write(fp, b, lens[i]), 0);
        expect += varint_len(lens[i]) + lens[i];
        free(b);
    }
    ck_assert_int_eq(file_size(fp), (long)expect);

    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *data = NULL;
        size_t len = 12345;
        ck_assert_uint_eq(r.offset, off);
        ck_assert_int_eq(cm_frame_read(&r, &data, &len), 1);
        ck_assert_uint_eq(len, lens[i]);
        ck_assert_ptr_nonnull(data);
        uint8_t *b = pattern(lens[i], (unsigned)i);
        ck_assert(memcmp(data, b, len) == 0);
        free(b);
        off += varint_len(lens[i]) + lens[i];
        ck_assert_uint_eq(r.offset, off);
    }
    const uint8_t *data;
    size_t len;
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), 0);
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), 0); /* EOF stays EOF */
    ck_assert_uint_eq(r.offset, expect);
    cm_frame_reader_free(&r);
    fclose(fp);
}
END_TEST

/* The length prefix is exactly protobuf's base-128 varint. */
START_TEST(frame_varint_bytes)
{
    static const struct {
        size_t len;
        uint8_t hdr[4];
        size_t nhdr;
    } cases[] = {
        {0, {0x00}, 1},
        {127, {0x7f}, 1},
        {128, {0x80, 0x01}, 2},
        {300, {0xac, 0x02}, 2},
        {16383, {0xff, 0x7f}, 2},
        {16384, {0x80, 0x80, 0x01}, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *fp = tmpfile();
        ck_assert_ptr_nonnull(fp);
        uint8_t *b = pattern(cases[i].len, 7);
        ck_assert_int_eq(cm_frame_write(fp, b, cases[i].len), 0);
        free(b);
        ck_assert_int_eq(file_size(fp), (long)(cases[i].nhdr + cases[i].len));
        uint8_t hdr[4] = {0};
        ck_assert_uint_eq(fread(hdr, 1, cases[i].nhdr, fp), cases[i].nhdr);
        ck_assert(memcmp(hdr, cases[i].hdr, cases[i].nhdr) == 0);
        fclose(fp);
    }
}
END_TEST

START_TEST(frame_empty_stream_is_clean_eof)
{
    FILE *fp = tmpfile();
    ck_assert_ptr_nonnull(fp);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    const uint8_t *data;
    size_t len;
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), 0);
    ck_assert_uint_eq(r.offset, 0);
    cm_frame_reader_free(&r);
    cm_frame_reader_free(&r); /* harmless twice */
    fclose(fp);
}
END_TEST

/* Writes two records and keeps the first cut bytes of the stream. */
static FILE *two_records_cut(long cut, long *second_at)
{
    FILE *full = tmpfile();
    ck_assert_ptr_nonnull(full);
    uint8_t *a = pattern(10, 1), *b = pattern(200, 2);
    ck_assert_int_eq(cm_frame_write(full, a, 10), 0);
    *second_at = 11;
    ck_assert_int_eq(cm_frame_write(full, b, 200), 0);
    free(a);
    free(b);
    long n = file_size(full);
    ck_assert_int_eq(n, 11 + 2 + 200);
    uint8_t *all = malloc((size_t)n);
    ck_assert_ptr_nonnull(all);
    ck_assert_uint_eq(fread(all, 1, (size_t)n, full), (size_t)n);
    fclose(full);

    FILE *fp = tmpfile();
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(all, 1, (size_t)cut, fp), (size_t)cut);
    free(all);
    rewind(fp);
    return fp;
}

START_TEST(frame_truncated_inside_body)
{
    long second;
    FILE *fp = two_records_cut(11 + 2 + 150, &second);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    const uint8_t *data;
    size_t len;
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), 1);
    ck_assert_uint_eq(len, 10);
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), -EPROTO);
    ck_assert_uint_eq(r.offset, (uint64_t)second);
    cm_frame_reader_free(&r);
    fclose(fp);
}
END_TEST

START_TEST(frame_truncated_inside_length)
{
    long second;
    /* 200 is 0xc8 0x01: keep only its first byte. */
    FILE *fp = two_records_cut(11 + 1, &second);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    const uint8_t *data;
    size_t len;
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), 1);
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), -EPROTO);
    ck_assert_uint_eq(r.offset, (uint64_t)second);
    cm_frame_reader_free(&r);
    fclose(fp);
}
END_TEST

START_TEST(frame_truncated_right_after_length)
{
    long second;
    FILE *fp = two_records_cut(11 + 2, &second);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    const uint8_t *data;
    size_t len;
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), 1);
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), -EPROTO);
    ck_assert_uint_eq(r.offset, (uint64_t)second);
    cm_frame_reader_free(&r);
    fclose(fp);
}
END_TEST

static int read_raw(const uint8_t *bytes, size_t n, uint64_t *offset)
{
    FILE *fp = tmpfile();
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(bytes, 1, n, fp), n);
    rewind(fp);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    const uint8_t *data;
    size_t len;
    int rc = cm_frame_read(&r, &data, &len);
    *offset = r.offset;
    cm_frame_reader_free(&r);
    fclose(fp);
    return rc;
}

START_TEST(frame_malformed_lengths)
{
    uint64_t off;
    /* Eleven continuation bytes: longer than any uint64 varint. */
    uint8_t endless[11];
    memset(endless, 0xff, sizeof endless);
    ck_assert_int_eq(read_raw(endless, sizeof endless, &off), -EPROTO);
    ck_assert_uint_eq(off, 0);

    /* 16 MiB + 1 (0x1000001): over the limit, refused before reading. */
    const uint8_t big[] = {0x81, 0x80, 0x80, 0x08, 'x'};
    ck_assert_int_eq(read_raw(big, sizeof big, &off), -EPROTO);
    ck_assert_uint_eq(off, 0);

    /* A huge 10-byte length. */
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    ck_assert_int_eq(read_raw(huge, sizeof huge, &off), -EPROTO);
}
END_TEST

START_TEST(frame_16mib_is_accepted)
{
    const size_t n = 16u << 20;
    FILE *fp = tmpfile();
    ck_assert_ptr_nonnull(fp);
    uint8_t *b = pattern(n, 3);
    ck_assert_int_eq(cm_frame_write(fp, b, n), 0);
    rewind(fp);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    const uint8_t *data;
    size_t len;
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), 1);
    ck_assert_uint_eq(len, n);
    ck_assert(memcmp(data, b, n) == 0);
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), 0);
    ck_assert_uint_eq(r.offset, n + 4);
    free(b);
    cm_frame_reader_free(&r);
    fclose(fp);
}
END_TEST

START_TEST(frame_write_error_is_eio)
{
    FILE *fp = fopen("/dev/null", "r");
    ck_assert_ptr_nonnull(fp);
    const uint8_t b[3] = {1, 2, 3};
    ck_assert_int_eq(cm_frame_write(fp, b, sizeof b), -EIO);
    fclose(fp);
}
END_TEST

/* --- timeutil ------------------------------------------------------------------ */

START_TEST(frame_read_many_across_blocks)
{
    /* 3 MiB of records of many sizes, some longer than a block of the reader:
     * every record comes back whole and in order, in batches of any size */
    FILE *fp = tmpfile();
    ck_assert_ptr_nonnull(fp);
    size_t n = 0, total = 0;
    while (total < (3u << 20)) {
        size_t len = n % 97 == 5 ? (1u << 20) + n : n % 300;
        uint8_t *b = pattern(len, (unsigned)n);
        ck_assert_int_eq(cm_frame_write(fp, b, len), 0);
        free(b);
        total += len;
        n++;
    }
    ck_assert_int_gt(file_size(fp), 0);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    const uint8_t *data[7];
    size_t lens[7], got = 0, max = 1;
    long k;
    while ((k = cm_frame_read_many(&r, data, lens, max)) > 0) {
        ck_assert_int_le(k, (long)max);
        for (long i = 0; i < k; i++, got++) {
            size_t len = got % 97 == 5 ? (1u << 20) + got : got % 300;
            uint8_t *b = pattern(len, (unsigned)got);
            ck_assert_uint_eq(lens[i], len);
            ck_assert(!memcmp(data[i], b, len));
            free(b);
        }
        max = max % 7 + 1;
    }
    ck_assert_int_eq(k, 0);
    ck_assert_uint_eq(got, n);
    ck_assert_int_eq(cm_frame_read_many(&r, data, lens, 7), 0); /* the end stays the end */
    cm_frame_reader_free(&r);
    fclose(fp);
}
END_TEST

START_TEST(frame_read_many_records_before_an_error)
{
    /* two whole records, then one cut short: the two come first, then -EPROTO
     * with the offset of the third, and -EPROTO again */
    FILE *fp = tmpfile();
    ck_assert_ptr_nonnull(fp);
    uint8_t *b = pattern(40, 1);
    ck_assert_int_eq(cm_frame_write(fp, b, 40), 0);
    ck_assert_int_eq(cm_frame_write(fp, b, 30), 0);
    ck_assert_int_eq(fputc(40, fp), 40);
    ck_assert_uint_eq(fwrite(b, 1, 10, fp), 10);
    free(b);
    ck_assert_int_eq(file_size(fp), 41 + 31 + 11);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, fp);
    const uint8_t *data[8];
    size_t lens[8];
    ck_assert_int_eq(cm_frame_read_many(&r, data, lens, 8), 2);
    ck_assert_uint_eq(lens[0], 40);
    ck_assert_uint_eq(lens[1], 30);
    ck_assert_int_eq(cm_frame_read_many(&r, data, lens, 8), -EPROTO);
    ck_assert_uint_eq(r.offset, 72);
    ck_assert_int_eq(cm_frame_read(&r, data, lens), -EPROTO);
    cm_frame_reader_free(&r);
    fclose(fp);
}
END_TEST

START_TEST(frame_reader_hands_on_what_a_pipe_holds)
{
    /* a record in a pipe whose writer stays open comes out at once: the
     * reader does not wait for a block to fill (replay and publish of a
     * stream) */
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    FILE *w = fdopen(fds[1], "wb"), *rd = fdopen(fds[0], "rb");
    ck_assert(w && rd);
    uint8_t *b = pattern(100, 3);
    ck_assert_int_eq(cm_frame_write(w, b, 100), 0);
    ck_assert_int_eq(fflush(w), 0);
    struct cm_frame_reader r;
    cm_frame_reader_init(&r, rd);
    const uint8_t *data[4];
    size_t lens[4];
    ck_assert_int_eq(cm_frame_read_many(&r, data, lens, 4), 1);
    ck_assert_uint_eq(lens[0], 100);
    ck_assert(!memcmp(data[0], b, 100));
    /* the next one, then the end of the stream */
    ck_assert_int_eq(cm_frame_write(w, b, 50), 0);
    fclose(w);
    ck_assert_int_eq(cm_frame_read(&r, data, lens), 1);
    ck_assert_uint_eq(lens[0], 50);
    ck_assert_int_eq(cm_frame_read(&r, data, lens), 0);
    free(b);
    cm_frame_reader_free(&r);
    fclose(rd);
}
END_TEST

START_TEST(time_day_floors)
{
    ck_assert_int_eq(cm_day(0), 0);
    ck_assert_int_eq(cm_day(86399), 0);
    ck_assert_int_eq(cm_day(86400), 1);
    ck_assert_int_eq(cm_day(-1), -1);
    ck_assert_int_eq(cm_day(-86399), -1);
    ck_assert_int_eq(cm_day(-86400), -1);
    ck_assert_int_eq(cm_day(-86401), -2);
    ck_assert_int_eq(cm_day(1709164800), 19782); /* 2024-02-29T00:00:00Z */
    ck_assert_int_eq(cm_day(1709251199), 19782); /* 2024-02-29T23:59:59Z */
}
END_TEST

START_TEST(time_month_boundaries)
{
    ck_assert_int_eq(cm_month_of_day(0), 0);   /* 1970-01-01 */
    ck_assert_int_eq(cm_month_of_day(30), 0);  /* 1970-01-31 */
    ck_assert_int_eq(cm_month_of_day(31), 1);  /* 1970-02-01 */
    ck_assert_int_eq(cm_month_of_day(-1), -1); /* 1969-12-31 */
    ck_assert_int_eq(cm_month_of_day(-31), -1);  /* 1969-12-01 */
    ck_assert_int_eq(cm_month_of_day(-32), -2);  /* 1969-11-30 */
    ck_assert_int_eq(cm_month_of_day(19753), 648); /* 2024-01-31 */
    ck_assert_int_eq(cm_month_of_day(19754), 649); /* 2024-02-01 */
    ck_assert_int_eq(cm_month_of_day(19782), 649); /* 2024-02-29 */
    ck_assert_int_eq(cm_month_of_day(19783), 650); /* 2024-03-01 */
    ck_assert_int_eq(cm_month_of_day(19416), 637); /* 2023-02-28 */
    ck_assert_int_eq(cm_month_of_day(19417), 638); /* 2023-03-01 */
    ck_assert_int_eq(cm_month_of_day(11016), 361); /* 2000-02-29 */
    ck_assert_int_eq(cm_month_of_day(10956), 359); /* 1999-12-31 */
    ck_assert_int_eq(cm_month_of_day(10957), 360); /* 2000-01-01 */

    ck_assert_int_eq(cm_month_first_day(0), 0);
    ck_assert_int_eq(cm_month_first_day(1), 31);
    ck_assert_int_eq(cm_month_first_day(-1), -31);
    ck_assert_int_eq(cm_month_first_day(-12), -365);
    ck_assert_int_eq(cm_month_first_day(649), 19754);
    ck_assert_int_eq(cm_month_first_day(650), 19783);
    ck_assert_int_eq(cm_month_first_day(648), 19723);

    /* Every month's first day maps back to it, and the day before to the month before. */
    for (int32_t m = -1200; m <= 2400; m++) {
        int64_t d = cm_month_first_day(m);
        ck_assert_int_eq(cm_month_of_day(d), m);
        ck_assert_int_eq(cm_month_of_day(d - 1), m - 1);
        int64_t len = cm_month_first_day(m + 1) - d;
        ck_assert(len >= 28 && len <= 31);
    }
}
END_TEST

START_TEST(time_leap_years)
{
    /* Month lengths of February: 2024 leap, 2023 not, 2000 leap, 1900 and 2100 not. */
    ck_assert_int_eq(cm_month_first_day((2024 - 1970) * 12 + 2) - cm_month_first_day((2024 - 1970) * 12 + 1), 29);
    ck_assert_int_eq(cm_month_first_day((2023 - 1970) * 12 + 2) - cm_month_first_day((2023 - 1970) * 12 + 1), 28);
    ck_assert_int_eq(cm_month_first_day((2000 - 1970) * 12 + 2) - cm_month_first_day((2000 - 1970) * 12 + 1), 29);
    ck_assert_int_eq(cm_month_first_day((1900 - 1970) * 12 + 2) - cm_month_first_day((1900 - 1970) * 12 + 1), 28);
    ck_assert_int_eq(cm_month_first_day((2100 - 1970) * 12 + 2) - cm_month_first_day((2100 - 1970) * 12 + 1), 28);

    int64_t t;
    ck_assert_int_eq(cm_time_parse("2024-02-29", &t), 0);
    ck_assert_int_eq(t, 19782 * 86400LL);
    ck_assert_int_eq(cm_time_parse("2000-02-29", &t), 0);
    ck_assert_int_eq(cm_day(t), 11016);
    ck_assert_int_eq(cm_time_parse("2023-02-29", &t), -EINVAL);
    ck_assert_int_eq(cm_time_parse("1900-02-29", &t), -EINVAL);
    ck_assert_int_eq(cm_time_parse("2100-02-29", &t), -EINVAL);
}
END_TEST

START_TEST(time_month_str_and_parse)
{
    char buf[16];
    cm_month_str(0, buf);
    ck_assert_str_eq(buf, "1970-01");
    cm_month_str(-1, buf);
    ck_assert_str_eq(buf, "1969-12");
    cm_month_str(11, buf);
    ck_assert_str_eq(buf, "1970-12");
    cm_month_str(12, buf);
    ck_assert_str_eq(buf, "1971-01");
    cm_month_str(649, buf);
    ck_assert_str_eq(buf, "2024-02");
    cm_month_str(-12 * 70, buf);
    ck_assert_str_eq(buf, "1900-01");

    for (int32_t m = -12 * 70; m <= 12 * 100; m++) {
        int32_t back = -999999;
        cm_month_str(m, buf);
        ck_assert_int_eq(cm_month_parse(buf, &back), 0);
        ck_assert_int_eq(back, m);
    }

    static const char *const bad[] = {
        "", "2024", "2024-", "2024-1", "2024-001", "2024-00", "2024-13", "24-01",
        "2024/01", "2024-01-01", "2024-01x", " 2024-01", "2024-1a", "abcd-01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t m = 77;
        ck_assert_msg(cm_month_parse(bad[i], &m) == -EINVAL, "accepted '%s'", bad[i]);
    }
}
END_TEST

START_TEST(time_parse_accepts)
{
    static const struct {
        const char *s;
        int64_t t;
    } ok[] = {
        {"0", 0},
        {"1700000000", 1700000000},
        {"-86400", -86400},
        {"-1", -1},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
        {"1970-01-01", 0},
        {"1970-01-01Z", 0},
        {"1969-12-31", -86400},
        {"1969-12-31T23:59:59Z", -1},
        {"2024-02-29", 1709164800},
        {"2024-02-29T12:34", 1709164800 + 12 * 3600 + 34 * 60},
        {"2024-02-29T12:34Z", 1709164800 + 12 * 3600 + 34 * 60},
        {"2024-02-29T12:34:56", 1709164800 + 12 * 3600 + 34 * 60 + 56},
        {"2024-02-29T12:34:56Z", 1709164800 + 12 * 3600 + 34 * 60 + 56},
        {"2024-02-29T12:34:56+00:00", 1709164800 + 12 * 3600 + 34 * 60 + 56},
        {"2024-02-29T23:59:59+00:00", 1709251199},
        {"2025-01-01", 1735689600},
        {"2024-12-31T00:00", 1735603200},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t t = 42;
        ck_assert_msg(cm_time_parse(ok[i].s, &t) == 0, "refused '%s'", ok[i].s);
        ck_assert_msg(t == ok[i].t, "'%s' gave %lld, not %lld", ok[i].s, (long long)t,
                      (long long)ok[i].t);
    }
}
END_TEST

START_TEST(time_parse_rejects)
{
    static const char *const bad[] = {
        "", "-", "--1", "+5", "12a", "1.5", " 1", "1 ",
        "9223372036854775808", "-9223372036854775809", "99999999999999999999",
        "2023-02-30", "2023-04-31", "2023-13-01", "2023-00-10", "2023-01-00", "2023-01-32",
        "2023-1-01", "2023-01-1", "23-01-01", "2023/01/01", "20230101x",
        "2023-01-01T", "2023-01-01T12", "2023-01-01T1:00", "2023-01-01T12:0",
        "2023-01-01T24:00", "2023-01-01T12:60", "2023-01-01T12:00:60",
        "2023-01-01 12:00", "2023-01-01t12:00", "2023-01-01T12:00:00.5Z",
        "2023-01-01T12:00:00+01:00", "2023-01-01T12:00:00-00:00", "2023-01-01T12:00:00+00",
        "2023-01-01T12:00:00ZZ", "2023-01-01z", "2023-01-01T12:00:00Z ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t t = 42;
        ck_assert_msg(cm_time_parse(bad[i], &t) == -EINVAL, "accepted '%s'", bad[i]);
    }
}
END_TEST

static Suite *framing_suite(void)
{
    Suite *s = suite_create("framing");
    TCase *tc = tcase_create("framing");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, frame_round_trip_edge_lengths);
    tcase_add_test(tc, frame_varint_bytes);
    tcase_add_test(tc, frame_empty_stream_is_clean_eof);
    tcase_add_test(tc, frame_truncated_inside_body);
    tcase_add_test(tc, frame_truncated_inside_length);
    tcase_add_test(tc, frame_truncated_right_after_length);
    tcase_add_test(tc, frame_malformed_lengths);
    tcase_add_test(tc, frame_16mib_is_accepted);
    tcase_add_test(tc, frame_write_error_is_eio);
    tcase_add_test(tc, frame_read_many_across_blocks);
    tcase_add_test(tc, frame_read_many_records_before_an_error);
    tcase_add_test(tc, frame_reader_hands_on_what_a_pipe_holds);
    suite_add_tcase(s, tc);

    tc = tcase_create("timeutil");
    tcase_add_test(tc, time_day_floors);
    tcase_add_test(tc, time_month_boundaries);
    tcase_add_test(tc, time_leap_years);
    tcase_add_test(tc, time_month_str_and_parse);
    tcase_add_test(tc, time_parse_accepts);
    tcase_add_test(tc, time_parse_rejects);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(framing_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
