/* check_man.c - the manual pages agree with the programs: every config key, option, command and MESSAGE_ID.
 *
 * The config keys are read from the parser's source (lib/config*.c: each
 * key is matched as strcmp(key, "NAME") and each section in the table of
 * fixed sections), the options from each program's --help (circmond,
 * circmonctl and each command its --help lists), the MESSAGE_IDs from
 * lib/log.c's cm_log_id_str. Each must appear in the page (as a word; an
 * option as roff's \-\-name) and in README.md. man(1) must render every
 * page without a warning, and `make install` must install them. */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/log.h"
#include "cm_bin.h"

static const char *top(void)
{
    const char *t = getenv("CM_TOP");
    return t && *t ? t : ".";
}

/* The whole file (NUL-terminated), or NULL. */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n - 1, fp);
        n += r;
        if (r == 0)
            break;
        if (n == cap - 1) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    fclose(fp);
    if (b)
        b[n] = '\0';
    return b;
}

/* The output of a shell command (NUL-terminated); its stderr is folded in when both. */
static char *run(const char *cmd)
{
    FILE *fp = popen(cmd, "r");
    ck_assert_msg(fp != NULL, "cannot run %s", cmd);
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    ck_assert_ptr_nonnull(b);
    size_t r;
    while ((r = fread(b + n, 1, cap - n - 1, fp)) > 0) {
        n += r;
        if (n == cap - 1) {
            b = realloc(b, cap *= 2);
            ck_assert_ptr_nonnull(b);
        }
    }
    b[n] = '\0';
    pclose(fp);
    return b;
}

static char *page(const char *name)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/man/%s", top(), name);
    char *s = slurp(p);
    ck_assert_msg(s != NULL, "no manual page %s", p);
    return s;
}

static int word_char(int c)
{
    return isalnum(c) || c == '_' || c == '.';
}

/* word appears in text, not inside a longer word. */
static int has_word(const char *text, const char *word)
{
    size_t l = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word)) {
        int before = p > text && word_char((unsigned char)p[-1]) && p[-1] != '.';
        int after = word_char((unsigned char)p[l]) && !(p[l] == '.' && !word_char((unsigned char)p[l + 1]));
        if (!before && !after)
            return 1;
    }
    return 0;
}

/* Every `strcmp(key, "NAME")`, `strncmp(key, "NAME"` and `{"NAME", SEC_` of lib/config*.c. */
static int config_names(char names[][64], int max)
{
    int n = 0;
    char *list = run("ls \"$CM_TOP\"/lib/config*.c 2>/dev/null || ls lib/config*.c");
    for (char *f = strtok(list, "\n"); f; f = strtok(NULL, "\n")) {
        char *src = slurp(f);
        ck_assert_msg(src != NULL, "cannot read %s", f);
        const char *pats[] = {"strcmp(key, \"", "strncmp(key, \"", "{\""};
        for (size_t k = 0; k < 3; k++)
            for (char *p = strstr(src, pats[k]); p; p = strstr(p + 1, pats[k])) {
                char *s = p + strlen(pats[k]), *e = strchr(s, '"');
                if (!e || e - s >= 63 || e == s)
                    continue;
                if (k == 2 && strncmp(e, "\", SEC_", 7))
                    continue;
                ck_assert_int_lt(n, max);
                memcpy(names[n], s, (size_t)(e - s));
                names[n][e - s] = '\0';
                if (k == 1 && names[n][strlen(names[n]) - 1] == '.')
                    names[n][strlen(names[n]) - 1] = '\0'; /* rdkafka. */
                n++;
            }
        free(src);
    }
    free(list);
    return n;
}

START_TEST(test_config_keys)
{
    static char names[512][64];
    int n = config_names(names, 512);
    ck_assert_int_gt(n, 25); /* the parser was found */
    char *man = page("circmond.conf.5");
    char rp[600];
    snprintf(rp, sizeof(rp), "%s/README.md", top());
    char *readme = slurp(rp);
    ck_assert_ptr_nonnull(readme);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(has_word(man, names[i]), "key or section \"%s\" missing from circmond.conf(5)",
                      names[i]);
        ck_assert_msg(has_word(readme, names[i]), "key or section \"%s\" missing from README.md",
                      names[i]);
    }
    free(man);
    free(readme);
}
END_TEST

/* Every --option in the help text must be in the page as \-\-option. */
static void options_in(const char *help, const char *man, const char *what)
{
    for (const char *p = strstr(help, "--"); p; p = strstr(p + 2, "--")) {
        char opt[64], roff[160];
        size_t l = 0;
        const char *s = p + 2;
        while (l < sizeof(opt) - 1 && (isalnum((unsigned char)s[l]) || s[l] == '-'))
            opt[l] = s[l], l++;
        opt[l] = '\0';
        if (!l)
            continue;
        size_t k = 0;
        k += (size_t)snprintf(roff, sizeof(roff), "\\-\\-");
        for (size_t i = 0; i < l && k < sizeof(roff) - 3; i++) {
            if (opt[i] == '-')
                roff[k++] = '\\';
            roff[k++] = opt[i];
        }
        roff[k] = '\0';
        ck_assert_msg(strstr(man, roff) != NULL, "%s: option --%s missing from its page", what,
                      opt);
    }
}

START_TEST(test_options)
{
    char cmd[800];
    char *man = page("circmond.8");
    snprintf(cmd, sizeof(cmd), "'%s/circmond' --help", cm_bin_dir());
    char *help = run(cmd);
    ck_assert_ptr_nonnull(strstr(help, "--config"));
    options_in(help, man, "circmond");
    free(help);
    free(man);

    man = page("circmonctl.1");
    snprintf(cmd, sizeof(cmd), "'%s/circmonctl' --help", cm_bin_dir());
    help = run(cmd);
    options_in(help, man, "circmonctl");
    char *cmds = strstr(help, "commands:");
    ck_assert_ptr_nonnull(cmds);
    int ncmd = 0;
    for (char *line = strtok(cmds + 9, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        if (line[0] != ' ' || sscanf(line, " %63s", name) != 1)
            break;
        char b[80];
        snprintf(b, sizeof(b), ".B circmonctl %s", name);
        ck_assert_msg(strstr(man, b) != NULL, "command %s missing from circmonctl(1)", name);
        snprintf(cmd, sizeof(cmd), "'%s/circmonctl' %s --help 2>&1", cm_bin_dir(), name);
        char *sub = run(cmd);
        ck_assert_ptr_nonnull(strstr(sub, "usage:"));
        options_in(sub, man, name);
        free(sub);
        ncmd++;
    }
    ck_assert_int_ge(ncmd, 4);
    free(help);
    free(man);
}
END_TEST

START_TEST(test_message_ids)
{
    char *man = page("circmond.8");
    char rp[600];
    snprintf(rp, sizeof(rp), "%s/README.md", top());
    char *readme = slurp(rp);
    ck_assert_ptr_nonnull(readme);
    for (int i = 1; i < CM_LOGID_COUNT; i++) {
        const char *id = cm_log_id_str((enum cm_log_id)i);
        ck_assert_ptr_nonnull(id);
        ck_assert_msg(strstr(man, id) != NULL, "MESSAGE_ID %s missing from circmond(8)", id);
        ck_assert_msg(strstr(readme, id) != NULL, "MESSAGE_ID %s missing from README.md", id);
    }
    free(man);
    free(readme);
}
END_TEST

START_TEST(test_render_and_install)
{
    const char *pages[] = {"circmond.8", "circmonctl.1", "circmond.conf.5"};
    char cmd[4096];
    for (size_t i = 0; i < 3; i++) {
        snprintf(cmd, sizeof(cmd),
                 "MANWIDTH=80 man --warnings -l '%s/man/%s' 2>&1 >/dev/null; echo rc=$?", top(),
                 pages[i]);
        char *out = run(cmd);
        ck_assert_msg(!strcmp(out, "rc=0\n"), "man %s: %s", pages[i], out);
        free(out);
    }
    const char *t = getenv("TMPDIR");
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/check_man.XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd),
             "env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s -C '%s' install DESTDIR='%s' "
             ">/dev/null 2>&1 && ls '%s/usr/local/share/man/man8/circmond.8' "
             "'%s/usr/local/share/man/man1/circmonctl.1' "
             "'%s/usr/local/share/man/man5/circmond.conf.5' >/dev/null 2>&1; echo rc=$?",
             top(), dir, dir, dir, dir);
    char *out = run(cmd);
    ck_assert_msg(!strcmp(out, "rc=0\n"), "make install did not install the pages");
    free(out);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("man");
    TCase *tc = tcase_create("pages");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_config_keys);
    tcase_add_test(tc, test_options);
    tcase_add_test(tc, test_message_ids);
    tcase_add_test(tc, test_render_and_install);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
