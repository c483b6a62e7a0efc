/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "sni.h"

/* NameType host_name (RFC 6066 section 3). */
#define SNI_HOST_NAME 0U

/* How tlsgate takes over extension 0 (server_name). The documented way,
 * gnutls_session_ext_register() with GNUTLS_EXT_FLAG_OVERRIDE_INTERNAL,
 * is refused for it (GNUTLS_E_ALREADY_REGISTERED): GnuTLS marks its own
 * handler as not to be overridden, since gnutls_server_name_get() reads
 * its data. The function compares the id it is given, an int, with the
 * 16-bit ids of its built-in extensions and then stores it in a 16-bit
 * field (GnuTLS 3.7): 0x10000 matches no built-in extension and is
 * stored as 0, and a session's own extensions are looked up before the
 * built-in ones, for parsing and for gnutls_ext_set_data()/get_data().
 * Because this relies on how GnuTLS stores the id, sni_session_enable()
 * then asks GnuTLS which handler it will use for extension 0
 * (gnutls_ext_get_name2()) and trusts the override only when that is this
 * one; with any other GnuTLS the session keeps the built-in parser. */
#define SNI_EXT_ID_ALIAS 0x10000
#define SNI_EXT_NAME "server_name (tlsgate)"

static uint16_t read_u16(const uint8_t *p) {
        return (uint16_t) ((unsigned) p[0] << 8 | p[1]);
}

/* What GnuTLS accepts (letters, digits, '-', '.'), plus '_', which host
 * names of containers and services carry and Go's crypto/tls accepts (Go
 * takes any byte but a trailing dot; tlsgate stays stricter). */
static bool host_name_char_ok(uint8_t c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_';
}

int sni_parse(const uint8_t *data, size_t size, char ret[static SNI_NAME_MAX + 1]) {
        const uint8_t *host = NULL;
        size_t pos, host_len = 0;
        bool two_hosts = false;

        if (!data && size > 0)
                return -EBADMSG;
        /* server_name_list<1..2^16-1>: the whole extension, never empty. */
        if (size < 2 || read_u16(data) != size - 2 || size == 2)
                return -EBADMSG;

        for (pos = 2; pos < size;) {
                uint8_t type;
                size_t name_len;

                if (size - pos < 3)
                        return -EBADMSG;
                type = data[pos];
                name_len = read_u16(data + pos + 1);
                pos += 3;
                /* HostName<1..2^16-1>, within the list. */
                if (name_len == 0 || name_len > size - pos)
                        return -EBADMSG;
                if (type == SNI_HOST_NAME && host)
                        two_hosts = true;
                else if (type == SNI_HOST_NAME) {
                        host = data + pos;
                        host_len = name_len;
                }
                pos += name_len;
        }
        /* Only now: a list that is not well framed is malformed, whatever
         * else it holds. */
        if (two_hosts)
                return -ENOTUNIQ;

        if (!host) {
                ret[0] = '\0';
                return 0;
        }
        /* Every byte is checked, whatever the length: a NUL or a space is
         * refused in a long name too. */
        for (size_t i = 0; i < host_len; i++)
                if (!host_name_char_ok(host[i]))
                        return -EINVAL;
        if (host_len > SNI_NAME_MAX) {
                ret[0] = '\0';
                return 0;
        }
        memcpy(ret, host, host_len);
        ret[host_len] = '\0';
        return 0;
}

static void sni_ext_free(gnutls_ext_priv_data_t data) {
        free(data);
}

/* Our handler for the ClientHello's server_name extension (also the
 * second ClientHello after a HelloRetryRequest, which replaces the first's
 * name). GnuTLS has already refused a second server_name extension. The
 * alerts are those GnuTLS sends: decode_error for bad framing,
 * illegal_parameter for a name it would not take. A server answers with no
 * server_name extension, as GnuTLS does: RFC 6066 section 3 allows it
 * ("MAY"), and it does not change what a client resumes. */
static int sni_ext_recv(gnutls_session_t session, const unsigned char *data, size_t size) {
        char name[SNI_NAME_MAX + 1];
        char *copy = NULL;
        int r;

        r = sni_parse(data, size, name);
        if (r == -EBADMSG)
                return GNUTLS_E_UNEXPECTED_PACKET_LENGTH;
        if (r == -EINVAL)
                return GNUTLS_E_RECEIVED_DISALLOWED_NAME;
        if (r < 0)
                return GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER;

        if (name[0]) {
                copy = strdup(name);
                if (!copy)
                        return GNUTLS_E_MEMORY_ERROR;
        }
        /* Freed by GnuTLS (sni_ext_free) on the next call or gnutls_deinit(). */
        gnutls_ext_set_data(session, 0, copy);
        return 0;
}

/* Whether GnuTLS hands extension 0 of this session to sni_ext_recv(). */
static bool sni_session_overridden(gnutls_session_t session) {
        return streq_ptr(gnutls_ext_get_name2(session, 0, GNUTLS_EXT_MANDATORY), SNI_EXT_NAME);
}

void sni_session_enable(gnutls_session_t session) {
        static atomic_bool warned = false;
        int r;

        /* No pack or unpack function: the name is not stored in session
         * tickets. GnuTLS's check that a resumed session names the same
         * server then compares nothing; Go does not compare either, and
         * nothing tlsgate serves depends on the name (a probe for an ACME
         * challenge, the one case, gets no ticket). */
        r = gnutls_session_ext_register(session, SNI_EXT_NAME, SNI_EXT_ID_ALIAS,
                                        GNUTLS_EXT_MANDATORY, sni_ext_recv, NULL, sni_ext_free,
                                        NULL, NULL,
                                        GNUTLS_EXT_FLAG_CLIENT_HELLO | GNUTLS_EXT_FLAG_TLS);
        if (r >= 0 && sni_session_overridden(session))
                return;

        /* Whatever the reason (GnuTLS refuses the id, or even its memory
         * ran out), the session still works, with GnuTLS's own parser. */
        if (!atomic_exchange(&warned, true))
                log_warning("GnuTLS %s does not let tlsgate parse the server name (SNI) itself "
                            "(%s): clients sending a name with '_' will be refused",
                            gnutls_check_version(NULL),
                            r < 0 ? gnutls_strerror(r) : "another handler is in place");
}

void sni_session_get(gnutls_session_t session, char ret[static SNI_NAME_MAX + 1]) {
        gnutls_ext_priv_data_t data = NULL;
        size_t size = SNI_NAME_MAX + 1;
        unsigned type = 0;

        ret[0] = '\0';
        if (sni_session_overridden(session)) {
                if (gnutls_ext_get_data(session, 0, &data) >= 0 && data)
                        snprintf(ret, SNI_NAME_MAX + 1, "%s", (const char *) data);
                return;
        }
        /* GnuTLS's own parser checked the characters; a name too long for
         * ret is ignored, as sni_parse() does. */
        if (gnutls_server_name_get(session, ret, &size, &type, 0) < 0 || type != GNUTLS_NAME_DNS)
                ret[0] = '\0';
}
