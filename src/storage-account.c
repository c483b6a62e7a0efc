/* SPDX-License-Identifier: MIT */
/* ACME accounts: registration JSON and key. */


#include "storage-internal.h"
#include "strv.h"
#include "util.h"

/* ---- accounts ------------------------------------------------------------------------- */

/* acmez's acme.Account, in field order. */
static const Field account_fields[] = {
        { "status", FIELD_STRING, offsetof(StoredAccount, status), false },
        { "contact", FIELD_STRV, offsetof(StoredAccount, contact), true },
        { "termsOfServiceAgreed", FIELD_BOOL, offsetof(StoredAccount, terms_of_service_agreed),
          true },
        { "externalAccountBinding", FIELD_RAW, offsetof(StoredAccount, external_account_binding),
          true },
        { "orders", FIELD_STRING, offsetof(StoredAccount, orders), false },
        { "location", FIELD_STRING, offsetof(StoredAccount, location), true },
};

void stored_account_done(StoredAccount *a) {
        if (!a)
                return;
        free(a->status);
        strv_free(a->contact);
        free(a->external_account_binding);
        free(a->orders);
        free(a->location);
        erase_and_free(a->key_pem, a->key_len);
        *a = (StoredAccount) {};
}

int storage_account_email(const StoredAccount *a, char **ret) {
        const char *s = a->contact && a->contact[0] ? a->contact[0] : "", *colon = strchr(s, ':');

        /* certmagic's getPrimaryContact(): what follows the first ':'. */
        *ret = strdup(colon ? colon + 1 : s);
        return *ret ? 0 : -ENOMEM;
}

int storage_load_account(const char *root, const char *issuer_key, const char *email,
                         StoredAccount *ret, char **ret_error) {
        _cleanup_free_ char *reg_path = NULL, *key_path = NULL, *reg = NULL;
        _cleanup_(stored_account_done) StoredAccount a = {};
        _cleanup_json_ json_object *o = NULL;
        gnutls_x509_privkey_t k;
        size_t reg_len;
        int r;

        r = storage_account_path(root, issuer_key, email, STORAGE_ACCOUNT_REG, &reg_path);
        if (r >= 0)
                r = storage_account_path(root, issuer_key, email, STORAGE_ACCOUNT_KEY, &key_path);
        if (r < 0)
                return storage_fail(ret_error, r, _("%s: no valid storage path for this email"),
                                    strempty(email));
        r = storage_read_file(reg_path, false, &reg, &reg_len, ret_error);
        if (r < 0)
                return r;
        r = storage_read_file(key_path, true, &a.key_pem, &a.key_len, ret_error);
        if (r == -ENOENT)
                return storage_fail(ret_error, -ENOKEY,
                                    _("%s: account key missing, but %s exists; restore the key, or "
                                      "remove the account to register a new one"),
                                    key_path, reg_path);
        if (r < 0)
                return r;
        if (storage_import_key(a.key_pem, a.key_len, &k) < 0)
                return storage_fail(ret_error, -EBADMSG, _("%s: unusable private key"), key_path);
        gnutls_x509_privkey_deinit(k);
        r = storage_json_parse(reg_path, reg, reg_len, &o, ret_error);
        if (r >= 0)
                r = storage_json_get_fields(o, account_fields, ELEMENTSOF(account_fields), &a, reg_path,
                                            ret_error);
        if (r < 0)
                return r;
        *ret = a;
        a = (StoredAccount) {};
        return 0;
}

int storage_save_account(const char *root, const char *issuer_key, const StoredAccount *a,
                         char **ret_error) {
        _cleanup_free_ char *email = NULL, *reg_path = NULL, *key_path = NULL, *reg = NULL;
        _cleanup_json_ json_object *o = json_object_new_object();
        int r;

        if (!o)
                return -ENOMEM;
        if (!a->key_pem || a->key_len == 0)
                return storage_fail(ret_error, -EINVAL, _("account key missing"));
        r = storage_account_email(a, &email);
        if (r < 0)
                return r;
        r = storage_account_path(root, issuer_key, email, STORAGE_ACCOUNT_REG, &reg_path);
        if (r >= 0)
                r = storage_account_path(root, issuer_key, email, STORAGE_ACCOUNT_KEY, &key_path);
        if (r < 0)
                return storage_fail(ret_error, r, _("%s: no valid storage path for this email"), email);
        r = storage_json_add_fields(o, account_fields, ELEMENTSOF(account_fields), a);
        if (r >= 0)
                r = storage_json_format(o, true, &reg);
        if (r < 0)
                return storage_fail(ret_error, r, _("%s: cannot encode account"), reg_path);

        r = storage_write_file(key_path, a->key_pem, a->key_len);
        if (r < 0)
                return storage_fail(ret_error, r, _("%s: cannot write: %s"), key_path, strerror(-r));
        r = storage_write_file(reg_path, reg, strlen(reg));
        if (r < 0)
                return storage_fail(ret_error, r, _("%s: cannot write: %s"), reg_path, strerror(-r));
        return 0;
}
