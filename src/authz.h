/* SPDX-License-Identifier: MIT */
#pragma once

/* Client authorization: which verified leaf certificates may reach the
 * target. Pure logic: the identity is extracted from the leaf once, then
 * checked against the rules; any one matching rule allows. */

#include <gnutls/x509.h>
#include <stdbool.h>

#include "config.h"

typedef struct PeerIdentity {
        char *cn;       /* first CommonName of the subject, or NULL */
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
AuthzResult authz_check(const Config *c, const PeerIdentity *id, const char **ret_rule);
