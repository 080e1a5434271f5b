#!/usr/bin/env bash
# Runs every Go fuzz target for a while (default 30 s each). `go test ./...` runs them over
# their committed seed corpora (testdata/fuzz) only.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
for spec in "resource FuzzInstanceBody" "resource FuzzFailoverGroupBody" "resource FuzzNames" "resource FuzzShortTermRetentionBody" \
  "arm FuzzParseInstanceID" "arm FuzzRouter" "gateway FuzzReadPacket" "api FuzzActivityFilter" \
  "agentapi FuzzParseJoinToken" "api FuzzAuthzBody" "authz FuzzAction" "fogdns FuzzServeDNS"; do
  set -- $spec
  echo "== $2 ($secs s)"
  go test "./internal/$1" -run '^$' -fuzz "^$2\$" -fuzztime "${secs}s"
done
