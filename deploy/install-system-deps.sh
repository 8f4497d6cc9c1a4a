#!/usr/bin/env bash
# Check the prerequisites riverbed cannot install for you (Java 17+, Maven) and install
# the Debian packages the tests use (kcat, prometheus, chromium) when they are missing.
set -euo pipefail

fail() { echo "riverbed: error: $*" >&2; exit 2; }

command -v java >/dev/null || fail "Java 17+ is required (Debian: apt-get install openjdk-17-jre-headless)"
major=$(java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -1)
[ "${major:-0}" -ge 17 ] || fail "Java 17+ is required, found Java ${major:-unknown}"
command -v mvn >/dev/null || fail "Maven is required to fetch the Kafka jars (Debian: apt-get install maven)"

missing=()
command -v kcat >/dev/null || missing+=(kcat)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

# shellcheck disable=SC2207
missing=($(printf '%s\n' "${missing[@]}" | sort -u))
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  fail "missing Debian packages: ${missing[*]}; install them (apt-get install ${missing[*]}) and retry"
fi
echo "installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
