#!/usr/bin/env bash
# consul-bin.sh: print the path of a real Consul agent binary for integration tests, building it
# once if needed.
#
# Consul is not packaged in Debian and CI may only reach the Go module proxy, so the agent is built
# from source at an MPL-2.0 release (v1.14.11 pulls in no module under another licence). The binary
# is cached outside the repo (a fresh clone, `git clean` or another worktree reuse it), so every run
# after the first is instant. First build: a few minutes on 2 cores.
#
#   scripts/consul-bin.sh                       # builds if needed, prints /path/to/consul
#   CONSUL_VERSION=v1.14.11 scripts/consul-bin.sh
#   CONSUL_BIN_CACHE=/some/dir scripts/consul-bin.sh   # binary goes to /some/dir/consul
#
# Only the path goes to stdout, so `CONSUL_BIN=$(scripts/consul-bin.sh)` works; progress goes to
# stderr.
set -euo pipefail

version=${CONSUL_VERSION:-v1.14.11}
cache=${CONSUL_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autopilot-test/consul-$version}
bin=$cache/consul

cached() { [[ -x $bin ]] && "$bin" version >/dev/null 2>&1; }

if cached; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
# Two builds at once (make consul in two shells, parallel CI steps) would race on $bin: serialise
# them and let the second one find the first one's binary.
exec 9>"$cache/.lock"
flock 9
if cached; then
  echo "$bin"
  exit 0
fi

work=$(mktemp -d)
# Leave no half-built binary or scratch module behind, also when interrupted.
trap 'rm -rf "$work" "$bin.tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$work"
# A throwaway module that depends on Consul: building its main package from the module cache is
# exactly `go install github.com/hashicorp/consul@version`, but `go install pkg@version` refuses
# modules with replace directives, which Consul's go.mod has (they only matter inside its repo).
cat > go.mod <<MOD
module consulbuild

go 1.22
MOD
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/hashicorp/consul"
GO
echo "consul-bin: building Consul $version into $cache (first time only)..." >&2
# Keep the caller's workspace and flags (GOFLAGS=-mod=vendor, a go.work) out of this build.
export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0
go get "github.com/hashicorp/consul@$version" >&2
go build -trimpath -o "$bin.tmp" github.com/hashicorp/consul >&2
mv -f "$bin.tmp" "$bin"
"$bin" version >&2
echo "$bin"
