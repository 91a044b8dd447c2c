/* framing.h - varint-length-delimited records (protobuf writeDelimitedTo). */
#ifndef CIRCMON_FRAMING_H
#define CIRCMON_FRAMING_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Reads a base-128 varint (low group first) of at most max bytes from the
 * len bytes at p; bits past 64 are dropped. Returns the bytes it takes, or 0
 * when none of the first min(len, max) bytes ends it. This function can't
 * fail otherwise. */
size_t cm_varint_get(const uint8_t *p, size_t len, size_t max, uint64_t *v);

/* Writes one record: its length as a base-128 varint, then its bytes.
 * Returns 0, or -EIO when fp reports an error. */
int cm_frame_write(FILE *fp, const uint8_t *buf, size_t len);

struct cm_frame_reader {
    FILE *fp;
    uint8_t *buf; /* owned: a block of the stream */
    size_t cap, head, tail; /* unread bytes: buf[head, tail) */
    int fd;       /* >= 0: a pipe or other stream read with read(2) */
    int eof;      /* the stream has no more bytes */
    int err;      /* once the stream stopped: 1 (clean end) or -errno */
    uint64_t offset; /* byte offset of the next record in the stream */
};

/* Initialises r to read fp (not owned). This function can't fail. When fp
 * is a pipe, the reader reads its file descriptor, to hand records on as
 * they come: read fp by no other means while r is in use. */
void cm_frame_reader_init(struct cm_frame_reader *r, FILE *fp);

/* Reads the next record. Returns 1 with data and len set (valid until the next
 * call), 0 at a clean end of stream, -EPROTO when the stream ends inside a
 * record or a length is malformed (r->offset then names the record's start),
 * -ENOMEM, or -EIO. Records over 16 MiB are -EPROTO. Once it has returned
 * anything but 1, it returns the same again. */
int cm_frame_read(struct cm_frame_reader *r, const uint8_t **data, size_t *len);

/* Reads up to max records (max > 0) without copying them: returns how many,
 * with data[i] and len[i] set, all valid until the next call on r. When the
 * stream stops after some records, those come first and the next call
 * returns what cm_frame_read would: 0 or a negative error. */
long cm_frame_read_many(struct cm_frame_reader *r, const uint8_t **data, size_t *len, size_t max);

/* Frees the reader's buffer. The FILE is left open. */
void cm_frame_reader_free(struct cm_frame_reader *r);

#endif
