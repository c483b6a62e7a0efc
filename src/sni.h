/* SPDX-License-Identifier: MIT */
#pragma once

/* The server name a client asks for (SNI, RFC 6066 section 3), parsed by
 * tlsgate rather than by GnuTLS.
 *
 * GnuTLS 3.7 refuses a handshake whose host name holds any byte other than
 * a letter, a digit, '-' or '.' ("A disallowed SNI server name has been
 * received"), so clients that connect by a name such as new_server or a
 * Docker Compose service my_api could not connect, while Ghostunnel (Go's
 * crypto/tls) serves them. tlsgate installs its own handler for the
 * server_name extension on every server session: the same rules as GnuTLS,
 * plus the underscore.
 *
 * sni_parse() is the pure part (bytes in, name or error out), for the unit
 * tests and the fuzzer; sni_session_enable() and sni_session_get() put it
 * on a GnuTLS session and read the result. */

#include <gnutls/gnutls.h>
#include <stddef.h>
#include <stdint.h>

/* A host name without trailing dot (RFC 1035 limits); longer names are
 * ignored, as tlsgate always did. */
#define SNI_NAME_MAX 253U

/* Parses the body of a ClientHello's server_name extension:
 *     struct { NameType name_type; opaque HostName<1..2^16-1>; } ServerName;
 *     struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
 * and copies its host_name (name_type 0) to ret, NUL-terminated. Entries of
 * other name types are skipped. Returns:
 *   0        ret holds the name, or "" when the list names no host, or a host
 *            name longer than SNI_NAME_MAX (ignored: it is no DNS name);
 *   -EBADMSG the list is not well framed (lengths, an empty list or name);
 *   -EINVAL  the host name holds a byte other than A-Z a-z 0-9 - . _
 *            (a NUL, a space, a control or non-ASCII byte ...);
 *   -ENOTUNIQ two host names (RFC 6066: "MUST NOT contain more than one
 *            name of the same name_type").
 * ret is written only on success. */
int sni_parse(const uint8_t *data, size_t size, char ret[static SNI_NAME_MAX + 1]);

/* On a server session, before its handshake: lets sni_parse() read the
 * client's server_name extension instead of GnuTLS. When this GnuTLS does
 * not allow that (see sni.c), the session keeps GnuTLS's own parser, which
 * refuses names with an underscore; that is said once in the log and is no
 * error: the session works either way. */
void sni_session_enable(gnutls_session_t session);

/* The server name of this session's ClientHello, as sent, into ret (""
 * when there is none, none yet, or it was ignored). Works whether or not
 * sni_session_enable() took over the extension: this is the one accessor
 * for "the SNI of this session"; gnutls_server_name_get() sees no name on
 * a session where tlsgate parses it. */
void sni_session_get(gnutls_session_t session, char ret[static SNI_NAME_MAX + 1]);
