/* SPDX-License-Identifier: MIT */
#pragma once

/* What the parts of the certmagic storage share, internal to them:
 * storage.c (names and paths), storage-file.c (atomic files),
 * storage-json.c (JSON as Go writes it), storage-cert.c (certificates and
                                                          * keys), storage-account.c (ACME accounts) and storage-lock.c (certmagic's
                                                                                                                         * lock files). The rest of tlsgate uses storage.h. */

#include <gnutls/x509.h>
#include <json-c/json.h>
#include <stdbool.h>

#include "storage.h"

static inline void json_object_putp(json_object **o) {
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_object_putp)

/* The members of a Go struct we read and write. Writing follows the table's
 * order, which is the struct's field order, honouring omitempty. */
typedef enum FieldType { FIELD_STRING, FIELD_STRV, FIELD_BOOL, FIELD_RAW } FieldType;
typedef struct Field {
        const char *key;
        FieldType type;
        size_t offset;
        bool omitempty;
} Field;
#define FIELD_PTR(base, f, T) ((T *) ((char *) (base) + (f)->offset))

/* error_set() that replaces an earlier message; ret_error may be NULL. */
int storage_fail(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);

/* mkdir -p for the parents of path; new directories 0700 whatever the umask. */
int storage_mkdir_parents(const char *path);

int storage_fsync_directory_of(const char *path);

/* A complete, fsynced temporary file next to path, named like certmagic's
 * atomicfile does (".tmp-<name>"), shortened to stay under NAME_MAX. */
int storage_write_temp(const char *path, const void *data, size_t n, char **ret_tmp);

/* Removes what a writer that died (kill -9, power loss) left in dir: entries
 * named prefix* that have not changed for STORAGE_LOCK_STALE_USEC (a live
                                                                    * writer finishes within milliseconds), files and directories of files. */
void storage_remove_stale_temps(const char *dir, const char *prefix);

/* The ".tmp-<name>" prefix of path's temporary files, and its directory. */
int storage_temp_prefix(const char *path, char **ret_dir, char **ret_prefix);

/* A whole regular file, NUL-terminated. -ENOENT when absent, -EBADMSG when not a
 * regular file or too large, the errno when it cannot be read. Opened relative to
 * dfd (the last component of path when dfd is a directory), named path. */
int storage_read_file_at(int dfd, const char *path, bool secret, char **ret, size_t *ret_len,
                         char **ret_error);

int storage_read_file(const char *path, bool secret, char **ret, size_t *ret_len,
                      char **ret_error);

/* Serializes as Go's encoding/json does (json.MarshalIndent(v, "", "\t") when pretty,
 * json.Marshal otherwise): json-c lays it out, then the differences are fixed. Raw
 * newlines and non-ASCII bytes occur only outside strings resp. inside them, so
 * these rewrites are exact: Go escapes <, >, & and U+2028/U+2029, and writes empty
 * containers as [] and {} where json-c breaks the line. */
int storage_json_format(json_object *o, bool pretty, char **ret);

/* A whole file as one JSON object, as strictly as Go's json.Unmarshal. */
int storage_json_parse(const char *path, const char *data, size_t len, json_object **ret,
                       char **ret_error);

int storage_json_get_fields(json_object *o, const Field *fields, size_t n, void *base,
                            const char *path, char **ret_error);

int storage_json_add(json_object *o, const char *key, json_object *v);

int storage_json_add_fields(json_object *o, const Field *fields, size_t n, const void *base);

int storage_import_key(const char *pem, size_t len, gnutls_x509_privkey_t *ret);
