/* SPDX-License-Identifier: MIT */
#pragma once

/* Logging: native journal entries with fields when stderr is connected to
 * the journal (JOURNAL_STREAM), timestamped lines on stderr otherwise.
 * Functions return the negative errno they were given so that
 * `return log_error_errno(r, "...: %m");` works as in systemd. */

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

#include "macro.h"

typedef struct LogField {
        const char *key;   /* journal field name, e.g. "TLSGATE_PEER" */
        const char *value; /* skipped when NULL */
} LogField;

void log_setup(void);
/* True when messages go to the journal (stderr is the journal's stream). */
bool log_is_journal(void);
void log_set_max_level(int level);
int log_get_max_level(void);
/* Forces stderr output (used by tests and when --help style output matters). */
void log_force_stderr(void);

/* The core: level is a syslog priority; error is 0 or an errno (positive or
 * negative) that %m expands to; message_id is a 32-hex-digit MESSAGE_ID or
 * NULL; fields may be NULL. Returns -abs(error). */
int log_fields_internal(int level, int error, const char *message_id, const LogField *fields,
                        size_t n_fields, const char *file, int line, const char *func,
                        const char *format, ...) _printf_(9, 10);

#define log_full_errno(level, error, ...) \
        log_fields_internal(level, error, NULL, NULL, 0, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_fields(level, error, message_id, fields, n, ...)                                    \
        log_fields_internal(level, error, message_id, fields, n, __FILE__, __LINE__, __func__, \
                            __VA_ARGS__)

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)
#define log_oom() log_error_errno(ENOMEM, "Out of memory.")

/* Stable MESSAGE_IDs for events people alert on. Each is a random 128-bit
 * ID made with `systemd-id128 new`, never typed or edited by hand; once
 * released, never change a value (see docs/HACKING.md, Logging). */
#define MESSAGE_ID_CLIENT_DENIED "9bc8d128d3474aee8c4e7a926e5e72cc"
#define MESSAGE_ID_HANDSHAKE_FAILED "9517482f399f4b1588401f4676cf5bac"
#define MESSAGE_ID_DIAL_FAILED "28edbb68c9594770a4e82c0778107bc4"
#define MESSAGE_ID_CERT_OBTAINED "b76424d408c04280a384db015bbecc68"
#define MESSAGE_ID_CERT_RENEWED "2141c7f97cb842abac5f9ca4b048f0e7"
#define MESSAGE_ID_RENEWAL_FAILED "e8659712de774077818f5fb39b2c3709"
#define MESSAGE_ID_RELOAD_FAILED "019f02c829b04d3f93b70417ed251f4a"
#define MESSAGE_ID_OCSP_REVOKED "3c126ce1d1224a78a1ca804cbdcbd85e"
