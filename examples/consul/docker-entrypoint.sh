#!/bin/sh
# The entrypoint of the local hashicorp/consul:1.14.11 stand-in (scripts/containers.sh builds it,
# as no registry is reachable from CI): it takes the official image's arguments the way the
# official docker-entrypoint.sh does, so examples/docker-compose.yml is the same for both.
#   agent ...       consul agent -data-dir=/consul/data -config-dir=/consul/config ...
#   -flag ...       consul -flag ...
#   SUBCOMMAND ...  consul SUBCOMMAND ... (version, members, kv, ...)
#   anything else   run as is (sh, ...)
set -e
if [ "${1#-}" != "$1" ]; then
  set -- consul "$@"
fi
if [ "$1" = agent ]; then
  shift
  set -- consul agent -data-dir="${CONSUL_DATA_DIR:-/consul/data}" -config-dir="${CONSUL_CONFIG_DIR:-/consul/config}" "$@"
elif [ "$1" = version ] || consul --help 2>&1 | grep -qE "^    $1 +"; then
  set -- consul "$@"
fi
exec "$@"
