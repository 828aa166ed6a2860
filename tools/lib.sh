# tools/lib.sh - shared by tools/run-local and tools/test-all (sourced, not run).
#
# Holds the one list of Debian packages the project needs, the installer
# that brings in the missing ones, and the meson build step.  Nothing here
# runs on its own: the caller sets `set -euo pipefail` and calls functions.

# Debian 12 package names: build tools, libraries with headers, the
# PostgreSQL server for the local and test clusters, nc for trying it out,
# for the fuzz build of tools/test-all clang with its libFuzzer and
# sanitizer runtimes (libclang-rt-14-dev) and llvm-symbolizer (llvm), and
# clang-format for the style check.
OT_PACKAGES=(
	build-essential
	meson
	ninja-build
	pkg-config
	libevent-dev
	libpq-dev
	libconfig-dev
	libjansson-dev
	libjemalloc-dev
	libcmocka-dev
	libssl-dev
	libsystemd-dev
	postgresql
	python3
	netcat-openbsd
	curl
	openssl
	clang
	clang-format
	libclang-rt-14-dev
	llvm
)

# The name messages are prefixed with: the script that sourced us.
OT_PROG=${OT_PROG:-$(basename "$0")}

# Print a progress note on stderr.
ot_note() {
	printf '%s: %s\n' "$OT_PROG" "$*" >&2
}

# Print an error on stderr and exit with status 1.
ot_die() {
	printf '%s: error: %s\n' "$OT_PROG" "$*" >&2
	exit 1
}

# The repository root: the parent of the folder this file lives in.
ot_repo_root() {
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
	dirname "$here"
}

# Print the packages of OT_PACKAGES that dpkg does not list as installed.
ot_missing_packages() {
	local pkg status
	for pkg in "${OT_PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
		if [[ $status != installed ]]; then
			printf '%s\n' "$pkg"
		fi
	done
}

# Install whatever is missing with apt-get; do nothing when all is there.
ot_ensure_packages() {
	local -a missing sudo=()
	if ! command -v dpkg-query >/dev/null 2>&1; then
		ot_die "dpkg-query not found: this script expects Debian 12 (or a derivative); install these packages by hand: ${OT_PACKAGES[*]}"
	fi
	mapfile -t missing < <(ot_missing_packages)
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	if ((EUID != 0)); then
		if ! command -v sudo >/dev/null 2>&1; then
			ot_die "missing packages and not root, no sudo either; as root run: apt-get update && apt-get install ${missing[*]}"
		fi
		sudo=(sudo)
	fi
	ot_note "installing missing Debian packages: ${missing[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=300 update </dev/null \
		|| ot_die "apt-get update failed"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}" </dev/null \
		|| ot_die "apt-get install failed for: ${missing[*]}"
	mapfile -t missing < <(ot_missing_packages)
	if ((${#missing[@]} != 0)); then
		ot_die "still missing after apt-get install: ${missing[*]}"
	fi
}

# Configure (first time) or update the options of a meson build folder,
# then build it with ninja.  Usage: ot_build DIR [-Dopt=value ...]
# Returns non-zero on failure; every step checks by hand, since callers
# may run it as a condition, where set -e does not apply.
ot_build() {
	local dir=$1
	shift
	if [[ -e $dir && ! -f $dir/build.ninja ]]; then
		# A setup that failed half way; build folders are disposable.
		ot_note "$dir is not a complete meson build folder, setting it up again"
		rm -rf -- "$dir" || return 1
	fi
	if [[ ! -e $dir ]]; then
		meson setup "$dir" "$@" || return 1
	elif (($# > 0)); then
		meson configure "$dir" "$@" || return 1
	fi
	ninja -C "$dir" || return 1
}
