#!/usr/bin/env bash
# Pack rootfs dirs into an OCI image layout: the first DIR is the base
# layer, each further DIR one more layer on top (GNU tar, gzip, sha256sum).
#   mkimage.sh LAYOUT TAG DIR [DIR...]
# The image gets Cmd ["/bin/sh"] and a PATH; the layout may already hold
# other tags (the new one is added to index.json, replacing the same tag).
# Set MKIMAGE_ARCH to write another architecture into the config, and
# MKIMAGE_CONFIG to a JSON object to use as the image's run config instead
# (MKIMAGE_CONFIG_FILE to a file holding one, for a config too big for an
# environment variable).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 LAYOUT TAG DIR [DIR...]" >&2; exit 2; }
layout=$1 tag=$2
shift 2
blobs=$layout/blobs/sha256
mkdir -p "$blobs"
[ -f "$layout/oci-layout" ] || printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
[ -f "$layout/index.json" ] || printf '{"schemaVersion":2,"manifests":[]}' >"$layout/index.json"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

put() { # FILE -> prints "DIGESTHEX SIZE", moves FILE into blobs
    local h s
    h=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    mv "$1" "$blobs/$h"
    echo "$h $s"
}

layers='' diffs=''
for d in "$@"; do
    # Sorted names keep a layer's digest the same for the same tree.
    tar -C "$d" --numeric-owner --sort=name --xattrs --xattrs-include='*' --pax-option=delete=atime,delete=ctime -cf "$tmp/layer.tar" .
    diff=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
    gzip -n -6 "$tmp/layer.tar"
    read -r h s < <(put "$tmp/layer.tar.gz")
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$h\",\"size\":$s}"
    diffs+="${diffs:+,}\"sha256:$diff\""
done
arch=${MKIMAGE_ARCH:-amd64}
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
[ -z "${MKIMAGE_CONFIG_FILE:-}" ] || MKIMAGE_CONFIG=$(cat "$MKIMAGE_CONFIG_FILE")
runcfg=${MKIMAGE_CONFIG:-'{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"]}'}
printf '{"created":"%s","architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":[%s]},"history":[{"created":"%s","created_by":"scripts/mkimage.sh %s"}]}' \
    "$now" "$arch" "$runcfg" "$diffs" "$now" "$tag" >"$tmp/config.json"
read -r ch cs < <(put "$tmp/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$ch" "$cs" "$layers" >"$tmp/manifest.json"
read -r mh ms < <(put "$tmp/manifest.json")
entry="{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$mh\",\"size\":$ms,\"annotations\":{\"org.opencontainers.image.ref.name\":\"$tag\"}}"
jq --argjson e "$entry" --arg t "$tag" \
    '.manifests = ([.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] != $t)] + [$e])' \
    "$layout/index.json" >"$tmp/index.json"
mv "$tmp/index.json" "$layout/index.json"
