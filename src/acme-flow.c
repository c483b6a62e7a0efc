/* SPDX-License-Identifier: MIT */
/* The steps of an ACME order, one per protocol request: see acme.c for
 * the flow and acme-internal.h for what the two files share. */


#include "acme-internal.h"
#include "jws.h"
#include "log.h"

/* ---- the flow, one step per request ---- */

int acme_do_directory(AcmeOrder *o);
int acme_do_new_account(AcmeOrder *o);
static int do_new_order(AcmeOrder *o);
static int do_authorization(AcmeOrder *o);
static int do_order_check(AcmeOrder *o);
static int do_finalize(AcmeOrder *o);
static int do_certificate(AcmeOrder *o);

/* RFC 8555 7.1.1: the directory names every other resource. */
int acme_do_directory(AcmeOrder *o) {
        acme_set_state(o, ACME_DIRECTORY);
        return acme_send(o, HTTP_GET, o->directory_url, NULL);
}

int acme_on_directory(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        if (free_and_strdup(&o->new_nonce_url, acme_json_str(j, "newNonce")) < 0 ||
            free_and_strdup(&o->new_account_url, acme_json_str(j, "newAccount")) < 0 ||
            free_and_strdup(&o->new_order_url, acme_json_str(j, "newOrder")) < 0)
                return -ENOMEM;
        if (!o->new_nonce_url || !o->new_account_url || !o->new_order_url)
                return acme_detail_set(o, -EPROTO, "Directory %s lacks newNonce, newAccount "
                                       "or newOrder", o->directory_url);
        return o->account_url ? do_new_order(o) : acme_do_new_account(o);
}

/* RFC 8555 7.3: creates the account, or finds the one this key has (200). */
int acme_do_new_account(AcmeOrder *o) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object(),
                                                *contact = json_object_new_array();

        if (!p || !contact || acme_json_append(contact, json_object_new_string(o->contact)) < 0 ||
            acme_json_add(p, "contact", json_object_get(contact)) < 0 ||
            acme_json_add(p, "termsOfServiceAgreed", json_object_new_boolean(true)) < 0)
                return -ENOMEM;

        acme_set_state(o, ACME_NEW_ACCOUNT);
        o->stats.new_account++;
        return acme_post(o, o->new_account_url, p, true, false);
}

int acme_on_new_account(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        const char *status = acme_json_str(j, "status");

        if (free_and_strdup(&o->account_url, http_response_header(resp, "Location")) < 0)
                return -ENOMEM;
        if (!o->account_url)
                return acme_detail_set(o, -EPROTO, "newAccount %s gave no Location",
                                       o->new_account_url);
        if (status && !streq(status, "valid"))
                return acme_detail_set(o, -EREMOTEIO, "Account %s is %s", o->account_url,
                                       status);
        json_object_put(o->account);
        o->account = json_object_get(j);
        log_debug("ACME order for %s: account %s (%s)", o->domain, o->account_url,
                  resp->status == 201 ? "created" : "existing");
        return do_new_order(o);
}

/* RFC 8555 7.4: asks for a certificate for one DNS name. */
static int do_new_order(AcmeOrder *o) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object(),
                                                *ids = json_object_new_array(),
                                                *id = json_object_new_object();

        if (!p || !ids || !id || acme_json_add(id, "type", json_object_new_string("dns")) < 0 ||
            acme_json_add(id, "value", json_object_new_string(o->domain)) < 0 ||
            acme_json_append(ids, json_object_get(id)) < 0 ||
            acme_json_add(p, "identifiers", json_object_get(ids)) < 0)
                return -ENOMEM;

        acme_set_state(o, ACME_NEW_ORDER);
        return acme_post(o, o->new_order_url, p, false, false);
}

int acme_order_advance(AcmeOrder *o, const HttpResponse *resp, json_object *order);

int acme_on_new_order(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        json_object *authz;
        size_t n;

        if (free_and_strdup(&o->order_url, http_response_header(resp, "Location")) < 0 ||
            free_and_strdup(&o->finalize_url, acme_json_str(j, "finalize")) < 0)
                return -ENOMEM;
        if (!o->order_url || !o->finalize_url)
                return acme_detail_set(o, -EPROTO, "newOrder %s gave no Location or finalize URL",
                                       o->new_order_url);
        if (!json_object_object_get_ex(j, "authorizations", &authz) ||
            !json_object_is_type(authz, json_type_array) ||
            (n = json_object_array_length(authz)) == 0 || n > ACME_AUTHORIZATIONS_MAX)
                return acme_detail_set(o, -EPROTO, "Order %s has no usable authorizations",
                                       o->order_url);

        o->authz_urls = calloc(n, sizeof(char *));
        if (!o->authz_urls)
                return -ENOMEM;
        for (o->n_authz = 0; o->n_authz < n; o->n_authz++) {
                json_object *u = json_object_array_get_idx(authz, o->n_authz);

                if (!json_object_is_type(u, json_type_string))
                        return acme_detail_set(o, -EPROTO, "Order %s has a malformed "
                                               "authorization URL", o->order_url);
                if (!(o->authz_urls[o->n_authz] = strdup(json_object_get_string(u))))
                        return -ENOMEM;
        }
        log_debug("ACME order for %s: order %s", o->domain, o->order_url);
        return acme_order_advance(o, resp, j);
}

/* RFC 8555 7.1.6: where the order stands decides the next step; used for
 * newOrder, the check after authorization, finalize and every order poll. */
int acme_order_advance(AcmeOrder *o, const HttpResponse *resp, json_object *order) {
        const char *status = acme_json_str(order, "status") ?: "(none)";
        json_object *error;

        if (streq(status, "pending") && !o->authorized)
                return do_authorization(o);
        if (streq(status, "ready") && !o->finalized)
                return do_finalize(o);
        if (streq(status, "valid")) {
                if (free_and_strdup(&o->certificate_url, acme_json_str(order, "certificate")) < 0)
                        return -ENOMEM;
                if (!o->certificate_url)
                        return acme_detail_set(o, -EPROTO, "Valid order %s has no certificate",
                                               o->order_url);
                return do_certificate(o);
        }
        if (streq(status, "pending") || streq(status, "ready") || streq(status, "processing"))
                return acme_wait(o, o->finalized ? ACME_ORDER_POLL_VALID : ACME_ORDER_POLL_READY,
                                 o->order_url);
        if (json_object_object_get_ex(order, "error", &error) && acme_problem_set(o, error) == 0)
                return -EREMOTEIO;
        return acme_detail_set(o, -EREMOTEIO, "Order %s is %s", o->order_url, status);
}

/* RFC 8555 7.5: what the CA wants proven for this identifier. */
static int do_authorization(AcmeOrder *o) {
        acme_set_state(o, ACME_AUTHORIZATION);
        return acme_post_as_get(o, o->authz_urls[o->authz_index]);
}

static json_object *authorization_challenge(json_object *authz) {
        json_object *challenges;

        if (!json_object_object_get_ex(authz, "challenges", &challenges) ||
            !json_object_is_type(challenges, json_type_array))
                return NULL;
        for (size_t i = 0; i < json_object_array_length(challenges); i++) {
                json_object *c = json_object_array_get_idx(challenges, i);

                if (streq_ptr(acme_json_str(c, "type"), "tls-alpn-01"))
                        return c;
        }
        return NULL;
}

/* RFC 8737 3: serve the digest of the key authorization, then tell the CA
 * to look (RFC 8555 7.5.1). */
static int do_challenge(AcmeOrder *o, json_object *challenge) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object();
        _cleanup_free_ char *key_authz = NULL;
        const char *token = acme_json_str(challenge, "token"), *url = acme_json_str(challenge, "url");
        uint8_t digest[32];
        int r;

        if (!p)
                return -ENOMEM;
        if (!url || !token || acme_key_authorization(token, o->account_key, &key_authz) < 0)
                return acme_detail_set(o, -EPROTO, "Unusable tls-alpn-01 challenge in %s",
                                       o->authz_urls[o->authz_index]);
        r = acme_tls_alpn_digest(key_authz, digest);
        if (r < 0)
                return r;
        r = o->challenge_add(o->domain, digest, o->userdata);
        if (r < 0)
                return acme_detail_set(o, r, "Could not serve the tls-alpn-01 challenge");
        o->challenge_added = true;

        acme_set_state(o, ACME_CHALLENGE);
        return acme_post(o, url, p, false, false);
}

int acme_on_challenge(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        json_object *error;

        if (streq_ptr(acme_json_str(j, "status"), "invalid") &&
            json_object_object_get_ex(j, "error", &error) && acme_problem_set(o, error) == 0)
                return -EREMOTEIO;
        return acme_wait(o, ACME_AUTHORIZATION_POLL, o->authz_urls[o->authz_index]);
}

/* For the authorization's first look and every poll of it. */
int acme_on_authorization(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        const char *status = acme_json_str(j, "status") ?: "(none)";
        json_object *id, *challenge = authorization_challenge(j), *error;

        if (!json_object_object_get_ex(j, "identifier", &id) ||
            !streq_ptr(acme_json_str(id, "type"), "dns") || !acme_json_str(id, "value") ||
            strcasecmp(acme_json_str(id, "value"), o->domain) != 0)
                return acme_detail_set(o, -EPROTO, "Authorization %s is not for dns:%s",
                                       o->authz_urls[o->authz_index], o->domain);

        if (streq(status, "valid")) {
                acme_challenge_withdraw(o);
                if (++o->authz_index < o->n_authz)
                        return do_authorization(o);
                o->authorized = true;
                return do_order_check(o);
        }
        if (streq(status, "pending")) {
                if (o->state == ACME_AUTHORIZATION) {
                        if (!challenge)
                                return acme_detail_set(o, -EPROTO, "The CA offers no tls-alpn-01 "
                                                       "challenge for %s", o->domain);
                        if (streq_ptr(acme_json_str(challenge, "status"), "pending"))
                                return do_challenge(o, challenge);
                }
                return acme_wait(o, ACME_AUTHORIZATION_POLL, o->authz_urls[o->authz_index]);
        }

        /* invalid, deactivated, expired, revoked: the challenge says why. */
        acme_challenge_withdraw(o);
        if (challenge && json_object_object_get_ex(challenge, "error", &error) &&
            acme_problem_set(o, error) == 0)
                return -EREMOTEIO;
        return acme_detail_set(o, -EREMOTEIO, "Authorization for %s is %s", o->domain, status);
}

/* RFC 8555 7.4: with every authorization valid the order should be ready. */
static int do_order_check(AcmeOrder *o) {
        acme_set_state(o, ACME_ORDER_CHECK);
        return acme_post_as_get(o, o->order_url);
}

/* RFC 2986 via GnuTLS: CN (when it fits, RFC 5280 ub-common-name 64) and one
 * DNS SAN, signed with the certificate key; DER in base64url (7.4). */
static int csr_make(gnutls_privkey_t key, const char *domain, char **ret) {
        _cleanup_(gnutls_x509_crq_deinitp) gnutls_x509_crq_t crq = NULL;
        _cleanup_(gnutls_pubkey_deinitp) gnutls_pubkey_t pub = NULL;
        _cleanup_(datum_freep) gnutls_datum_t der = {};
        size_t l = strlen(domain);

        if (gnutls_x509_crq_init(&crq) < 0 || gnutls_pubkey_init(&pub) < 0)
                return -ENOMEM;
        if (gnutls_x509_crq_set_version(crq, 1) < 0 ||
            (l <= 64 && gnutls_x509_crq_set_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0,
                                                      domain, (unsigned) l) < 0) ||
            gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_DNSNAME, domain, (unsigned) l,
                                                 GNUTLS_FSAN_SET) < 0 ||
            gnutls_pubkey_import_privkey(pub, key, 0, 0) < 0 ||
            gnutls_x509_crq_set_pubkey(crq, pub) < 0 ||
            gnutls_x509_crq_privkey_sign(crq, key, GNUTLS_DIG_SHA256, 0) < 0 ||
            gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_DER, &der) < 0)
                return -EINVAL;
        return base64url_encode(der.data, der.size, ret);
}

/* RFC 8555 7.4: the CSR turns a ready order into a certificate. */
static int do_finalize(AcmeOrder *o) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object();
        _cleanup_free_ char *csr = NULL;
        int r;

        if (!p)
                return -ENOMEM;
        r = csr_make(o->cert_key, o->domain, &csr);
        if (r < 0)
                return acme_detail_set(o, r, "Could not make the CSR for %s", o->domain);
        if (acme_json_add(p, "csr", json_object_new_string(csr)) < 0)
                return -ENOMEM;

        o->finalized = true;
        acme_set_state(o, ACME_FINALIZE);
        return acme_post(o, o->finalize_url, p, false, false);
}

/* RFC 8555 7.4.2: the chain, leaf first. */
static int do_certificate(AcmeOrder *o) {
        acme_set_state(o, ACME_CERTIFICATE);
        return acme_post(o, o->certificate_url, NULL, false, true);
}

/* Refuses a chain that is not for our key and name rather than serving it. */
static int chain_check(AcmeOrder *o, const HttpResponse *resp) {
        gnutls_datum_t pem = { .data = (void *) resp->body, .size = (unsigned) resp->body_size };
        _cleanup_(gnutls_pubkey_deinitp) gnutls_pubkey_t ours = NULL, leaf = NULL;
        uint8_t id_ours[64], id_leaf[64];
        size_t s_ours = sizeof id_ours, s_leaf = sizeof id_leaf;
        gnutls_x509_crt_t *crts = NULL;
        unsigned n = 0;
        int r = -EPROTO;

        if (strlen(resp->body) != resp->body_size ||
            gnutls_x509_crt_list_import2(&crts, &n, &pem, GNUTLS_X509_FMT_PEM, 0) < 0)
                return acme_detail_set(o, -EPROTO, "Unreadable certificate chain from %s",
                                       o->certificate_url);
        if (n > 0 && gnutls_pubkey_init(&ours) >= 0 && gnutls_pubkey_init(&leaf) >= 0 &&
            gnutls_pubkey_import_privkey(ours, o->cert_key, 0, 0) >= 0 &&
            gnutls_pubkey_import_x509(leaf, crts[0], 0) >= 0 &&
            gnutls_pubkey_get_key_id(ours, GNUTLS_KEYID_USE_SHA256, id_ours, &s_ours) >= 0 &&
            gnutls_pubkey_get_key_id(leaf, GNUTLS_KEYID_USE_SHA256, id_leaf, &s_leaf) >= 0 &&
            s_ours == s_leaf && memcmp(id_ours, id_leaf, s_ours) == 0 &&
            gnutls_x509_crt_check_hostname2(crts[0], o->domain,
                                            GNUTLS_VERIFY_DO_NOT_ALLOW_IP_MATCHES))
                r = 0;
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
        if (r < 0)
                return acme_detail_set(o, r, "The certificate from %s is not for our key and %s",
                                       o->certificate_url, o->domain);
        return 0;
}

/* The last step. */
int acme_on_certificate(AcmeOrder *o, const HttpResponse *resp) {
        char *chain;
        int r;

        r = chain_check(o, resp);
        if (r < 0)
                return r;
        chain = strdup(resp->body);
        if (!chain)
                return -ENOMEM;
        acme_finish(o, 0, chain);
        return 0;
}
