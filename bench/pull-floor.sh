#!/usr/bin/env bash
# The floor for a pull: fetch the manifest and config with curl, then each
# layer blob with curl piped into `tar -xz`, all layers side by side.
#   pull-floor.sh ADDR NAME TAG OUTDIR
set -euo pipefail
addr=$1 name=$2 tag=$3 out=$4
mkdir -p "$out"
accept='Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
mapfile -t digests < <(curl -fsS -H "$accept" "http://$addr/v2/$name/manifests/$tag" | grep -o 'sha256:[0-9a-f]\{64\}')
# The first digest of a manifest is its config, the rest its layers.
curl -fsS -o "$out/config.json" "http://$addr/v2/$name/blobs/${digests[0]}"
i=0
pids=()
for d in "${digests[@]:1}"; do
    i=$((i + 1))
    mkdir -p "$out/$i"
    (curl -fsS "http://$addr/v2/$name/blobs/$d" | tar -xzf - -C "$out/$i") &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
