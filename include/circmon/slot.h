/* slot.h - Redis Cluster hash slots: CRC16 of a key's hash tag, and host:port lists.
 *
 * Pure functions, no I/O. Written from the Redis Cluster specification
 * ("Keys distribution model"): slot = CRC16-XMODEM(tag) mod 16384, where tag
 * is the text between the first '{' and the first '}' after it when that
 * text is not empty, else the whole key. */
#ifndef CIRCMON_SLOT_H
#define CIRCMON_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define CM_SLOTS 16384          /* hash slots of a Redis Cluster */
#define CM_NODE_HOST_MAX 255    /* longest host name of a node */
#define CM_NODES_MAX 64         /* seed nodes in [redis] nodes */

/* CRC16 (CCITT, XMODEM variant: polynomial 0x1021, initial 0, no
 * reflection) of len bytes at p. This function can't fail. */
uint16_t cm_slot_crc16(const void *p, size_t len);

/* The hash slot (0..16383) of key (len bytes, may hold any byte). */
int cm_slot_of(const void *key, size_t len);

/* One node address. */
struct cm_node_addr {
    char host[CM_NODE_HOST_MAX + 1];
    int port; /* 1..65535 */
};

/* Parses "host:port[,host:port...]" (blanks around the commas allowed; an
 * IPv6 host is written in brackets, "[::1]:7000") into out[0..max-1]. Returns
 * the number of addresses (>= 1), or -EINVAL (a message naming the faulty
 * item in err, errlen bytes, always NUL-terminated) for an empty list, an
 * item without a port, a port outside 1..65535, a host longer than
 * CM_NODE_HOST_MAX or more than max items. */
int cm_slot_nodes_parse(const char *s, struct cm_node_addr *out, size_t max, char *err,
                        size_t errlen);

#endif
