/* SPDX-License-Identifier: MIT */
/* The expected names, paths and JSON below were produced by running certmagic's own
 * code (StorageKeys.Safe, ACMEIssuer.issuerKey, storageSafeUserKey, and
 * json.MarshalIndent(v, "", "\t") of CertificateResource/acme.Certificate/
 * acme.Account with their struct tags) under Go 1.19, not written by hand. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <gnutls/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage.h"
#include "strv.h"
#include "test-util.h"

static char *tmpdir, *root;

/* ---- helpers -------------------------------------------------------------------------- */

static char *slurp(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t n = 0;

        if (!f)
                return NULL;
        if (getdelim(&buf, &n, 0, f) < 0) {
                free(buf);
                buf = strdup("");
        }
        fclose(f);
        return buf;
}

static void put(const char *path, const char *content) {
        FILE *f = fopen(path, "we");

        if (!f || fputs(content, f) < 0 || fclose(f) != 0)
                abort();
}

static mode_t mode_of(const char *path) {
        struct stat st;
        return stat(path, &st) < 0 ? (mode_t) -1 : st.st_mode & 07777;
}

static bool exists(const char *path) {
        return access(path, F_OK) == 0;
}

static unsigned bad_modes;
static int check_mode(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        mode_t want = type == FTW_D ? 0700 : 0600;

        if ((st->st_mode & 07777) != want) {
                fprintf(stderr, "        %s has mode %04o, expected %04o\n", path,
                        st->st_mode & 07777, want);
                bad_modes++;
        }
        return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

/* No ".tmp-" leftovers in dir. */
static bool no_temp_files(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        bool ok = true;

        if (!d)
                return false;
        while ((de = readdir(d)))
                if (startswith(de->d_name, ".tmp-"))
                        ok = false;
        closedir(d);
        return ok;
}

/* A self-signed P-256 certificate (what certmagic stores by default) and its key. */
static void make_cert(char **ret_crt, char **ret_key) {
        gnutls_x509_privkey_t k;
        gnutls_x509_crt_t c;
        gnutls_datum_t d;
        time_t now = time(NULL);

        if (gnutls_x509_privkey_init(&k) < 0 ||
            gnutls_x509_privkey_generate(k, GNUTLS_PK_ECDSA,
                                         GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) < 0 ||
            gnutls_x509_crt_init(&c) < 0 || gnutls_x509_crt_set_key(c, k) < 0 ||
            gnutls_x509_crt_set_version(c, 3) < 0 ||
            gnutls_x509_crt_set_serial(c, "\x01\x02", 2) < 0 ||
            gnutls_x509_crt_set_activation_time(c, now - 60) < 0 ||
            gnutls_x509_crt_set_expiration_time(c, now + 86400) < 0 ||
            gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_DNSNAME, "example.com", 11,
                                                 GNUTLS_FSAN_SET) < 0 ||
            gnutls_x509_crt_sign2(c, c, k, GNUTLS_DIG_SHA256, 0) < 0)
                abort();
        if (gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_PEM, &d) < 0 ||
            !(*ret_crt = strndup((char *) d.data, d.size)))
                abort();
        gnutls_free(d.data);
        if (gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d) < 0 ||
            !(*ret_key = strndup((char *) d.data, d.size)))
                abort();
        gnutls_free(d.data);
        gnutls_x509_crt_deinit(c);
        gnutls_x509_privkey_deinit(k);
}

static char *at_root(const char *rel) {
        char *p;
        if (asprintf(&p, "%s/%s", root, rel) < 0)
                abort();
        return p;
}

/* ---- names ---------------------------------------------------------------------------- */

static void test_safe_key(void) {
        static const struct {
                const char *in, *out;
        } table[] = {
                { "Example.COM", "example.com" },
                { "*.example.com", "wildcard_.example.com" },
                { "a+b", "a_plus_b" },
                { "a b", "a_b" },
                { "  Padded  ", "padded" },
                { "a:b", "a-b" },
                { "a..b", "ab" },
                { "a...b", "a.b" },
                { "a....b", "ab" },
                { ".!.", ".." }, /* removal after replacing can form ".." */
                { "../etc", "etc" },
                { "x/y\\z", "xyz" },
                { "\xc3\xa9.x", ".x" },
                { "\xc4\xb0", "i" },      /* U+0130 lowers to 'i' */
                { "\xe2\x84\xaa", "k" },  /* KELVIN SIGN lowers to 'k' */
                { "a@b.c", "a@b.c" },
                { "a.%.b", "a..b" },
                { "\xc2\xa0 x \xe2\x80\xa8", "x" }, /* Unicode white space is trimmed */
                { "\xc2\xa0 x \xe2\x80\x8a", "x" },
                { "\xe2\x80\x8b x", "_x" },        /* U+200B is not white space */
                { "a\xff" "b", "ab" },
                { "UPPER_lower-09", "upper_lower-09" },
                { "a,b", "ab" },
                { "[::1]:14000", "--1-14000" },
                { "", "" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                char *s = NULL;
                CHECK_INT_EQ(safe_key(table[i].in, &s), 0);
                CHECK_STR_EQ(s, table[i].out);
                free(s);
        }
}

static void test_issuer_key(void) {
        static const struct {
                const char *in, *out;
        } table[] = {
                { "https://acme-v02.api.letsencrypt.org/directory",
                  "acme-v02.api.letsencrypt.org-directory" },
                { "https://acme-staging-v02.api.letsencrypt.org/directory",
                  "acme-staging-v02.api.letsencrypt.org-directory" },
                { "https://127.0.0.1:14000/dir", "127.0.0.1-14000-dir" }, /* Pebble */
                { "https://localhost:14000/dir", "localhost-14000-dir" },
                { "https://[::1]:14000/dir", "--1-14000-dir" },
                { "https://acme.zerossl.com/v2/DV90", "acme.zerossl.com-v2-dv90" },
                { "https://Example.com", "example.com" },
                { "https://example.com/", "example.com" },
                { "https://example.com:443/a/b/", "example.com-443-a-b" },
                { "https://example.com/a%2Fb", "example.com-a-b" },
                { "https://example.com/-x-/", "example.com-x" },
                { "https://u:p@example.com/dir?x=1#f", "example.com-dir" },
                { "https://example.com/a/../b", "example.com-a--b" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                char *s = NULL;
                CHECK_INT_EQ(issuer_key_from_directory_url(table[i].in, &s), 0);
                CHECK_STR_EQ(s, table[i].out);
                free(s);
        }
        for (const char *const *u = (const char *const[]) { "", "not a url", "/dir", NULL }; *u;
             u++) {
                char *s = NULL;
                CHECK_INT_EQ(issuer_key_from_directory_url(*u, &s), -EINVAL);
                CHECK(!s);
        }
}

static void test_root(void) {
        char *s = NULL;
        char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;

        setenv("XDG_DATA_HOME", "/data/", 1);
        CHECK_INT_EQ(storage_root(&s), 0);
        CHECK_STR_EQ(s, "/data/certmagic");
        free(s);
        setenv("XDG_DATA_HOME", "relative", 1);
        setenv("HOME", "/home/u", 1);
        CHECK_INT_EQ(storage_root(&s), 0);
        CHECK_STR_EQ(s, "/home/u/.local/share/certmagic");
        free(s);
        unsetenv("XDG_DATA_HOME");
        CHECK_INT_EQ(storage_root(&s), 0);
        CHECK_STR_EQ(s, "/home/u/.local/share/certmagic");
        free(s);
        s = NULL;
        unsetenv("HOME");
        CHECK_INT_EQ(storage_root(&s), -ENXIO);
        setenv("HOME", "rel", 1);
        CHECK_INT_EQ(storage_root(&s), -ENXIO);
        CHECK(!s);

        if (saved_home)
                setenv("HOME", saved_home, 1);
        free(saved_home);
        setenv("XDG_DATA_HOME", tmpdir, 1);
        CHECK_INT_EQ(storage_root(&s), 0);
        CHECK(s && startswith(s, tmpdir) && streq(s + strlen(tmpdir), "/certmagic"));
        free(s);
}

static void test_paths(void) {
        static const struct {
                const char *email, *reg, *key;
        } accounts[] = {
                { NULL, "/R/acme/127.0.0.1-14000-dir/users/default/default.json",
                  "/R/acme/127.0.0.1-14000-dir/users/default/default.key" },
                { "", "/R/acme/127.0.0.1-14000-dir/users/default/default.json",
                  "/R/acme/127.0.0.1-14000-dir/users/default/default.key" },
                { "Admin@Example.com",
                  "/R/acme/127.0.0.1-14000-dir/users/admin@example.com/admin.json",
                  "/R/acme/127.0.0.1-14000-dir/users/admin@example.com/admin.key" },
                { "@example.com", "/R/acme/127.0.0.1-14000-dir/users/@example.com/example.com.json",
                  "/R/acme/127.0.0.1-14000-dir/users/@example.com/example.com.key" },
                { "@", "/R/acme/127.0.0.1-14000-dir/users/@/registration.json",
                  "/R/acme/127.0.0.1-14000-dir/users/@/private.key" },
                { "noat", "/R/acme/127.0.0.1-14000-dir/users/noat/noat.json",
                  "/R/acme/127.0.0.1-14000-dir/users/noat/noat.key" },
                { "a+b@x.org", "/R/acme/127.0.0.1-14000-dir/users/a_plus_b@x.org/a_plus_b.json",
                  "/R/acme/127.0.0.1-14000-dir/users/a_plus_b@x.org/a_plus_b.key" },
        };
        const char *iss = "acme-v02.api.letsencrypt.org-directory";
        char *s = NULL;

        CHECK_INT_EQ(storage_cert_path("/R", iss, "Example.com", STORAGE_CERT_CRT, &s), 0);
        CHECK_STR_EQ(s, "/R/certificates/acme-v02.api.letsencrypt.org-directory/example.com/"
                        "example.com.crt");
        free(s);
        CHECK_INT_EQ(storage_cert_path("/R", iss, "*.example.com", STORAGE_CERT_KEY, &s), 0);
        CHECK_STR_EQ(s, "/R/certificates/acme-v02.api.letsencrypt.org-directory/"
                        "wildcard_.example.com/wildcard_.example.com.key");
        free(s);
        CHECK_INT_EQ(storage_cert_path("/R", "127.0.0.1-14000-dir", "a.test", STORAGE_CERT_META,
                                       &s), 0);
        CHECK_STR_EQ(s, "/R/certificates/127.0.0.1-14000-dir/a.test/a.test.json");
        free(s);
        s = NULL;
        /* Raw issuer keys, names that vanish, non-ASCII names are refused. */
        CHECK_INT_EQ(storage_cert_path("/R", "127.0.0.1:14000-dir", "a", STORAGE_CERT_CRT, &s),
                     -EINVAL);
        CHECK_INT_EQ(storage_cert_path("/R", "..", "a", STORAGE_CERT_CRT, &s), -EINVAL);
        CHECK_INT_EQ(storage_cert_path("/R", iss, "..", STORAGE_CERT_CRT, &s), -EINVAL);
        CHECK_INT_EQ(storage_cert_path("/R", iss, ".!.", STORAGE_CERT_CRT, &s), -EINVAL);
        CHECK_INT_EQ(storage_cert_path("/R", iss, "", STORAGE_CERT_CRT, &s), -EINVAL);
        CHECK_INT_EQ(storage_cert_path("/R", iss, "b\xc3\xbc" "cher.de", STORAGE_CERT_CRT, &s),
                     -EINVAL);
        CHECK(!s);

        for (size_t i = 0; i < ELEMENTSOF(accounts); i++) {
                CHECK_INT_EQ(storage_account_path("/R", "127.0.0.1-14000-dir", accounts[i].email,
                                                  STORAGE_ACCOUNT_REG, &s), 0);
                CHECK_STR_EQ(s, accounts[i].reg);
                free(s);
                CHECK_INT_EQ(storage_account_path("/R", "127.0.0.1-14000-dir", accounts[i].email,
                                                  STORAGE_ACCOUNT_KEY, &s), 0);
                CHECK_STR_EQ(s, accounts[i].key);
                free(s);
        }

        CHECK_INT_EQ(storage_lock_name_issue_cert("*.Example.com", &s), 0);
        CHECK_STR_EQ(s, "issue_cert_*.Example.com");
        free(s);
        CHECK_INT_EQ(storage_lock_path("/R", "issue_cert_*.Example.com", &s), 0);
        CHECK_STR_EQ(s, "/R/locks/issue_cert_wildcard_.example.com.lock");
        free(s);
        CHECK_INT_EQ(storage_lock_name_register_account("Admin@Example.com", &s), 0);
        CHECK_STR_EQ(s, "register_acme_account_Admin@Example.com");
        free(s);
        CHECK_INT_EQ(storage_lock_name_register_account(NULL, &s), 0);
        CHECK_STR_EQ(s, "register_acme_account");
        free(s);
        CHECK_INT_EQ(storage_lock_path("/R", "register_acme_account_Admin@Example.com", &s), 0);
        CHECK_STR_EQ(s, "/R/locks/register_acme_account_admin@example.com.lock");
        free(s);
}

/* ---- files ---------------------------------------------------------------------------- */

static void test_write_file(void) {
        char *p = at_root("w/x/y/file"), *dir = at_root("w/x/y"), *c;
        struct rlimit saved, small = { .rlim_cur = 16, .rlim_max = RLIM_INFINITY };
        const char big[] = "0123456789abcdef0123456789abcdef";

        CHECK_INT_EQ(storage_write_file(p, "old", 3), 0);
        CHECK_STR_EQ(c = slurp(p), "old");
        free(c);
        CHECK_INT_EQ(mode_of(p), 0600);
        CHECK_INT_EQ(mode_of(dir), 0700);
        CHECK(no_temp_files(dir));

        /* A failing write (file size limit: works as root too) leaves the old file as it
         * was and no temporary file behind. */
        CHECK_INT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
        small.rlim_max = saved.rlim_max;
        signal(SIGXFSZ, SIG_IGN);
        CHECK_INT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
        CHECK_INT_EQ(storage_write_file(p, big, sizeof big - 1), -EFBIG);
        CHECK_INT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
        CHECK_STR_EQ(c = slurp(p), "old");
        free(c);
        CHECK(no_temp_files(dir));

        /* A failure to create the temporary file (its directory is a file). */
        free(dir);
        dir = at_root("w/x/y/file/sub");
        CHECK_INT_EQ(storage_write_file(dir, "x", 1), -ENOTDIR);
        CHECK_STR_EQ(c = slurp(p), "old");
        free(c);

        CHECK_INT_EQ(storage_write_file(p, "new", 3), 0);
        CHECK_STR_EQ(c = slurp(p), "new");
        free(c);
        free(p);
        free(dir);
}

/* ---- certificates --------------------------------------------------------------------- */

/* json.MarshalIndent(CertificateResource{SANs: ["example.com"], IssuerData:
 * acme.Certificate{URL, CA, Account}}, "", "\t"): tab indentation, ": " after keys,
 * no final newline. */
static const char cert_json_fixture[] =
        "{\n"
        "\t\"sans\": [\n"
        "\t\t\"example.com\"\n"
        "\t],\n"
        "\t\"issuer_data\": {\n"
        "\t\t\"url\": \"https://127.0.0.1:14000/certZ/abc\",\n"
        "\t\t\"ca\": \"https://127.0.0.1:14000/dir\",\n"
        "\t\t\"account\": \"https://127.0.0.1:14000/my-account/1\"\n"
        "\t}\n"
        "}";

/* With ARI renewal_info, two SANs and no account; Go escapes & < > as \u0026 etc. */
static const char cert_ari_fixture[] =
        "{\n"
        "\t\"sans\": [\n"
        "\t\t\"*.example.com\",\n"
        "\t\t\"example.com\"\n"
        "\t],\n"
        "\t\"issuer_data\": {\n"
        "\t\t\"url\": \"https://acme-v02.api.letsencrypt.org/acme/cert/fa\",\n"
        "\t\t\"ca\": \"https://acme-v02.api.letsencrypt.org/directory\",\n"
        "\t\t\"renewal_info\": {\n"
        "\t\t\t\"suggestedWindow\": {\n"
        "\t\t\t\t\"start\": \"2025-01-02T03:04:05Z\",\n"
        "\t\t\t\t\"end\": \"2025-01-03T03:04:05.5+01:00\"\n"
        "\t\t\t},\n"
        "\t\t\t\"explanationURL\": \"https://x/?a=1\\u0026b=\\u003c2\\u003e\"\n"
        "\t\t}\n"
        "\t}\n"
        "}";

static const char cert_empty_fixture[] =
        "{\n\t\"issuer_data\": {\n\t\t\"url\": \"u\",\n\t\t\"renewal_info\": {\n"
        "\t\t\t\"a\": [],\n\t\t\t\"b\": {},\n\t\t\t\"c\": \"x\\u2028y\"\n\t\t}\n\t}\n}";

static void expect_load_error(int line, const char *domain, int want, const char *needle) {
        StoredCert c = {};
        char *err = NULL;
        int r = storage_load_cert(root, "127.0.0.1-14000-dir", domain, &c, &err);

        if (!test_record(r == want && err && strstr(err, needle), __FILE__, line, needle))
                fprintf(stderr, "        r=%d (want %d), message \"%s\"\n", r, want,
                        err ? err : "(null)");
        CHECK(!c.cert_pem);
        free(err);
}
#define LOAD_ERROR(domain, want, needle) expect_load_error(__LINE__, domain, want, needle)

static void test_cert(void) {
        const char *iss = "127.0.0.1-14000-dir";
        char *crt, *key, *crt2, *key2, *err = NULL, *s;
        char *sans[] = { (char *) "example.com", NULL };
        char *crt_path = at_root("certificates/127.0.0.1-14000-dir/example.com/example.com.crt");
        char *key_path = at_root("certificates/127.0.0.1-14000-dir/example.com/example.com.key");
        char *json_path = at_root("certificates/127.0.0.1-14000-dir/example.com/example.com.json");
        StoredCert c = {}, l = {};

        make_cert(&crt, &key);
        make_cert(&crt2, &key2);
        c = (StoredCert) {
                .cert_pem = crt, .cert_len = strlen(crt), .key_pem = key, .key_len = strlen(key),
                .sans = sans, .issuer_url = (char *) "https://127.0.0.1:14000/certZ/abc",
                .ca = (char *) "https://127.0.0.1:14000/dir",
                .account = (char *) "https://127.0.0.1:14000/my-account/1",
        };

        LOAD_ERROR("example.com", -ENOENT, "example.com.crt: not found");

        /* A key that is not the certificate's is refused and nothing is written. */
        c.key_pem = key2;
        c.key_len = strlen(key2);
        CHECK_INT_EQ(storage_save_cert(root, iss, "example.com", &c, &err), -EINVAL);
        CHECK_CONTAINS(err, "does not belong");
        free(err);
        err = NULL;
        CHECK(!exists(key_path));
        c.key_pem = key;
        c.key_len = strlen(key);

        CHECK_INT_EQ(storage_save_cert(root, iss, "Example.com", &c, &err), 0);
        CHECK(!err);
        CHECK_STR_EQ(s = slurp(json_path), cert_json_fixture);
        free(s);
        CHECK_STR_EQ(s = slurp(crt_path), crt);
        free(s);
        CHECK_STR_EQ(s = slurp(key_path), key);
        free(s);
        bad_modes = 0;
        CHECK_INT_EQ(nftw(root, check_mode, 16, FTW_PHYS), 0);
        CHECK_INT_EQ(bad_modes, 0);

        CHECK_INT_EQ(storage_load_cert(root, iss, "example.com", &l, &err), 0);
        CHECK(!err);
        CHECK(l.cert_len == strlen(crt) && l.cert_pem && memcmp(l.cert_pem, crt, l.cert_len) == 0);
        CHECK(l.key_len == strlen(key) && l.key_pem && memcmp(l.key_pem, key, l.key_len) == 0);
        CHECK_INT_EQ(strv_length(l.sans), 1);
        CHECK_STR_EQ(l.sans ? l.sans[0] : NULL, "example.com");
        CHECK_STR_EQ(l.issuer_url, "https://127.0.0.1:14000/certZ/abc");
        CHECK_STR_EQ(l.ca, "https://127.0.0.1:14000/dir");
        CHECK_STR_EQ(l.account, "https://127.0.0.1:14000/my-account/1");
        CHECK(!l.renewal_info);
        stored_cert_done(&l);

        /* ARI data survives a load/save round trip byte for byte. */
        put(json_path, cert_ari_fixture);
        CHECK_INT_EQ(storage_load_cert(root, iss, "example.com", &l, &err), 0);
        CHECK_STR_EQ(l.renewal_info,
                     "{\"suggestedWindow\":{\"start\":\"2025-01-02T03:04:05Z\",\"end\":"
                     "\"2025-01-03T03:04:05.5+01:00\"},\"explanationURL\":"
                     "\"https://x/?a=1\\u0026b=\\u003c2\\u003e\"}");
        CHECK(!l.account);
        CHECK_INT_EQ(storage_save_cert(root, iss, "example.com", &l, &err), 0);
        CHECK_STR_EQ(s = slurp(json_path), cert_ari_fixture);
        free(s);
        stored_cert_done(&l);

        /* Empty containers and U+2028 in passed-through JSON, written as Go does. */
        c.sans = NULL;
        c.issuer_url = (char *) "u";
        c.ca = c.account = NULL;
        c.renewal_info = (char *) "{\"a\":[],\"b\":{},\"c\":\"x\xe2\x80\xa8y\"}";
        CHECK_INT_EQ(storage_save_cert(root, iss, "example.com", &c, &err), 0);
        CHECK_STR_EQ(s = slurp(json_path), cert_empty_fixture);
        free(s);

        /* Damage of every kind is -EBADMSG naming the file. */
        put(json_path, "{\n\t\"sans\": [\n\t\t\"exam");
        LOAD_ERROR("example.com", -EBADMSG, "example.com.json: truncated JSON");
        put(json_path, "{\"sans\": [\"example.com\"]} x");
        LOAD_ERROR("example.com", -EBADMSG, "example.com.json: corrupt JSON");
        put(json_path, "{\"sans\": [\"a\",]}");
        LOAD_ERROR("example.com", -EBADMSG, "example.com.json: corrupt JSON");
        put(json_path, "");
        LOAD_ERROR("example.com", -EBADMSG, "example.com.json: empty file");
        put(json_path, "[\"example.com\"]");
        LOAD_ERROR("example.com", -EBADMSG, "example.com.json: JSON is not an object");
        put(json_path, "{\"sans\": \"example.com\"}");
        LOAD_ERROR("example.com", -EBADMSG, "example.com.json: \"sans\" is not of type array");
        put(json_path, "{\"sans\": [1]}");
        LOAD_ERROR("example.com", -EBADMSG, "example.com.json: \"sans\" holds a non-string");
        put(json_path, "{\"issuer_data\": {\"url\": 5}}");
        LOAD_ERROR("example.com", -EBADMSG, "example.com.json: \"url\" is not of type string");
        put(json_path, "{\"issuer_data\": \"x\"}");
        LOAD_ERROR("example.com", -EBADMSG, "\"issuer_data\" is not an object");
        put(json_path, cert_json_fixture);

        /* The chain cut inside its block, or garbage. */
        s = strndup(crt, strlen(crt) / 2);
        put(crt_path, s);
        free(s);
        LOAD_ERROR("example.com", -EBADMSG, "example.com.crt: truncated PEM");
        put(crt_path, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
        LOAD_ERROR("example.com", -EBADMSG, "example.com.crt: no usable certificate");
        put(crt_path, crt);
        s = strndup(key, strlen(key) - 30);
        put(key_path, s);
        free(s);
        LOAD_ERROR("example.com", -EBADMSG, "example.com.key: unusable private key");
        put(key_path, "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n");
        LOAD_ERROR("example.com", -EBADMSG, "example.com.key: unusable private key");

        /* The key is written first: when writing the chain fails (here: a non-empty
         * directory stands in its way, as a crash would stop it), the new key sits
         * next to the old chain, the JSON is untouched, and loading says so. */
        s = at_root("certificates/127.0.0.1-14000-dir/example.com/example.com.crt.old");
        CHECK_INT_EQ(rename(crt_path, s), 0);
        CHECK_INT_EQ(mkdir(crt_path, 0700), 0);
        {
                char *sub = at_root("certificates/127.0.0.1-14000-dir/example.com/"
                                    "example.com.crt/x");
                StoredCert c2 = { .cert_pem = crt2, .cert_len = strlen(crt2), .key_pem = key2,
                                  .key_len = strlen(key2), .issuer_url = (char *) "v" };
                char *t;

                put(sub, "x");
                CHECK_INT_EQ(storage_save_cert(root, iss, "example.com", &c2, &err), -EISDIR);
                CHECK_CONTAINS(err, "example.com.crt: cannot write");
                free(err);
                err = NULL;
                CHECK_STR_EQ(t = slurp(key_path), key2);
                free(t);
                CHECK_STR_EQ(t = slurp(json_path), cert_json_fixture);
                free(t);
                CHECK_INT_EQ(unlink(sub), 0);
                CHECK_INT_EQ(rmdir(crt_path), 0);
                free(sub);
        }
        CHECK_INT_EQ(rename(s, crt_path), 0);
        free(s);
        LOAD_ERROR("example.com", -EBADMSG, "does not belong to the certificate in");
        put(key_path, key);

        /* Parts missing, or of the wrong type. */
        CHECK_INT_EQ(unlink(key_path), 0);
        LOAD_ERROR("example.com", -EBADMSG, "example.com.key: missing, but");
        CHECK_INT_EQ(mkdir(key_path, 0700), 0);
        LOAD_ERROR("example.com", -EBADMSG, "example.com.key: not a regular file");
        CHECK_INT_EQ(rmdir(key_path), 0);
        put(key_path, key);
        CHECK_INT_EQ(unlink(json_path), 0);
        LOAD_ERROR("example.com", -EBADMSG, "example.com.json: missing, but");
        put(json_path, cert_json_fixture);
        CHECK_INT_EQ(storage_load_cert(root, iss, "example.com", &l, &err), 0);
        stored_cert_done(&l);

        free(crt);
        free(key);
        free(crt2);
        free(key2);
        free(crt_path);
        free(key_path);
        free(json_path);
}

/* ---- accounts ------------------------------------------------------------------------- */

/* json.MarshalIndent(acme.Account{...}, "", "\t") */
static const char account_fixture[] =
        "{\n"
        "\t\"status\": \"valid\",\n"
        "\t\"contact\": [\n"
        "\t\t\"mailto:admin@example.com\"\n"
        "\t],\n"
        "\t\"termsOfServiceAgreed\": true,\n"
        "\t\"orders\": \"https://127.0.0.1:14000/list-orderz/1\",\n"
        "\t\"location\": \"https://127.0.0.1:14000/my-account/1\"\n"
        "}";

/* No contact, no agreement, an EAB, empty orders: omitempty and RawMessage. */
static const char account_eab_fixture[] =
        "{\n"
        "\t\"status\": \"valid\",\n"
        "\t\"externalAccountBinding\": {\n"
        "\t\t\"protected\": \"eyJ\",\n"
        "\t\t\"payload\": \"e30\",\n"
        "\t\t\"signature\": \"c2ln\"\n"
        "\t},\n"
        "\t\"orders\": \"\"\n"
        "}";

static void test_account(void) {
        const char *iss = "127.0.0.1-14000-dir";
        char *crt, *key, *err = NULL, *s;
        char *contact[] = { (char *) "mailto:admin@example.com", NULL };
        char *reg_path = at_root("acme/127.0.0.1-14000-dir/users/admin@example.com/admin.json");
        char *key_path = at_root("acme/127.0.0.1-14000-dir/users/admin@example.com/admin.key");
        char *def_path = at_root("acme/127.0.0.1-14000-dir/users/default/default.json");
        StoredAccount a = {}, l = {};

        make_cert(&crt, &key);
        a = (StoredAccount) {
                .status = (char *) "valid", .contact = contact, .terms_of_service_agreed = true,
                .orders = (char *) "https://127.0.0.1:14000/list-orderz/1",
                .location = (char *) "https://127.0.0.1:14000/my-account/1",
                .key_pem = key, .key_len = strlen(key),
        };

        CHECK_INT_EQ(storage_load_account(root, iss, "admin@example.com", &l, &err), -ENOENT);
        CHECK_CONTAINS(err, "admin.json: not found");
        free(err);
        err = NULL;

        CHECK_INT_EQ(storage_save_account(root, iss, &a, &err), 0);
        CHECK(!err);
        CHECK_STR_EQ(s = slurp(reg_path), account_fixture);
        free(s);
        CHECK_STR_EQ(s = slurp(key_path), key);
        free(s);
        s = at_root("acme");
        bad_modes = 0;
        CHECK_INT_EQ(nftw(s, check_mode, 16, FTW_PHYS), 0);
        CHECK_INT_EQ(bad_modes, 0);
        free(s);

        /* Filed under the lowercased primary contact, kept as given in the JSON. */
        contact[0] = (char *) "mailto:Admin@Example.com";
        CHECK_INT_EQ(storage_account_email(&a, &s), 0);
        CHECK_STR_EQ(s, "Admin@Example.com");
        free(s);
        CHECK_INT_EQ(storage_save_account(root, iss, &a, &err), 0);
        CHECK_CONTAINS(s = slurp(reg_path), "\"mailto:Admin@Example.com\"");
        free(s);

        CHECK_INT_EQ(storage_load_account(root, iss, "admin@example.com", &l, &err), 0);
        CHECK(!err);
        CHECK_STR_EQ(l.status, "valid");
        CHECK_STR_EQ(l.contact ? l.contact[0] : NULL, "mailto:Admin@Example.com");
        CHECK(l.terms_of_service_agreed);
        CHECK_STR_EQ(l.orders, "https://127.0.0.1:14000/list-orderz/1");
        CHECK_STR_EQ(l.location, "https://127.0.0.1:14000/my-account/1");
        CHECK(!l.external_account_binding);
        CHECK(l.key_len == strlen(key) && l.key_pem && memcmp(l.key_pem, key, l.key_len) == 0);
        stored_account_done(&l);

        /* No contact files under default/default; EAB passes through. */
        a = (StoredAccount) {
                .status = (char *) "valid",
                .external_account_binding = (char *) "{\"protected\":\"eyJ\","
                                                     "\"payload\":\"e30\",\"signature\":\"c2ln\"}",
                .key_pem = key, .key_len = strlen(key),
        };
        CHECK_INT_EQ(storage_save_account(root, iss, &a, &err), 0);
        CHECK_STR_EQ(s = slurp(def_path), account_eab_fixture);
        free(s);
        CHECK_INT_EQ(storage_load_account(root, iss, NULL, &l, &err), 0);
        CHECK_STR_EQ(l.external_account_binding, a.external_account_binding);
        CHECK(!l.contact && !l.location && !l.terms_of_service_agreed);
        CHECK_STR_EQ(l.orders, "");
        stored_account_done(&l);

        /* A missing key next to the JSON is an error of its own, never "absent". */
        CHECK_INT_EQ(unlink(key_path), 0);
        CHECK_INT_EQ(storage_load_account(root, iss, "admin@example.com", &l, &err), -ENOKEY);
        CHECK_CONTAINS(err, "admin.key: account key missing");
        CHECK_CONTAINS(err, "admin.json exists");
        free(err);
        err = NULL;

        put(key_path, "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n");
        CHECK_INT_EQ(storage_load_account(root, iss, "admin@example.com", &l, &err), -EBADMSG);
        CHECK_CONTAINS(err, "admin.key: unusable private key");
        free(err);
        err = NULL;
        put(key_path, key);

        put(reg_path, "{\"status\": \"valid\", \"termsOfServiceAgreed\": \"yes\"}");
        CHECK_INT_EQ(storage_load_account(root, iss, "admin@example.com", &l, &err), -EBADMSG);
        CHECK_CONTAINS(err, "admin.json: \"termsOfServiceAgreed\" is not of type boolean");
        free(err);
        err = NULL;
        put(reg_path, "{\"status\": \"val");
        CHECK_INT_EQ(storage_load_account(root, iss, "admin@example.com", &l, &err), -EBADMSG);
        CHECK_CONTAINS(err, "admin.json: truncated JSON");
        free(err);
        err = NULL;

        /* Only a key (a crash between the two writes): absent, re-register. */
        CHECK_INT_EQ(unlink(reg_path), 0);
        CHECK_INT_EQ(storage_load_account(root, iss, "admin@example.com", &l, &err), -ENOENT);
        free(err);

        free(crt);
        free(key);
        free(reg_path);
        free(key_path);
        free(def_path);
}

/* ---- locks ---------------------------------------------------------------------------- */

#define T0 ((usec_t) 1735787045120000) /* 2025-01-02T03:04:05.12Z */

static void test_lock(void) {
        char *p = at_root("locks/issue_cert_example.com.lock"), *s;
        StorageLock *l = NULL, *l2 = NULL;
        struct timespec old[2] = { { .tv_sec = time(NULL) - 20 }, { .tv_sec = time(NULL) - 20 } };
        usec_t now = storage_now();

        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_Example.com", T0, &l), 0);
        if (!CHECK(l && streq(storage_lock_get_path(l), p)))
                return;
        /* What Go's json.Encoder writes for lockMeta (RFC3339Nano, newline). */
        CHECK_STR_EQ(s = slurp(p), "{\"created\":\"2025-01-02T03:04:05.12Z\","
                                   "\"updated\":\"2025-01-02T03:04:05.12Z\"}\n");
        free(s);
        CHECK_INT_EQ(mode_of(p), 0600);
        s = at_root("locks");
        CHECK(no_temp_files(s));
        free(s);

        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", T0 + 9 * USEC_PER_SEC, &l2),
                     -EBUSY);
        CHECK(!l2);
        CHECK_INT_EQ(storage_lock_refresh(l, T0 + 5 * USEC_PER_SEC), 0);
        CHECK_STR_EQ(s = slurp(p), "{\"created\":\"2025-01-02T03:04:05.12Z\","
                                   "\"updated\":\"2025-01-02T03:04:10.12Z\"}\n");
        free(s);
        /* Fresh by "updated", though "created" is 14 s old. */
        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", T0 + 14 * USEC_PER_SEC, &l2),
                     -EBUSY);
        CHECK_INT_EQ(storage_unlock(l), 0);
        CHECK(!exists(p));
        CHECK_INT_EQ(storage_unlock(l), -ENOLCK);
        l = storage_lock_free(l);

        /* A lock certmagic wrote (local offset, nanoseconds), stale after 10 s. */
        put(p, "{\"created\":\"2025-01-02T04:04:00.123456789+01:00\","
               "\"updated\":\"2025-01-02T04:04:05.12+01:00\"}\n");
        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", T0 + 10 * USEC_PER_SEC, &l),
                     -EBUSY);
        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", T0 + 11 * USEC_PER_SEC, &l),
                     0);
        if (!l)
                return;
        /* The holder we displaced finds out on its next refresh. */
        put(p, "{\"created\":\"2025-01-02T03:04:30Z\",\"updated\":\"2025-01-02T03:04:30Z\"}\n");
        CHECK_INT_EQ(storage_lock_refresh(l, T0 + 40 * USEC_PER_SEC), -ENOLCK);
        CHECK_INT_EQ(storage_unlock(l), -ENOLCK);
        CHECK(exists(p));
        l = storage_lock_free(l);

        /* Zero "updated" (Go's time.Time{}) falls back to "created". */
        put(p, "{\"created\":\"2025-01-02T03:04:05.12Z\",\"updated\":\"0001-01-01T00:00:00Z\"}\n");
        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", T0 + 9 * USEC_PER_SEC, &l),
                     -EBUSY);
        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", T0 + 11 * USEC_PER_SEC, &l),
                     0);
        if (!l)
                return;
        CHECK_INT_EQ(storage_unlock(l), 0);
        l = storage_lock_free(l);

        /* Empty or unparsable: judged by the file's age. */
        put(p, "");
        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", now, &l), -EBUSY);
        CHECK_INT_EQ(utimensat(AT_FDCWD, p, old, 0), 0);
        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", now, &l), 0);
        if (!l)
                return;
        CHECK_INT_EQ(storage_unlock(l), 0);
        l = storage_lock_free(l);
        put(p, "{\"created\":\"yesterday\"}");
        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", now, &l), -EBUSY);
        CHECK_INT_EQ(utimensat(AT_FDCWD, p, old, 0), 0);
        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", now, &l), 0);
        if (!l)
                return;

        /* Real clock: refresh keeps it ours. */
        CHECK_INT_EQ(storage_lock_refresh(l, storage_now()), 0);
        CHECK_INT_EQ(storage_lock_try(root, "issue_cert_example.com", storage_now(), &l2),
                     -EBUSY);
        CHECK_INT_EQ(storage_unlock(l), 0);
        l = storage_lock_free(l);
        CHECK_INT_EQ(storage_lock_try(root, "register_acme_account", storage_now(), &l), 0);
        if (!l)
                return;
        CHECK_INT_EQ(storage_unlock(l), 0);
        l = storage_lock_free(l);
        free(p);
}

int main(void) {
        char template[] = "/tmp/test-storage-XXXXXX";

        umask(022); /* modes must not depend on the umask */
        tmpdir = mkdtemp(template);
        if (!tmpdir)
                abort();
        test_safe_key();
        test_issuer_key();
        test_root(); /* leaves XDG_DATA_HOME=tmpdir */
        if (storage_root(&root) < 0)
                abort();
        test_paths();
        test_write_file();
        test_cert();
        test_account();
        test_lock();

        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(root);
        return test_summary();
}
