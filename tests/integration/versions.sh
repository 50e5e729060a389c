#!/usr/bin/env bash
# One version everywhere: Cargo.toml (which the control file's default_version
# and the built library take), META.json (the release and what it provides),
# the notifier, the newest CHANGELOG.md entry, the installed extension's
# default_version; and an upgrade script to it from every released version.
source "$(dirname "$0")/../lib/integration.sh"
cargo_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n 1)
json() { python3 -c "import json, sys; print(eval(sys.argv[1], {'m': json.load(open('$REPO/META.json'))}))" "$1"; }
expect "META.json's version is Cargo.toml's ($cargo_version)" "$(json "m['version']")" "$cargo_version"
expect "META.json provides pg_followup at that version" "$(json "m['provides']['pg_followup']['version']")" "$cargo_version"
expect "META.json is a PGXN Meta Spec v2 document" "$(json "m['meta-spec']['version']")" "2.0.0"
expect "the notifier has the same version" \
    "$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/notifier/Cargo.toml" | head -n 1)" "$cargo_version"
expect "the control file takes Cargo.toml's version" \
    "$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$REPO/pg_followup.control")" "@CARGO_VERSION@"
expect "the newest CHANGELOG.md entry is that version" \
    "$(sed -n 's/^## \([0-9][0-9.]*\).*/\1/p' "$REPO/CHANGELOG.md" | head -n 1)" "$cargo_version"
expect "the installed extension's default_version is it" \
    "$(psql -X -At -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_followup'")" \
    "$cargo_version"
expect "every released version has a CHANGELOG.md entry" \
    "$(for f in "$REPO"/sql/released/pg_followup--*.sql; do v=$(basename "$f" .sql); v=${v#pg_followup--}
        grep -q "^## $v\b" "$REPO/CHANGELOG.md" || echo "$v"; done)" ""
expect "an update path leads from every released version to $cargo_version" \
    "$(psql -X -At -d postgres -c "SELECT count(*) FROM pg_extension_update_paths('pg_followup')
                                    WHERE target = '$cargo_version' AND path IS NOT NULL")" \
    "$(ls "$REPO"/sql/released/pg_followup--*.sql | wc -l)"
finish
