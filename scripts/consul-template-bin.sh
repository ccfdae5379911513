#!/usr/bin/env bash
# consul-template-bin.sh: print the path of a consul-template binary (MPL-2.0), building it
# once from the Go module proxy into a cache outside the repo. The compatibility tests
# render the same templates with it and with autopilot and compare the bytes; the
# benchmark harness runs both side by side.
#
#   scripts/consul-template-bin.sh                        -> builds if needed, prints the path
#   CONSUL_TEMPLATE_VERSION=v0.42.1 scripts/consul-template-bin.sh
set -euo pipefail
version=${CONSUL_TEMPLATE_VERSION:-v0.42.1}
cache=${CONSUL_TEMPLATE_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autopilot-bench/bin}
bin=$cache/consul-template
if [[ -x $bin ]] && "$bin" -version 2>&1 | grep -q "${version}"; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
echo "consul-template-bin: building consul-template $version into $cache (first time only)..." >&2
GOBIN=$cache GOFLAGS=-mod=mod go install "github.com/hashicorp/consul-template@$version" >&2
"$bin" -version >&2
echo "$bin"
