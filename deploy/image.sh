#!/bin/sh
# Build the agent's image FROM scratch (deploy/Dockerfile) around a built
# binary: stage a root filesystem with the binary (debug info stripped), the
# shared libraries ldd names for it (and the loader), the CA roots and the
# example config, then build it with podman (or buildah when podman is
# absent). Offline: nothing is pulled.
#
#   deploy/image.sh <tracer binary> <image name>
#   deploy/image.sh target/release/tracer localhost/tracer:dev
#
# Prints the image id on the last line.
set -eu
bin=${1:?usage: deploy/image.sh <tracer binary> <image name>}
name=${2:?usage: deploy/image.sh <tracer binary> <image name>}
here=$(cd "$(dirname "$0")" && pwd)
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || { echo "no CA roots at $ca (apt install ca-certificates)" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/tracer" "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
objcopy --strip-debug "$bin" "$root/usr/local/bin/tracer"
# Every library the dynamic loader will ask for, at the path it asks for it
# (a static binary has none; ldd then says so and exits non-zero).
for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' || true); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp "$ca" "$root/etc/ssl/certs/"
cp "$here/tracer.toml" "$root/etc/tracer/tracer.toml"

if command -v podman >/dev/null; then
    podman build --quiet -f "$here/Dockerfile" -t "$name" "$ctx"
else
    buildah bud --quiet -f "$here/Dockerfile" -t "$name" "$ctx"
fi
