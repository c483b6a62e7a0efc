/* SPDX-License-Identifier: MIT */
#pragma once

/* Listen and target address specs: HOST:PORT, [IPv6]:PORT, unix:PATH,
 * systemd:NAME. Pure parsing, no I/O. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef enum AddressKind {
        ADDRESS_TCP,
        ADDRESS_UNIX,
        ADDRESS_SYSTEMD,
} AddressKind;

typedef struct Address {
        AddressKind kind;
        char *spec;     /* the string as given, for messages */
        char *host;     /* TCP: host without brackets ("" means any address) */
        char *port;     /* TCP: numeric port, 1..65535 (0 allowed for listen) */
        char *path;     /* UNIX: socket path; SYSTEMD: FileDescriptorName */
} Address;

/* Parses spec. allow_systemd: whether systemd:NAME is accepted (listen only).
 * On error returns -EINVAL and sets *ret_reason to a static, untranslated
 * English reason (e.g. "missing port"). */
int address_parse(const char *spec, bool allow_systemd, Address *ret, const char **ret_reason);
void address_done(Address *a);

/* True for unix:, 127.0.0.1:, [::1]:, localhost: (Ghostunnel's safe targets). */
bool address_is_local_target(const char *spec);

/* Formats a socket address as the logs show it: a.b.c.d:PORT (IPv4-mapped
 * IPv6 addresses included), [v6]:PORT, unix:PATH or unix:@ (unnamed or
 * abstract). */
void sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);
