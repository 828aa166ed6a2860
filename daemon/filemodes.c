/* SPDX-License-Identifier: ISC */
/*
 * filemodes.c - warn when files holding secrets are readable by others,
 * and when the config or the key can be changed by anyone.
 *
 * The config file may hold a database password (in database.conninfo)
 * and the webhooks' HMAC secrets in clear, and tls.key is the private key
 * itself.  Either one readable by every user of the host hands these out,
 * so the daemon says so at start-up, at -t and after a reload, naming the
 * file and its mode.  It is a warning, not a refusal: the operator may
 * have reasons (a container with one user), and refusing to start over a
 * mode would turn a reload into an outage.
 *
 * Group read is how the documented install works (the config is 0640
 * root:ordertrack, so that the daemon, after giving up root, and the
 * operators in the group can read it; Debian keeps TLS keys 0640
 * root:ssl-cert), so a group the daemon's user belongs to is fine; a
 * group it is not in gains nothing by reading and is warned about.
 */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conninfo.h"
#include "filemodes.h"
#include "log.h"

/*
 * True when the daemon's user (cfg's user, or who we are) is in group gid,
 * or may be: root without a user key is often an operator running -t
 * before systemd starts the service as its User=, which root cannot know.
 */
static bool service_in_group(const struct config *cfg, gid_t gid)
{
	if (cfg->user[0] == '\0' && geteuid() == 0)
		return true;
	const struct passwd *pw = cfg->user[0] != '\0' ? getpwnam(cfg->user) : NULL;
	if (pw == NULL)
		pw = getpwuid(geteuid());
	if (pw == NULL)
		return gid == getegid();
	if (pw->pw_gid == gid)
		return true;
	char name[256];
	snprintf(name, sizeof(name), "%s", pw->pw_name); /* getgrgid may reuse pw's storage */
	const struct group *gr = getgrgid(gid);
	for (char **m = gr != NULL ? gr->gr_mem : NULL; m != NULL && *m != NULL; m++)
		if (strcmp(*m, name) == 0)
			return true;
	return false;
}

/*
 * The gid a group outside the process's user namespace shows as: the
 * shipped unit sets PrivateUsers=, where a key's group ssl-cert (which the
 * daemon's user is in) stats as this one, so it tells nothing.
 */
static gid_t overflow_gid(void)
{
	unsigned v = 65534;
	FILE *f = fopen("/proc/sys/fs/overflowgid", "r");
	if (f != NULL) {
		if (fscanf(f, "%u", &v) != 1)
			v = 65534;
		fclose(f);
	}
	return (gid_t)v;
}

/*
 * Warn with msg when path can be read by others, or by a group the
 * daemon's user is not in; what it holds goes in the line as holds=.
 */
static void check_file(const struct config *cfg, const char *msg, const char *path,
                       const char *holds)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return; /* the loader has just read it: a race, not worth a line */
	const char *who = NULL;
	if (st.st_mode & S_IROTH)
		who = "others";
	else if ((st.st_mode & S_IRGRP) && st.st_gid != overflow_gid() &&
	         !service_in_group(cfg, st.st_gid))
		who = "group";
	if (who == NULL)
		return;
	const struct group *gr = getgrgid(st.st_gid);
	char gid[32];
	snprintf(gid, sizeof(gid), "%u", (unsigned)st.st_gid);
	log_warnx(msg, "file=%s mode=%04o group=%s readable_by=%s holds=%s", lq(path),
	          (unsigned)(st.st_mode & 07777), lq(gr != NULL ? gr->gr_name : gid), who, holds);
}

/*
 * Warn with msg when every user of the host can change path: whoever
 * writes the config decides who may connect, with which token, and where
 * the events go; whoever writes the key can stand in for the server.
 */
static void check_writable(const char *msg, const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0 || !(st.st_mode & S_IWOTH))
		return;
	log_warnx(msg, "file=%s mode=%04o writable_by=others", lq(path),
	          (unsigned)(st.st_mode & 07777));
}

void filemodes_check(const struct config *cfg)
{
	check_writable("config file writable by others", cfg->path);
	if (cfg->tls_enabled)
		check_writable("tls key writable by others", cfg->tls_key);
	char holds[128] = "";
	if (conninfo_has_password(cfg->conninfo))
		snprintf(holds, sizeof(holds), "database.conninfo");
	if (cfg->n_webhooks > 0)
		snprintf(holds + strlen(holds), sizeof(holds) - strlen(holds), "%swebhooks.secrets",
		         holds[0] != '\0' ? "," : "");
	if (holds[0] != '\0')
		check_file(cfg, "config file readable by others", cfg->path, holds);
	if (cfg->tls_enabled)
		check_file(cfg, "tls key readable by others", cfg->tls_key, "tls.key");
}
