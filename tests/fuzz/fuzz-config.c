/* SPDX-License-Identifier: MIT */
/* The option table behind the config file and the command line (config.c).
 *
 * Input: the text of a config file, then, after "\n%%\n", a command line,
 * one argument per line. The file is parsed with config_parse_text(); the
 * command line with config_parse_argv(), where --config always names a copy
 * of the file in a scratch directory (never a path from the input: that
 * could be a FIFO or /dev/stdin). Whatever parses is validated, compared
 * with the defaults (config_diff()), swapped back and forth
 * (config_swap_reloadable()), copied for authorization
 * (access_rules_copy()) and has its credentials resolved against a
 * credentials directory holding "server.crt" and "pass". Each "--name=value"
 * also goes through config_set_option() on its own. Checked besides memory safety: errors come
 * with a message (file errors naming the file and line), a double swap
 * restores both sides, and a config differs from itself in nothing. */

#include "config.h"
#include "fuzz-util.h"
#include "strv.h"

#define MAX_ARGS 64

static char *scratch, *conf_path, *creds_dir, *crt_path, *pass_path;

static void cleanup(void) {
        (void) unlink(conf_path);
        (void) unlink(crt_path);
        (void) unlink(pass_path);
        (void) rmdir(creds_dir);
        (void) rmdir(scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        scratch = fuzz_scratch_dir();
        CHECK(asprintf(&conf_path, "%s/tlsgate.conf", scratch) >= 0);
        CHECK(asprintf(&creds_dir, "%s/credentials", scratch) >= 0);
        CHECK(mkdir(creds_dir, 0700) == 0);
        CHECK(asprintf(&crt_path, "%s/server.crt", creds_dir) >= 0);
        CHECK(asprintf(&pass_path, "%s/pass", creds_dir) >= 0);
        fuzz_write_file(crt_path, "", 0);
        fuzz_write_file(pass_path, "secret\n", 7);
        atexit(cleanup);
        return 0;
}

static void check_error(int r, char *error, const char *prefix) {
        CHECK(r < 0);
        CHECK(r == -EINVAL || r == -ENOENT || r == -EFBIG || r == -ENOMEM);
        CHECK(error && *error);
        CHECK(!prefix || strncmp(error, prefix, strlen(prefix)) == 0);
        free(error);
}

static void exercise(Config *c) {
        Config defaults;
        AccessRules *access = NULL;
        char **diff[2] = {}, **again = NULL, *error = NULL;
        int r;

        r = config_validate(c, &error);
        if (r < 0)
                check_error(r, TAKE_PTR(error), NULL);
        else
                CHECK(!error);

        config_init(&defaults);
        for (int g = 0; g < 2; g++) {
                CHECK(config_diff(c, &defaults, g, &diff[g]) == 0);
                CHECK(config_diff(c, c, g, &again) == 0 && !again);
        }
        /* Once exchanges the reloadable values, which leaves the differences
         * as they were; twice restores both sides. */
        for (int swap = 0; swap < 2; swap++) {
                config_swap_reloadable(c, &defaults);
                for (int g = 0; g < 2; g++) {
                        CHECK(config_diff(c, &defaults, g, &again) == 0);
                        CHECK(strv_length(again) == strv_length(diff[g]));
                        for (size_t i = 0; i < strv_length(again); i++)
                                CHECK(strcmp(again[i], diff[g][i]) == 0);
                        strv_free(again), again = NULL;
                }
        }
        strv_free(diff[0]);
        strv_free(diff[1]);
        config_done(&defaults);

        CHECK(access_rules_copy(&c->access, &access) == 0);
        {
                /* The rules alone, every other setting zero: only the
                 * credentials may differ among the reloadable settings. */
                Config rules_only = { .access = *access };

                CHECK(config_diff(c, &rules_only, true, &again) == 0);
                for (size_t i = 0; i < strv_length(again); i++)
                        CHECK(strstr("cert key keystore storepass storepass-file cacert", again[i]));
                strv_free(again);
        }
        access_rules_free(access);

        (void) config_acme_directory(c);
        /* A --storepass-file is read from wherever it points: only a
         * credential name (no '/') is safe to follow, not /dev/stdin. */
        if (!c->storepass_file || !strchr(c->storepass_file, '/')) {
                r = config_resolve_credentials(c, creds_dir, &error);
                if (r < 0)
                        free(TAKE_PTR(error));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FuzzInput in = { data, size };
        char *text, *line, *argv[MAX_ARGS + 1] = {}, *error = NULL;
        size_t len, line_len, argc = 0;
        bool help = false;
        Config c;
        int r;

        text = fuzz_part(&in, &len);
        if (!text)
                return 0;

        /* The file. */
        config_init(&c);
        r = config_parse_text(&c, "fuzz.conf", text, len, &error);
        if (r < 0)
                check_error(r, TAKE_PTR(error), "fuzz.conf");
        else {
                CHECK(!error);
                exercise(&c);
        }
        config_done(&c);

        /* The command line, reading that file with --config. */
        line = fuzz_part(&in, &line_len);
        if (!line) {
                free(text);
                return 0;
        }
        fuzz_write_file(conf_path, text, len);
        for (char *p = line, *nl; p && argc < MAX_ARGS; p = nl ? nl + 1 : NULL) {
                nl = strchr(p, '\n');
                if (nl)
                        *nl = 0;
                if (strncmp(p, "--config=", 9) == 0)
                        CHECK(asprintf(&argv[argc], "--config=%s", conf_path) >= 0);
                else if (argc > 0 && strcmp(argv[argc - 1], "--config") == 0)
                        argv[argc] = strdup(conf_path);
                else
                        argv[argc] = strdup(p);
                CHECK(argv[argc]);
                if (strncmp(argv[argc], "--", 2) == 0 && strchr(argv[argc], '=')) {
                        char *name = strndup(argv[argc] + 2, strcspn(argv[argc] + 2, "="));

                        CHECK(name);
                        config_init(&c);
                        r = config_set_option(&c, name, strchr(argv[argc], '=') + 1, &error);
                        if (r < 0)
                                check_error(r, TAKE_PTR(error), NULL);
                        CHECK(!error);
                        config_done(&c);
                        free(name);
                }
                argc++;
        }
        /* A trailing "--config" takes no value from beyond the input. */
        if (argc > 0 && strcmp(argv[argc - 1], "--config") == 0)
                free(argv[--argc]), argv[argc] = NULL;

        config_init(&c);
        r = config_parse_argv(&c, (int) argc, argv, &help, &error);
        if (r < 0)
                check_error(r, TAKE_PTR(error), NULL);
        else if (!help) {
                CHECK(!error);
                exercise(&c);
        }
        config_done(&c);

        for (size_t i = 0; i < argc; i++)
                free(argv[i]);
        free(line);
        free(text);
        return 0;
}
