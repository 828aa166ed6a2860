/*
 * privdrop.c - drop root privileges; see privdrop.h.
 *
 * Order matters: supplementary groups and the gid go first, while we may
 * still change them, then the uid.  setresuid/setresgid set the real,
 * effective and saved ids together, so no saved root id remains to go
 * back to; the final setuid(0) must then fail, and if it does not, the
 * daemon refuses to start.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "privdrop.h"

bool privdrop(const char *user, char *err, size_t cap)
{
	if (user == NULL || user[0] == '\0')
		return true;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, cap, "no such user \"%s\"", user);
		return false;
	}
	if (geteuid() != 0) {
		if (geteuid() == pw->pw_uid)
			return true; /* already that user (started by systemd's User=) */
		snprintf(err, cap, "must be started as root to become \"%s\"", user);
		return false;
	}
	/* The user's supplementary groups too (a config file or certificate
	 * readable by one of them must stay readable for a reload). */
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0) {
		snprintf(err, cap, "cannot become \"%s\": %s", user, strerror(errno));
		return false;
	}
	if (setuid(0) == 0 || seteuid(0) == 0) {
		snprintf(err, cap, "root could be regained after becoming \"%s\"", user);
		return false;
	}
	return true;
}
