#!/usr/bin/env bash
# The Debian packages (README, "Installing from the package"), for real, on
# this machine's PostgreSQL 15:
#   1. packaging/build-debs.sh builds postgresql-15-pg-followup,
#      followup-notifier and followup-console; their contents are what they
#      should be (dpkg-deb -c);
#   2. the 0.2.0 package (built from the 0.2.0 release's sources) installs
#      with apt; a database uses it; the current package is installed over it,
#      and ALTER EXTENSION pg_followup UPDATE keeps every row and gives a
#      fresh install's schema (the upgrade test's checks);
#   3. in a fresh private cluster, CREATE EXTENSION from the packaged files
#      and a reminder run work;
#   4. apt remove leaves none of the package's files behind;
#   5. the console package installs (its binary runs, its user exists) and
#      purging it removes its files and its user.
# Afterwards the extension the other tests use is installed again from the
# working tree (tests/lib/install.sh).
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/schema.sh"
DEBS="$CLUSTER_ROOT/debs"
OLD_SRC="$CLUSTER_ROOT/pg_followup-0.2.0-src"
restore() {
    cluster_stop pkg immediate
    apt-get remove -y -qq postgresql-15-pg-followup >/dev/null 2>&1 || true
    "$REPO/tests/lib/install.sh" >/dev/null 2>&1 || echo "could not reinstall the working tree's extension"
}
trap restore EXIT
apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades "$@" >/dev/null 2>&1; }

# --- 1. the packages and their contents -------------------------------------
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n 1)
OUT_DIR="$DEBS" "$REPO/packaging/build-debs.sh" --debug >/dev/null
EXT_DEB="$DEBS/postgresql-15-pg-followup_${version}_amd64.deb"
NOTIFIER_DEB="$DEBS/followup-notifier_${version}_amd64.deb"
CONSOLE_DEB="$DEBS/followup-console_${version}_amd64.deb"
expect "the three packages are built" "$(ls "$EXT_DEB" "$NOTIFIER_DEB" "$CONSOLE_DEB" 2>/dev/null | wc -l)" "3"
contents() { dpkg-deb -c "$1" | awk '{ print $6 }' | sed 's|^\./|/|'; }
expect "the extension package holds the library, the control file, every install and upgrade script" \
    "$(contents "$EXT_DEB" | grep -E '\.(so|control|sql)$' | sort | tr '\n' ' ')" \
    "$( (echo /usr/lib/postgresql/15/lib/pg_followup.so
         echo /usr/share/postgresql/15/extension/pg_followup.control
         echo "/usr/share/postgresql/15/extension/pg_followup--$version.sql"
         for f in "$REPO"/sql/pg_followup--*--*.sql "$REPO"/sql/released/pg_followup--*.sql; do
             echo "/usr/share/postgresql/15/extension/$(basename "$f")"; done) | sort | tr '\n' ' ')"
expect "it depends on postgresql-15" "$(dpkg-deb -f "$EXT_DEB" Depends | grep -c 'postgresql-15')" "1"
expect "with a maintainer and a Debian changelog" \
    "$(dpkg-deb -f "$EXT_DEB" Maintainer | grep -c '@') $(contents "$EXT_DEB" | grep -c 'changelog.Debian.gz$')" "1 1"
expect "the notifier package holds the binary, the unit (not enabled) and the environment file" \
    "$(contents "$NOTIFIER_DEB" | grep -E '^/(usr/bin|lib/systemd|etc)/.*[^/]$' | sort | tr '\n' ' ')" \
    "/etc/followup-notifier/env /lib/systemd/system/followup-notifier.service /usr/bin/followup-notifier "
expect "the environment file is a conffile, readable by root only" \
    "$(dpkg-deb --ctrl-tarfile "$NOTIFIER_DEB" | tar -xO ./conffiles) $(dpkg-deb -c "$NOTIFIER_DEB" | awk '$6 == "./etc/followup-notifier/env" { print $1 }')" \
    "/etc/followup-notifier/env -rw-------"
expect "its unit runs the packaged binary" \
    "$(dpkg-deb --fsys-tarfile "$NOTIFIER_DEB" | tar -xO ./lib/systemd/system/followup-notifier.service | grep '^ExecStart=')" \
    "ExecStart=/usr/bin/followup-notifier"
expect "installing it creates its system user" \
    "$(dpkg-deb --ctrl-tarfile "$NOTIFIER_DEB" | tar -xO ./postinst | grep -c 'adduser --system')" "1"
expect "the console package holds the binary, roles.sql, the unit (not enabled) and the environment file" \
    "$(contents "$CONSOLE_DEB" | grep -E '^/(usr/bin|usr/share/followup-console|lib/systemd|etc)/.*[^/]$' | sort | tr '\n' ' ')" \
    "/etc/followup-console/env /lib/systemd/system/followup-console.service /usr/bin/followup-console /usr/share/followup-console/roles.sql "
expect "its environment file is a conffile, readable by root only" \
    "$(dpkg-deb --ctrl-tarfile "$CONSOLE_DEB" | tar -xO ./conffiles) $(dpkg-deb -c "$CONSOLE_DEB" | awk '$6 == "./etc/followup-console/env" { print $1 }')" \
    "/etc/followup-console/env -rw-------"
expect "its unit runs the packaged binary with the environment file" \
    "$(dpkg-deb --fsys-tarfile "$CONSOLE_DEB" | tar -xO ./lib/systemd/system/followup-console.service | grep -E '^(ExecStart|EnvironmentFile)=' | tr '\n' ' ')" \
    "ExecStart=/usr/bin/followup-console EnvironmentFile=/etc/followup-console/env "
expect "the packaged roles.sql is the console's" \
    "$(dpkg-deb --fsys-tarfile "$CONSOLE_DEB" | tar -xO ./usr/share/followup-console/roles.sql | cmp - "$REPO/console/roles.sql" && echo same)" "same"
expect "installing it creates its system user" \
    "$(dpkg-deb --ctrl-tarfile "$CONSOLE_DEB" | tar -xO ./postinst | grep -c 'adduser --system .* followup-console')" "1"

# --- 2. 0.2.0 installed from its package, upgraded with the current one ------
rm -rf "$OLD_SRC" && mkdir -p "$OLD_SRC"
# the 0.2.0 release (its tag; without it, the last commit of 0.2.0: the
# parent of the one that made the version 0.3.0)
release_020=$(git -C "$REPO" rev-parse -q --verify 'v0.2.0^{commit}' ||
              echo "$(git -C "$REPO" log --format=%H --reverse -S'version = "0.3.0"' -- Cargo.toml | head -n 1)^")
git -C "$REPO" archive "$release_020" | tar -x -C "$OLD_SRC"
expect "the 0.2.0 sources are the 0.2.0 release" "$(sed -n 's/^version = "\(.*\)"/\1/p' "$OLD_SRC/Cargo.toml" | head -n 1)" "0.2.0"
# (a target directory of its own: sharing this tree's would leave its artifacts stale)
SOURCE_DIR="$OLD_SRC" OUT_DIR="$DEBS" "$REPO/packaging/build-debs.sh" --debug --extension-only >/dev/null
apt_install "$DEBS/postgresql-15-pg-followup_0.2.0_amd64.deb"
expect "apt installs the 0.2.0 package" "$(dpkg-query -W -f '${Version}' postgresql-15-pg-followup)" "0.2.0"
cluster_init pkg && cluster_start pkg
export PGHOST=$(cluster_host pkg) PGPORT=$(cluster_port pkg)
DB=it_packages
createdb "$DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
expect "CREATE EXTENSION gives 0.2.0" "$(q "SELECT extversion FROM pg_extension WHERE extname = 'pg_followup'")" "0.2.0"
seed 300
register_app
q "SELECT followup.set_last_contact('9', '$(day -3)', 'paper log')" >/dev/null
expect "the 0.2.0 library runs" "$(q "SELECT status FROM followup.run_now('$AS_OF')")" "succeeded"
outbox_in_every_state packages-test
before=$(snapshot)
apt_install "$EXT_DEB"
expect "apt upgrades it to the $version package" "$(dpkg-query -W -f '${Version}' postgresql-15-pg-followup)" "$version"
cluster_stop pkg fast && cluster_start pkg   # the preloaded library is the new one from now on
q "ALTER EXTENSION pg_followup UPDATE" >/dev/null
expect "ALTER EXTENSION UPDATE reaches $version" "$(q "SELECT extversion FROM pg_extension WHERE extname = 'pg_followup'")" "$version"
expect "no registration, policy, run, message, alert or correction is lost or changed" "$(snapshot)" "$before"
createdb it_packages_fresh
psql -X -q -v ON_ERROR_STOP=1 -d it_packages_fresh -c "CREATE EXTENSION pg_followup" >/dev/null
expect "the upgraded schema is a fresh $version install's" \
    "$([ "$(describe "$DB")" == "$(describe it_packages_fresh)" ] && echo same)" "same"
expect "and it runs" "$(q "SELECT status FROM followup.run_now('$(day 7)')")" "succeeded"

# --- 3. a fresh cluster, the packaged files only -------------------------------
cluster_stop pkg immediate
cluster_init pkg && cluster_start pkg
export PGHOST=$(cluster_host pkg) PGPORT=$(cluster_port pkg)
DB=it_packages_new
createdb "$DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
seed 200
register_app
expect "in a fresh cluster, CREATE EXTENSION from the package and a reminder run work" \
    "$(q "SELECT status || ':' || (reminders_enqueued > 0) FROM followup.run_now('$AS_OF')")" "succeeded:true"
cluster_stop pkg immediate

# --- 4. removal leaves nothing ---------------------------------------------------
files=$(dpkg -L postgresql-15-pg-followup | while read -r f; do [ -f "$f" ] && echo "$f"; done)
expect "the installed package owns the library and every script" \
    "$(echo "$files" | grep -cE 'pg_followup(\.so|\.control|--.*\.sql)$')" \
    "$(contents "$EXT_DEB" | grep -cE 'pg_followup(\.so|\.control|--.*\.sql)$')"
apt-get remove -y -qq postgresql-15-pg-followup >/dev/null 2>&1
expect "apt remove removes every file it installed" \
    "$(echo "$files" | while read -r f; do [ -e "$f" ] && echo "$f"; done | wc -l)" "0"
expect "and no pg_followup file is left in PostgreSQL's directories" \
    "$(ls /usr/lib/postgresql/15/lib/pg_followup* /usr/share/postgresql/15/extension/pg_followup* 2>/dev/null | wc -l)" "0"

# --- 5. the console package -------------------------------------------------------
apt_install "$CONSOLE_DEB"
expect "apt installs the console" "$(followup-console --version)" "followup-console $version"
expect "... with its system user" "$(getent passwd followup-console | cut -d: -f1)" "followup-console"
apt-get purge -y -qq followup-console >/dev/null 2>&1
expect "apt purge removes its files and its user" \
    "$(ls /usr/bin/followup-console /usr/share/followup-console /etc/followup-console 2>/dev/null | wc -l):$(getent passwd followup-console | wc -l)" "0:0"
finish
