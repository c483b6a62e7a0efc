/* SPDX-License-Identifier: MIT */
#pragma once

/* ClientHellos exactly as a real GnuTLS client sends them and the daemon's
 * ClientHello pre hook sees them (the body from legacy_version on): a client
 * thread with the given priority string, ALPN list and SNI (NULL: none)
 * talks to a GnuTLS server over a socketpair; the server's pre hook copies
 * the message and stops the handshake. Used by tests/unit/test-alpn-gate.c
 * and tests/fuzz/gen-client-hellos.c. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct HelloCapture {
        uint8_t *msg;           /* malloc()ed; the caller frees it */
        size_t len;
        unsigned n_calls;       /* pre hook calls for a ClientHello: 1 */
} HelloCapture;

/* True when exactly one ClientHello was captured into *ret. */
bool hello_capture(const char *priority, const char *const *alpn, unsigned n_alpn,
                   const char *sni, HelloCapture *ret);
