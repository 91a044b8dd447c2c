/* framing.h - varint-length-delimited records (protobuf writeDelimitedTo). */
#ifndef CIRCMON_FRAMING_H
#define CIRCMON_FRAMING_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Writes one record: its length as a base-128 varint, then its bytes.
 * Returns 0, or -EIO when fp reports an error. */
int cm_frame_write(FILE *fp, const uint8_t *buf, size_t len);

struct cm_frame_reader {
    FILE *fp;
    uint8_t *buf; /* owned; holds the last record read */
    size_t cap;
    uint64_t offset; /* byte offset of the next record in the stream */
};

/* Initialises r to read fp (not owned). This function can't fail. */
void cm_frame_reader_init(struct cm_frame_reader *r, FILE *fp);

/* Reads the next record. Returns 1 with data and len set (valid until the next
 * call), 0 at a clean end of stream, -EPROTO when the stream ends inside a
 * record or a length is malformed (r->offset then names the record's start),
 * -ENOMEM, or -EIO. Records over 16 MiB are -EPROTO. */
int cm_frame_read(struct cm_frame_reader *r, const uint8_t **data, size_t *len);

/* Frees the reader's buffer. The FILE is left open. */
void cm_frame_reader_free(struct cm_frame_reader *r);

#endif
