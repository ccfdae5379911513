#!/usr/bin/env bash
# test-deps.sh: install what `make test` runs against, when it is missing, so that `make test`
# alone passes on a fresh Debian machine (as `make demo` does). Called by `make test`; .ci/run
# calls `make test`.
#
#   Debian packages: nginx, haproxy (proxies the tests start on loopback), iproute2 (`ip`, for the
#   network-namespace tests), util-linux (`unshare`, `nsenter`: PID/UTS namespaces), curl.
#   Built from source and cached outside the checkout: Consul (scripts/consul-bin.sh) and
#   consul-template (scripts/consul-template-bin.sh).
#
# apt-get runs non-interactively and starts no service: Debian's nginx package would otherwise
# start nginx on 0.0.0.0:80; a policy-rc.d that answers 101 tells invoke-rc.d not to (it is
# removed again unless it was there before). Not root: nothing is installed, the missing tools
# are named, and the tests that need them skip saying so.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian puts nginx and haproxy in /usr/sbin, which a non-root PATH may lack.
have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]; }

missing=()
for c in nginx:nginx haproxy:haproxy ip:iproute2 unshare:util-linux nsenter:util-linux curl:curl; do
  have "${c%%:*}" || missing+=("${c#*:}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: missing ${missing[*]} (not root or no apt-get: not installing; tests that need them skip)" >&2
  else
    echo "test-deps: installing ${missing[*]}" >&2
    own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      own_policy=1
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    if [[ -n $own_policy ]]; then
      rm -f /usr/sbin/policy-rc.d
      trap - EXIT
    fi
  fi
fi

# Build (first time only; a few minutes each) and cache the Consul and consul-template binaries.
scripts/consul-bin.sh >/dev/null
scripts/consul-template-bin.sh >/dev/null
