/* SPDX-License-Identifier: MIT */
#pragma once

/* Private keys on a PKCS#11 token (--pkcs11-module, --pkcs11-token-label,
 * --pkcs11-pin), through GnuTLS's own PKCS#11 support (p11-kit). The
 * token is opened and logged in to once per process, before any serving
 * thread starts; every certificate loaded afterwards (a reload) re-uses
 * that key handle and is only checked against it. GnuTLS serializes the
 * signatures of one PKCS#11 key with a lock of its own, so the serving
 * threads may share it. */

#include <gnutls/abstract.h>
#include <gnutls/x509.h>

#include "config.h"
#include "creds.h"

typedef struct TokenKey TokenKey;

/* Loads the module (only it: no p11-kit configuration is read), finds the
 * token with the label (without one: the only token with a label), logs
 * in with the PIN and takes the private key whose public key is the one
 * of leaf. Errors name the flag and value at fault, never the PIN. */
int token_key_open(const char *module, const char *token_label, const char *pin,
                   gnutls_x509_crt_t leaf, const char *what, TokenKey **ret, char **ret_error);

TokenKey *token_key_ref(TokenKey *k);
/* The last reference closes the key and unloads the module. */
TokenKey *token_key_unref(TokenKey *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(TokenKey *, token_key_unref);

/* The bundle of the certificate chain in --cert or --keystore (PEM, leaf
 * first) with the key on the token. *token is opened from c's settings
 * when NULL (at start), else re-used as it is (a reload: no new login),
 * after checking that the new leaf still belongs to it. */
int token_bundle_load(const Config *c, TokenKey **token, CertBundle **ret, char **ret_error);
