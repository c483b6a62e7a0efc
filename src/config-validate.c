/* SPDX-License-Identifier: MIT */
/* Rules across settings, Ghostunnel's: required flags, exclusive ones,
 * well-formed access rules and pins, a safe target. */

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>

#include "authz.h"
#include "config-option.h"
#include "duration.h"
#include "metrics.h"
#include "strv.h"
#include "util.h"

const char *config_acme_directory(const Config *c) {
        if (c->auto_acme_testca)
                return c->auto_acme_testca;
        return c->auto_acme_ca ? c->auto_acme_ca : ACME_DEFAULT_CA;
}

static bool acme_url_ok(const char *url) {
        return startswith(url, "https://") || startswith(url, "http://");
}

static int validate_acme(const Config *c, char **ret_error) {
        const char *p;

        if (!c->auto_acme_cert) {
                if (c->auto_acme_email)
                        return error_set(ret_error, -EINVAL, "%s",
                                      _("--auto-acme-email requires --auto-acme-cert"));
                if (c->auto_acme_agree_to_tos)
                        return error_set(ret_error, -EINVAL, "%s",
                                      _("--auto-acme-agree-to-tos requires --auto-acme-cert"));
                if (c->auto_acme_testca)
                        return error_set(ret_error, -EINVAL, "%s",
                                      _("--auto-acme-testca requires --auto-acme-cert"));
                return 0;
        }
        if (c->keystore || c->cert || c->key)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--auto-acme-cert and --keystore/--cert/--key are mutually exclusive"));
        if (!c->auto_acme_email)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--auto-acme-cert requires --auto-acme-email"));
        if (!strchr(c->auto_acme_email, '@') || strpbrk(c->auto_acme_email, " \t\r\n,<>"))
                return error_set(ret_error, -EINVAL, _("--auto-acme-email: \"%s\" is not an e-mail address"),
                              c->auto_acme_email);
        if (!c->auto_acme_agree_to_tos)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--auto-acme-cert requires --auto-acme-agree-to-tos (read the CA's "
                                "terms of service first)"));
        /* One DNS name: letters, digits, '-' and dots; no wildcard, since
         * TLS-ALPN-01 cannot validate wildcards. */
        for (p = c->auto_acme_cert; *p; p++)
                if (!(isalnum((unsigned char) *p) || *p == '-' || *p == '.'))
                        break;
        if (*p || c->auto_acme_cert[0] == '.' || c->auto_acme_cert[0] == '-' ||
            strlen(c->auto_acme_cert) > 253 || strstr(c->auto_acme_cert, ".."))
                return error_set(ret_error, -EINVAL,
                              _("--auto-acme-cert: \"%s\" is not a DNS name (wildcards cannot be "
                                "validated with TLS-ALPN-01)"),
                              c->auto_acme_cert);
        if (c->auto_acme_ca && !acme_url_ok(c->auto_acme_ca))
                return error_set(ret_error, -EINVAL, _("--auto-acme-ca: \"%s\" is not an http(s) URL"),
                              c->auto_acme_ca);
        if (c->auto_acme_testca && !acme_url_ok(c->auto_acme_testca))
                return error_set(ret_error, -EINVAL,
                              _("--auto-acme-testca: \"%s\" is not an http(s) URL"),
                              c->auto_acme_testca);
        if (c->auto_acme_renew_check_interval < RENEW_CHECK_INTERVAL_MIN ||
            c->auto_acme_renew_check_interval > RENEW_CHECK_INTERVAL_MAX) {
                char buf[64];

                return error_set(ret_error, -EINVAL,
                              _("--auto-acme-renew-check-interval: %s is out of range (from 1s to 24h)"),
                              format_duration(buf, sizeof buf, c->auto_acme_renew_check_interval));
        }
        return 0;
}

/* Ghostunnel's PKCS#11 mode: the private key stays on the token and --cert
 * or --keystore holds only the certificate chain. Returns 1 when the mode
 * is on and consistent, 0 when it is off. */
static int validate_pkcs11(const Config *c, char **ret_error) {
        if (!c->pkcs11_module) {
                if (c->pkcs11_token_label)
                        return error_set(ret_error, -EINVAL, "%s",
                                      _("--pkcs11-token-label requires --pkcs11-module"));
                if (c->pkcs11_pin)
                        return error_set(ret_error, -EINVAL, "%s",
                                      _("--pkcs11-pin requires --pkcs11-module"));
                return 0;
        }
        if (c->auto_acme_cert)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--auto-acme-cert and --pkcs11-module are mutually exclusive"));
        if (c->key)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--key and --pkcs11-module are mutually exclusive: the private "
                                "key is on the PKCS#11 token"));
        if (c->storepass || c->storepass_file)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--storepass/--storepass-file and --pkcs11-module are mutually "
                                "exclusive: with a token, --keystore holds only the certificate "
                                "chain"));
        if (c->keystore && c->cert)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--keystore and --cert are mutually exclusive"));
        if (!c->keystore && !c->cert)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--pkcs11-module requires --cert or --keystore (the certificate "
                                "chain of the key on the token)"));
        return 1;
}

static int validate_credentials(const Config *c, char **ret_error) {
        int r;

        r = validate_pkcs11(c, ret_error);
        if (r < 0)
                return r;
        if (r > 0)
                return validate_acme(c, ret_error);
        if (c->auto_acme_cert)
                return validate_acme(c, ret_error);
        if (c->keystore && (c->cert || c->key))
                return error_set(ret_error, -EINVAL, "%s",
                              _("--keystore and --cert/--key are mutually exclusive"));
        if (c->cert && !c->key)
                return error_set(ret_error, -EINVAL, "%s", _("--cert requires --key"));
        if (c->key && !c->cert)
                return error_set(ret_error, -EINVAL, "%s", _("--key requires --cert"));
        if (!c->keystore && !c->cert)
                return error_set(ret_error, -EINVAL, "%s",
                              _("at least one of --keystore, --cert/--key or --auto-acme-cert is required"));
        r = validate_acme(c, ret_error);
        if (r < 0)
                return r;
        if (c->storepass && !c->keystore)
                return error_set(ret_error, -EINVAL, "%s", _("--storepass requires --keystore"));
        if (c->storepass && c->storepass_file)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--storepass and --storepass-file are mutually exclusive"));
        if (c->storepass_file && !c->keystore)
                return error_set(ret_error, -EINVAL, "%s", _("--storepass-file requires --keystore"));
        return 0;
}

static int validate_access(const Config *c, char **ret_error) {
        bool rules = c->access.allow_cn || c->access.allow_ou || c->access.allow_dns || c->access.allow_ip || c->access.allow_uri;
        bool pins = c->access.allow_spki_pin;
        int r;

        if (!c->access.disable_authentication && !c->access.allow_all && !rules && !pins)
                return error_set(ret_error, -EINVAL, "%s",
                              _("at least one of --allow-all, --allow-cn, --allow-ou, --allow-dns, "
                                "--allow-ip, --allow-uri, --allow-spki-pin or "
                                "--disable-authentication is required"));
        if (!c->access.disable_authentication && c->access.allow_all && (rules || pins))
                return error_set(ret_error, -EINVAL, "%s",
                              _("--allow-all is mutually exclusive with other access control flags"));
        if (c->access.disable_authentication && (c->access.allow_all || rules || pins))
                return error_set(ret_error, -EINVAL, "%s",
                              _("--disable-authentication is mutually exclusive with other access "
                                "control flags"));
        /* A pin replaces the verification the other rules rely on. */
        if (pins && rules)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--allow-spki-pin is mutually exclusive with other access control "
                                "flags"));

        STRV_FOREACH(p, c->access.allow_spki_pin) {
                SpkiPin pin;

                r = spki_pin_parse("allow-spki-pin", *p, &pin, ret_error);
                if (r < 0)
                        return r;
        }

        STRV_FOREACH(p, c->access.allow_uri)
                if (!uri_pattern_valid(*p))
                        return error_set(ret_error, -EINVAL,
                                      _("--allow-uri: invalid pattern \"%s\" ('**' may only be the last segment)"),
                                      *p);

        STRV_FOREACH(ip, c->access.allow_ip) {
                unsigned char buf[sizeof(struct in6_addr)];

                if (inet_pton(AF_INET, *ip, buf) != 1 && inet_pton(AF_INET6, *ip, buf) != 1)
                        return error_set(ret_error, -EINVAL,
                                      _("--allow-ip: \"%s\" is not an IPv4 or IPv6 address"), *ip);
        }
        return 0;
}

/* Both on one TCP port would share it through SO_REUSEPORT, silently. */
static bool status_conflicts(const Address *s, const Address *l) {
        if (s->kind != l->kind)
                return false;
        if (s->kind == ADDRESS_TCP)
                return streq_ptr(s->port, l->port) && !streq_ptr(s->port, "0");
        return streq_ptr(s->path, l->path);
}

static int validate_status(const Config *c, char **ret_error) {
        if (!c->status_set && c->target_status)
                return error_set(ret_error, -EINVAL, "%s", _("--target-status requires --status"));
        if (!c->status_set && c->enable_shutdown)
                return error_set(ret_error, -EINVAL, "%s", _("--enable-shutdown requires --status"));
        if (c->target_status && !acme_url_ok(c->target_status)) {
                _cleanup_free_ char *shown = NULL;

                /* A password in it stays out of the message. */
                if (url_for_log(c->target_status, &shown) < 0)
                        return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
                return error_set(ret_error, -EINVAL, _("--target-status: \"%s\" is not an http(s) URL"),
                              shown);
        }
        if (c->metrics_prefix && !metrics_prefix_valid(c->metrics_prefix))
                return error_set(ret_error, -EINVAL,
                              _("--metrics-prefix: \"%s\" must start with a letter, '_' or ':' and "
                                "hold at most 64 letters, digits, '_', ':', '.' or '-'"),
                              c->metrics_prefix);
        if (c->metrics_url && !acme_url_ok(c->metrics_url)) {
                _cleanup_free_ char *shown = NULL;

                /* A password in it stays out of the message. */
                if (url_for_log(c->metrics_url, &shown) < 0)
                        return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
                return error_set(ret_error, -EINVAL, _("--metrics-url: \"%s\" is not an http(s) URL"),
                              shown);
        }
        if (c->status_set && c->listen_set && status_conflicts(&c->status, &c->listen))
                return error_set(ret_error, -EINVAL,
                              _("--status %s: must not use the port, path or socket name of --listen"),
                              c->status.spec);
        return 0;
}

int config_validate(const Config *c, char **ret_error) {
        int r;

        assert(c);

        if (!c->listen_set)
                return error_set(ret_error, -EINVAL, "%s", _("--listen is required"));
        if (!c->target_set)
                return error_set(ret_error, -EINVAL, "%s", _("--target is required"));

        r = validate_credentials(c, ret_error);
        if (r < 0)
                return r;

        r = validate_access(c, ret_error);
        if (r < 0)
                return r;

        if (c->proxy_protocol && c->proxy_protocol_mode != PROXY_MODE_OFF)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--proxy-protocol and --proxy-protocol-mode are mutually exclusive"));

        r = validate_status(c, ret_error);
        if (r < 0)
                return r;

        if (!c->unsafe_target && !address_is_local_target(c->target.spec))
                return error_set(ret_error, -EINVAL, "%s",
                              _("--target must be unix:PATH, localhost:PORT, 127.0.0.1:PORT or "
                                "[::1]:PORT (unless --unsafe-target is set)"));
        return 0;
}
