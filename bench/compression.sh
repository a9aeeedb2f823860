#!/usr/bin/env bash
# Compression benchmarks (issue 7). Standalone: it needs only the release binary, the
# registry, skopeo, gzip, tc and unshare (root, for the emulated link).
#
#  1. Compressor throughput: one compressible layer pushed over loopback (the network is
#     not the limit there) with --compress gzip and zstd on 1, 2 and all cores, against
#     the gzip command (one thread) on the same layer and skopeo copying the same archive
#     (skopeo gzips uncompressed docker-archive layers on their way to the registry).
#  2. End to end on an emulated slow link (tbf on the loopback of a private network
#     namespace): a compressible and an incompressible image pushed with --compress none,
#     gzip, zstd and auto, and with skopeo.
#
# Knobs (environment): BENCH_WORK (default target/bench-compress), BENCH_THROUGHPUT_MB
# (compressible layer for part 1, default 256), BENCH_LINK_MB (layer size for part 2,
# default 48), BENCH_LINK_RATE (default 20mbit), BENCH_PARTS (default "throughput link").
# Prints Markdown tables; also writes them to $BENCH_WORK/compression.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$PWD
bin=$repo_root/target/release/docker-image-pusher
work=${BENCH_WORK:-$repo_root/target/bench-compress}
throughput_mb=${BENCH_THROUGHPUT_MB:-256}
link_mb=${BENCH_LINK_MB:-48}
link_rate=${BENCH_LINK_RATE:-20mbit}
parts=${BENCH_PARTS:-"throughput link"}
cores=$(nproc)

# Re-entered inside the private network namespace for the link part.
if [ "${1:-}" = "--inside-link" ]; then
  inside=1
else
  inside=0
fi

log() { echo "== $*" >&2; }

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
  done
}
need docker-registry skopeo gzip tc unshare ip sha256sum
[ -x "$bin" ] || { echo "missing $bin: run cargo build --release" >&2; exit 1; }
mkdir -p "$work"

# ---------------------------------------------------------------------------------------
# Images: legacy `docker save` archives (manifest.json, config, one layer.tar), written
# with tar's deterministic options so every run pushes the same bytes.
write_archive() { # name layer.tar
  local name=$1 layer=$2 dir=$work/$1.d diff
  rm -rf "$dir" && mkdir -p "$dir/layer"
  mv "$layer" "$dir/layer/layer.tar"
  diff=$(sha256sum "$dir/layer/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diff" >"$dir/config.json"
  printf '[{"Config":"config.json","RepoTags":["bench/%s:1"],"Layers":["layer/layer.tar"]}]' \
    "$name" >"$dir/manifest.json"
  tar -C "$dir" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -cf "$work/$name.tar" manifest.json config.json layer/layer.tar
  cp "$dir/layer/layer.tar" "$work/$name.layer"
  rm -rf "$dir"
}

# Real files (libraries, binaries, documentation): what image layers are made of.
compressible_image() { # name megabytes
  local name=$1 mb=$2
  [ -f "$work/$name.tar" ] && return
  log "writing $name ($mb MiB of system files)"
  # awk stops reading early on purpose: the pipe's SIGPIPE is not a failure here.
  { find /usr/lib/x86_64-linux-gnu /usr/share /usr/bin -xdev -type f -size -32M -printf '%s %p\n' 2>/dev/null |
    sort -k2 | awk -v max=$((mb << 20)) '{ total += $1; if (total > max) exit; print $2 }' >"$work/$name.list"; } || true
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$work/$name.tmp" \
    -T "$work/$name.list" 2>/dev/null || true
  write_archive "$name" "$work/$name.tmp"
}

incompressible_image() { # name megabytes
  local name=$1 mb=$2
  [ -f "$work/$name.tar" ] && return
  log "writing $name ($mb MiB of random bytes)"
  mkdir -p "$work/$name.rand"
  head -c $((mb << 20)) /dev/urandom >"$work/$name.rand/random.bin"
  tar -C "$work/$name.rand" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -cf "$work/$name.tmp" random.bin
  rm -rf "$work/$name.rand"
  write_archive "$name" "$work/$name.tmp"
}

# ---------------------------------------------------------------------------------------
# A registry on 127.0.0.1 with fresh storage.
registry_pid=
start_registry() { # port
  local port=$1 storage=$work/storage-$1
  rm -rf "$storage" && mkdir -p "$storage"
  cat >"$work/registry-$port.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: bench
EOF
  docker-registry serve "$work/registry-$port.yml" >"$work/registry-$port.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "the registry did not start (see $work/registry-$port.log)" >&2
  exit 1
}
stop_registry() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  registry_pid=
}
trap stop_registry EXIT

seconds_of() { # command... ; prints wall seconds, fails with the command
  local start end
  start=$(date +%s.%N)
  "$@" >"$work/last.out" 2>"$work/last.err" || { cat "$work/last.err" >&2; return 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

mbps() { echo "scale=1; $1 / 1000000 / $2" | bc -l; }

pusher() { # port repository image [flags...]
  local port=$1 repository=$2 image=$3
  shift 3
  DOCKER_PUSHER_CACHE_DIR=$work/cache-$RANDOM-$$ "$bin" push --source "$work/$image.tar" \
    --target "http://127.0.0.1:$port/$repository:1" --json --quiet "$@"
}

skopeo_push() { # port repository image
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
    "docker-archive:$work/$3.tar" "docker://127.0.0.1:$1/$2:1"
}

# Bytes of the layers the registry holds for port/repository:1 (the config comes first in
# the manifest, so its size is skipped).
pushed_layer_bytes() {
  curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:$1/v2/$2/manifests/1" |
    grep -o '"size": *[0-9]*' | tail -n +2 | grep -o '[0-9]*' | awk '{ s += $1 } END { print s }'
}

# ---------------------------------------------------------------------------------------
throughput() {
  local port=5901 image=compressible bytes out seconds
  compressible_image $image "$throughput_mb"
  bytes=$(stat -c %s "$work/$image.layer")
  start_registry $port
  {
    echo "### Compressor throughput ($((bytes >> 20)) MiB layer of system files, loopback, $cores cores)"
    echo
    echo "| compressor | threads | seconds | MB/s of layer | compressed to |"
    echo "|---|---|---|---|---|"
    out=$(mktemp)
    seconds=$(seconds_of sh -c "gzip -6 -c '$work/$image.layer' >'$out'")
    echo "| gzip -6 command | 1 | $seconds | $(mbps "$bytes" "$seconds") | $((100 * $(stat -c %s "$out") / bytes))% |"
    seconds=$(seconds_of sh -c "gzip -3 -c '$work/$image.layer' >'$out'")
    echo "| gzip -3 command | 1 | $seconds | $(mbps "$bytes" "$seconds") | $((100 * $(stat -c %s "$out") / bytes))% |"
    rm -f "$out"
    seconds=$(seconds_of skopeo_push $port bench/skopeo $image)
    echo "| skopeo copy (push, gzip) | - | $seconds | $(mbps "$bytes" "$seconds") | $((100 * $(pushed_layer_bytes $port bench/skopeo) / bytes))% |"
    local algorithm threads report ratio
    for algorithm in gzip zstd; do
      for threads in $(printf '%s\n' 1 2 "$cores" | sort -nu); do
        seconds=$(seconds_of pusher $port "bench/$algorithm-$threads" $image \
          --compress $algorithm --compress-threads "$threads")
        report=$(tail -1 "$work/last.out")
        ratio=$(sed -n 's/.*"bytes_uncompressed":\([0-9]*\),"bytes_compressed":\([0-9]*\).*/\2 * 100 \/ \1/p' <<<"$report" | bc)
        echo "| docker-image-pusher push --compress $algorithm | $threads | $seconds | $(mbps "$bytes" "$seconds") | ${ratio}% |"
      done
    done
    seconds=$(seconds_of pusher $port bench/none $image --compress none)
    echo "| docker-image-pusher push --compress none | - | $seconds | $(mbps "$bytes" "$seconds") | 100% |"
    echo
  } | tee -a "$work/compression.md"
  stop_registry
}

# Runs inside the private network namespace: the loopback is the emulated link.
link_inside() {
  ip link set lo up
  ip link set lo mtu 1500
  tc qdisc add dev lo root tbf rate "$link_rate" burst 64kb latency 200ms
  local port=5902 image bytes seconds mode
  start_registry $port
  {
    echo "### End to end over an emulated $link_rate link ($link_mb MiB layer, $cores cores)"
    echo
    echo "| image | client | seconds | MB/s of layer |"
    echo "|---|---|---|---|"
    for image in compressible-link incompressible-link; do
      bytes=$(stat -c %s "$work/$image.layer")
      for mode in none gzip zstd auto; do
        seconds=$(seconds_of pusher $port "bench/$image-$mode" $image --compress $mode)
        echo "| ${image%-link} | docker-image-pusher --compress $mode | $seconds | $(mbps "$bytes" "$seconds") |"
      done
      seconds=$(seconds_of skopeo_push $port "bench/$image-skopeo" $image)
      echo "| ${image%-link} | skopeo copy | $seconds | $(mbps "$bytes" "$seconds") |"
    done
    echo
  } | tee -a "$work/compression.md"
  stop_registry
}

link() {
  compressible_image compressible-link "$link_mb"
  incompressible_image incompressible-link "$link_mb"
  unshare -n "$0" --inside-link
}

if [ "$inside" = 1 ]; then
  link_inside
  exit 0
fi
: >"$work/compression.md"
for part in $parts; do
  "$part"
done
log "tables written to $work/compression.md"
