/* SPDX-License-Identifier: MIT */
/* The PROXY protocol v2 writer and parser.
 *
 * The input is parsed as a header first (what a fuzzed peer could send;
 * the parser is the tests' reader, but must hold up all the same). Then the
 * same bytes describe a ProxyInfo: mode, both socket addresses with any
 * family and length, the ALPN, SNI, TLS version, CN and certificate (long
 * values are made by repeating a byte, so the 16-bit limits are reached
 * without huge inputs), and the size of the output buffer. The writer must
 * size the header exactly, refuse a short buffer with -ENOBUFS, refuse what
 * does not fit 16 bits with -E2BIG, and write a header that parses back to
 * what went in; every proper prefix of it is "-EAGAIN, read more". */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "fuzz-util.h"
#include "macro.h"
#include "proxy-protocol.h"

static void check_parsed(const uint8_t *buf, size_t size, const ProxyHeader *h) {
        const uint8_t *end = buf + h->len;

        CHECK(h->len >= PP2_HEADER_LEN && h->len <= size);
        CHECK(h->len == PP2_HEADER_LEN + ((size_t) buf[14] << 8 | buf[15]));
        CHECK(h->command <= PP2_CMD_PROXY);
#define INSIDE(p, n) CHECK(!(p) || ((p) >= buf + PP2_HEADER_LEN && (n) <= (size_t) (end - (p))))
        INSIDE(h->alpn, h->alpn_len);
        INSIDE(h->authority, h->authority_len);
        INSIDE(h->ssl_version, h->ssl_version_len);
        INSIDE(h->ssl_cipher, h->ssl_cipher_len);
        INSIDE(h->ssl_cn, h->ssl_cn_len);
        INSIDE(h->ssl_cert, h->ssl_cert_len);
        INSIDE(h->src_path, (size_t) PP2_UNIX_PATH_LEN);
        INSIDE(h->dst_path, (size_t) PP2_UNIX_PATH_LEN);
#undef INSIDE
}

typedef struct Expect {
        int kind; /* 0 none, 4, 6, 'u' */
        uint8_t addr[16];
        uint16_t port;
        uint8_t path[PP2_UNIX_PATH_LEN];
} Expect;

/* What the header should say about one endpoint, from the RFC-level rules
 * in proxy-protocol.h (not from the writer's code). */
static void expect_endpoint(const struct sockaddr_storage *ss, socklen_t len, Expect *e) {
        *e = (Expect) {};
        if (len < (socklen_t) sizeof(sa_family_t))
                return;
        if (ss->ss_family == AF_INET && len >= (socklen_t) sizeof(struct sockaddr_in)) {
                const struct sockaddr_in *in = (const void *) ss;

                e->kind = 4;
                memcpy(e->addr, &in->sin_addr, 4);
                e->port = ntohs(in->sin_port);
        } else if (ss->ss_family == AF_INET6 && len >= (socklen_t) sizeof(struct sockaddr_in6)) {
                const struct sockaddr_in6 *in6 = (const void *) ss;

                e->port = ntohs(in6->sin6_port);
                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                        e->kind = 4;
                        memcpy(e->addr, in6->sin6_addr.s6_addr + 12, 4);
                } else {
                        e->kind = 6;
                        memcpy(e->addr, &in6->sin6_addr, 16);
                }
        } else if (ss->ss_family == AF_UNIX &&
                   len >= (socklen_t) offsetof(struct sockaddr_un, sun_path)) {
                size_t n = (size_t) len - offsetof(struct sockaddr_un, sun_path);

                e->kind = 'u';
                memcpy(e->path, ((const struct sockaddr_un *) ss)->sun_path,
                       n < PP2_UNIX_PATH_LEN ? n : PP2_UNIX_PATH_LEN);
        }
}

static void to_v6(Expect *e) {
        if (e->kind != 4)
                return;
        memmove(e->addr + 12, e->addr, 4);
        memset(e->addr, 0, 10);
        e->addr[10] = e->addr[11] = 0xff;
        e->kind = 6;
}

/* A value of up to 70000 bytes: a length, then either that many input bytes
 * or one byte repeated. NULL (absent) when the selector says so. */
static uint8_t *take_value(FuzzInput *in, size_t *ret_len, bool as_string) {
        uint8_t sel = fuzz_u8(in), *v;
        size_t want, got;
        const uint8_t *p;

        if (sel % 4 == 0) {
                *ret_len = 0;
                return NULL;
        }
        want = sel % 4 == 3 ? 65400 + fuzz_u16(in) % 200 : fuzz_u16(in) % 300;
        v = calloc(want + 1, 1);
        CHECK(v);
        if (sel % 4 == 3)
                memset(v, fuzz_u8(in) | 1, want); /* long, NUL-free */
        else {
                p = fuzz_bytes(in, want, &got);
                memcpy(v, p, got);
                want = got;
        }
        v[want] = 0;
        *ret_len = as_string ? strlen((char *) v) : want;
        return v;
}

static void take_sockaddr(FuzzInput *in, struct sockaddr_storage *ss, socklen_t *len) {
        static const sa_family_t families[] = { AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC };
        static const socklen_t lens[] = { sizeof(struct sockaddr_in), sizeof(struct sockaddr_in6),
                                          sizeof(struct sockaddr_un) };
        uint8_t sel = fuzz_u8(in);
        const uint8_t *p;
        size_t got;

        memset(ss, 0, sizeof *ss);
        p = fuzz_bytes(in, sizeof *ss, &got);
        memcpy(ss, p, got);
        ss->ss_family = families[sel % 4];
        /* Mostly the right length, sometimes any length at all. */
        *len = sel & 0x80 ? (socklen_t) (fuzz_u8(in) % (sizeof *ss + 1)) :
               sel % 4 < 3 ? lens[sel % 4] : sizeof(sa_family_t);
        if (sel & 0x40 && ss->ss_family == AF_INET6) { /* IPv4-mapped */
                struct sockaddr_in6 *in6 = (void *) ss;
                memset(in6->sin6_addr.s6_addr, 0, 10);
                in6->sin6_addr.s6_addr[10] = in6->sin6_addr.s6_addr[11] = 0xff;
        }
}

static void fuzz_writer(FuzzInput *in) {
        struct sockaddr_storage src, dst;
        _cleanup_free_ uint8_t *alpn = NULL, *authority = NULL, *version = NULL, *cn = NULL,
                               *cert = NULL, *cipher = NULL, *buf = NULL;
        size_t alpn_len, authority_len, version_len, cn_len, cert_len, cipher_len, size = 0,
               len = 0,
               buf_size, tlvs = 0, ssl = PP2_SSL_HEADER_LEN;
        ProxyInfo info;
        ProxyHeader h;
        Expect es, ed;
        uint8_t mode = fuzz_u8(in), shrink = fuzz_u8(in), flags = fuzz_u8(in);
        uint8_t family;
        int r, r2;

        info = (ProxyInfo) { .mode = (ProxyMode) (mode % (_PROXY_MODE_MAX + 1)) };
        take_sockaddr(in, &src, &info.src_len);
        take_sockaddr(in, &dst, &info.dst_len);
        info.src = flags & 1 ? NULL : (struct sockaddr *) &src;
        info.dst = flags & 2 ? NULL : (struct sockaddr *) &dst;
        alpn = take_value(in, &alpn_len, false);
        authority = take_value(in, &authority_len, true);
        version = take_value(in, &version_len, true);
        cn = take_value(in, &cn_len, true);
        cert = take_value(in, &cert_len, false);
        cipher = take_value(in, &cipher_len, true);
        info.alpn = alpn, info.alpn_len = alpn_len;
        info.authority = (char *) authority;
        info.tls_version = (char *) version;
        info.cn = (char *) cn;
        info.cert = cert, info.cert_len = cert_len;
        info.cipher = (char *) cipher;
        info.cert_conn = flags & 4, info.cert_sess = flags & 8;

        r = proxy_v2_header_size(&info, &size);
        if (info.mode == PROXY_MODE_OFF || info.mode >= _PROXY_MODE_MAX) {
                CHECK(r == -EINVAL);
                return;
        }

        /* The expected size, from the format. */
        expect_endpoint(&src, info.src ? info.src_len : 0, &es);
        expect_endpoint(&dst, info.dst ? info.dst_len : 0, &ed);
        if (es.kind == 4 && ed.kind == 4)
                family = PP2_FAM_TCP4;
        else if ((es.kind == 4 || es.kind == 6) && (ed.kind == 4 || ed.kind == 6)) {
                family = PP2_FAM_TCP6;
                to_v6(&es), to_v6(&ed);
        } else if (es.kind == 'u' && ed.kind == 'u')
                family = PP2_FAM_UNIX_STREAM;
        else
                family = PP2_FAM_UNSPEC;
        if (info.mode >= PROXY_MODE_TLS) {
                bool big = false;

                if (info.mode < PROXY_MODE_TLS_FULL)
                        cn_len = cert_len = 0;
                if (alpn_len > 0)
                        tlvs += 3 + alpn_len, big |= alpn_len > 65535 - 3;
                if (authority_len > 0)
                        tlvs += 3 + authority_len, big |= authority_len > 65535 - 3;
                if (version_len > 0)
                        ssl += 3 + version_len, big |= version_len > 65535 - 3;
                if (cipher_len > 0)
                        ssl += 3 + cipher_len, big |= cipher_len > 65535 - 3;
                if (cn_len > 0)
                        ssl += 3 + cn_len, big |= cn_len > 65535 - 3;
                if (cert_len > 0)
                        ssl += 3 + cert_len, big |= cert_len > 65535 - 3;
                big |= ssl > 65535 - 3;
                tlvs += 3 + ssl;
                tlvs += family == PP2_FAM_TCP4 ? 12 : family == PP2_FAM_TCP6 ? 36 :
                        family == PP2_FAM_UNIX_STREAM ? 216 : 0;
                if (big || tlvs > 65535) {
                        CHECK(r == -E2BIG);
                        CHECK(proxy_v2_header(&info, NULL, 0, &len) == -E2BIG);
                        return;
                }
        } else
                tlvs = family == PP2_FAM_TCP4 ? 12 : family == PP2_FAM_TCP6 ? 36 :
                       family == PP2_FAM_UNIX_STREAM ? 216 : 0;
        CHECK(r == 0);
        CHECK(size == PP2_HEADER_LEN + tlvs);

        buf_size = shrink % 4 == 0 ? size - 1 - (size_t) shrink / 4 % size : size + shrink % 8;
        buf = malloc(buf_size ? buf_size : 1);
        CHECK(buf);
        r = proxy_v2_header(&info, buf, buf_size, &len);
        if (buf_size < size) {
                CHECK(r == -ENOBUFS);
                return;
        }
        CHECK(r == 0 && len == size);

        /* Read back what was written. */
        r = proxy_v2_parse(buf, len, &h);
        CHECK(r == 0);
        check_parsed(buf, len, &h);
        CHECK(h.len == len);
        CHECK(h.command == PP2_CMD_PROXY && h.family == family);
        if (family == PP2_FAM_TCP4 || family == PP2_FAM_TCP6) {
                size_t n = family == PP2_FAM_TCP4 ? 4 : 16;

                CHECK(memcmp(h.src_addr, es.addr, n) == 0 && memcmp(h.dst_addr, ed.addr, n) == 0);
                CHECK(h.src_port == es.port && h.dst_port == ed.port);
        } else if (family == PP2_FAM_UNIX_STREAM) {
                CHECK(memcmp(h.src_path, es.path, PP2_UNIX_PATH_LEN) == 0);
                CHECK(memcmp(h.dst_path, ed.path, PP2_UNIX_PATH_LEN) == 0);
        }
        if (info.mode == PROXY_MODE_CONN) {
                CHECK(h.n_tlvs == 0 && !h.has_ssl);
                return;
        }
        CHECK(h.has_ssl && h.ssl_verify == 0);
        /* The certificate flags only with the certificate: tls-full. */
        CHECK(h.ssl_client == (info.mode < PROXY_MODE_TLS_FULL ? PP2_CLIENT_SSL :
                               PP2_CLIENT_SSL | (info.cert_conn ? PP2_CLIENT_CERT_CONN : 0) |
                               (info.cert_sess ? PP2_CLIENT_CERT_SESS : 0)));
        CHECK(h.n_tlvs == 1 + (alpn_len > 0) + (authority_len > 0));
#define SAME(p, n, want, want_n) \
        CHECK((n) == (want_n) && ((want_n) == 0 ? !(p) : memcmp((p), (want), (n)) == 0))
        SAME(h.alpn, h.alpn_len, alpn, alpn_len);
        SAME(h.authority, h.authority_len, authority, authority_len);
        SAME(h.ssl_version, h.ssl_version_len, version, version_len);
        SAME(h.ssl_cipher, h.ssl_cipher_len, cipher, cipher_len);
        SAME(h.ssl_cn, h.ssl_cn_len, cn, cn_len);
        SAME(h.ssl_cert, h.ssl_cert_len, cert, cert_len);
#undef SAME

        /* A reader that has only part of it waits for the rest. */
        for (size_t k = 0; k < len; k += 1 + k / 2) {
                r2 = proxy_v2_parse(buf, k, &h);
                CHECK(r2 == -EAGAIN);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FuzzInput in = { data, size };
        ProxyHeader h;
        int r;

        r = proxy_v2_parse(data, size, &h);
        CHECK(r == 0 || r == -EAGAIN || r == -EBADMSG);
        if (r == 0)
                check_parsed(data, size, &h);
        if (r == -EAGAIN)
                CHECK(memcmp(data, PP2_SIGNATURE, size < PP2_SIGNATURE_LEN ? size :
                             PP2_SIGNATURE_LEN) == 0);

        fuzz_writer(&in);
        return 0;
}
