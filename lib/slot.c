/* slot.c - Redis Cluster hash slots (CRC16-XMODEM of the hash tag) and node address lists. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "circmon/decimal.h"
#include "circmon/slot.h"

uint16_t cm_slot_crc16(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(b[i] << 8);
        for (int k = 0; k < 8; k++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int cm_slot_of(const void *key, size_t len)
{
    const char *k = key;
    const char *open = memchr(k, '{', len);
    if (open) {
        size_t from = (size_t)(open - k) + 1;
        const char *close = memchr(k + from, '}', len - from);
        if (close && close > k + from) /* "{}" hashes the whole key */
            return cm_slot_crc16(k + from, (size_t)(close - (k + from))) & (CM_SLOTS - 1);
    }
    return cm_slot_crc16(k, len) & (CM_SLOTS - 1);
}

static int perr(char *err, size_t errlen, const char *what, const char *item, size_t n)
{
    if (errlen)
        snprintf(err, errlen, "%s: \"%.*s\"", what, (int)(n > 200 ? 200 : n), item);
    return -EINVAL;
}

/* One "host:port" item of n bytes. */
static int parse_item(const char *it, size_t n, struct cm_node_addr *a, char *err, size_t errlen)
{
    const char *host = it, *colon;
    size_t hl;
    if (n && it[0] == '[') { /* [v6]:port */
        const char *rb = memchr(it, ']', n);
        if (!rb || (size_t)(rb - it) + 1 >= n || rb[1] != ':')
            return perr(err, errlen, "not host:port", it, n);
        host = it + 1;
        hl = (size_t)(rb - host);
        colon = rb + 1;
    } else {
        colon = NULL;
        for (size_t i = 0; i < n; i++)
            if (it[i] == ':')
                colon = it + i; /* the last one */
        if (!colon)
            return perr(err, errlen, "not host:port", it, n);
        hl = (size_t)(colon - it);
        if (memchr(it, ':', hl))
            return perr(err, errlen, "an IPv6 host must be in brackets", it, n);
    }
    if (hl == 0)
        return perr(err, errlen, "empty host", it, n);
    if (hl > CM_NODE_HOST_MAX)
        return perr(err, errlen, "host too long", it, n);
    for (size_t i = 0; i < hl; i++)
        if ((unsigned char)host[i] <= ' ' || host[i] == ',' || host[i] == 0x7f)
            return perr(err, errlen, "bad character in host", it, n);
    uint64_t port;
    const char *ps = colon + 1;
    if (cm_decimal_u64(ps, n - (size_t)(ps - it), 65535, &port) || port == 0)
        return perr(err, errlen, "port not in 1..65535", it, n);
    memcpy(a->host, host, hl);
    a->host[hl] = '\0';
    a->port = (int)port;
    return 0;
}

int cm_slot_nodes_parse(const char *s, struct cm_node_addr *out, size_t max, char *err,
                        size_t errlen)
{
    size_t n = 0;
    const char *p = s;
    if (errlen)
        err[0] = '\0';
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if (t == p)
            return perr(err, errlen, "empty item in the node list", s, strlen(s));
        if (n == max) {
            if (errlen)
                snprintf(err, errlen, "more than %zu nodes", max);
            return -EINVAL;
        }
        int r = parse_item(p, (size_t)(t - p), &out[n], err, errlen);
        if (r)
            return r;
        n++;
        if (!*e)
            break;
        p = e + 1;
    }
    return (int)n;
}
