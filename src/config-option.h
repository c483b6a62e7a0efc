/* SPDX-License-Identifier: MIT */
#pragma once

/* The option table, shared by the files that make up the settings:
 * config.c (the table, setting one option, defaults, --help),
 * config-argv.c (the command line, Ghostunnel's environment variables and
 * refused flags), config-file.c (the --config file, systemd credentials,
 * checking the files the settings name, messages that say where a setting
 * came from), config-validate.c (rules across settings) and
 * config-reload.c (what a reload may change). Internal to them: the rest of
 * tlsgate uses config.h. */

#include <stddef.h>

#include "config.h"

typedef enum OptionKind {
        OPTION_BOOL,
        OPTION_PATH,     /* char *, "" means not given (as in Ghostunnel) */
        OPTION_STRING,   /* char *, "" is a value */
        OPTION_STRV,     /* char **, one entry per occurrence */
        OPTION_DURATION, /* usec_t */
        OPTION_UINT,     /* unsigned */
        OPTION_SETTER,   /* parsed by Option.set */
        OPTION_HELP,
} OptionKind;

typedef enum OptionFlags {
        OPTION_REPEATABLE = 1 << 0,
        OPTION_HIDDEN = 1 << 1,   /* old names kept for compatibility */
        OPTION_NONZERO = 1 << 2,  /* durations: 0 is refused */
        OPTION_NONEMPTY = 1 << 3, /* strings: "" is refused */
        OPTION_CMDLINE_ONLY = 1 << 4, /* --config, --help: not in a config file */
        OPTION_RELOADABLE = 1 << 5, /* re-applied on reload; others need a restart */
} OptionFlags;

typedef struct Option Option;
struct Option {
        const char *name;
        OptionKind kind;
        OptionFlags flags;
        size_t offset; /* into Config, unless kind is OPTION_SETTER/HELP */
        int (*set)(Config *c, const char *flag, const char *value, char **ret_error);
        const char *metavar;
        const char *help;
        const char *default_value; /* applied by config_init(), shown by --help */
        /* Empties a repeatable OPTION_SETTER option, so that the command line
         * can replace what the config file gave. */
        void (*reset)(Config *c);
};

#define FIELD(c, o, type) ((type *) ((uint8_t *) (c) + (o)->offset))

extern const Option options[];
extern const size_t n_options;

/* The option for a flag name as given, without dashes; "no-FLAG" negates
 * a boolean flag (*ret_negated), as kingpin allows. NULL if none. */
const Option *option_find(const char *name, bool *ret_negated);
/* The option of a canonical name ("key", not "no-key"); NULL if none. */
const Option *option_named(const char *name);
/* The index of the first option that stores where o does (aliases share
 * one slot): the index into Config.origin_line[] and the like. */
size_t option_slot(const Option *o);
/* Parses value for o and stores it; flag is the name as given, for
 * messages. */
int option_set(Config *c, const Option *o, const char *flag, bool negated, const char *value,
               char **ret_error);
/* Empties a repeatable option. */
void option_reset(Config *c, const Option *o);
/* Whether a and b hold the same value of an OPTION_SETTER option. */
bool option_setter_equal(const Option *o, const Config *a, const Config *b);

/* Ghostunnel flags tlsgate refuses: the reason (untranslated), or NULL. */
const char *refused_flag_reason(const char *name);
/* "unknown flag --NAME", with the reason and what to use instead for a
 * refused one. Returns -ENOENT. */
int unknown_flag_error(char **ret_error, const char *name);
