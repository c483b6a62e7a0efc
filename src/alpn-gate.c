/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <limits.h>
#include <string.h>

#include "alpn-gate.h"
#include "macro.h"

/* TLS ExtensionType value (IANA). */
#define TLS_EXT_ALPN 16U

static const char *const gate_class_table[_GATE_CLASS_MAX] = {
        [GATE_NORMAL] = "normal",
        [GATE_ACME_PROBE] = "acme-probe",
        [GATE_MALFORMED] = "malformed",
};

const char *gate_class_to_string(GateClass c) {
        return c >= 0 && c < _GATE_CLASS_MAX ? gate_class_table[c] : NULL;
}

static uint16_t read_u16(const uint8_t *p) {
        return (uint16_t) ((unsigned) p[0] << 8 | p[1]);
}

/* RFC 7301 section 3.1:
 *     opaque ProtocolName<1..2^8-1>;
 *     struct { ProtocolName protocol_name_list<2..2^16-1> } ProtocolNameList;
 * The list length must account for the whole extension, no entry may be
 * empty or run past the end. Entries are stored in store when it is given.
 * Returns whether the extension is well formed. */
static bool parse_alpn(const uint8_t *data, size_t size, GateHello *store) {
        size_t list_len, pos;
        unsigned n = 0;

        if (size < 2)
                return false;
        list_len = read_u16(data);
        if (list_len < 2 || list_len != size - 2)
                return false;

        for (pos = 2; pos < size;) {
                size_t name_len = data[pos++];

                if (name_len == 0 || name_len > size - pos)
                        return false;
                if (store && n < GATE_PROTOCOLS_MAX) {
                        store->protocols[n].size = (uint8_t) name_len;
                        memcpy(store->protocols[n].data, data + pos, name_len);
                }
                n++;
                pos += name_len;
        }
        if (store)
                store->n_protocols = n;
        return true;
}

static int on_extension(void *userdata, unsigned tls_id, const unsigned char *data, unsigned size) {
        GateHello *h = userdata;

        if (tls_id != TLS_EXT_ALPN)
                return 0;
        /* Only the first list is kept; any further ALPN extension is
         * counted and checked (two of them are a protocol violation,
         * RFC 8446 section 4.2). */
        if (!parse_alpn(data, size, h->n_alpn_extensions == 0 ? h : NULL))
                h->alpn_well_formed = false;
        h->n_alpn_extensions++;
        return 0;
}

int alpn_gate_parse_client_hello(const uint8_t *msg, size_t len, GateHello *ret) {
        GateHello h = {
                .alpn_well_formed = true,
        };
        gnutls_datum_t d;
        int r;

        if (!ret || (!msg && len > 0))
                return -EINVAL;
        if (len > UINT_MAX)
                return -EBADMSG;

        d = (gnutls_datum_t) {
                .data = (unsigned char *) msg,
                .size = (unsigned) len,
        };
        /* GnuTLS skips version, random, session id, cipher suites and
         * compression methods, checks the framing of the extension block
         * and calls us per extension, duplicates included. */
        r = gnutls_ext_raw_parse(&h, on_extension, &d, GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO);
        if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                r = 0; /* no extension block at all: a valid (old) hello */
        if (r < 0)
                return -EBADMSG;

        *ret = h;
        return 0;
}

GateClass alpn_gate_classify(const GateHello *h) {
        static const char probe[] = ACME_TLS_ALPN_PROTOCOL;

        if (!h)
                return GATE_MALFORMED; /* nothing parsed: refuse */
        if (h->n_alpn_extensions == 0)
                return GATE_NORMAL;
        if (h->n_alpn_extensions > 1 || !h->alpn_well_formed)
                return GATE_MALFORMED;
        if (h->n_protocols == 1 && h->protocols[0].size == sizeof probe - 1 &&
            memcmp(h->protocols[0].data, probe, sizeof probe - 1) == 0)
                return GATE_ACME_PROBE;
        return GATE_NORMAL;
}
