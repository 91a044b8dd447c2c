/* cm_bin.h - where the suites find the programs they run, header only.
 * The plain run takes them from $CM_TOP/bin; the sanitized run (make
 * check-asan) sets CM_BIN to build/asan/bin, where the same programs are
 * built with ASan/UBSan, so that the daemon and the tools run sanitized too. */
#ifndef CM_BIN_H
#define CM_BIN_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#define CMB_UNUSED __attribute__((unused))

/* The directory of the programs: $CM_BIN when set and not empty, else
 * $CM_TOP/bin, else ./bin. The string lives until the process ends. */
static CMB_UNUSED const char *cm_bin_dir(void)
{
    static char d[1024];
    const char *b = getenv("CM_BIN");
    if (b && *b)
        return b;
    const char *t = getenv("CM_TOP");
    int n = snprintf(d, sizeof(d), "%s/bin", t && *t ? t : ".");
    ck_assert_msg(n > 0 && (size_t)n < sizeof(d), "CM_TOP is too long");
    return d;
}

/* Puts <cm_bin_dir()>/<prog> into buf (cap bytes); the test fails if it
 * does not fit. Returns buf. */
static CMB_UNUSED char *cm_bin_path(char *buf, size_t cap, const char *prog)
{
    int n = snprintf(buf, cap, "%s/%s", cm_bin_dir(), prog);
    ck_assert_msg(n > 0 && (size_t)n < cap, "the path of %s is too long", prog);
    return buf;
}

#endif
