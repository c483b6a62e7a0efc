/* SPDX-License-Identifier: MIT */
/* JSON as Go's encoding/json reads and writes it. */

#include <stdio.h>

#include "storage-internal.h"
#include "strv.h"

/* ---- JSON ----------------------------------------------------------------------------- */

/* Serializes as Go's encoding/json does (json.MarshalIndent(v, "", "\t") when pretty,
 * json.Marshal otherwise): json-c lays it out, then the differences are fixed. Raw
 * newlines and non-ASCII bytes occur only outside strings resp. inside them, so
 * these rewrites are exact: Go escapes <, >, & and U+2028/U+2029, and writes empty
 * containers as [] and {} where json-c breaks the line. */
int storage_json_format(json_object *o, bool pretty, char **ret) {
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
                    (pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                     JSON_C_TO_STRING_PRETTY_TAB :
                     JSON_C_TO_STRING_PLAIN);
        const char *s = json_object_to_json_string_ext(o, flags);
        char *out, *p;

        if (!s || !(out = p = malloc(strlen(s) * 6 + 1)))
                return -ENOMEM;
        for (const char *t = s; *t; t++) {
                size_t j = 1;

                if (*t == '<' || *t == '>' || *t == '&')
                        p += sprintf(p, "\\u%04x", (unsigned) *t);
                else if (startswith(t, "\xe2\x80\xa8") || startswith(t, "\xe2\x80\xa9")) {
                        p += sprintf(p, "\\u%s", t[2] == '\xa8' ? "2028" : "2029");
                        t += 2;
                } else if ((*t == '[' || *t == '{') && t[1] == '\n') {
                        while (t[++j] == '\t')
                                ;
                        *p++ = *t;
                        if (t[j] == (*t == '[' ? ']' : '}'))
                                *p++ = *(t += j);
                } else
                        *p++ = *t;
        }
        *p = 0;
        *ret = out;
        return 0;
}

/* A whole file as one JSON object, as strictly as Go's json.Unmarshal. */
int storage_json_parse(const char *path, const char *data, size_t len, json_object **ret,
                       char **ret_error) {
        _cleanup_json_ json_object *o = NULL;
        struct json_tokener *tok;
        enum json_tokener_error e;
        size_t end;

        if (len == 0)
                return storage_fail(ret_error, -EBADMSG, _("%s: empty file"), path);
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, data, (int) len);
        e = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);

        if (e == json_tokener_continue)
                return storage_fail(ret_error, -EBADMSG, _("%s: truncated JSON"), path);
        if (e != json_tokener_success)
                return storage_fail(ret_error, -EBADMSG, _("%s: corrupt JSON: %s"), path,
                                    json_tokener_error_desc(e));
        while (end < len && strchr(" \t\r\n", data[end]) && data[end])
                end++;
        if (end < len)
                return storage_fail(ret_error, -EBADMSG, _("%s: corrupt JSON: trailing data"), path);
        if (!json_object_is_type(o, json_type_object))
                return storage_fail(ret_error, -EBADMSG, _("%s: JSON is not an object"), path);
        *ret = TAKE_PTR(o);
        return 0;
}


int storage_json_get_fields(json_object *o, const Field *fields, size_t n, void *base,
                            const char *path, char **ret_error) {
        for (const Field *f = fields; f < fields + n; f++) {
                json_object *v = json_object_object_get(o, f->key); /* NULL if null */
                static const json_type want[] = { [FIELD_STRING] = json_type_string,
                                                  [FIELD_STRV] = json_type_array,
                                                  [FIELD_BOOL] = json_type_boolean };
                int r;

                if (!v)
                        continue;
                if (f->type != FIELD_RAW && !json_object_is_type(v, want[f->type]))
                        return storage_fail(ret_error, -EBADMSG, _("%s: \"%s\" is not of type %s"),
                                            path, f->key, json_type_to_name(want[f->type]));
                switch (f->type) {
                case FIELD_STRING:
                        if (!(*FIELD_PTR(base, f, char *) = strdup(json_object_get_string(v))))
                                return -ENOMEM;
                        break;
                case FIELD_STRV:
                        for (size_t i = 0; i < json_object_array_length(v); i++) {
                                json_object *e = json_object_array_get_idx(v, i);
                                if (!json_object_is_type(e, json_type_string))
                                        return storage_fail(ret_error, -EBADMSG,
                                                            _("%s: \"%s\" holds a non-string"), path,
                                                            f->key);
                                r = strv_extend(FIELD_PTR(base, f, char **),
                                                json_object_get_string(e));
                                if (r < 0)
                                        return r;
                        }
                        break;
                case FIELD_BOOL:
                        *FIELD_PTR(base, f, bool) = json_object_get_boolean(v);
                        break;
                case FIELD_RAW:
                        r = storage_json_format(v, false, FIELD_PTR(base, f, char *));
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int storage_json_add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int storage_json_add_fields(json_object *o, const Field *fields, size_t n, const void *base) {
        for (const Field *f = fields; f < fields + n; f++) {
                const char *s = f->type == FIELD_STRING || f->type == FIELD_RAW ?
                                        *FIELD_PTR(base, f, const char *) : NULL;
                char **l = f->type == FIELD_STRV ? *FIELD_PTR(base, f, char **) : NULL;
                json_object *v = NULL;
                int r;

                switch (f->type) {
                case FIELD_STRING:
                        if (f->omitempty && (!s || !*s))
                                continue;
                        v = json_object_new_string(strempty(s));
                        break;
                case FIELD_STRV:
                        if (strv_length(l) == 0) /* all our arrays are omitempty */
                                continue;
                        if (!(v = json_object_new_array()))
                                return -ENOMEM;
                        STRV_FOREACH(i, l)
                                if (json_object_array_add(v, json_object_new_string(*i)) < 0) {
                                        json_object_put(v);
                                        return -ENOMEM;
                                }
                        break;
                case FIELD_BOOL:
                        if (f->omitempty && !*FIELD_PTR(base, f, bool))
                                continue;
                        v = json_object_new_boolean(*FIELD_PTR(base, f, bool));
                        break;
                case FIELD_RAW: /* json.RawMessage, omitempty */
                        if (!s)
                                continue;
                        if (!(v = json_tokener_parse(s)))
                                return -EINVAL;
                }
                r = storage_json_add(o, f->key, v);
                if (r < 0)
                        return r;
        }
        return 0;
}
