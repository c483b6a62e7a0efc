/* SPDX-License-Identifier: MIT */
#pragma once

/* Listening sockets: bound by us (HOST:PORT, unix:PATH) or inherited from
 * systemd (systemd:NAME). Sockets are returned non-blocking. */

#include <sys/socket.h>
#include <sys/un.h>

#include "address.h"

/* A sockaddr_un for path; -ENAMETOOLONG for an empty path or one longer
 * than sun_path holds. */
int sockaddr_un_fill(const char *path, struct sockaddr_un *un, socklen_t *ret_len);

/* Opens the listening socket for a. For unix:PATH, *ret_unlink_path is set
 * to a malloc'ed copy of the path, to be removed on exit. Errors: a negative
 * errno and a malloc'ed message naming the address and the problem. */
int listener_open(const Address *a, int *ret_fd, char **ret_unlink_path, char **ret_error);

/* Resolves an address to connect to (at start-up, once: the lookup blocks)
 * into a sockaddr; an IPv4 address wins when a name has both. Errors name
 * flag ("--target") and the address. */
int address_resolve(const Address *a, const char *flag, struct sockaddr_storage *ret,
                    socklen_t *ret_len, char **ret_error);
/* address_resolve() for --target. */
int target_resolve(const Address *a, struct sockaddr_storage *ret, socklen_t *ret_len,
                   char **ret_error);
