/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "strv.h"

char **strv_free(char **l) {
        if (!l)
                return NULL;
        for (char **s = l; *s; s++)
                free(*s);
        free(l);
        return NULL;
}

size_t strv_length(char * const *l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

int strv_extend(char ***l, const char *value) {
        size_t n = strv_length(*l);
        char *copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        char **m = realloc(*l, sizeof(char *) * (n + 2));
        if (!m) {
                free(copy);
                return -ENOMEM;
        }
        m[n] = copy;
        m[n + 1] = NULL;
        *l = m;
        return 0;
}

bool strv_contains(char * const *l, const char *value) {
        for (size_t i = 0; l && l[i]; i++)
                if (strcmp(l[i], value) == 0)
                        return true;
        return false;
}
