/* SPDX-License-Identifier: MIT */
#pragma once

/* The ALPN gate: reads the offered ALPN list from a raw ClientHello and
 * decides whether the handshake is an ACME TLS-ALPN-01 validation probe
 * (RFC 8737), the only handshake served without a client certificate.
 * Pure logic: no session, no I/O, so a fuzzer can drive it directly.
 * The server name is not the gate's: GnuTLS parses it with tlsgate's
 * handler afterwards, and sni_session_get() (src/sni.h) reads it.
 *
 * Input is the ClientHello body exactly as a GnuTLS pre hook for
 * GNUTLS_HANDSHAKE_CLIENT_HELLO receives it with incoming set: the
 * reassembled handshake message without record or handshake header, i.e.
 * starting at legacy_version (03 03). See docs/HACKING.md, "GnuTLS handshake
 * hooks and the ALPN gate". */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 8737 section 6.2. */
#define ACME_TLS_ALPN_PROTOCOL "acme-tls/1"

/* Protocol names kept from the offered list; longer lists are still
 * counted in n_protocols. GnuTLS itself keeps at most 8. */
#define GATE_PROTOCOLS_MAX 8U

typedef enum GateClass {
        GATE_NORMAL,            /* an mTLS client: served cert, client cert required */
        GATE_ACME_PROBE,        /* exactly ["acme-tls/1"]: challenge cert, no client cert */
        GATE_MALFORMED,         /* broken ALPN (or two of them): refuse the handshake */
        _GATE_CLASS_MAX,
} GateClass;

typedef struct GateProtocol {
        uint8_t size;           /* 1..255 when parsed from a well-formed list */
        uint8_t data[255];      /* raw bytes, not NUL-terminated */
} GateProtocol;

typedef struct GateHello {
        unsigned n_alpn_extensions;     /* ALPN (type 16) extensions seen */
        bool alpn_well_formed;          /* all of them parse per RFC 7301 section 3.1 */
        unsigned n_protocols;           /* entries in the first ALPN list, all counted */
        GateProtocol protocols[GATE_PROTOCOLS_MAX];     /* its first entries */
} GateHello;

/* Walks the extensions of a ClientHello body with gnutls_ext_raw_parse().
 * A hello without extensions is fine (no ALPN). Returns -EBADMSG
 * when the hello or its extension block is not well framed (the caller
 * refuses such a handshake, as GnuTLS would); ALPN content errors are not
 * an error here but alpn_well_formed = false. ret is written only on
 * success. */
int alpn_gate_parse_client_hello(const uint8_t *msg, size_t len, GateHello *ret);

/* GATE_ACME_PROBE only for exactly one well-formed ALPN extension with
 * exactly one entry byte-equal to "acme-tls/1"; GATE_MALFORMED for a
 * malformed ALPN extension or more than one; GATE_NORMAL otherwise
 * (no ALPN, ["h2"], ["acme-tls/1","h2"], ["acme-tls/1","acme-tls/1"],
 * ["ACME-TLS/1"], ...). NULL (nothing
 * parsed) gives GATE_MALFORMED. */
GateClass alpn_gate_classify(const GateHello *h);

const char *gate_class_to_string(GateClass c);
