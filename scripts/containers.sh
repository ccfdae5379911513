#!/usr/bin/env bash
# containers.sh: build the example images and run examples/docker-compose.yml with podman, test the
# running stack, then remove everything the run created.
#
#   scripts/containers.sh            (make containers) base images if missing, build, up, test, down
#   scripts/containers.sh base       only make the local base images (cached in podman's storage)
#   scripts/containers.sh build      base images + the example images
#   scripts/containers.sh up         build and start the stack, leave it running (prints how to test)
#   scripts/containers.sh down       stop and remove what `up` left (containers, network, volumes)
#
# Why the base images are made here: no container registry is reachable from these machines, so
# `FROM debian:bookworm-slim`, `FROM golang:1.26-bookworm` and `image: hashicorp/consul:1.14.11`
# are satisfied by local images with those names, built from what the machine already trusts:
#   debian:bookworm-slim      debootstrap --variant=minbase from the Debian mirror that the machine's
#                             own apt sources name (read from /etc/apt, never hard-coded);
#   golang:1.26-bookworm      that + the machine's Go toolchain (go env GOROOT), its GOPROXY,
#                             GOSUMDB and GOFLAGS, and its extra CA certificates
#                             (/usr/local/share/ca-certificates: module downloads go through them);
#   hashicorp/consul:1.14.11  that + the Consul the tests build (scripts/consul-bin.sh) and an
#                             entrypoint that takes the official image's arguments.
# Each is tagged under its short name and its docker.io/ name, so Dockerfiles and the compose file
# stay exactly what a Docker user runs. Images are kept between runs (the cache); everything else
# (containers, the network, volumes) is removed on every exit path.
#
# Network: the stack runs on one private /24 (AUTOPILOT_CONTAINERS_SUBNET, default 10.89.77.0/24)
# which this script creates, plus loopback. Podman's own default network (used by image builds) is
# narrowed from 10.88.0.0/16 to AUTOPILOT_CONTAINERS_BUILD_SUBNET (default 10.89.76.0/24). Nothing
# is published on the host's addresses: the tests reach the containers on the bridge.
#
# podman-compose 1.0.3 (Debian 12) ignores the compose file's top-level `name:`, `--scale`,
# `stop_grace_period` and a network's `ipam`; this script passes `-p`, pre-creates the network with
# its subnet, and the tests start extra replicas and stop containers themselves (see e2e/containers_test.go).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
project=${AUTOPILOT_CONTAINERS_PROJECT:-autopilot-demo}
subnet=${AUTOPILOT_CONTAINERS_SUBNET:-10.89.77.0/24}
build_subnet=${AUTOPILOT_CONTAINERS_BUILD_SUBNET:-10.89.76.0/24}
compose_file=$root/examples/docker-compose.yml
network=${project}_default
export PATH=$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin

# cleanups: commands run on exit, last first (scratch dirs, buildah working containers).
cleanups=()
cleanup() {
  local i
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do eval "${cleanups[i]}" || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'containers: %s\n' "$*" >&2; exit 1; }

need() {
  local missing=() c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}: apt-get install podman buildah podman-compose debootstrap golang-github-containernetworking-plugin-dnsname iptables"
}

# gateway CIDR: the first address of a /24.
gateway() { local n=${1%/*}; echo "${n%.*}.1"; }

# hard_limits: "NOFILE NPROC" that a container may be given here: the hard limits of this shell,
# NPROC also capped at kernel.pid_max (podman's own processes run with that cap, and runc cannot
# raise a limit above what it has).
hard_limits() {
  local nofile nproc pidmax
  nofile=$(ulimit -Hn) nproc=$(ulimit -Hu) pidmax=$(cat /proc/sys/kernel/pid_max)
  [[ $nofile == unlimited ]] && nofile=1048576
  [[ $nproc == unlimited ]] && nproc=$pidmax
  ((nproc <= pidmax)) || nproc=$pidmax
  echo "$nofile $nproc"
}

# configure_runtime: what podman needs on these machines (root without CAP_SYS_RESOURCE, hybrid
# cgroups): ulimits no higher than the hard limits we have, runc instead of crun, cgroupfs, file
# events; and podman's default network narrowed to a /24.
configure_runtime() {
  local conf=/etc/containers/containers.conf marker='# written by autopilot scripts/containers.sh'
  if [[ ! -e $conf ]] || grep -qF "$marker" "$conf"; then
    local nofile nproc
    read -r nofile nproc <<<"$(hard_limits)"
    mkdir -p /etc/containers
    cat >"$conf.tmp" <<EOF
$marker
# Containers get at most this machine's hard limits (root cannot raise them here), run under runc
# (crun refuses this VM's hybrid cgroup layout) with cgroupfs, and log events to a file (no journald).
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[network]
default_subnet = "$build_subnet"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    if ! cmp -s "$conf.tmp" "$conf" 2>/dev/null; then
      mv "$conf.tmp" "$conf"
      say "wrote $conf"
    else
      rm -f "$conf.tmp"
    fi
  else
    say "keeping $conf (not written by this script); it needs runtime = \"runc\" and default_ulimits within the hard limits here"
  fi
  # Podman's CNI default network is 10.88.0.0/16: builds would use it. Narrow it to a /24.
  local cni=/etc/cni/net.d/87-podman-bridge.conflist
  if [[ -f $cni ]] && grep -q '"subnet": "10.88.0.0/16"' "$cni"; then
    sed -i -e "s|\"subnet\": \"10.88.0.0/16\"|\"subnet\": \"$build_subnet\"|" \
      -e "s|\"gateway\": \"10.88.0.1\"|\"gateway\": \"$(gateway "$build_subnet")\"|" "$cni"
    say "podman's default network now $build_subnet ($cni)"
  fi
}

# ulimits: the hard limits this process has, for buildah (which does not read default_ulimits).
ulimits=()
set_ulimits() {
  local nofile nproc
  read -r nofile nproc <<<"$(hard_limits)"
  ulimits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
}

have_image() { podman image exists "$1"; }

# tag_both IMAGE: IMAGE is also reachable as docker.io/IMAGE (library/ for official images).
tag_both() {
  local img=$1 full
  case $img in
    */*) full=docker.io/$img ;;
    *) full=docker.io/library/$img ;;
  esac
  podman tag "$img" "$full"
}

# debian_mirror: the Debian archive URI of the machine's own apt sources (the first one that
# carries the bookworm suite, deb822 or one-line format).
debian_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    uri=$(awk '
      /^[[:space:]]*$/ { if (u != "" && s ~ /(^| )bookworm( |$)/) { print u; exit } u = ""; s = ""; next }
      /^URIs:/ { u = $2 } /^Suites:/ { $1 = ""; s = $0 " " }
      END { if (u != "" && s ~ /(^| )bookworm( |$)/) print u }' "$f" | head -1)
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    uri=$(awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == "bookworm") { print $i; exit } }' "$f")
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  return 1
}

# security_mirror: the bookworm-security URI of the apt sources, if any.
security_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    grep -hoE 'https?://[^ ]*debian-security[^ ]*' "$f" | head -1 && return
  done
  return 0
}

base_debian() {
  local img=debian:bookworm-slim
  have_image "$img" && have_image "docker.io/library/$img" && return
  need debootstrap
  local mirror security work
  mirror=$(debian_mirror) || die "no bookworm mirror in /etc/apt/sources.list*"
  security=$(security_mirror)
  say "making $img with debootstrap --variant=minbase from $mirror (first run only)"
  work=$(mktemp -d /var/tmp/autopilot-rootfs.XXXXXX)
  cleanups+=("rm -rf '$work'")
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  {
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    [[ -z $security ]] || echo "deb $security bookworm-security main"
  } >"$work/rootfs/etc/apt/sources.list"
  # As the official slim image: no docs, man pages or apt lists kept in layers.
  cat >"$work/rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$work/rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$work/rootfs/etc/apt/apt.conf.d/docker-no-languages"
  # What the excludes above would have kept out had they been there during debootstrap.
  find "$work/rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/cache/apt/*.bin \
    "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/usr/share/doc "$work/rootfs"/usr/share/man \
    "$work/rootfs"/usr/share/info
  tar -C "$work/rootfs" --numeric-owner -c . |
    podman import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$img" >/dev/null
  tag_both "$img"
}

base_golang() {
  local img=golang:1.26-bookworm goroot ver
  have_image "$img" && have_image "docker.io/library/$img" && return
  need go buildah
  goroot=$(go env GOROOT)
  ver=$(go env GOVERSION)
  [[ $ver == go1.26* ]] || die "golang:1.26-bookworm needs Go 1.26 on this machine, found $ver"
  say "making $img from debian:bookworm-slim + $goroot ($ver)"
  local ctr
  ctr=$(buildah from --pull-never "${ulimits[@]}" debian:bookworm-slim)
  cleanups+=("buildah rm '$ctr' >/dev/null 2>&1 || true")
  buildah run "$ctr" -- sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*' >/dev/null
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    buildah copy "$ctr" /usr/local/share/ca-certificates /usr/local/share/ca-certificates >/dev/null
    buildah run "$ctr" -- update-ca-certificates >/dev/null
  fi
  buildah copy "$ctr" "$goroot" /usr/local/go >/dev/null
  buildah config --env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env GOPATH=/go --env GOTOOLCHAIN=local \
    --env "GOPROXY=$(go env GOPROXY)" --env "GOSUMDB=$(go env GOSUMDB)" --env "GOFLAGS=$(go env GOFLAGS)" \
    --workingdir /go --cmd bash "$ctr"
  buildah commit --rm "$ctr" "$img" >/dev/null
  tag_both "$img"
}

base_consul() {
  local img=hashicorp/consul:1.14.11 bin
  have_image "$img" && have_image "docker.io/$img" && return
  need buildah
  bin=$("$root/scripts/consul-bin.sh")
  say "making $img from debian:bookworm-slim + $bin"
  local ctr
  ctr=$(buildah from --pull-never "${ulimits[@]}" debian:bookworm-slim)
  cleanups+=("buildah rm '$ctr' >/dev/null 2>&1 || true")
  buildah copy --chmod 0755 "$ctr" "$bin" /bin/consul >/dev/null
  buildah copy --chmod 0755 "$ctr" "$root/examples/consul/docker-entrypoint.sh" /usr/local/bin/docker-entrypoint.sh >/dev/null
  buildah run "$ctr" -- mkdir -p /consul/data /consul/config
  buildah config --entrypoint '["docker-entrypoint.sh"]' --cmd '["agent", "-dev", "-client", "0.0.0.0"]' \
    --env CONSUL_DATA_DIR=/consul/data --env CONSUL_CONFIG_DIR=/consul/config \
    --port 8300 --port 8301 --port 8302 --port 8500 --port 8600 "$ctr"
  buildah commit --rm "$ctr" "$img" >/dev/null
  tag_both "$img"
}

base() {
  need podman buildah
  configure_runtime
  set_ulimits
  base_debian
  base_golang
  base_consul
}

# compose ARGS: podman-compose on the project. podman-compose 1.0.3 exits 0 even when a podman
# build or run it started failed (it only prints "exit code: N"), so a failed build would leave the
# previous image in place and the tests would pass on it: fail on any non-zero step.
compose() {
  local log rc=0
  log=$(mktemp)
  cleanups+=("rm -f '$log'")
  podman-compose -p "$project" -f "$compose_file" "$@" 2>&1 | tee "$log" || rc=$?
  if ((rc != 0)) || grep -qE '^exit code: [1-9]' "$log"; then
    die "podman-compose $1 failed (see above)"
  fi
}

build() {
  base
  need podman-compose
  say "building the example images (examples/docker-compose.yml)"
  local t0=$SECONDS
  compose build
  say "images built in $((SECONDS - t0))s"
}

# down: remove what up created: every container of the project (also extra replicas the tests
# start, which carry the project label), its network and its volumes. Containers get the compose
# file's stop_grace_period (15 s) that podman-compose 1.0.3 ignores.
down() {
  local ids
  ids=$(podman ps -aq --filter "label=io.podman.compose.project=$project")
  if [[ -n $ids ]]; then
    # shellcheck disable=SC2086
    podman stop -t 15 $ids >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    podman rm -f -v $ids >/dev/null 2>&1 || true
  fi
  local vols
  vols=$(podman volume ls -q --filter "label=io.podman.compose.project=$project")
  # shellcheck disable=SC2086
  [[ -z $vols ]] || podman volume rm -f $vols >/dev/null 2>&1 || true
  if podman network exists "$network"; then podman network rm -f "$network" >/dev/null 2>&1 || true; fi
}

# free_port PORT: PORT, or the next one up that nothing on loopback listens on.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

up() {
  need podman-compose
  down
  # The compose file publishes Consul, nginx and HAProxy on loopback for a user's curl; on a shared
  # machine the usual ports may be taken, so take free ones (the tests use the bridge addresses).
  export DEMO_CONSUL_PORT=${DEMO_CONSUL_PORT:-$(free_port 18500)}
  export DEMO_NGINX_PORT=${DEMO_NGINX_PORT:-$(free_port 18080)}
  export DEMO_HAPROXY_PORT=${DEMO_HAPROXY_PORT:-$(free_port $((DEMO_NGINX_PORT + 1)))}
  # podman-compose 1.0.3 creates the network without the compose file's ipam subnet; create it
  # here, with the project labels it would give it, and it uses this one.
  podman network create --subnet "$subnet" --gateway "$(gateway "$subnet")" \
    --label "io.podman.compose.project=$project" --label "com.docker.compose.project=$project" \
    "$network" >/dev/null
  say "starting the stack ($project on $subnet)"
  compose up -d
  say "published on loopback: Consul :$DEMO_CONSUL_PORT, nginx :$DEMO_NGINX_PORT, HAProxy :$DEMO_HAPROXY_PORT"
}

run_tests() {
  say "testing the running stack (e2e: TestContainers*)"
  (cd "$root" && AUTOPILOT_CONTAINERS=1 AUTOPILOT_CONTAINERS_PROJECT=$project \
    AUTOPILOT_CONTAINERS_NETWORK=$network \
    go test -count=1 -timeout 15m -run '^TestContainers' -v ./e2e/ 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)')
}

main() {
  [[ $(id -u) -eq 0 ]] || die "run as root (rootful podman: the stack's bridge network)"
  case ${1:-all} in
    base) base ;;
    build) build ;;
    up) build && up && say "stack is up; test it: AUTOPILOT_CONTAINERS=1 go test -run '^TestContainers' ./e2e/; stop it: $0 down" ;;
    down) down ;;
    all)
      local t0=$SECONDS
      build
      # From here on, however the run ends, remove what it created.
      cleanups+=(down)
      up
      run_tests
      say "make containers passed in $((SECONDS - t0))s"
      ;;
    *) die "usage: $0 [base|build|up|down]" ;;
  esac
}

main "$@"
