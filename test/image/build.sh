#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds deploy/Dockerfile with podman, as on machines without a Docker
# engine (debootstrap + podman import for the
# base image, podman build --isolation chroot --network host), then checks
# the image by mounting it and running its stompgate under chroot, as its
# non-root user, against a private RabbitMQ: a STOMP round trip from a
# real client, the image's HEALTHCHECK command, and a clean drain.
# Output is TAP. Needs root (podman image mount, chroot).
set -u
src=${STOMPGATE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src"
tag=localhost/stompgate:image-test-$$
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; fail=1; }
fail=0
log() { echo "# $*"; }

if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root for podman image mount and chroot"; exit 0; fi
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  log "installing podman and debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman debootstrap >&2 ||
    { echo "Bail out! cannot install podman/debootstrap"; exit 1; }
fi
echo "1..9"

work=$(mktemp -d /tmp/sg-image.XXXXXX)
chmod 755 "$work"
mnt=
cleanup() {
  [ -n "${gw_pid:-}" ] && kill -KILL "$gw_pid" 2>/dev/null
  [ -d "$work/broker" ] && rmq_stop "$work/broker"
  [ -n "$mnt" ] && podman image unmount "$tag" >/dev/null 2>&1
  podman rmi -f "$tag" >/dev/null 2>&1
  # The untagged build-stage image this run left (768 MB); the base image
  # stays, so the next run needs no debootstrap.
  podman image prune -f --filter label=org.stompgate.stage=build >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# The base image: made once and kept, so a later run skips debootstrap.
if ! podman image exists docker.io/library/debian:bookworm-slim; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  log "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" | sed 's/^/# /'; echo "Bail out! debootstrap failed"; exit 1; }
  tar -C "$work/rootfs" -c . | podman import - docker.io/library/debian:bookworm-slim >/dev/null ||
    { echo "Bail out! podman import failed"; exit 1; }
  rm -rf "$work/rootfs"
fi
ok "base image debian:bookworm-slim present locally"

# --format docker keeps HEALTHCHECK, which the OCI format has no field for.
if podman build --isolation chroot --network host --format docker -f deploy/Dockerfile \
     -t "$tag" . > "$work/build.log" 2>&1; then
  ok "podman build -f deploy/Dockerfile"
else
  tail -30 "$work/build.log" | sed 's/^/# /'
  notok "podman build -f deploy/Dockerfile"
  exit 1
fi

hc=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$tag" 2>/dev/null)
user=$(podman image inspect --format '{{.Config.User}}' "$tag")
case $hc in *healthcheck*) ok "HEALTHCHECK declared: $hc" ;; *) notok "HEALTHCHECK missing ($hc)" ;; esac
[ "$user" = "stompgate:stompgate" ] && ok "runs as non-root user $user" || notok "user is '$user'"

mnt=$(podman image mount "$tag") || { echo "Bail out! podman image mount failed"; exit 1; }
bad=
for f in usr/bin/gcc usr/bin/cc usr/bin/meson usr/include/uv.h usr/include/amqp.h; do
  [ -e "$mnt/$f" ] && bad="$bad $f"
done
[ -z "$bad" ] && ok "final stage has no compiler, build tools or headers" || notok "build leftovers:$bad"

. test/lib/rabbitmq.sh
rmq_start "$work/broker" >&2 || { echo "Bail out! RabbitMQ did not start"; exit 1; }
port=$(free_port); admin=$(free_port)
# The image's own environment (ENV lines), with addresses for this host.
mapfile -t img_env < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$tag" | grep .)
env -i "${img_env[@]}" STOMPGATE_LISTEN=127.0.0.1:$port STOMPGATE_ADMIN=127.0.0.1:$admin \
  STOMPGATE_BROKER=amqp://guest:guest@127.0.0.1:$RMQ_AMQP_PORT/ STOMPGATE_BROKER_PROBE_INTERVAL=200 \
  chroot --userspec=stompgate:stompgate "$mnt" /usr/bin/stompgate > "$work/gw.log" 2>&1 &
gw_pid=$!
for _ in $(seq 1 100); do
  node -e 'const c=require("net").connect(+process.argv[1],"127.0.0.1");c.on("connect",()=>process.exit(0));c.on("error",()=>process.exit(1))' "$port" 2>/dev/null && break
  sleep 0.1
done
if kill -0 "$gw_pid" 2>/dev/null; then ok "the image's stompgate runs under chroot as stompgate"; else
  sed 's/^/# /' "$work/gw.log"; notok "the image's stompgate did not start"; fi

if STOMPGATE_BIN=/bin/false SG_AMQP_PORT=$RMQ_AMQP_PORT node test/image/check.mjs "ws://127.0.0.1:$port/ws" "$admin" 2>&1 | sed 's/^/# /'; [ "${PIPESTATUS[0]}" = 0 ]; then
  ok "STOMP round trip and /readyz through the image's binary"
else
  notok "STOMP round trip through the image's binary"
fi

if env -i "${img_env[@]}" STOMPGATE_ADMIN=127.0.0.1:$admin chroot --userspec=stompgate:stompgate "$mnt" \
     /usr/libexec/stompgate/healthcheck; then
  ok "the image's HEALTHCHECK command passes"
else
  notok "the image's HEALTHCHECK command fails"
fi

kill -TERM "$gw_pid"
wait "$gw_pid"; rc=$?
gw_pid=
[ "$rc" = 0 ] && ok "SIGTERM drains and exits 0" || { sed 's/^/# /' "$work/gw.log"; notok "exit code $rc after SIGTERM"; }
exit $fail
