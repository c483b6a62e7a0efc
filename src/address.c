/* SPDX-License-Identifier: MIT */
/* Address specs as Ghostunnel's --listen/--target take them. Only syntax is
 * checked here; names are resolved when the socket is opened. */

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "address.h"
#include "macro.h"

#define FDNAME_MAX 255   /* systemd's limit for FileDescriptorName= */
#define HOSTNAME_MAX 253 /* RFC 1035, textual form without the root dot */

void address_done(Address *a) {
        if (!a)
                return;
        free(a->spec);
        free(a->host);
        free(a->port);
        free(a->path);
        *a = (Address) {};
}

static int fail(const char **ret_reason, const char *reason) {
        if (ret_reason)
                *ret_reason = reason;
        return -EINVAL;
}

static int oom(const char **ret_reason) {
        if (ret_reason)
                *ret_reason = N_("out of memory");
        return -ENOMEM;
}

/* systemd's fdname_is_valid(): ASCII without control characters, no ':'
 * (the separator in $LISTEN_FDNAMES). */
static bool fdname_is_valid(const char *s) {
        size_t n = 0;

        for (const char *p = s; *p; p++, n++)
                if (*p == ':' || (unsigned char) *p < ' ' || (unsigned char) *p >= 127)
                        return false;
        return n > 0 && n <= FDNAME_MAX;
}

static bool hostname_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_';
}

/* Names and IPv4 literals. "" is fine (any address); the resolver decides
 * the rest. */
static bool host_is_valid(const char *s, size_t n) {
        if (n > HOSTNAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!hostname_char_ok(s[i]))
                        return false;
        return true;
}

/* IPv6 literal from inside brackets, optionally with a %zone. */
static bool ipv6_is_valid(const char *s, size_t n) {
        struct in6_addr a;
        char buf[INET6_ADDRSTRLEN];
        const char *zone = memchr(s, '%', n);
        size_t l = zone ? (size_t) (zone - s) : n;

        if (l == 0 || l >= sizeof(buf))
                return false;
        if (zone && (size_t) (zone - s) + 1 == n)
                return false; /* "%" with no zone */
        memcpy(buf, s, l);
        buf[l] = '\0';
        return inet_pton(AF_INET6, buf, &a) == 1;
}

/* Whether an unbracketed spec with several colons was meant as IPv6 (the
 * zone after '%' may be any interface name). */
static bool looks_like_ipv6(const char *s) {
        return strspn(s, "0123456789abcdefABCDEF:.") >= strcspn(s, "%");
}

/* Numeric port, 0..65535, normalized to plain decimal ("080" -> "80"). */
static int port_parse(const char *s, char ret[static 6], const char **ret_reason) {
        unsigned long v = 0;

        if (*s == '\0')
                return fail(ret_reason, N_("missing port"));
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return fail(ret_reason, N_("port must be a number between 0 and 65535"));
                v = v * 10 + (unsigned long) (*p - '0');
                if (v > 65535)
                        return fail(ret_reason, N_("port out of range (at most 65535)"));
        }
        snprintf(ret, 6, "%lu", v);
        return 0;
}

static int address_parse_tcp(const char *spec, Address *a, const char **ret_reason) {
        const char *host, *colon;
        size_t host_len;
        char port[6];
        int r;

        if (spec[0] == '[') {
                const char *end = strchr(spec, ']');
                if (!end)
                        return fail(ret_reason, N_("missing ']' after IPv6 address"));
                host = spec + 1;
                host_len = (size_t) (end - host);
                if (!ipv6_is_valid(host, host_len))
                        return fail(ret_reason, N_("invalid IPv6 address in brackets"));
                if (end[1] == '\0')
                        return fail(ret_reason, N_("missing port"));
                if (end[1] != ':')
                        return fail(ret_reason, N_("expected ':' and a port after ']'"));
                colon = end + 1;
        } else {
                colon = strchr(spec, ':');
                if (!colon)
                        return fail(ret_reason, N_("missing port (use HOST:PORT, unix:PATH or systemd:NAME)"));
                if (strchr(colon + 1, ':'))
                        return fail(ret_reason,
                                    looks_like_ipv6(spec)
                                            ? N_("IPv6 addresses must be in brackets, as in [::1]:8443")
                                            : N_("invalid host name"));
                host = spec;
                host_len = (size_t) (colon - spec);
                if (!host_is_valid(host, host_len))
                        return fail(ret_reason, N_("invalid host name"));
        }

        r = port_parse(colon + 1, port, ret_reason);
        if (r < 0)
                return r;

        a->kind = ADDRESS_TCP;
        a->host = strndup(host, host_len);
        a->port = strdup(port);
        if (!a->host || !a->port)
                return oom(ret_reason);
        return 0;
}

int address_parse(const char *spec, bool allow_systemd, Address *ret, const char **ret_reason) {
        _cleanup_(address_done) Address a = {};
        const char *rest;
        int r;

        if (!spec || !ret)
                return fail(ret_reason, N_("no address"));
        if (spec[0] == '\0')
                return fail(ret_reason, N_("empty address"));

        if ((rest = startswith(spec, "unix:"))) {
                if (rest[0] == '\0')
                        return fail(ret_reason, N_("empty socket path after unix:"));
                if (strlen(rest) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                        return fail(ret_reason, N_("socket path too long (at most 107 bytes)"));
                a.kind = ADDRESS_UNIX;
                a.path = strdup(rest);
                if (!a.path)
                        return oom(ret_reason);

        } else if ((rest = startswith(spec, "systemd:"))) {
                if (!allow_systemd)
                        return fail(ret_reason, N_("systemd:NAME is only supported for --listen"));
                if (!fdname_is_valid(rest))
                        return fail(ret_reason,
                                    N_("invalid socket name after systemd: (1-255 printable "
                                       "ASCII characters, no ':')"));
                a.kind = ADDRESS_SYSTEMD;
                a.path = strdup(rest);
                if (!a.path)
                        return oom(ret_reason);

        } else {
                r = address_parse_tcp(spec, &a, ret_reason);
                if (r < 0)
                        return r;
        }

        a.spec = strdup(spec);
        if (!a.spec)
                return oom(ret_reason);

        *ret = a;
        a = (Address) {};
        return 0;
}

bool address_is_local_target(const char *spec) {
        static const char * const prefixes[] = { "unix:", "127.0.0.1:", "[::1]:", "localhost:" };

        if (!spec)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (startswith(spec, prefixes[i]))
                        return true;
        return false;
}

void sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN];

        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
                snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
                /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d;
                 * people and their filters know them as a.b.c.d. */
                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                        inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
                        snprintf(buf, size, "%s:%u", host, ntohs(in6->sin6_port));
                } else {
                        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
                        snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
                }
        } else if (sa->sa_family == AF_UNIX) {
                const struct sockaddr_un *un = (const struct sockaddr_un *) sa;
                if (len > offsetof(struct sockaddr_un, sun_path) && un->sun_path[0])
                        snprintf(buf, size, "unix:%.*s",
                                 (int) (len - offsetof(struct sockaddr_un, sun_path)),
                                 un->sun_path);
                else
                        snprintf(buf, size, "unix:@");
        } else
                snprintf(buf, size, "unknown");
}
