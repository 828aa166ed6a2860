/*
 * migrations.h - the schema migrations built into the daemon.
 *
 * sql/embed.py generates the array from sql/NNN_name.sql at build time.
 */
#ifndef OT_MIGRATIONS_H
#define OT_MIGRATIONS_H

struct migration {
	int version;
	const char *name;
	const char *sql;
};

extern const struct migration migrations[];
extern const int migrations_count;

#endif
