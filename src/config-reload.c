/* SPDX-License-Identifier: MIT */
/* What a reload may change: the settings that differ, the swap of the
 * reloadable ones, and the copy of the access rules each credential keeps. */

#include <assert.h>

#include "config-option.h"
#include "strv.h"

static bool strv_equal(char * const *a, char * const *b) {
        for (; a && *a && b && *b; a++, b++)
                if (!streq(*a, *b))
                        return false;
        return !(a && *a) && !(b && *b);
}

static bool option_equal(const Option *o, const Config *a, const Config *b) {
        switch (o->kind) {
        case OPTION_BOOL:
                return *FIELD(a, o, bool) == *FIELD(b, o, bool);
        case OPTION_PATH:
        case OPTION_STRING:
                return streq_ptr(*FIELD(a, o, char *), *FIELD(b, o, char *));
        case OPTION_STRV:
                return strv_equal(*FIELD(a, o, char **), *FIELD(b, o, char **));
        case OPTION_DURATION:
                return *FIELD(a, o, usec_t) == *FIELD(b, o, usec_t);
        case OPTION_UINT:
                return *FIELD(a, o, unsigned) == *FIELD(b, o, unsigned);
        case OPTION_SETTER:
                return option_setter_equal(o, a, b);
        case OPTION_HELP:
                return true;
        }
        return true;
}

int config_diff(const Config *a, const Config *b, bool reloadable, char ***ret) {
        _cleanup_strv_free_ char **names = NULL;

        assert(a);
        assert(b);
        assert(ret);

        for (size_t i = 0; i < n_options; i++) {
                const Option *o = &options[i];

                /* --config and --help come from the same command line; an
                 * alias is reported under the name it shares a field with. */
                if ((o->flags & OPTION_CMDLINE_ONLY) || option_slot(o) != i)
                        continue;
                if (!!(o->flags & OPTION_RELOADABLE) != reloadable || option_equal(o, a, b))
                        continue;
                if (strv_extend(&names, o->name) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(names);
        return 0;
}

static void swap_bytes(void *a, void *b, size_t n) {
        uint8_t *x = a, *y = b;

        for (size_t i = 0; i < n; i++) {
                uint8_t t = x[i];
                x[i] = y[i];
                y[i] = t;
        }
}

void config_swap_reloadable(Config *a, Config *b) {
        assert(a);
        assert(b);

        for (size_t i = 0; i < n_options; i++) {
                const Option *o = &options[i];
                size_t size;

                /* Once per field: swapping an alias's field again would undo it. */
                if (!(o->flags & OPTION_RELOADABLE) || option_slot(o) != i)
                        continue;
                switch (o->kind) {
                case OPTION_BOOL:
                        size = sizeof(bool);
                        break;
                case OPTION_PATH:
                case OPTION_STRING:
                        size = sizeof(char *);
                        break;
                case OPTION_STRV:
                        size = sizeof(char **);
                        break;
                case OPTION_DURATION:
                        size = sizeof(usec_t);
                        break;
                case OPTION_UINT:
                        size = sizeof(unsigned);
                        break;
                default:
                        /* A reloadable setter would need its own swap. */
                        assert(false);
                        continue;
                }
                swap_bytes(FIELD(a, o, uint8_t), FIELD(b, o, uint8_t), size);
                swap_bytes(&a->origin_line[i], &b->origin_line[i], sizeof a->origin_line[i]);
                swap_bytes(&a->from_credential[i], &b->from_credential[i],
                           sizeof a->from_credential[i]);
        }
}
