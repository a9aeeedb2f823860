#!/usr/bin/env bash
# The raw ceiling: the same blobs uploaded by curl, each in one POST (open a session) and one
# monolithic PUT (all bytes plus the digest), then the manifest. No client logic at all: what
# the link and the registry allow. First every POST (one curl, JOBS at a time, connections
# reused), then every PUT, largest first, from JOBS curl processes side by side.
# A blob whose PUT fails (the reset profile cuts connections) starts over on its own, with a
# new session, until it lands.
# Usage: bench/ceiling.sh BASE_URL REPO TAG BLOBS_DIR JOBS
set -euo pipefail
base=$1 repo=$2 tag=$3 dir=$4 jobs=$5
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

mapfile -t digests < <(sort -k2,2nr "$dir/list" | cut -d' ' -f1)

# Sessions: the query parameter only tells the answers apart (the registry ignores it).
posts=()
for i in "${!digests[@]}"; do
  posts+=(-X POST -o /dev/null "$base/v2/$repo/blobs/uploads/?blob=$i")
done
curl -sS --no-progress-meter --parallel --parallel-max "$jobs" -w '%{url_effective} %header{location}\n' \
  "${posts[@]}" >"$scratch/sessions" || true

declare -A session
while read -r url location; do session[$url]=$location; done <"$scratch/sessions"

# Uploads: JOBS curl processes (so the ceiling may use every core, as the clients do), each
# taking every JOBS-th blob of the largest-first list and reusing its connection.
# "Expect:" stops curl from waiting a round trip for "100 Continue".
for ((job = 0; job < jobs; job++)); do
  puts=()
  for ((i = job; i < ${#digests[@]}; i += jobs)); do
    location=${session["$base/v2/$repo/blobs/uploads/?blob=$i"]:-}
    [ -n "$location" ] || continue
    case $location in /*) location=$base$location ;; esac
    puts+=(-o /dev/null -T "$dir/${digests[$i]#sha256:}" "$location&digest=${digests[$i]}")
  done
  [ ${#puts[@]} -gt 0 ] || continue
  curl -sS -H 'Expect:' -H 'Content-Type: application/octet-stream' \
    -w '%{http_code} %{url_effective}\n' "${puts[@]}" >"$scratch/uploads.$job" &
done
wait || true
cat "$scratch"/uploads.* >"$scratch/uploads" 2>/dev/null || true

retry_blob() {
  local digest=$1 location attempt
  for attempt in 1 2 3 4 5 6 7 8; do
    if location=$(curl -sS -f -X POST -o /dev/null -w '%header{location}' \
        "$base/v2/$repo/blobs/uploads/"); then
      case $location in /*) location=$base$location ;; esac
      if curl -sS -f -H 'Expect:' -H 'Content-Type: application/octet-stream' \
          -T "$dir/${digest#sha256:}" -o /dev/null "$location&digest=$digest"; then
        return 0
      fi
    fi
    echo "ceiling: blob $digest, attempt $attempt failed; starting it again" >&2
    sleep 0.5
  done
  return 1
}
for digest in "${digests[@]}"; do
  if ! grep -q "^201 .*digest=$digest\$" "$scratch/uploads" 2>/dev/null; then
    echo "ceiling: blob $digest did not land in the first pass" >&2
    retry_blob "$digest"
  fi
done

for attempt in 1 2 3 4; do
  curl -sS -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$dir/manifest.json" -o /dev/null "$base/v2/$repo/manifests/$tag" && exit 0
  sleep 0.5
done
exit 1
