/* SPDX-License-Identifier: MIT */
/* PROXY protocol v2 headers: writer and parser (see proxy-protocol.h).
 *
 * Layout (proxy-protocol.txt section 2.2), all integers big endian:
 *
 *   12 bytes  signature \r\n\r\n\0\r\nQUIT\n
 *    1 byte   0x21: version 2, command PROXY
 *    1 byte   family and transport: 0x11 TCP4, 0x21 TCP6, 0x31 UNIX stream
 *    2 bytes  length of what follows (addresses and TLVs)
 *   addresses TCP4: src 4, dst 4, src port 2, dst port 2
 *             TCP6: src 16, dst 16, src port 2, dst port 2
 *             UNIX: src path 108, dst path 108 (zero-padded)
 *   TLVs      type 1, length 2, value; tlsgate writes, in Ghostunnel's order,
 *             ALPN (0x01), AUTHORITY (0x02), SSL (0x20). SSL's value is the
 *             client flags (1), verify (4, 0 = verified) and sub-TLVs:
 *             VERSION (0x21), CIPHER (0x23), CN (0x22), CLIENT_CERT (0x28,
 *             Ghostunnel's). */

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "macro.h"
#include "proxy-protocol.h"

static const char *const proxy_mode_table[_PROXY_MODE_MAX] = {
        [PROXY_MODE_CONN] = "conn",
        [PROXY_MODE_TLS] = "tls",
        [PROXY_MODE_TLS_FULL] = "tls-full",
};

const char *proxy_mode_to_string(ProxyMode m) {
        return m >= 0 && m < _PROXY_MODE_MAX ? proxy_mode_table[m] : NULL;
}

int proxy_mode_from_string(const char *s, ProxyMode *ret) {
        if (!s)
                return -EINVAL;
        for (ProxyMode m = 0; m < _PROXY_MODE_MAX; m++)
                if (proxy_mode_table[m] && streq(proxy_mode_table[m], s)) {
                        *ret = m;
                        return 0;
                }
        return -EINVAL;
}

/* --- addresses ------------------------------------------------------------ */

typedef enum EndpointKind {
        ENDPOINT_NONE,
        ENDPOINT_IPV4,
        ENDPOINT_IPV6,
        ENDPOINT_UNIX,
} EndpointKind;

typedef struct Endpoint {
        EndpointKind kind;
        uint8_t addr[16];       /* IPv4: the first 4 bytes */
        uint16_t port;
        uint8_t path[PP2_UNIX_PATH_LEN]; /* zero-padded */
} Endpoint;

static void endpoint_from_sockaddr(const struct sockaddr *sa, socklen_t len, Endpoint *ret) {
        sa_family_t family;

        *ret = (Endpoint) { .kind = ENDPOINT_NONE };
        if (!sa || len < (socklen_t) sizeof(sa_family_t))
                return;
        /* memcpy: the caller's bytes need not be aligned for the struct. */
        memcpy(&family, (const uint8_t *) sa + offsetof(struct sockaddr, sa_family), sizeof family);

        if (family == AF_INET && len >= (socklen_t) sizeof(struct sockaddr_in)) {
                struct sockaddr_in in;

                memcpy(&in, sa, sizeof in);
                ret->kind = ENDPOINT_IPV4;
                memcpy(ret->addr, &in.sin_addr, 4);
                ret->port = ntohs(in.sin_port);
        } else if (family == AF_INET6 && len >= (socklen_t) sizeof(struct sockaddr_in6)) {
                struct sockaddr_in6 in6;

                memcpy(&in6, sa, sizeof in6);
                ret->port = ntohs(in6.sin6_port);
                /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d;
                 * they are IPv4 clients (as in Ghostunnel, IP.To4()). */
                if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
                        ret->kind = ENDPOINT_IPV4;
                        memcpy(ret->addr, &in6.sin6_addr.s6_addr[12], 4);
                } else {
                        ret->kind = ENDPOINT_IPV6;
                        memcpy(ret->addr, &in6.sin6_addr, 16);
                }
        } else if (family == AF_UNIX && len >= (socklen_t) offsetof(struct sockaddr_un, sun_path)) {
                size_t n = MIN((size_t) len - offsetof(struct sockaddr_un, sun_path),
                               (size_t) PP2_UNIX_PATH_LEN);

                ret->kind = ENDPOINT_UNIX;
                /* An unnamed client socket has no path: all zeros. An
                 * abstract one keeps its leading NUL, as the kernel shows it. */
                memcpy(ret->path, (const uint8_t *) sa + offsetof(struct sockaddr_un, sun_path), n);
        }
}

static void endpoint_map_to_ipv6(Endpoint *e) {
        uint8_t v4[4];

        if (e->kind != ENDPOINT_IPV4)
                return;
        memcpy(v4, e->addr, 4);
        memset(e->addr, 0, 10);
        e->addr[10] = e->addr[11] = 0xff;
        memcpy(e->addr + 12, v4, 4);
        e->kind = ENDPOINT_IPV6;
}

/* The family byte for a pair of endpoints; both must be of one kind. */
static uint8_t endpoints_family(Endpoint *src, Endpoint *dst) {
        if (src->kind == ENDPOINT_IPV4 && dst->kind == ENDPOINT_IPV4)
                return PP2_FAM_TCP4;
        if ((src->kind == ENDPOINT_IPV4 || src->kind == ENDPOINT_IPV6) &&
            (dst->kind == ENDPOINT_IPV4 || dst->kind == ENDPOINT_IPV6)) {
                endpoint_map_to_ipv6(src);
                endpoint_map_to_ipv6(dst);
                return PP2_FAM_TCP6;
        }
        if (src->kind == ENDPOINT_UNIX && dst->kind == ENDPOINT_UNIX)
                return PP2_FAM_UNIX_STREAM;
        return PP2_FAM_UNSPEC;
}

static size_t family_addr_len(uint8_t family) {
        switch (family) {
        case PP2_FAM_TCP4:
                return PP2_ADDR_LEN_TCP4;
        case PP2_FAM_TCP6:
                return PP2_ADDR_LEN_TCP6;
        case PP2_FAM_UNIX_STREAM:
                return PP2_ADDR_LEN_UNIX;
        default:
                return 0;
        }
}

/* --- writing -------------------------------------------------------------- */

/* Counts every byte and stores those that fit, so that one pass both sizes
 * and writes the header. */
typedef struct Writer {
        uint8_t *buf;
        size_t size, pos;
} Writer;

static void put(Writer *w, const void *data, size_t n) {
        if (n > 0 && w->pos <= w->size && n <= w->size - w->pos)
                memcpy(w->buf + w->pos, data, n);
        w->pos += n;
}

static void put_u8(Writer *w, uint8_t v) {
        put(w, &v, 1);
}

static void put_be16(Writer *w, uint16_t v) {
        uint8_t b[2] = { (uint8_t) (v >> 8), (uint8_t) v };
        put(w, b, sizeof b);
}

static void put_be32(Writer *w, uint32_t v) {
        uint8_t b[4] = { (uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v };
        put(w, b, sizeof b);
}

static void put_tlv(Writer *w, uint8_t type, const void *value, size_t len) {
        assert(len <= PP2_PAYLOAD_MAX);
        put_u8(w, type);
        put_be16(w, (uint16_t) len);
        put(w, value, len);
}

/* The sizes of everything optional, checked against the 16-bit fields
 * before anything is added up, so no sum can overflow. */
typedef struct Layout {
        uint8_t family;
        Endpoint src, dst;
        size_t alpn, authority, version, cipher, cn, cert; /* value lengths; 0: absent */
        bool ssl;
        size_t ssl_value;       /* the SSL TLV's value: header and sub-TLVs */
        size_t payload;         /* everything after the 16-byte header */
} Layout;

static int tlv_size(size_t value_len, size_t *sum) {
        if (value_len > PP2_PAYLOAD_MAX - PP2_TLV_HEADER_LEN)
                return -E2BIG;
        *sum += PP2_TLV_HEADER_LEN + value_len;
        return 0;
}

static int layout(const ProxyInfo *info, Layout *l) {
        size_t tlvs = 0;
        int r;

        if (!info || info->mode <= PROXY_MODE_OFF || info->mode >= _PROXY_MODE_MAX)
                return -EINVAL;

        *l = (Layout) {};
        endpoint_from_sockaddr(info->src, info->src_len, &l->src);
        endpoint_from_sockaddr(info->dst, info->dst_len, &l->dst);
        l->family = endpoints_family(&l->src, &l->dst);

        if (info->mode >= PROXY_MODE_TLS) {
                size_t sub = PP2_SSL_HEADER_LEN;

                l->alpn = info->alpn ? info->alpn_len : 0;
                l->authority = info->authority ? strlen(info->authority) : 0;
                l->version = info->tls_version ? strlen(info->tls_version) : 0;
                l->cipher = info->cipher ? strlen(info->cipher) : 0;
                if (info->mode == PROXY_MODE_TLS_FULL) {
                        l->cn = info->cn ? strlen(info->cn) : 0;
                        l->cert = info->cert ? info->cert_len : 0;
                }
                if ((l->version > 0 && (r = tlv_size(l->version, &sub)) < 0) ||
                    (l->cipher > 0 && (r = tlv_size(l->cipher, &sub)) < 0) ||
                    (l->cn > 0 && (r = tlv_size(l->cn, &sub)) < 0) ||
                    (l->cert > 0 && (r = tlv_size(l->cert, &sub)) < 0))
                        return r;
                /* Four sub-TLVs of at most 64 KiB each cannot overflow. */
                l->ssl = true;
                l->ssl_value = sub;
                if ((l->alpn > 0 && (r = tlv_size(l->alpn, &tlvs)) < 0) ||
                    (l->authority > 0 && (r = tlv_size(l->authority, &tlvs)) < 0) ||
                    (r = tlv_size(l->ssl_value, &tlvs)) < 0)
                        return r;
        }

        l->payload = family_addr_len(l->family) + tlvs;
        if (l->payload > PP2_PAYLOAD_MAX)
                return -E2BIG;
        return 0;
}

static void write_addresses(Writer *w, const Layout *l) {
        switch (l->family) {
        case PP2_FAM_TCP4:
        case PP2_FAM_TCP6: {
                size_t n = l->family == PP2_FAM_TCP4 ? 4 : 16;

                put(w, l->src.addr, n);
                put(w, l->dst.addr, n);
                put_be16(w, l->src.port);
                put_be16(w, l->dst.port);
                break;
        }
        case PP2_FAM_UNIX_STREAM:
                put(w, l->src.path, PP2_UNIX_PATH_LEN);
                put(w, l->dst.path, PP2_UNIX_PATH_LEN);
                break;
        default:
                break;
        }
}

static void write_header(Writer *w, const ProxyInfo *info, const Layout *l) {
        put(w, PP2_SIGNATURE, PP2_SIGNATURE_LEN);
        put_u8(w, PP2_VERSION | PP2_CMD_PROXY);
        put_u8(w, l->family);
        put_be16(w, (uint16_t) l->payload);
        write_addresses(w, l);

        if (!l->ssl)
                return;
        if (l->alpn > 0)
                put_tlv(w, PP2_TYPE_ALPN, info->alpn, l->alpn);
        if (l->authority > 0)
                put_tlv(w, PP2_TYPE_AUTHORITY, info->authority, l->authority);

        put_u8(w, PP2_TYPE_SSL);
        put_be16(w, (uint16_t) l->ssl_value);
        /* The certificate flags belong with the certificate: tls-full only,
         * as in Ghostunnel; tls says only that the client used TLS. */
        if (info->mode == PROXY_MODE_TLS_FULL)
                put_u8(w, PP2_CLIENT_SSL | (info->cert_conn ? PP2_CLIENT_CERT_CONN : 0) |
                                  (info->cert_sess ? PP2_CLIENT_CERT_SESS : 0));
        else
                put_u8(w, PP2_CLIENT_SSL);
        /* verify: 0 means the client certificate was verified. tlsgate never
         * gets this far with one that was not (or with none, when it asked). */
        put_be32(w, 0);
        if (l->version > 0)
                put_tlv(w, PP2_SUBTYPE_SSL_VERSION, info->tls_version, l->version);
        if (l->cipher > 0)
                put_tlv(w, PP2_SUBTYPE_SSL_CIPHER, info->cipher, l->cipher);
        if (l->cn > 0)
                put_tlv(w, PP2_SUBTYPE_SSL_CN, info->cn, l->cn);
        if (l->cert > 0)
                put_tlv(w, PP2_SUBTYPE_SSL_CLIENT_CERT, info->cert, l->cert);
}

int proxy_v2_header_size(const ProxyInfo *info, size_t *ret) {
        Layout l;
        int r;

        r = layout(info, &l);
        if (r < 0)
                return r;
        *ret = PP2_HEADER_LEN + l.payload;
        return 0;
}

int proxy_v2_header(const ProxyInfo *info, uint8_t *buf, size_t size, size_t *ret_len) {
        Writer w = { .buf = buf, .size = buf ? size : 0 };
        Layout l;
        int r;

        r = layout(info, &l);
        if (r < 0)
                return r;
        if (PP2_HEADER_LEN + l.payload > w.size)
                return -ENOBUFS;
        write_header(&w, info, &l);
        assert(w.pos == PP2_HEADER_LEN + l.payload);
        *ret_len = w.pos;
        return 0;
}

/* --- parsing -------------------------------------------------------------- */

static uint16_t get_be16(const uint8_t *p) {
        return (uint16_t) (p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* Walks the TLVs in p[0..n). Calls on_tlv for each; fails on one that runs
 * past the end. */
static int parse_tlvs(const uint8_t *p, size_t n, ProxyHeader *h,
                      int (*on_tlv)(ProxyHeader *h, uint8_t type, const uint8_t *v, size_t len)) {
        while (n > 0) {
                size_t len;
                int r;

                if (n < PP2_TLV_HEADER_LEN)
                        return -EBADMSG;
                len = get_be16(p + 1);
                if (len > n - PP2_TLV_HEADER_LEN)
                        return -EBADMSG;
                r = on_tlv(h, p[0], p + PP2_TLV_HEADER_LEN, len);
                if (r < 0)
                        return r;
                p += PP2_TLV_HEADER_LEN + len;
                n -= PP2_TLV_HEADER_LEN + len;
        }
        return 0;
}

static int on_ssl_sub_tlv(ProxyHeader *h, uint8_t type, const uint8_t *v, size_t len) {
        switch (type) {
        case PP2_SUBTYPE_SSL_VERSION:
                h->ssl_version = v, h->ssl_version_len = len;
                break;
        case PP2_SUBTYPE_SSL_CIPHER:
                h->ssl_cipher = v, h->ssl_cipher_len = len;
                break;
        case PP2_SUBTYPE_SSL_CN:
                h->ssl_cn = v, h->ssl_cn_len = len;
                break;
        case PP2_SUBTYPE_SSL_CLIENT_CERT:
                h->ssl_cert = v, h->ssl_cert_len = len;
                break;
        default:
                break;
        }
        return 0;
}

static int on_tlv(ProxyHeader *h, uint8_t type, const uint8_t *v, size_t len) {
        h->n_tlvs++;
        switch (type) {
        case PP2_TYPE_ALPN:
                h->alpn = v, h->alpn_len = len;
                return 0;
        case PP2_TYPE_AUTHORITY:
                h->authority = v, h->authority_len = len;
                return 0;
        case PP2_TYPE_SSL:
                if (len < PP2_SSL_HEADER_LEN)
                        return -EBADMSG;
                h->has_ssl = true;
                h->ssl_client = v[0];
                h->ssl_verify = get_be32(v + 1);
                h->ssl_version = h->ssl_cipher = h->ssl_cn = h->ssl_cert = NULL;
                h->ssl_version_len = h->ssl_cipher_len = h->ssl_cn_len = h->ssl_cert_len = 0;
                return parse_tlvs(v + PP2_SSL_HEADER_LEN, len - PP2_SSL_HEADER_LEN, h,
                                  on_ssl_sub_tlv);
        default:
                return 0;
        }
}

int proxy_v2_parse(const uint8_t *buf, size_t size, ProxyHeader *ret) {
        ProxyHeader h = {};
        const uint8_t *p;
        size_t payload, addr_len;
        int r;

        /* Refuse a wrong prefix as early as it shows, before waiting for more. */
        if (size > 0 && memcmp(buf, PP2_SIGNATURE, MIN(size, (size_t) PP2_SIGNATURE_LEN)) != 0)
                return -EBADMSG;
        if (size < PP2_HEADER_LEN)
                return -EAGAIN;
        if ((buf[12] & 0xf0) != PP2_VERSION || (buf[12] & 0x0f) > PP2_CMD_PROXY)
                return -EBADMSG;
        h.command = buf[12] & 0x0f;
        h.family = buf[13];
        if (h.family != PP2_FAM_UNSPEC && h.family != PP2_FAM_TCP4 && h.family != PP2_FAM_TCP6 &&
            h.family != PP2_FAM_UNIX_STREAM)
                return -EBADMSG;
        payload = get_be16(buf + 14);
        if (size - PP2_HEADER_LEN < payload)
                return -EAGAIN;
        h.len = PP2_HEADER_LEN + payload;

        p = buf + PP2_HEADER_LEN;
        addr_len = family_addr_len(h.family);
        if (payload < addr_len)
                return -EBADMSG;
        switch (h.family) {
        case PP2_FAM_TCP4:
        case PP2_FAM_TCP6: {
                size_t n = h.family == PP2_FAM_TCP4 ? 4 : 16;

                memcpy(h.src_addr, p, n);
                memcpy(h.dst_addr, p + n, n);
                h.src_port = get_be16(p + 2 * n);
                h.dst_port = get_be16(p + 2 * n + 2);
                break;
        }
        case PP2_FAM_UNIX_STREAM:
                h.src_path = p;
                h.dst_path = p + PP2_UNIX_PATH_LEN;
                break;
        default:
                break;
        }

        r = parse_tlvs(p + addr_len, payload - addr_len, &h, on_tlv);
        if (r < 0)
                return r;
        *ret = h;
        return 0;
}
