/* framing.c - varint-length-delimited records (protobuf writeDelimitedTo). */
#include "circmon/framing.h"

#include <errno.h>
#include <stdlib.h>

#define CM_FRAME_MAX (16u << 20) /* longest record accepted, 16 MiB */
#define CM_VARINT_MAX 10         /* bytes in the longest uint64 varint */

int cm_frame_write(FILE *fp, const uint8_t *buf, size_t len)
{
    uint8_t hdr[CM_VARINT_MAX];
    size_t n = 0;
    uint64_t v = len;

    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        hdr[n++] = v ? (uint8_t)(b | 0x80) : b;
    } while (v);
    if (fwrite(hdr, 1, n, fp) != n)
        return -EIO;
    if (len && fwrite(buf, 1, len, fp) != len)
        return -EIO;
    return 0;
}

void cm_frame_reader_init(struct cm_frame_reader *r, FILE *fp)
{
    r->fp = fp;
    r->buf = NULL;
    r->cap = 0;
    r->offset = 0;
}

int cm_frame_read(struct cm_frame_reader *r, const uint8_t **data, size_t *len)
{
    uint64_t v = 0;
    unsigned shift = 0;
    size_t nhdr = 0;

    /* The length: a base-128 varint, low group first. */
    for (;;) {
        int c = getc_unlocked(r->fp);
        if (c == EOF) {
            if (ferror(r->fp))
                return -EIO;
            return nhdr == 0 ? 0 : -EPROTO;
        }
        nhdr++;
        if (shift < 64)
            v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            break;
        shift += 7;
        if (nhdr == CM_VARINT_MAX)
            return -EPROTO;
    }
    if (v > CM_FRAME_MAX)
        return -EPROTO;

    /* One spare byte, so that an empty record still gets a non-NULL pointer. */
    if (r->cap < v + 1) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < v + 1)
            cap *= 2;
        uint8_t *nb = realloc(r->buf, cap);
        if (!nb)
            return -ENOMEM;
        r->buf = nb;
        r->cap = cap;
    }
    if (v && fread(r->buf, 1, (size_t)v, r->fp) != (size_t)v)
        return ferror(r->fp) ? -EIO : -EPROTO;

    r->offset += nhdr + v;
    *data = r->buf;
    *len = (size_t)v;
    return 1;
}

void cm_frame_reader_free(struct cm_frame_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
}
