/* SPDX-License-Identifier: MIT */
/* certmagic storage (storage*.c) on whatever may be found on disk. The first
 * byte picks what the rest is (mod 4, so every input means something; the
 * seeds use the letters):
 *
 *   c  a certificate: parts .json, .crt, .key (separated by "\n%%\n"); a
 *      missing .crt or .key part means the fixed matching pair below, a
 *      part "<absent>" means no such file
 *   a  an ACME account: parts registration .json and .key, as above
 *   l  a lock file's content, then one byte for its age in seconds
 *   n  a name: safe_key(), the issuer key of it as a directory URL, and
 *      every storage path built from it
 *
 * The files are written into a scratch directory (tmpfs when there is one)
 * and loaded with the real loaders. Checked besides memory safety:
 *   - loaders return only the documented errors, with a message;
 *   - what loads saves, and saving is a fixed point: load -> save -> load
 *     -> save writes the same bytes and the same values (the files are
 *     Go's encoding/json output, byte for byte, so this catches escaping
 *     and layout slips in the Go emulation);
 *   - a lock is either taken (and then refreshed and released) or busy;
 *   - every path stays below the root, no component empty, "." or "..". */

#include <sys/stat.h>
#include <time.h>

#include "fuzz-util.h"
#include "storage.h"
#include "strv.h"

#define ISSUER "ca.test-14000-dir"
#define DOMAIN "test.example"
#define EMAIL "admin@example.org"

/* The certificate key and a self-signed certificate for test.example (as
 * in fuzz-acme.c), and the account key. */
static const char cert_pem[] =
        "-----BEGIN CERTIFICATE-----\n"
        "MIIBnzCCAUSgAwIBAgIUOkzLssBVIeT3YrkW/Byejm6YgC8wCgYIKoZIzj0EAwIw\n"
        "FzEVMBMGA1UEAwwMdGVzdC5leGFtcGxlMCAXDTI2MTEyODE0MDk1N1oYDzIxMjYx\n"
        "MTA0MTQwOTU3WjAXMRUwEwYDVQQDDAx0ZXN0LmV4YW1wbGUwWTATBgcqhkjOPQIB\n"
        "BggqhkjOPQMBBwNCAASC1/kWEXY8LBRTXXPP4X7VbfEQsN7mNFxdtjaorLXZ85E6\n"
        "okraAv7G5toB9cw/I5uySX646WvGXFjnKv0+jcEfo2wwajAdBgNVHQ4EFgQU8P5C\n"
        "hnz/D7QY3aKvlpeEkNp71yowHwYDVR0jBBgwFoAU8P5Chnz/D7QY3aKvlpeEkNp7\n"
        "1yowDwYDVR0TAQH/BAUwAwEB/zAXBgNVHREEEDAOggx0ZXN0LmV4YW1wbGUwCgYI\n"
        "KoZIzj0EAwIDSQAwRgIhAI+PuZtCgX6T53xW1zqqRwwUwPbVnhu2/5QpqCV2WbJU\n"
        "AiEAxpWoGEgObVvrAeoGX5RQsl2W1HllPbiUVKqSAGDDtg0=\n"
        "-----END CERTIFICATE-----\n";
static const char cert_key_pem[] =
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEIDQ4hjRGjjRxZCzRcCkbqTf5/I16Dxl5urq2f+tCR4txoAoGCCqGSM49\n"
        "AwEHoUQDQgAEgtf5FhF2PCwUU11zz+F+1W3xELDe5jRcXbY2qKy12fOROqJK2gL+\n"
        "xubaAfXMPyObskl+uOlrxlxY5yr9Po3BHw==\n"
        "-----END EC PRIVATE KEY-----\n";
static const char account_key_pem[] =
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEINIrGarV6Sc+8wY/E55nGhIpK1qkhXv9ooy0rUygYLeFoAoGCCqGSM49\n"
        "AwEHoUQDQgAEv2M7dtyVLxrqk8hmNVTCvRewsStvZ0hOpglst8lBHRYzpGH4hB6K\n"
        "cyFQrQtORcMhLmg8Vtbaj6AQ5VNrNkMT5A==\n"
        "-----END EC PRIVATE KEY-----\n";

static char *scratch, *root[3];

static void cleanup(void) {
        if (scratch) {
                char *cmd;

                /* Only our own mkdtemp() directory. */
                if (asprintf(&cmd, "rm -rf -- '%s'", scratch) >= 0) {
                        (void) system(cmd);
                        free(cmd);
                }
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        scratch = fuzz_scratch_dir();
        for (int i = 0; i < 3; i++) {
                CHECK(asprintf(&root[i], "%s/root%d", scratch, i) >= 0);
                CHECK(mkdir(root[i], 0700) == 0);
        }
        atexit(cleanup);
        return 0;
}

static char *slurp(const char *path) {
        FILE *f = fopen(path, "re");
        char *s = NULL;
        size_t n = 0;

        CHECK(f);
        CHECK(getdelim(&s, &n, 0, f) >= 0 || feof(f));
        fclose(f);
        return s ? s : strdup("");
}

static bool str_eq(const char *a, const char *b) {
        /* Go cannot tell an absent string from an empty one. */
        return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool strv_eq(char **a, char **b) {
        size_t n = strv_length(a);

        if (n != strv_length(b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (strcmp(a[i], b[i]) != 0)
                        return false;
        return true;
}

/* Writes part (or the default, or nothing) to path, creating directories. */
static void put(const char *path, const char *part, size_t len, const char *fallback) {
        char *dir = strdup(path);

        CHECK(dir);
        if (part && strcmp(part, "<absent>") == 0) {
                free(dir);
                return;
        }
        for (char *s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                (void) mkdir(dir, 0700);
                *s = '/';
        }
        free(dir);
        if (!part) {
                part = fallback;
                len = strlen(fallback);
        }
        fuzz_write_file(path, part, len);
}

static void check_error(int r, char *error, bool ok_noent, bool ok_nokey) {
        CHECK(r == -EBADMSG || (ok_noent && r == -ENOENT) || (ok_nokey && r == -ENOKEY));
        CHECK(error && *error);
        free(error);
}

static void fuzz_cert(FuzzInput *in) {
        char *parts[3] = {}, *path = NULL, *json1, *json2, *error = NULL;
        size_t lens[3] = {};
        StoredCert c = {}, c2 = {};
        int r;

        for (int i = 0; i < 3; i++)
                parts[i] = fuzz_part(in, &lens[i]);
        for (StorageCertFile f = 0; f < _STORAGE_CERT_FILE_MAX; f++) {
                /* parts: json, crt, key */
                int part = f == STORAGE_CERT_META ? 0 : f == STORAGE_CERT_CRT ? 1 : 2;

                CHECK(storage_cert_path(root[0], ISSUER, DOMAIN, f, &path) == 0);
                put(path, parts[part], lens[part],
                    f == STORAGE_CERT_CRT ? cert_pem : f == STORAGE_CERT_KEY ? cert_key_pem : "{}");
                free(path);
        }

        r = storage_load_cert(root[0], ISSUER, DOMAIN, &c, &error);
        if (r < 0) {
                check_error(r, error, true, false);
                CHECK(!c.cert_pem);
                goto finish;
        }
        CHECK(!error);
        CHECK(c.cert_pem && c.key_pem && c.cert_len > 0 && c.key_len > 0);

        /* What loads saves, and saving is a fixed point. */
        r = storage_save_cert(root[1], ISSUER, DOMAIN, &c, &error);
        if (r < 0)
                fprintf(stderr, "save: %s\n", error);
        CHECK(r == 0);
        CHECK(storage_cert_path(root[1], ISSUER, DOMAIN, STORAGE_CERT_META, &path) == 0);
        json1 = slurp(path);
        free(path);
        r = storage_load_cert(root[1], ISSUER, DOMAIN, &c2, &error);
        if (r < 0)
                fprintf(stderr, "reload: %s\n", error);
        CHECK(r == 0);
        CHECK(c2.cert_len == c.cert_len && memcmp(c2.cert_pem, c.cert_pem, c.cert_len) == 0);
        CHECK(c2.key_len == c.key_len && memcmp(c2.key_pem, c.key_pem, c.key_len) == 0);
        CHECK(strv_eq(c.sans, c2.sans));
        CHECK(str_eq(c.issuer_url, c2.issuer_url) && str_eq(c.ca, c2.ca) &&
              str_eq(c.account, c2.account) && str_eq(c.renewal_info, c2.renewal_info));
        CHECK(storage_save_cert(root[2], ISSUER, DOMAIN, &c2, NULL) == 0);
        CHECK(storage_cert_path(root[2], ISSUER, DOMAIN, STORAGE_CERT_META, &path) == 0);
        json2 = slurp(path);
        free(path);
        if (strcmp(json1, json2) != 0)
                fprintf(stderr, "first save:\n%s\nsecond save:\n%s\n", json1, json2);
        CHECK(strcmp(json1, json2) == 0);
        free(json1);
        free(json2);
        stored_cert_done(&c2);
finish:
        stored_cert_done(&c);
        for (int i = 0; i < 3; i++)
                free(parts[i]);
}

static void fuzz_account(FuzzInput *in) {
        char *parts[2] = {}, *path = NULL, *email = NULL, *json1, *json2, *error = NULL;
        size_t lens[2] = {};
        StoredAccount a = {}, a2 = {};
        int r;

        for (int i = 0; i < 2; i++)
                parts[i] = fuzz_part(in, &lens[i]);
        CHECK(storage_account_path(root[0], ISSUER, EMAIL, STORAGE_ACCOUNT_REG, &path) == 0);
        put(path, parts[0], lens[0], "{}");
        free(path);
        CHECK(storage_account_path(root[0], ISSUER, EMAIL, STORAGE_ACCOUNT_KEY, &path) == 0);
        put(path, parts[1], lens[1], account_key_pem);
        free(path);

        r = storage_load_account(root[0], ISSUER, EMAIL, &a, &error);
        if (r < 0) {
                check_error(r, error, true, true);
                CHECK(!a.key_pem);
                goto finish;
        }
        CHECK(!error && a.key_pem && a.key_len > 0);

        /* Saved under the email of its contact, which need not make a valid
         * path ("mailto:..", a local part longer than NAME_MAX): then there
         * is nothing to compare. */
        CHECK(storage_account_email(&a, &email) == 0);
        r = storage_save_account(root[1], ISSUER, &a, &error);
        if (r < 0) {
                CHECK(r == -EINVAL || r == -ENAMETOOLONG);
                free(error);
                goto finish;
        }
        CHECK(storage_account_path(root[1], ISSUER, email, STORAGE_ACCOUNT_REG, &path) == 0);
        json1 = slurp(path);
        free(path);
        r = storage_load_account(root[1], ISSUER, email, &a2, &error);
        if (r < 0)
                fprintf(stderr, "reload: %s\n", error);
        CHECK(r == 0);
        CHECK(str_eq(a.status, a2.status) && strv_eq(a.contact, a2.contact) &&
              a.terms_of_service_agreed == a2.terms_of_service_agreed &&
              str_eq(a.external_account_binding, a2.external_account_binding) &&
              str_eq(a.orders, a2.orders) && str_eq(a.location, a2.location));
        CHECK(a.key_len == a2.key_len && memcmp(a.key_pem, a2.key_pem, a.key_len) == 0);
        CHECK(storage_save_account(root[2], ISSUER, &a2, NULL) == 0);
        CHECK(storage_account_path(root[2], ISSUER, email, STORAGE_ACCOUNT_REG, &path) == 0);
        json2 = slurp(path);
        free(path);
        if (strcmp(json1, json2) != 0)
                fprintf(stderr, "first save:\n%s\nsecond save:\n%s\n", json1, json2);
        CHECK(strcmp(json1, json2) == 0);
        free(json1);
        free(json2);
        stored_account_done(&a2);
finish:
        free(email);
        stored_account_done(&a);
        for (int i = 0; i < 2; i++)
                free(parts[i]);
}

static void fuzz_lock(FuzzInput *in) {
        char *name = NULL, *path = NULL, *content;
        size_t len;
        StorageLock *l = NULL;
        usec_t now = storage_now();
        struct timespec ts[2];
        uint8_t age;
        int r;

        content = fuzz_part(in, &len);
        age = len > 0 ? (uint8_t) content[--len] : 0; /* the last byte */
        CHECK(storage_lock_name_issue_cert(DOMAIN, &name) == 0);
        CHECK(storage_lock_path(root[0], name, &path) == 0);
        put(path, content ? content : "", len, "");
        ts[0] = ts[1] = (struct timespec) { .tv_sec = (time_t) (now / USEC_PER_SEC) - age };
        CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0 || errno == ENOENT); /* "<absent>" */

        r = storage_lock_try(root[0], name, now, &l);
        CHECK(r == 0 || r == -EBUSY);
        if (r == 0) {
                CHECK(strcmp(storage_lock_get_path(l), path) == 0);
                CHECK(storage_lock_refresh(l, now + 1) == 0);
                CHECK(storage_unlock(l) == 0);
                CHECK(access(path, F_OK) < 0);
                storage_lock_free(l);
        }
        free(content);
        free(name);
        free(path);
}

/* Below root, and no component that could climb out or alias another. */
static void check_path(const char *path, const char *r) {
        const char *p = path + strlen(r);

        CHECK(strncmp(path, r, strlen(r)) == 0 && *p == '/');
        while (*p == '/') {
                size_t n = strcspn(++p, "/");

                CHECK(n > 0);
                CHECK(!(n == 1 && p[0] == '.') && !(n == 2 && p[0] == '.' && p[1] == '.'));
                p += n;
        }
        CHECK(*p == 0);
}

static void fuzz_names(FuzzInput *in) {
        char *s = fuzz_part(in, NULL), *k = NULL, *issuer = NULL, *path = NULL;

        if (!s)
                return;
        CHECK(safe_key(s, &k) == 0);
        for (const char *p = k; *p; p++)
                CHECK(strchr("abcdefghijklmnopqrstuvwxyz0123456789_@.-", *p));
        CHECK(strlen(k) <= 9 * strlen(s));
        free(k);

        if (issuer_key_from_directory_url(s, &issuer) < 0)
                issuer = strdup(ISSUER);
        CHECK(issuer);
        for (StorageCertFile f = 0; f < _STORAGE_CERT_FILE_MAX; f++) {
                if (storage_cert_path("/R", issuer, s, f, &path) == 0)
                        check_path(path, "/R");
                free(path), path = NULL;
                if (storage_cert_path("/R", ISSUER, s, f, &path) == 0)
                        check_path(path, "/R");
                free(path), path = NULL;
        }
        for (StorageAccountFile f = 0; f < _STORAGE_ACCOUNT_FILE_MAX; f++) {
                if (storage_account_path("/R", issuer, s, f, &path) == 0)
                        check_path(path, "/R");
                free(path), path = NULL;
        }
        if (storage_lock_name_issue_cert(s, &k) == 0) {
                if (storage_lock_path("/R", k, &path) == 0)
                        check_path(path, "/R");
                free(path), path = NULL;
                free(k);
        }
        if (storage_lock_name_register_account(s, &k) == 0) {
                if (storage_lock_path("/R", k, &path) == 0)
                        check_path(path, "/R");
                free(path), path = NULL;
                free(k);
        }
        free(issuer);
        free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FuzzInput in = { data, size };
        uint8_t mode;

        if (size == 0)
                return 0;
        mode = fuzz_u8(&in);
        if (in.n > 0 && in.p[0] == '\n')
                fuzz_u8(&in);
        for (int i = 0; i < 3; i++)
                fuzz_clear_dir(root[i]);

        switch (mode % 4) {
        case 'c' % 4:
                fuzz_cert(&in);
                break;
        case 'a' % 4:
                fuzz_account(&in);
                break;
        case 'l' % 4:
                fuzz_lock(&in);
                break;
        default:
                fuzz_names(&in);
        }
        return 0;
}
