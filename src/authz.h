/* SPDX-License-Identifier: MIT */
#pragma once

/* Client authorization: which verified leaf certificates may reach the
 * target. Pure logic: the identity is extracted from the leaf once, then
 * checked against the rules; any one matching rule allows. */

#include <gnutls/x509.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

/* Who gets in: Ghostunnel's access flags (--allow-*,
 * --disable-authentication). Config holds the settings' rules
 * (Config.access); each credential generation keeps a copy of its own
 * (Creds.access), so that a connection is judged by one generation of rules
 * even when a reload replaces them during its handshake. */
typedef struct AccessRules {
        bool allow_all;
        bool disable_authentication;
        char **allow_cn, **allow_ou, **allow_dns, **allow_ip, **allow_uri;
        char **allow_spki_pin;  /* as given; parsed by creds_new() (spki_pin_parse()) */
} AccessRules;

/* Frees the lists; the rules are empty again. */
void access_rules_done(AccessRules *a);
/* A new copy of a. Returns 0 or -ENOMEM. */
int access_rules_copy(const AccessRules *a, AccessRules **ret);
AccessRules *access_rules_free(AccessRules *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(AccessRules *, access_rules_free);

typedef struct PeerIdentity {
        char *cn;       /* last CommonName of the subject (as Go's), or NULL */
        char **ous;     /* every OrganizationalUnit of the subject */
        char **dns;     /* DNS SANs */
        char **ips;     /* IP SANs, in inet_ntop() text form */
        char **uris;    /* URI SANs */
} PeerIdentity;

/* Fills ret from the leaf. Returns 0 or a negative errno. */
int peer_identity_from_x509(gnutls_x509_crt_t crt, PeerIdentity *ret);
void peer_identity_done(PeerIdentity *id);

/* Ghostunnel's URI patterns: segments split at '/', a segment that is
 * exactly "*" matches one non-empty segment, "**" (only as the last segment)
 * matches zero or more trailing segments; a trailing '/' is optional on both
 * sides. Other characters match literally. */
bool uri_pattern_valid(const char *pattern);
bool uri_pattern_match(const char *pattern, const char *uri);

typedef enum AuthzResult {
        AUTHZ_DENY = 0,
        AUTHZ_ALLOW = 1,
} AuthzResult;

/* Decides for a verified client. With --disable-authentication or
 * --allow-all every client is allowed. On ALLOW, *ret_rule (if non-NULL)
 * points to a static description of the kind of rule that matched
 * ("allow-all", "allow-cn", ...). */
AuthzResult authz_check(const AccessRules *c, const PeerIdentity *id, const char **ret_rule);

/* --allow-spki-pin: Ghostunnel's out-of-band key pinning, in the style of
 * RFC 7858 section 4.2. A pin is a digest of the DER SubjectPublicKeyInfo of
 * the client's leaf certificate (RFC 7469 section 2.4), written
 * ALGO:BASE64 with ALGO sha256, sha384 or sha512 (any case) and BASE64 the
 * padded standard base64 of exactly that many bytes. The pin alone
 * authenticates the client: its chain, validity and key usage are not
 * checked; the handshake still proves that it holds the key. */
#define SPKI_PIN_DIGEST_MAX 64

typedef struct SpkiPin {
        gnutls_digest_algorithm_t algorithm;
        unsigned size;
        uint8_t digest[SPKI_PIN_DIGEST_MAX];
} SpkiPin;

/* Parses one pin given to --FLAG. Returns 0, or -EINVAL/-ENOMEM with
 * *ret_error set to a malloc'ed message naming the flag and the value. */
int spki_pin_parse(const char *flag, const char *text, SpkiPin *ret, char **ret_error);

/* Whether the public key of leaf matches one of the n pins: 1 if one does,
 * 0 if none does, a negative errno if the key cannot be read. Digests are
 * compared in constant time. */
int spki_pins_match(const SpkiPin *pins, size_t n, gnutls_x509_crt_t leaf);
