/* fuzz_common.h - what the libFuzzer targets and their seed maker share: the
 * configuration they run under, record splitting, and contract checks.
 *
 * Header only: each target is its own program. A broken expectation is
 * reported with cmf_fail, which prints what was expected and aborts, so that
 * libFuzzer saves the input as a crash. */
#ifndef CM_FUZZ_COMMON_H
#define CM_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "circmon/config.h"
#include "circmon/framing.h"

/* The latest instant the contract admits: 9999-12-31T23:59:59Z. */
#define CMF_TIME_MAX 253402300799LL

/* The schemes of circmon-gen with their demo settings, a stay limit on every
 * other scheme, and grace days: every rule of the fold has a setting to
 * act on. */
static const char cmf_conf_text[] =
    "; the configuration of the fuzz targets (tests/fuzz/fuzz_common.h)\n"
    "[circmon]\n"
    "reorder_window_days = 30\n"
    "[scheme *]\n"
    "grace_days = 2\n"
    "stay_limit = 5/10\n"
    "[scheme SAWP-ES]\n"
    "grace_days = 7\n"
    "[scheme STUDY-DE]\n"
    "grace_days = 30\n"
    "[scheme SHORTSTAY]\n"
    "stay_limit = 90/180\n";

static inline void cmf_fail(const char *what)
{
    fprintf(stderr, "circmon fuzz: broken expectation: %s\n", what);
    abort();
}

/* Writes len bytes to a new private file; returns its path (malloc'd) or
 * NULL. The file is the caller's to unlink. */
static inline char *cmf_temp_file(const uint8_t *data, size_t len)
{
    const char *t = getenv("TMPDIR");
    size_t n = strlen(t && *t ? t : "/tmp") + 32;
    char *path = malloc(n);
    if (!path)
        return NULL;
    snprintf(path, n, "%s/cm-fuzz.XXXXXX", t && *t ? t : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        free(path);
        return NULL;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w <= 0) {
            close(fd);
            unlink(path);
            free(path);
            return NULL;
        }
        done += (size_t)w;
    }
    close(fd);
    return path;
}

/* Loads cmf_conf_text into cfg; exits on failure (a broken fixture). */
static inline void cmf_load_conf(struct cm_config *cfg)
{
    char err[512];
    char *path = cmf_temp_file((const uint8_t *)cmf_conf_text, sizeof(cmf_conf_text) - 1);
    if (!path) {
        perror("circmon fuzz: temporary configuration");
        exit(1);
    }
    int rc = cm_config_load(cfg, path, err, sizeof(err));
    unlink(path);
    free(path);
    if (rc < 0) {
        fprintf(stderr, "circmon fuzz: configuration: %s\n", err);
        exit(1);
    }
}

/* The next varint-delimited record of [*p, end): returns 1 with *rec and
 * *len set, 0 at the end. A length running past the end takes what is left,
 * and a malformed length takes the rest: every byte of the input is fed. */
static inline int cmf_next_record(const uint8_t **p, const uint8_t *end, const uint8_t **rec,
                           size_t *len)
{
    size_t left = (size_t)(end - *p);
    if (left == 0)
        return 0;
    uint64_t v;
    size_t h = cm_varint_get(*p, left, 10, &v);
    if (h == 0) {
        *rec = *p;
        *len = left;
        *p = end;
        return 1;
    }
    *rec = *p + h;
    *len = v < left - h ? (size_t)v : left - h;
    *p = *rec + *len;
    return 1;
}

/* 1 when s[0, n) is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing past U+10FFFF) without U+0000. */
static inline int cmf_utf8_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        unsigned c = *p++;
        if (c == 0)
            return 0;
        if (c < 0x80)
            continue;
        unsigned need, min, cp;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1, min = 0x80, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2, min = 0x800, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return 0;
        }
        if ((size_t)(e - p) < need)
            return 0;
        for (unsigned i = 0; i < need; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        p += need;
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
    }
    return 1;
}

#endif
