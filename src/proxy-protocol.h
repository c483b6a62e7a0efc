/* SPDX-License-Identifier: MIT */
#pragma once

/* PROXY protocol version 2 (HAProxy's doc/proxy-protocol.txt, section 2.2):
 * the binary header tlsgate writes to the target before the first byte of
 * the client, so that the backend learns who connected and, with
 * --proxy-protocol-mode=tls or tls-full, what the TLS layer established.
 * Pure: builds and parses bytes, no I/O, no GnuTLS; the parser exists for
 * the tests and the fuzzer. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum ProxyMode {
        PROXY_MODE_OFF,
        PROXY_MODE_CONN,     /* addresses only (also --proxy-protocol) */
        PROXY_MODE_TLS,      /* + ALPN, authority (SNI), SSL with the version */
        PROXY_MODE_TLS_FULL, /* + the client's CN and DER certificate */
        _PROXY_MODE_MAX,
} ProxyMode;

/* "conn", "tls", "tls-full" (NULL for OFF or out of range); the parser
 * returns -EINVAL for anything else, "off" included, as Ghostunnel does. */
const char *proxy_mode_to_string(ProxyMode m);
int proxy_mode_from_string(const char *s, ProxyMode *ret);

#define PP2_SIGNATURE "\r\n\r\n\0\r\nQUIT\n"
#define PP2_SIGNATURE_LEN 12
#define PP2_HEADER_LEN 16                 /* signature, ver/cmd, fam, len */
#define PP2_PAYLOAD_MAX UINT16_MAX        /* the length field: everything after byte 16 */

#define PP2_VERSION 0x20
#define PP2_CMD_LOCAL 0x00
#define PP2_CMD_PROXY 0x01

/* Address family (high nibble) and transport (low nibble). */
#define PP2_FAM_UNSPEC 0x00
#define PP2_FAM_TCP4 0x11
#define PP2_FAM_TCP6 0x21
#define PP2_FAM_UNIX_STREAM 0x31

#define PP2_ADDR_LEN_TCP4 12     /* 4 + 4 + 2 + 2 */
#define PP2_ADDR_LEN_TCP6 36     /* 16 + 16 + 2 + 2 */
#define PP2_UNIX_PATH_LEN 108
#define PP2_ADDR_LEN_UNIX (2 * PP2_UNIX_PATH_LEN)

#define PP2_TYPE_ALPN 0x01
#define PP2_TYPE_AUTHORITY 0x02
#define PP2_TYPE_SSL 0x20
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CN 0x22
#define PP2_SUBTYPE_SSL_CIPHER 0x23
/* Not in HAProxy's list: the DER client certificate as Ghostunnel
 * (through go-proxyproto) sends it; receivers ignore types they do not know. */
#define PP2_SUBTYPE_SSL_CLIENT_CERT 0x28

/* PP2_TYPE_SSL's client field. */
#define PP2_CLIENT_SSL 0x01
#define PP2_CLIENT_CERT_CONN 0x02
#define PP2_CLIENT_CERT_SESS 0x04

#define PP2_TLV_HEADER_LEN 3            /* type, length (big endian) */
#define PP2_SSL_HEADER_LEN 5            /* client flags, verify (big endian) */

/* What goes into one header. Pointers are borrowed for the call. */
typedef struct ProxyInfo {
        ProxyMode mode;

        /* The client's address and the address it connected to (the accepted
         * socket's own). AF_INET, AF_INET6 (IPv4-mapped pairs are sent as
         * TCP4) and AF_UNIX; anything else, a mix of unix and IP, or NULL
         * gives the UNSPEC family without addresses. */
        const struct sockaddr *src;
        socklen_t src_len;
        const struct sockaddr *dst;
        socklen_t dst_len;

        /* PROXY_MODE_TLS and up. */
        const uint8_t *alpn;            /* NULL or alpn_len 0: none negotiated */
        size_t alpn_len;
        const char *authority;          /* the SNI; NULL or "": none */
        const char *tls_version;        /* "TLS 1.3"; NULL: no version sub-TLV */
        const char *cipher;             /* IANA name, "TLS_AES_128_GCM_SHA256"; NULL: none */

        /* PROXY_MODE_TLS_FULL only. */
        bool cert_conn, cert_sess;      /* PP2_CLIENT_CERT_CONN/_SESS */
        const char *cn;                 /* NULL or "": no CN sub-TLV */
        const uint8_t *cert;            /* DER leaf; NULL: none */
        size_t cert_len;
} ProxyInfo;

/* The header's size in bytes. -EINVAL for PROXY_MODE_OFF or an invalid mode,
 * -E2BIG when it would not fit the protocol's 16-bit lengths (a huge client
 * certificate): nothing is ever truncated. */
int proxy_v2_header_size(const ProxyInfo *info, size_t *ret);

/* Writes the header into buf. Errors as proxy_v2_header_size(), and -ENOBUFS
 * when size is too small (buf is then left partly written). */
int proxy_v2_header(const ProxyInfo *info, uint8_t *buf, size_t size, size_t *ret_len);

/* A parsed header; pointers point into the parsed buffer. */
typedef struct ProxyHeader {
        size_t len;                     /* the whole header, 16 + payload */
        uint8_t command;                /* PP2_CMD_* */
        uint8_t family;                 /* PP2_FAM_* byte as sent */
        uint8_t src_addr[16], dst_addr[16]; /* TCP4 uses the first 4 bytes */
        uint16_t src_port, dst_port;
        const uint8_t *src_path, *dst_path; /* UNIX: PP2_UNIX_PATH_LEN bytes each */

        const uint8_t *alpn, *authority;
        size_t alpn_len, authority_len;

        bool has_ssl;
        uint8_t ssl_client;
        uint32_t ssl_verify;
        const uint8_t *ssl_version, *ssl_cipher, *ssl_cn, *ssl_cert;
        size_t ssl_version_len, ssl_cipher_len, ssl_cn_len, ssl_cert_len;

        unsigned n_tlvs;                /* top-level TLVs, unknown ones included */
} ProxyHeader;

/* Parses a header at the start of buf. Returns 0, -EAGAIN when buf holds
 * only part of a header (read more), -EBADMSG when it is not a valid v2
 * header (bad signature, version, family, lengths, a TLV running past the
 * end). A second TLV of a known type replaces the first; unknown types are
 * skipped. */
int proxy_v2_parse(const uint8_t *buf, size_t size, ProxyHeader *ret);
