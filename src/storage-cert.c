/* SPDX-License-Identifier: MIT */
/* Certificates and their keys: checked on load, saved as one set. */

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "storage-internal.h"
#include "strv.h"
#include "util.h"

/* ---- keys and certificates ------------------------------------------------------------ */

static size_t count_substr(const char *s, size_t n, const char *needle) {
        size_t c = 0, l = strlen(needle);

        for (const char *p = s; (p = memmem(p, n - (size_t) (p - s), needle, l)); p += l)
                c++;
        return c;
}

/* A PEM file cut inside a block must not pass as a shorter one. */
static bool pem_complete(const char *s, size_t n) {
        return count_substr(s, n, "-----BEGIN ") == count_substr(s, n, "-----END ");
}

int storage_import_key(const char *pem, size_t len, gnutls_x509_privkey_t *ret) {
        gnutls_datum_t d = { .data = (unsigned char *) pem, .size = (unsigned) len };

        if (!pem_complete(pem, len))
                return -EBADMSG;
        if (gnutls_x509_privkey_init(ret) < 0)
                return -ENOMEM;
        if (gnutls_x509_privkey_import2(*ret, &d, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
                gnutls_x509_privkey_deinit(*ret);
                *ret = NULL;
                return -EBADMSG;
        }
        return 0;
}

/* The chain parses completely and the key belongs to its leaf. */
/* The chain parses, its leaf names domain (a certificate copied in from
 * another name's directory would fail every client's hostname check), and the
 * key is the leaf's. */
static int check_cert_and_key(const char *crt, size_t crt_len, const char *crt_path,
                              const char *key, size_t key_len, const char *key_path,
                              const char *domain, char **ret_error) {
        gnutls_datum_t d = { .data = (unsigned char *) crt, .size = (unsigned) crt_len };
        gnutls_x509_crt_t *crts = NULL;
        gnutls_x509_privkey_t k = NULL;
        unsigned char id1[64], id2[64];
        size_t l1 = sizeof id1, l2 = sizeof id2;
        unsigned n = 0;
        int r = 0;

        if (!pem_complete(crt, crt_len))
                return storage_fail(ret_error, -EBADMSG, _("%s: truncated PEM"), crt_path);
        r = gnutls_x509_crt_list_import2(&crts, &n, &d, GNUTLS_X509_FMT_PEM, 0);
        if (r < 0 || n == 0)
                return storage_fail(ret_error, -EBADMSG, _("%s: no usable certificate: %s"), crt_path,
                                    r < 0 ? gnutls_strerror(r) : "empty");
        if (!gnutls_x509_crt_check_hostname2(crts[0], domain, 0))
                r = storage_fail(ret_error, -EBADMSG, _("%s: the certificate is not for %s"), crt_path,
                                 domain);
        else if (storage_import_key(key, key_len, &k) < 0)
                r = storage_fail(ret_error, -EBADMSG, _("%s: unusable private key"), key_path);
        else if (gnutls_x509_crt_get_key_id(crts[0], GNUTLS_KEYID_USE_SHA256, id1, &l1) < 0 ||
                 gnutls_x509_privkey_get_key_id(k, GNUTLS_KEYID_USE_SHA256, id2, &l2) < 0 ||
                 l1 != l2 || memcmp(id1, id2, l1) != 0)
                r = storage_fail(ret_error, -EBADMSG,
                                 _("%s: the private key does not belong to the certificate in %s"),
                                 key_path, crt_path);
        gnutls_x509_privkey_deinit(k);
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
        return r < 0 ? r : 0;
}

void stored_cert_done(StoredCert *c) {
        if (!c)
                return;
        free(c->cert_pem);
        erase_and_free(c->key_pem, c->key_len);
        strv_free(c->sans);
        free(c->issuer_url);
        free(c->ca);
        free(c->account);
        free(c->renewal_info);
        *c = (StoredCert) {};
}

/* certmagic's CertificateResource {sans, issuer_data} with acmez's acme.Certificate
 * {url, ca, account, renewal_info} as issuer_data; "url" is not omitempty. */
static const Field cert_fields[] = {
        { "sans", FIELD_STRV, offsetof(StoredCert, sans), true },
};
static const Field issuer_data_fields[] = {
        { "url", FIELD_STRING, offsetof(StoredCert, issuer_url), false },
        { "ca", FIELD_STRING, offsetof(StoredCert, ca), true },
        { "account", FIELD_STRING, offsetof(StoredCert, account), true },
        { "renewal_info", FIELD_RAW, offsetof(StoredCert, renewal_info), true },
};

static int cert_paths(const char *root, const char *issuer_key, const char *domain,
                      char *paths[static _STORAGE_CERT_FILE_MAX]) {
        for (int f = 0; f < _STORAGE_CERT_FILE_MAX; f++) {
                int r = storage_cert_path(root, issuer_key, domain, f, &paths[f]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void paths_free(char *paths[static _STORAGE_CERT_FILE_MAX]) {
        for (int f = 0; f < _STORAGE_CERT_FILE_MAX; f++)
                free(paths[f]);
}

static int load_cert(char *paths[static _STORAGE_CERT_FILE_MAX], const char *domain,
                     StoredCert *c, char **ret_error) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *meta = NULL;
        json_object *d;
        size_t meta_len;
        int r;

        /* All three from the same directory, so that a concurrent save (which swaps
         * the directory, see storage_save_cert()) cannot hand us a mix. */
        _cleanup_free_ char *dir = strndup(paths[STORAGE_CERT_CRT],
                                           strrchr(paths[STORAGE_CERT_CRT], '/') -
                                           paths[STORAGE_CERT_CRT]);
        _cleanup_close_ int dfd = -EBADF;

        if (!dir)
                return -ENOMEM;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 && errno != ENOENT && errno != ENOTDIR) {
                r = -errno;
                return storage_fail(ret_error, r, _("%s: cannot open: %s"), dir, strerror(-r));
        }
        if (dfd < 0)
                return storage_fail(ret_error, -ENOENT, _("%s: not found"), paths[STORAGE_CERT_CRT]);
        r = storage_read_file_at(dfd, paths[STORAGE_CERT_CRT], false, &c->cert_pem, &c->cert_len,
                                 ret_error);
        if (r < 0)
                return r;
        /* With the certificate present, a missing key or JSON is damage, not absence. */
        for (StorageCertFile f = STORAGE_CERT_KEY; f <= STORAGE_CERT_META; f++) {
                r = f == STORAGE_CERT_KEY ?
                            storage_read_file_at(dfd, paths[f], true, &c->key_pem, &c->key_len, ret_error) :
                            storage_read_file_at(dfd, paths[f], false, &meta, &meta_len, ret_error);
                if (r == -ENOENT)
                        return storage_fail(ret_error, -EBADMSG, _("%s: missing, but %s exists"),
                                            paths[f], paths[STORAGE_CERT_CRT]);
                if (r < 0)
                        return r;
        }
        r = check_cert_and_key(c->cert_pem, c->cert_len, paths[STORAGE_CERT_CRT], c->key_pem,
                               c->key_len, paths[STORAGE_CERT_KEY], domain, ret_error);
        if (r >= 0)
                r = storage_json_parse(paths[STORAGE_CERT_META], meta, meta_len, &o, ret_error);
        if (r >= 0)
                r = storage_json_get_fields(o, cert_fields, ELEMENTSOF(cert_fields), c,
                                            paths[STORAGE_CERT_META], ret_error);
        if (r < 0)
                return r;
        d = json_object_object_get(o, "issuer_data");
        if (d && !json_object_is_type(d, json_type_object))
                return storage_fail(ret_error, -EBADMSG, _("%s: \"issuer_data\" is not an object"),
                                    paths[STORAGE_CERT_META]);
        return d ? storage_json_get_fields(d, issuer_data_fields, ELEMENTSOF(issuer_data_fields), c,
                                           paths[STORAGE_CERT_META], ret_error) : 0;
}

int storage_load_cert(const char *root, const char *issuer_key, const char *domain,
                      StoredCert *ret, char **ret_error) {
        char *paths[_STORAGE_CERT_FILE_MAX] = {};
        _cleanup_(stored_cert_done) StoredCert c = {};
        int r;

        r = cert_paths(root, issuer_key, domain, paths);
        if (r < 0)
                r = storage_fail(ret_error, r, _("%s: no valid storage path for this name"), domain);
        else
                r = load_cert(paths, domain, &c, ret_error);
        paths_free(paths);
        if (r < 0)
                return r;
        *ret = c;
        c = (StoredCert) {};
        return 0;
}

static int format_cert_meta(const StoredCert *c, char **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *d = NULL;
        int r;

        if (!o)
                return -ENOMEM;
        r = storage_json_add_fields(o, cert_fields, ELEMENTSOF(cert_fields), c);
        if (r >= 0)
                r = storage_json_add(o, "issuer_data", d = json_object_new_object()); /* o owns d */
        if (r >= 0)
                r = storage_json_add_fields(d, issuer_data_fields, ELEMENTSOF(issuer_data_fields), c);
        if (r < 0)
                return r;
        return storage_json_format(o, true, ret);
}

/* Writes the three files into a new directory: fsynced, 0600. On failure
 * *ret_failed is the file that could not be written (an index into data). */
static int write_set_into(int dfd, const char *const names[], const char *const data[],
                          const size_t lens[], size_t n, size_t *ret_failed) {
        for (size_t i = 0; i < n; i++) {
                const char *p = data[i];
                size_t left = lens[i];
                int fd, r = 0;

                *ret_failed = i;
                fd = openat(dfd, names[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                            0600);
                if (fd < 0)
                        return -errno;
                if (fchmod(fd, 0600) < 0)
                        r = -errno;
                while (r >= 0 && left > 0) {
                        ssize_t k = write(fd, p, left);
                        if (k < 0 && errno != EINTR)
                                r = -errno;
                        else if (k > 0)
                                p += k, left -= (size_t) k;
                }
                if (r >= 0 && fsync(fd) < 0)
                        r = -errno;
                if (close(fd) < 0 && r >= 0)
                        r = -errno;
                if (r < 0)
                        return r;
        }
        *ret_failed = n;
        return fsync(dfd) < 0 ? -errno : 0;
}

/* Empties and removes a directory of plain files (ours: a certificate set). */
static void remove_set_dir(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *de;
        DIR *d;

        if (fd >= 0 && (d = fdopendir(fd))) {
                fd = -EBADF;
                while ((de = readdir(d)))
                        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                                (void) unlinkat(dirfd(d), de->d_name, 0);
                closedir(d);
        }
        (void) rmdir(path);
}

/* 1 when dir holds nothing but regular files (or does not exist), so that
 * it can be replaced by a directory with the same files; other files in it
 * are carried over by hard links. 0 when it holds anything else. */
static int set_dir_replaceable(const char *dir, bool *ret_exists) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *de;
        bool ok = true;
        DIR *d;

        *ret_exists = fd >= 0;
        if (fd < 0)
                return errno == ENOENT ? 1 : errno == ENOTDIR || errno == ELOOP ? 0 : -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        while (ok && (de = readdir(d))) {
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                ok = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) >= 0 &&
                     S_ISREG(st.st_mode);
        }
        closedir(d);
        return ok;
}

/* Hard-links every file of old that is not one of names into new. */
static int carry_over(const char *old, int new_fd, const char *const names[], size_t n) {
        _cleanup_close_ int fd = open(old, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *de;
        int r = 0;
        DIR *d;

        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        while (r >= 0 && (de = readdir(d))) {
                bool ours = streq(de->d_name, ".") || streq(de->d_name, "..") ||
                            startswith(de->d_name, ".tmp-");

                for (size_t i = 0; !ours && i < n; i++)
                        ours = streq(de->d_name, names[i]);
                if (!ours && linkat(dirfd(d), de->d_name, new_fd, de->d_name, 0) < 0)
                        r = -errno;
        }
        closedir(d);
        return r;
}

/* The files of one certificate are replaced together: the new set is
 * written into a fresh directory next to <name>/, which then trades places
 * with <name>/ in one renameat2(RENAME_EXCHANGE). A crash, a kill or a full
 * disk at any moment leaves <name>/ holding the complete old set or the
 * complete new one; the old set, now in the temporary directory, is removed
 * afterwards (or, after a crash, by a later save). 0, 1 when the file system
 * cannot exchange (or <name>/ holds more than files): write file by file. */
static int save_set_exchange(const char *dir, const char *const names[],
                             const char *const data[], const size_t lens[], size_t n,
                             size_t *ret_failed) {
        _cleanup_free_ char *parent = NULL, *prefix = NULL, *tmp = NULL;
        _cleanup_close_ int tfd = -EBADF;
        bool exists;
        int r;

        *ret_failed = n;
        r = storage_temp_prefix(dir, &parent, &prefix);
        if (r < 0)
                return r;
        storage_remove_stale_temps(parent, prefix);
        r = set_dir_replaceable(dir, &exists);
        if (r <= 0)
                return r < 0 ? r : 1;
        if (asprintf(&tmp, "%s/%s-XXXXXX", parent, prefix) < 0)
                return -ENOMEM;
        if (!mkdtemp(tmp)) /* 0700 */
                return -errno;
        tfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = tfd < 0 ? -errno : 0;
        if (r >= 0 && exists)
                r = carry_over(dir, tfd, names, n);
        if (r >= 0)
                r = write_set_into(tfd, names, data, lens, n, ret_failed);
        /* No <name>/ yet: it appears complete, else it trades places. */
        if (r >= 0 && (exists || renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE) < 0)) {
                exists = true;
                if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) < 0)
                        r = errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ? 1 : -errno;
        }
        if (r != 0) {
                remove_set_dir(tmp);
                return r;
        }
        (void) storage_fsync_directory_of(dir);
        if (exists)
                remove_set_dir(tmp); /* the old set */
        return 0;
}

int storage_save_cert(const char *root, const char *issuer_key, const char *domain,
                      const StoredCert *c, char **ret_error) {
        static const StorageCertFile order[] = { STORAGE_CERT_KEY, STORAGE_CERT_CRT,
                                                 STORAGE_CERT_META };
        char *paths[_STORAGE_CERT_FILE_MAX] = {};
        _cleanup_free_ char *meta = NULL, *dir = NULL;
        const char *names[ELEMENTSOF(order)], *data[ELEMENTSOF(order)];
        size_t lens[ELEMENTSOF(order)], failed = 0;
        int r;

        r = cert_paths(root, issuer_key, domain, paths);
        if (r < 0)
                r = storage_fail(ret_error, r, _("%s: no valid storage path for this name"), domain);
        else if (!c->cert_pem || !c->key_pem)
                r = storage_fail(ret_error, -EINVAL, _("%s: certificate or key missing"), domain);
        else if (check_cert_and_key(c->cert_pem, c->cert_len, "new certificate", c->key_pem,
                                    c->key_len, "new key", domain, ret_error) < 0)
                r = -EINVAL;
        else if ((r = format_cert_meta(c, &meta)) < 0)
                r = storage_fail(ret_error, r, _("%s: cannot encode metadata"), paths[STORAGE_CERT_META]);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(order); i++) {
                StorageCertFile f = order[i];

                names[i] = strrchr(paths[f], '/') + 1;
                data[i] = f == STORAGE_CERT_KEY ? c->key_pem : f == STORAGE_CERT_CRT ? c->cert_pem : meta;
                lens[i] = f == STORAGE_CERT_KEY ? c->key_len :
                          f == STORAGE_CERT_CRT ? c->cert_len : strlen(meta);
        }
        if (r >= 0) {
                dir = strndup(paths[STORAGE_CERT_CRT],
                              strrchr(paths[STORAGE_CERT_CRT], '/') - paths[STORAGE_CERT_CRT]);
                r = dir ? storage_mkdir_parents(dir) : -ENOMEM;
                if (r < 0)
                        r = storage_fail(ret_error, r, _("%s: cannot write: %s"), dir ? dir : domain,
                                         strerror(-r));
        }
        if (r >= 0) {
                r = save_set_exchange(dir, names, data, lens, ELEMENTSOF(order), &failed);
                if (r < 0)
                        r = storage_fail(ret_error, r, _("%s: cannot write: %s"),
                                         failed < ELEMENTSOF(order) ? paths[order[failed]] : dir,
                                         strerror(-r));
        }
        /* Fallback, file by file, key first: a crash in between leaves a new key
         * next to the old chain, which loads as -EBADMSG (re-issue). */
        for (size_t i = 0; r > 0 && i < ELEMENTSOF(order); i++) {
                int q = storage_write_file(paths[order[i]], data[i], lens[i]);
                if (q < 0)
                        r = storage_fail(ret_error, q, _("%s: cannot write: %s"), paths[order[i]],
                                         strerror(-q));
                else if (i + 1 == ELEMENTSOF(order))
                        r = 0;
        }
        paths_free(paths);
        return r;
}
