#!/bin/sh
# install-conf.sh - `meson install` step: put the configuration file in
# place unless one is already there, so an upgrade never overwrites the
# operator's exporters, tokens and settings.
#
# Usage (from meson.add_install_script): install-conf.sh SOURCE DESTDIR_ABS
#   SOURCE       the shipped ordertrackd.conf
#   DESTDIR_ABS  the absolute folder, e.g. /etc/ordertrack
# $DESTDIR, when set, is prepended to DESTDIR_ABS (staged installs, packages).
set -eu

src=$1
dir=${DESTDIR:-}$2
dest=$dir/ordertrackd.conf

mkdir -p "$dir"
if [ -e "$dest" ]; then
	echo "install-conf.sh: keeping the existing $dest (the new default is $src)"
	exit 0
fi
# 0640, group ordertrack when that group exists: the file holds token
# hashes, but also webhook signing secrets, which only the daemon (and the
# operators in the group, for ordertrackctl) may read.  Keep database
# passwords out of it (~/.pgpass or peer authentication); see
# docs/OPERATIONS.md.
install -m 0640 "$src" "$dest"
if [ -z "${DESTDIR:-}" ] && getent group ordertrack >/dev/null 2>&1; then
	chgrp ordertrack "$dest"
fi
echo "install-conf.sh: installed $dest"
