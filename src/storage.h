/* SPDX-License-Identifier: MIT */
#pragma once

/* certmagic's storage layout on the local file system (docs/HACKING.md,
 * "certmagic's storage layout"), byte-compatible with Caddy and Ghostunnel,
 * so either can take over the other's certificates and ACME accounts:
 *
 *   <root>/certificates/<issuer>/<name>/<name>.crt|.key|.json
 *   <root>/acme/<issuer>/users/<email>/<local part>.json|.key
 *   <root>/locks/<lock name>.lock
 *
 * <root> is $XDG_DATA_HOME/certmagic or $HOME/.local/share/certmagic; every
 * component is made safe with certmagic's rules (safe_key()). Directories are
 * created 0700 and files 0600, each file replaced atomically. Everything here
 * is small local file I/O, so it runs synchronously on the loop.
 *
 * Errors: functions return 0 or a negative errno; loaders also hand back a
 * malloc'ed message naming the file (ret_error may be NULL):
 *   -ENOENT   nothing stored: obtain or register anew
 *   -EBADMSG  something stored but unusable (corrupt, truncated, wrong type,
 *             key and certificate do not match, part missing): re-issue
 *   -ENOKEY   account JSON present but its key missing: never register a new
 *             account over it, an operator must restore the key or remove it
 *   other     the file could not be read (-EACCES, -EIO...): don't overwrite */

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* certmagic's lockFreshnessInterval, twice that for staleness, and its
 * fileLockPollInterval: the caller's sd-event timers use these. */
#define STORAGE_LOCK_REFRESH_USEC (5 * USEC_PER_SEC)
#define STORAGE_LOCK_STALE_USEC (10 * USEC_PER_SEC)
#define STORAGE_LOCK_POLL_USEC (1 * USEC_PER_SEC)

/* Largest file we read back (PEM chains and JSON are a few KiB). */
#define STORAGE_FILE_MAX ((size_t) 1024 * 1024)

/* $XDG_DATA_HOME/certmagic, else $HOME/.local/share/certmagic. Relative
 * values are ignored (XDG base directory spec); -ENXIO when neither is an
 * absolute path. */
int storage_root(char **ret);

/* certmagic's StorageKeys.Safe(): lowercase, trim white space, then in one
 * left-to-right pass ' ' -> '_', '+' -> "_plus_", '*' -> "wildcard_",
 * ':' -> '-', ".." -> "", then drop every byte outside [A-Za-z0-9_@.-].
 * Note the last step can create a new ".." (".!." gives ".."), as in
 * certmagic. */
int safe_key(const char *s, char **ret);

/* certmagic's issuer key for an ACME directory URL, made safe: host (with
 * port), '-', the decoded path with '/' and '\' turned into '-' and trimmed
 * of '-'. https://127.0.0.1:14000/dir gives "127.0.0.1-14000-dir". -EINVAL
 * for anything that is not an absolute URL with a host. */
int issuer_key_from_directory_url(const char *url, char **ret);

typedef enum StorageCertFile {
        STORAGE_CERT_CRT,  /* PEM chain, leaf first */
        STORAGE_CERT_KEY,  /* PEM private key */
        STORAGE_CERT_META, /* JSON: sans, issuer_data */
        _STORAGE_CERT_FILE_MAX,
} StorageCertFile;

typedef enum StorageAccountFile {
        STORAGE_ACCOUNT_REG, /* JSON: the ACME account object */
        STORAGE_ACCOUNT_KEY, /* PEM private key */
        _STORAGE_ACCOUNT_FILE_MAX,
} StorageAccountFile;

/* issuer_key is the safe key from issuer_key_from_directory_url(); it is
 * used as it is. domain must be ASCII (an A-label: certmagic converts IDNs to
 * punycode before it builds the name). -EINVAL when a component would be
 * empty, "." or ".." after safe_key(). */
int storage_cert_path(const char *root, const char *issuer_key, const char *domain,
                      StorageCertFile f, char **ret);

/* email NULL or "" means certmagic's "default" account. The file name is the
 * part before the first '@' (all after it when the address starts with '@'),
 * "registration.json"/"private.key" when that is empty. */
int storage_account_path(const char *root, const char *issuer_key, const char *email,
                         StorageAccountFile f, char **ret);

/* locks/<safe_key(name)>.lock */
int storage_lock_path(const char *root, const char *name, char **ret);
/* Lock names certmagic uses: "issue_cert_<domain>" and
 * "register_acme_account_<email>" ("register_acme_account" without one). */
int storage_lock_name_issue_cert(const char *domain, char **ret);
int storage_lock_name_register_account(const char *email, char **ret);

/* Replaces path atomically: parent directories created 0700, data written to
 * a temporary file (O_CREAT|O_EXCL, 0600) in the same directory, fsynced,
 * renamed over path, directory fsynced. On failure before the rename the
 * temporary file is removed and the old file is left as it was; a failure of
 * the final directory fsync means the new content is in place but possibly
 * not yet durable. */
int storage_write_file(const char *path, const void *data, size_t n);

/* One certificate as certmagic stores it. The JSON file carries sans and
 * issuer_data (acmez's acme.Certificate: url, ca, account, renewal_info). */
typedef struct StoredCert {
        char *cert_pem;
        size_t cert_len;
        char *key_pem;
        size_t key_len;
        char **sans;         /* NULL-terminated; may be NULL */
        char *issuer_url;    /* issuer_data.url: the certificate URL */
        char *ca;            /* issuer_data.ca: the directory URL */
        char *account;       /* issuer_data.account: the account URL */
        char *renewal_info;  /* issuer_data.renewal_info as compact JSON (ARI), or NULL */
} StoredCert;

void stored_cert_done(StoredCert *c);

/* Loads and checks the three files: -ENOENT when the .crt is absent;
 * -EBADMSG when the key or JSON is absent, any file is corrupt or
 * truncated, or the key does not belong to the leaf. On success *ret owns
 * everything (release with stored_cert_done()). */
int storage_load_cert(const char *root, const char *issuer_key, const char *domain,
                      StoredCert *ret, char **ret_error);

/* Refuses (-EINVAL) a key that does not match the leaf. Replaces the three
 * files together: they are written (fsynced, 0600) into a new directory
 * ".tmp-<name>-XXXXXX" next to <name>/, which then trades places with
 * <name>/ in one renameat2(RENAME_EXCHANGE); other files in <name>/ are
 * carried over as hard links. So a crash, kill -9 or full disk at any
 * moment leaves the complete old set or the complete new one; temporary
 * directories of a writer that died are removed by a later save once they
 * are STORAGE_LOCK_STALE_USEC old. The error message names the file that
 * could not be written. Where the file system cannot exchange directories
 * (or <name>/ holds more than plain files) the files are replaced one by
 * one, key first: a crash in between leaves a new key next to the old
 * chain, which storage_load_cert() reports as -EBADMSG (re-issue). */
int storage_save_cert(const char *root, const char *issuer_key, const char *domain,
                      const StoredCert *c, char **ret_error);

/* An ACME account as certmagic stores it (acmez's acme.Account). */
typedef struct StoredAccount {
        char *status;
        char **contact;                  /* NULL-terminated; may be NULL */
        bool terms_of_service_agreed;
        char *external_account_binding; /* compact JSON, or NULL */
        char *orders;
        char *location;                  /* the account URL (JWS "kid") */
        char *key_pem;
        size_t key_len;
} StoredAccount;

void stored_account_done(StoredAccount *a);

/* The primary contact without its scheme ("mailto:a@b" -> "a@b"), or ""
 * without contacts: the email certmagic files the account under. */
int storage_account_email(const StoredAccount *a, char **ret);

/* email as in storage_account_path(). -ENOENT when the JSON is absent,
 * -ENOKEY when the JSON exists but the key does not, -EBADMSG when either
 * is unusable. */
int storage_load_account(const char *root, const char *issuer_key, const char *email,
                         StoredAccount *ret, char **ret_error);

/* Files the account under storage_account_email(a), like certmagic. Writes
 * the key first, then the JSON: a crash in between leaves only a key, which
 * loads as -ENOENT (the orphan key is replaced on the next registration). */
int storage_save_account(const char *root, const char *issuer_key, const StoredAccount *a,
                         char **ret_error);

/* certmagic FileStorage locks: locks/<name>.lock holding
 * {"created":RFC3339,"updated":RFC3339}. now is CLOCK_REALTIME in usec. */
typedef struct StorageLock StorageLock;

/* Returns 0 and the held lock, -EBUSY when someone holds it. A lock whose
 * "updated" (else "created") is more than STORAGE_LOCK_STALE_USEC old is
 * stale and removed; so is an empty or unparsable one whose mtime is that
 * old. Polling every STORAGE_LOCK_POLL_USEC is the caller's job. The lock
 * is written to a temporary file and link()ed into place, so it needs a file
 * system with hard links (all local Linux ones). */
int storage_lock_try(const char *root, const char *name, usec_t now, StorageLock **ret);
/* Rewrites "updated" (atomically); call every STORAGE_LOCK_REFRESH_USEC.
 * -ENOLCK when the file is gone or is no longer ours (it was taken as
 * stale). */
int storage_lock_refresh(StorageLock *l, usec_t now);
/* Removes the lock file if it is still ours (-ENOLCK otherwise). Does not
 * free l. */
int storage_unlock(StorageLock *l);
StorageLock *storage_lock_free(StorageLock *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(StorageLock *, storage_lock_free);
const char *storage_lock_get_path(const StorageLock *l);

/* CLOCK_REALTIME in usec, for the now arguments. */
usec_t storage_now(void);
