#!/usr/bin/env bash
# Runs every native fuzz target in the module for a short time (default 10s).
set -euo pipefail
fuzztime=${1:-10s}
mapfile -t pkgs < <(go list ./...)
for pkg in "${pkgs[@]}"; do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	mapfile -t targets < <(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\)' "$dir"/*_test.go 2>/dev/null | sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/' | sort -u)
	for t in "${targets[@]}"; do
		echo "fuzz-smoke: $pkg $t ($fuzztime)"
		go test -run='^$' -fuzz="^${t}\$" -fuzztime="$fuzztime" "$pkg"
	done
done
