/* check_pool.c - the pool of migrant states: blocks keep their bytes, and in
 * the ASan build the sanitizer checks the real pool (a touch of a released
 * block or of the tail of a block inside a chunk is reported). */
#define _DEFAULT_SOURCE /* for sys/resource.h's RLIMIT_CORE under strict C11 */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "circmon/pool.h"

#if defined(__SANITIZE_ADDRESS__)
#define CMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CMT_ASAN 1
#endif
#endif

#ifdef CMT_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#define CHUNK ((size_t)2 << 20)

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 131 + i * 7);
}

static int same(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed * 131 + i * 7))
            return 0;
    return 1;
}

/* Blocks of every class and beyond keep their bytes through resizes, do not
 * overlap, and come from chunks (also in the ASan build: the pool is the
 * real one there too). */
START_TEST(pool_blocks_keep_bytes)
{
    enum { N = 600 };
    static unsigned char *b[N];
    static size_t sz[N];
    struct cm_pool *pl = cm_pool_new();
    ck_assert_ptr_nonnull(pl);
    for (unsigned i = 0; i < N; i++) {
        sz[i] = 1 + (i * 37) % 5000; /* classes up to 4096, then malloc's */
        b[i] = cm_pool_alloc(pl, sz[i]);
        ck_assert_ptr_nonnull(b[i]);
        ck_assert_uint_eq((uintptr_t)b[i] % 16, 0);
        fill(b[i], sz[i], i);
    }
    ck_assert_uint_ge(cm_pool_footprint(pl), CHUNK);
    ck_assert_uint_eq(cm_pool_footprint(pl) % CHUNK, 0);
    for (unsigned i = 0; i < N; i++)
        ck_assert_msg(same(b[i], sz[i], i), "block %u (%zu bytes) was overwritten", i, sz[i]);
    /* every other block resized: grown, shrunk, within its class or not */
    for (unsigned i = 0; i < N; i += 2) {
        size_t n = i % 4 ? sz[i] / 2 + 1 : sz[i] * 2 + 3;
        unsigned char *q = cm_pool_realloc(pl, b[i], sz[i], n);
        ck_assert_ptr_nonnull(q);
        size_t keep = n < sz[i] ? n : sz[i];
        ck_assert_msg(same(q, keep, i), "block %u lost its bytes in a resize", i);
        b[i] = q;
        sz[i] = n;
        fill(b[i], sz[i], i + 1000);
    }
    for (unsigned i = 0; i < N; i++)
        ck_assert_msg(same(b[i], sz[i], i % 2 ? i : i + 1000), "block %u overwritten", i);
    /* released blocks are reused: half released, as many allocated again */
    for (unsigned i = 1; i < N; i += 2)
        cm_pool_release(pl, b[i], sz[i]);
    size_t before = cm_pool_footprint(pl);
    for (unsigned i = 1; i < N; i += 2) {
        b[i] = cm_pool_alloc(pl, sz[i]);
        ck_assert_ptr_nonnull(b[i]);
        fill(b[i], sz[i], i + 2000);
    }
    ck_assert_uint_eq(cm_pool_footprint(pl), before);
    for (unsigned i = 0; i < N; i++)
        ck_assert(same(b[i], sz[i], i % 2 ? i + 2000 : i + 1000));
    for (unsigned i = 0; i < N; i++)
        cm_pool_release(pl, b[i], sz[i]);
    cm_pool_release(pl, NULL, 0);
    ck_assert_ptr_null(cm_pool_free(pl));
    ck_assert_ptr_null(cm_pool_free(NULL));
}
END_TEST

#ifdef CMT_ASAN
enum touch { T_RELEASED, T_TAIL, T_SHRUNK, T_REUSED };

/* Runs what in a child with its stderr in a pipe; returns the child's wait
 * status, the report in out (NUL-terminated). */
static int in_child(enum touch what, char *out, size_t cap)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core); /* abort_on_error=1 would dump one */
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        /* the report is wanted here, on the pipe: not in the log_path file
         * that make check-asan sets, where any report fails the suite */
        __sanitizer_set_report_path("stderr");
        struct cm_pool *pl = cm_pool_new();
        if (!pl)
            _exit(3);
        volatile unsigned char *keep = cm_pool_alloc(pl, 48); /* a neighbour stays live */
        unsigned char *p = cm_pool_alloc(pl, 40);
        if (!p || !keep)
            _exit(3);
        memset(p, 1, 40);
        keep[0] = 1;
        switch (what) {
        case T_RELEASED:
            cm_pool_release(pl, p, 40);
            ((volatile unsigned char *)p)[12] = 2; /* use after release */
            break;
        case T_TAIL:
            ((volatile unsigned char *)p)[41] = 2; /* class of 48 bytes, 40 asked for */
            break;
        case T_SHRUNK:
            p = cm_pool_realloc(pl, p, 40, 33); /* same class: stays in place */
            ((volatile unsigned char *)p)[36] = 2;
            break;
        case T_REUSED:
            cm_pool_release(pl, p, 40);
            p = cm_pool_alloc(pl, 40); /* the same block, addressable again */
            memset(p, 3, 40);
            cm_pool_release(pl, p, 40);
            break;
        }
        cm_pool_release(pl, (void *)keep, 48);
        cm_pool_free(pl);
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    char sink[4096];
    ssize_t r;
    for (;;) { /* to the end: a child blocked on a full pipe would never exit */
        if (got < cap - 1)
            r = read(fds[0], out + got, cap - 1 - got);
        else
            r = read(fds[0], sink, sizeof(sink));
        if (r <= 0)
            break;
        if (got < cap - 1)
            got += (size_t)r;
    }
    out[got] = '\0';
    close(fds[0]);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return st;
}

static void expect_caught(enum touch what, const char *name)
{
    static char out[1 << 16];
    int st = in_child(what, out, sizeof(out));
    ck_assert_msg(!(WIFEXITED(st) && WEXITSTATUS(st) == 0),
                  "%s: the child survived, ASan saw nothing", name);
    ck_assert_msg(!(WIFEXITED(st) && WEXITSTATUS(st) == 3), "%s: the pool had no memory", name);
    /* use-after-poison: the pool's own poisoning, not malloc's redzones */
    ck_assert_msg(strstr(out, "AddressSanitizer: use-after-poison") != NULL,
                  "%s: no use-after-poison report:\n%s", name, out);
}

START_TEST(pool_asan_catches_use_after_release)
{
    expect_caught(T_RELEASED, "released block");
}
END_TEST

START_TEST(pool_asan_catches_tail)
{
    expect_caught(T_TAIL, "past the bytes asked for");
}
END_TEST

START_TEST(pool_asan_catches_shrunk_tail)
{
    expect_caught(T_SHRUNK, "past a block shrunk in place");
}
END_TEST

START_TEST(pool_asan_reuse_is_clean)
{
    static char out[1 << 16];
    int st = in_child(T_REUSED, out, sizeof(out));
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a reused block was reported:\n%s", out);
}
END_TEST
#endif

static Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_add_test(tc, pool_blocks_keep_bytes);
#ifdef CMT_ASAN
    tcase_add_test(tc, pool_asan_catches_use_after_release);
    tcase_add_test(tc, pool_asan_catches_tail);
    tcase_add_test(tc, pool_asan_catches_shrunk_tail);
    tcase_add_test(tc, pool_asan_reuse_is_clean);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
