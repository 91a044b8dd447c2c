/* framing.c - varint-length-delimited records (protobuf writeDelimitedTo). */
#include "circmon/framing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CM_FRAME_MAX (16u << 20) /* longest record accepted, 16 MiB */
#define CM_VARINT_MAX 10         /* bytes in the longest uint64 varint */

size_t cm_varint_get(const uint8_t *p, size_t len, size_t max, uint64_t *v)
{
    size_t n = len < max ? len : max;
    uint64_t x = 0;
    for (size_t k = 0; k < n; k++) {
        if (k < 10) /* 7 * 9 = 63: the tenth byte's low bit is the last that fits */
            x |= (uint64_t)(p[k] & 0x7f) << (7 * k);
        if (!(p[k] & 0x80)) {
            *v = x;
            return k + 1;
        }
    }
    return 0;
}

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

#define CM_READ_BLOCK ((size_t)1 << 20) /* bytes asked of the stream at a time */

void cm_frame_reader_init(struct cm_frame_reader *r, FILE *fp)
{
    memset(r, 0, sizeof(*r));
    r->fp = fp;
    /* A pipe is read with read(2), which returns what the pipe holds, so
     * that records are handed on as they come; files go through stdio. */
    struct stat st;
    int fd = fileno(fp);
    r->fd = fd >= 0 && !fstat(fd, &st) && !S_ISREG(st.st_mode) ? fd : -1;
}

/* Reads more of the stream behind the unread bytes, with room for at least
 * need unread bytes in all. Earlier records move. Returns 0 or -errno. */
static int refill(struct cm_frame_reader *r, size_t need)
{
    if (r->head) {
        memmove(r->buf, r->buf + r->head, r->tail - r->head);
        r->tail -= r->head;
        r->head = 0;
    }
    if (need < CM_READ_BLOCK)
        need = CM_READ_BLOCK;
    if (r->cap < need) {
        uint8_t *nb = realloc(r->buf, need);
        if (!nb)
            return -ENOMEM;
        r->buf = nb;
        r->cap = need;
    }
    ssize_t got;
    if (r->fd < 0) {
        got = (ssize_t)fread(r->buf + r->tail, 1, r->cap - r->tail, r->fp);
        if (!got && ferror(r->fp))
            return -EIO;
    } else {
        while ((got = read(r->fd, r->buf + r->tail, r->cap - r->tail)) < 0 && errno == EINTR)
            ;
        if (got < 0)
            return -EIO;
    }
    if (!got)
        r->eof = 1;
    r->tail += (size_t)got;
    return 0;
}

/* The record at the unread bytes: 1 (taken), 0 (clean end), 2 (more bytes
 * needed: *need of them from the record's start), or -EPROTO. */
static int parse(struct cm_frame_reader *r, const uint8_t **data, size_t *len, size_t *need)
{
    size_t avail = r->tail - r->head;
    uint64_t v = 0;
    if (!avail)
        return r->eof ? 0 : (*need = 1, 2);
    const uint8_t *p = r->buf + r->head; /* buf is set: bytes are there */
    size_t n = cm_varint_get(p, avail, CM_VARINT_MAX, &v); /* the length */
    if (!n) /* unended: too long, or cut short by the bytes read so far */
        return r->eof || avail >= CM_VARINT_MAX ? -EPROTO : (*need = avail + 1, 2);
    if (v > CM_FRAME_MAX)
        return -EPROTO;
    if (avail - n < v)
        return r->eof ? -EPROTO : (*need = n + (size_t)v, 2);
    *data = p + n;
    *len = (size_t)v;
    r->head += n + (size_t)v;
    r->offset += n + v;
    return 1;
}

long cm_frame_read_many(struct cm_frame_reader *r, const uint8_t **data, size_t *len, size_t max)
{
    size_t k = 0;
    while (k < max && !r->err) {
        size_t need = 0;
        int rc = parse(r, &data[k], &len[k], &need);
        if (rc == 1) {
            k++;
        } else if (rc == 2) {
            if (k)
                break; /* a refill would move the records already handed out */
            if ((rc = refill(r, need)) < 0)
                r->err = rc;
        } else {
            r->err = rc ? rc : 1; /* 1: clean end */
        }
    }
    if (k)
        return (long)k;
    return r->err == 1 ? 0 : r->err;
}

int cm_frame_read(struct cm_frame_reader *r, const uint8_t **data, size_t *len)
{
    return (int)cm_frame_read_many(r, data, len, 1);
}

void cm_frame_reader_free(struct cm_frame_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->cap = r->head = r->tail = 0;
}
