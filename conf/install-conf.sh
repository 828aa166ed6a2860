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
# 0644: the file holds token hashes, not tokens, and ordertrackctl run by
# operators reads it too.  Keep passwords out of it (~/.pgpass or peer
# authentication); see docs/OPERATIONS.md.
install -m 0644 "$src" "$dest"
echo "install-conf.sh: installed $dest"
