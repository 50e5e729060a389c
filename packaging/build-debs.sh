#!/usr/bin/env bash
# Builds the Debian packages of pg_followup:
#   postgresql-15-pg-followup_<version>_amd64.deb   the extension: the library,
#       the control file, the install script of every released version and
#       every upgrade script (CREATE EXTENSION pg_followup works once installed)
#   followup-notifier_<version>_amd64.deb           the reference notifier:
#       /usr/bin/followup-notifier, its systemd unit (installed, not enabled),
#       an example /etc/followup-notifier/env, and a system user made on install
#   followup-console_<version>_amd64.deb            the web console:
#       /usr/bin/followup-console, /usr/share/followup-console/roles.sql, its
#       systemd unit (not enabled), an example /etc/followup-console/env, and a
#       system user made on install
#
#   packaging/build-debs.sh                 all three, optimized, into $OUT_DIR (default: target/debian)
#   packaging/build-debs.sh --debug         unoptimized builds (faster; what the tests use)
#   packaging/build-debs.sh --extension-only / --notifier-only / --console-only
#   SOURCE_DIR=DIR packaging/build-debs.sh  package another checkout of the project
#                                           (an earlier release; its files, this script's rules)
# Needs what tests/setup.sh installs, and dpkg-deb.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
SOURCE_DIR=$(cd "${SOURCE_DIR:-$HERE}" && pwd)
OUT_DIR=${OUT_DIR:-$HERE/target/debian}
PROFILE=release
WANT_EXTENSION=1 WANT_NOTIFIER=1 WANT_CONSOLE=1
for arg in "$@"; do
    case "$arg" in
        --debug) PROFILE=debug ;;
        --extension-only) WANT_NOTIFIER=0 WANT_CONSOLE=0 ;;
        --notifier-only) WANT_EXTENSION=0 WANT_CONSOLE=0 ;;
        --console-only) WANT_EXTENSION=0 WANT_NOTIFIER=0 ;;
        *) echo "build-debs.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done
MAINTAINER="pg_followup maintainers <maintainers@pg-followup.invalid>"
mkdir -p "$OUT_DIR"
export PGRX_HOME="$HERE/pgrx-config"

version_of() { sed -n 's/^version = "\(.*\)"/\1/p' "$1" | head -n 1; }

# debian_changelog PACKAGE VERSION DIR: the package's changelog, gzipped, in its doc dir
debian_changelog() {
    local package=$1 version=$2 dir=$3
    install -d "$dir/usr/share/doc/$package"
    {
        echo "$package ($version) bookworm; urgency=medium"
        echo
        echo "  * Release $version; see /usr/share/doc/$package/CHANGELOG.md.gz."
        echo
        echo " -- $MAINTAINER  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$SOURCE_DIR" log -1 --format=%ct 2>/dev/null || date +%s)}")"
    } | gzip -9n >"$dir/usr/share/doc/$package/changelog.Debian.gz"
    if [ -f "$SOURCE_DIR/CHANGELOG.md" ]; then
        gzip -9nc "$SOURCE_DIR/CHANGELOG.md" >"$dir/usr/share/doc/$package/CHANGELOG.md.gz"
    fi
    cat >"$dir/usr/share/doc/$package/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pg_followup
License: PostgreSQL

Files: *
Copyright: pg_followup maintainers
License: PostgreSQL
 Permission to use, copy, modify, and distribute this software and its
 documentation for any purpose, without fee, and without a written agreement
 is hereby granted, provided that the above copyright notice and this
 paragraph appear in all copies.
COPY
}

# finish_deb DIR FILE: sizes, md5sums, the .deb
finish_deb() {
    local dir=$1 file=$2
    local size
    size=$(du -sk --exclude=DEBIAN "$dir" | cut -f1)
    sed -i "s/^Installed-Size: .*/Installed-Size: $size/" "$dir/DEBIAN/control"
    (cd "$dir" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | xargs -0 md5sum >DEBIAN/md5sums)
    dpkg-deb --root-owner-group -Zxz --build "$dir" "$OUT_DIR/$file" >/dev/null
    echo "$OUT_DIR/$file"
}

if [ "$WANT_EXTENSION" = 1 ]; then
    version=$(version_of "$SOURCE_DIR/Cargo.toml")
    package=postgresql-15-pg-followup
    stage=$(mktemp -d /tmp/pg_followup-deb.XXXXXX)
    trap 'rm -rf "$stage"' EXIT
    profile=()
    [ "$PROFILE" = debug ] && profile=(--debug)
    (cd "$SOURCE_DIR" && cargo pgrx package "${profile[@]}" --pg-config /usr/bin/pg_config --out-dir "$stage/root") \
        >"$stage/build.log" 2>&1 || { tail -n 40 "$stage/build.log" >&2; exit 1; }
    sharedir=$(pg_config --sharedir)
    # the install scripts of earlier releases (sql/released/, or in checkouts
    # from before that directory, sql/pg_followup--X.Y.Z.sql)
    for frozen in "$SOURCE_DIR"/sql/released/pg_followup--*.sql "$SOURCE_DIR"/sql/pg_followup--*.sql; do
        [ -e "$frozen" ] || continue
        case "$(basename "$frozen")" in
            pg_followup--*--*.sql) ;;   # an upgrade script: in the package already
            *) install -D -m 0644 "$frozen" "$stage/root$sharedir/extension/$(basename "$frozen")" ;;
        esac
    done
    debian_changelog "$package" "$version" "$stage/root"
    install -d "$stage/root/DEBIAN"
    cat >"$stage/root/DEBIAN/control" <<CONTROL
Package: $package
Version: $version
Architecture: amd64
Maintainer: $MAINTAINER
Installed-Size: 0
Depends: postgresql-15, libc6
Section: database
Priority: optional
Description: follow-up reminders for peer-mentoring apps, inside PostgreSQL 15
 pg_followup keeps each assignment's last contact true on every way an
 activity is written, runs the daily reminder scan under an advisory lock,
 logs and alerts on runs, and puts reminders into an outbox that a notifier
 consumes with leases, delivering only what is still due.
 .
 CREATE EXTENSION pg_followup; add pg_followup to shared_preload_libraries
 for the daily scheduler.
CONTROL
    find "$stage/root" -type d -exec chmod 0755 {} +
    find "$stage/root" -type f ! -path '*/DEBIAN/*' -exec chmod 0644 {} +
    finish_deb "$stage/root" "${package}_${version}_amd64.deb"
    rm -rf "$stage"
    trap - EXIT
fi

# service_deb PACKAGE DIR RECOMMENDS DESCRIPTION [SRC:DEST:MODE...]: the
# workspace's program PACKAGE (directory DIR) as a package: /usr/bin/PACKAGE,
# its systemd unit DIR/PACKAGE.service (installed, not enabled), the example
# environment file DIR/PACKAGE.env as /etc/PACKAGE/env (a conffile, mode 600),
# a system user PACKAGE made on install (removed on purge), and more files.
service_deb() {
    local package=$1 dir=$2 recommends=$3 description=$4 extra version stage root
    shift 4
    version=$(version_of "$SOURCE_DIR/$dir/Cargo.toml")
    stage=$(mktemp -d "/tmp/$package-deb.XXXXXX")
    trap 'rm -rf "$stage"' EXIT
    flags=()
    [ "$PROFILE" = release ] && flags=(--release)
    (cd "$SOURCE_DIR" && cargo build --quiet "${flags[@]}" -p "$package")
    root="$stage/root"
    install -D -m 0755 "$SOURCE_DIR/target/$PROFILE/$package" "$root/usr/bin/$package"
    install -D -m 0644 "$SOURCE_DIR/$dir/$package.service" "$root/lib/systemd/system/$package.service"
    install -D -m 0600 "$SOURCE_DIR/$dir/$package.env" "$root/etc/$package/env"
    for extra in "$@"; do
        IFS=: read -r src dest mode <<<"$extra"
        install -D -m "$mode" "$SOURCE_DIR/$src" "$root$dest"
    done
    debian_changelog "$package" "$version" "$root"
    install -d "$root/DEBIAN"
    echo "/etc/$package/env" >"$root/DEBIAN/conffiles"
    cat >"$root/DEBIAN/control" <<CONTROL
Package: $package
Version: $version
Architecture: amd64
Maintainer: $MAINTAINER
Installed-Size: 0
Depends: libc6, adduser
Recommends: $recommends
Section: database
Priority: optional
Description: $description
CONTROL
    cat >"$root/DEBIAN/postinst" <<POSTINST
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
    if ! getent passwd $package >/dev/null; then
        adduser --system --group --no-create-home --home /nonexistent --quiet $package
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
fi
exit 0
POSTINST
    cat >"$root/DEBIAN/postrm" <<POSTRM
#!/bin/sh
set -e
if [ "\$1" = purge ]; then
    if getent passwd $package >/dev/null; then
        deluser --system --quiet $package >/dev/null 2>&1 || true
    fi
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
POSTRM
    chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
    finish_deb "$root" "${package}_${version}_amd64.deb"
    rm -rf "$stage"
    trap - EXIT
}

if [ "$WANT_NOTIFIER" = 1 ]; then
    service_deb followup-notifier notifier systemd "delivers pg_followup's outbox to an HTTP(S) webhook
 The reference consumer of pg_followup's outbox: claims reminders (or one
 digest per recipient), POSTs them to a webhook over HTTPS, acks or fails
 each, and releases what it did not send on shutdown. Works through
 PgBouncer and follows a failover. The systemd unit is installed but not
 enabled: edit /etc/followup-notifier/env, then
 systemctl enable --now followup-notifier." \
        "notifier/README.md:/usr/share/doc/followup-notifier/README.md:0644"
fi

if [ "$WANT_CONSOLE" = 1 ]; then
    service_deb followup-console console "systemd, postgresql-client-15" "web console and JSON API of pg_followup
 Runs, alerts, the outbox, why an assignment gets a reminder, corrections,
 snoozes, drift and the audit, for ops and support. People log in with their
 own PostgreSQL roles; the GRANTs of /usr/share/followup-console/roles.sql
 decide what each may do. The systemd unit is installed but not enabled:
 run roles.sql once as a superuser (psql -d app -f ...), edit
 /etc/followup-console/env, then systemctl enable --now followup-console." \
        "console/roles.sql:/usr/share/followup-console/roles.sql:0644"
fi
