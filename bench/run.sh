#!/usr/bin/env bash
# `make bench`: pushes generated images over emulated links with this tool (fixed
# concurrency 1, 2, 4, 8 and dynamic mode when the binary has it), with skopeo, and with the
# raw curl ceiling, side by side; checks memory and the binary budgets; writes the Markdown
# table to bench/results/latest.md. See bench/README.md.
#
# Knobs (environment): BENCH_PROFILES (default "loopback gbit 100mbit 20mbit"),
# BENCH_CONCURRENCY (default "1 2 4 8"), BENCH_CEILING_JOBS (default: the largest concurrency),
# BENCH_REPEAT (rounds per profile; default 3 on loopback, 2 at 1 Gbit/s, else 1),
# BENCH_STARTUP_RUNS (default 20), BENCH_WORK (default target/bench), BENCH_STORAGE (registry
# storage; default a directory in /dev/shm when it has room, so the disk is not what is measured),
# BENCH_SETS (default "transfer compression copy": the concurrency rows, the --compress rows,
# the registry-to-registry copy rows),
# BENCH_COMPRESS_THREADS (default "1 2 <CPUs>": --compress-threads of the loopback rows).
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$PWD
bin=$repo_root/target/release/docker-image-pusher
examples=$repo_root/target/release/examples
work=${BENCH_WORK:-$repo_root/target/bench}
profiles=${BENCH_PROFILES:-"loopback gbit 100mbit 20mbit"}
concurrency=${BENCH_CONCURRENCY:-"1 2 4 8"}
# The ceiling runs as many transfers at once as the highest fixed concurrency measured.
ceiling_jobs=${BENCH_CEILING_JOBS:-$(tr ' ' '\n' <<<"$concurrency" | sort -n | tail -1)}
startup_runs=${BENCH_STARTUP_RUNS:-20}
sets=${BENCH_SETS:-"transfer compression copy"}
compress_threads=${BENCH_COMPRESS_THREADS:-$(printf '%s\n' 1 2 "$(nproc)" | sort -nu | tr '\n' ' ')}
has_set() { [[ " $sets " == *" $1 "* ]]; }
results_dir=$repo_root/bench/results
storage=${BENCH_STORAGE:-}
if [ -z "$storage" ]; then
  if [ -w /dev/shm ] && [ "$(df -k --output=avail /dev/shm | tail -1)" -gt $((6 << 20)) ]; then
    storage=/dev/shm/dipb-storage-$$
  else
    storage=$work/storage
  fi
fi
runs=$work/runs.tsv
notes=$work/notes.txt
logs=$work/logs

for tool in "$bin" "$examples/bench-image" "$examples/link-proxy" "$examples/startup-probe"; do
  [ -x "$tool" ] || { echo "missing $tool: run 'make bench' (it builds everything)" >&2; exit 1; }
done
mkdir -p "$work/images" "$logs" "$results_dir"
rm -rf "$logs"/* "$work/run"
: >"$runs"
: >"$notes"
note() { echo "$*" | tee -a "$notes" >&2; }
log() { echo "== $*" >&2; }

# ---------------------------------------------------------------------------------------
# Images. Layer sizes in bytes (K/M/G binary); each image is generated once and kept, since
# the generator is deterministic (delete target/bench/images to regenerate).
small_layers() { # 40 layers of 1..8 units, so sizes vary as in a real image
  local unit=$1 i
  for i in $(seq 0 39); do echo -n "$(((i % 8 + 1) * unit)) "; done
}
image_layers() {
  case $1 in
    big2g) echo "512M 512M 512M 512M" ;;
    huge4g) echo "4G" ;;
    big1g) echo "256M 256M 256M 256M" ;;
    big256m) echo "64M 64M 64M 64M" ;;
    big64m) echo "16M 16M 16M 16M" ;;
    small40) small_layers $((512 << 10)) ;;
    small40m) small_layers $((64 << 10)) ;;
    small40s) small_layers $((16 << 10)) ;;
    text256m) echo "256M" ;;
    text64m) echo "16M 16M 16M 16M" ;;
    text4x64m) echo "64M 64M 64M 64M" ;;
    text1g) echo "1G" ;;
    *) echo "unknown image $1" >&2; return 1 ;;
  esac
}
layer_bytes() {
  local total=0 size
  for size in $(image_layers "$1"); do
    case $size in
      *G) size=$((${size%G} << 30)) ;; *M) size=$((${size%M} << 20)) ;; *K) size=$((${size%K} << 10)) ;;
    esac
    total=$((total + size))
  done
  echo "$total"
}
image_label() {
  local bytes count kind="" plural=""
  bytes=$(layer_bytes "$1")
  count=$(image_layers "$1" | wc -w)
  [ "$count" -gt 1 ] && plural=s
  # Text images compress, the others do not: the label keeps their rows apart.
  [[ $1 != text* ]] || kind=" text"
  if [ "$bytes" -ge $((1 << 30)) ]; then
    echo "$((bytes >> 30)) GiB$kind, $count layer$plural${row_suffix:-}"
  else
    echo "$((bytes >> 20)) MiB$kind, $count layer$plural${row_suffix:-}"
  fi
}
ensure_image() {
  local name=$1 spec
  spec="v1 $(image_layers "$name")"
  if [ -f "$work/images/$name.done" ] && [ "$(cat "$work/images/$name.done")" = "$spec" ]; then
    return
  fi
  log "generating image $name ($(image_label "$name"))"
  rm -rf "$work/images/$name.tar" "$work/images/$name.blobs" "$work/images/$name.done"
  # shellcheck disable=SC2046
  local content=()
  # text* images hold compressible text: what the --compress rows push.
  [[ $name != text* ]] || content=(--compressible)
  "$examples/bench-image" "$work/images/$name.tar" "bench/$name:1" \
    --blobs "$work/images/$name.blobs" "${content[@]}" $(image_layers "$name") >&2
  echo "$spec" >"$work/images/$name.done"
}

# ---------------------------------------------------------------------------------------
# Link profiles: rate (tc syntax, "" for unlimited), round trip in ms, mean bytes between
# connection cuts ("" for none), the images pushed over it, and how many rounds to run (the
# best is reported: CPU-bound profiles suffer most from other load on the machine).
profile() {
  case $1 in
    loopback) p_title="loopback, unlimited"; p_rate=""; p_rtt=0; p_cut=""; p_images="big2g small40 huge4g"; p_repeat=3 ;;
    gbit) p_title="1 Gbit/s, 5 ms RTT"; p_rate=1gbit; p_rtt=5; p_cut=""; p_images="big1g small40"; p_repeat=2 ;;
    100mbit) p_title="100 Mbit/s, 40 ms RTT"; p_rate=100mbit; p_rtt=40; p_cut=""; p_images="big256m small40m"; p_repeat=1 ;;
    20mbit) p_title="20 Mbit/s, 150 ms RTT, resets"; p_rate=20mbit; p_rtt=150; p_cut=$((64 << 20)); p_images="big64m small40s"; p_repeat=1 ;;
    *) echo "unknown profile $1" >&2; return 1 ;;
  esac
  # The --compress rows: compressor throughput where the network is not the limit
  # (loopback: a compressible image, on 1, 2 and all cores, against the gzip command and
  # skopeo), and whole pushes of a compressible and an incompressible image on slow links.
  case $1 in
    loopback) p_compress_images="text256m"; p_memory_images="text4x64m text1g" ;;
    100mbit) p_compress_images="text256m big256m" ;;
    20mbit) p_compress_images="text64m big64m" ;;
    *) p_compress_images="" ;;
  esac
  [ "$1" = loopback ] || p_memory_images=""
  has_set compression || { p_compress_images=""; p_memory_images=""; }
  # The copy rows: registry to registry, both on the registry side's loopback.
  case $1 in loopback) p_copy_images="big2g" ;; *) p_copy_images="" ;; esac
  has_set copy || p_copy_images=""
  has_set transfer || p_images=""
  p_repeat=${BENCH_REPEAT:-$p_repeat}
}
rate_mbit() { # tc rate -> Mbit/s for the proxy's own pacing
  case $1 in *gbit) echo $((${1%gbit} * 1000)) ;; *mbit) echo "${1%mbit}" ;; esac
}

# ---------------------------------------------------------------------------------------
# Network: two namespaces joined by a veth pair, the registry (and the delaying proxy) in
# one, the clients in the other; tbf on both ends for the rate. Without namespaces (not
# root, or the kernel refuses) everything runs on the host's loopback and the proxy paces.
ns_c=dipb-c-$$ ns_r=dipb-r-$$ veth_c=dipb$$c veth_r=dipb$$r
addr_c=10.201.0.1 addr_r=10.201.0.2
use_netns=no use_tbf=no
in_reg=() in_client=()
registry_pid="" proxy_pid=""

cleanup() {
  stop_registry
  stop_source_registry
  stop_proxy
  if [ "$use_netns" = yes ]; then
    ip netns del "$ns_c" 2>/dev/null || true
    ip netns del "$ns_r" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setup_network() {
  if [ "$(id -u)" -ne 0 ]; then
    note "Not root: no network namespaces; link profiles run on loopback with the proxy pacing the rate."
    return
  fi
  if ! { ip netns add "$ns_c" && ip netns add "$ns_r" &&
    ip link add "$veth_c" type veth peer name "$veth_r" &&
    ip link set "$veth_c" netns "$ns_c" && ip link set "$veth_r" netns "$ns_r" &&
    ip -n "$ns_c" addr add "$addr_c/30" dev "$veth_c" && ip -n "$ns_r" addr add "$addr_r/30" dev "$veth_r" &&
    ip -n "$ns_c" link set "$veth_c" up && ip -n "$ns_r" link set "$veth_r" up &&
    ip -n "$ns_c" link set lo up && ip -n "$ns_r" link set lo up; } 2>"$logs/netns.err"; then
    note "Cannot create network namespaces ($(head -1 "$logs/netns.err")); link profiles run on loopback with the proxy pacing the rate."
    ip netns del "$ns_c" 2>/dev/null || true
    ip netns del "$ns_r" 2>/dev/null || true
    return
  fi
  use_netns=yes
  in_reg=(ip netns exec "$ns_r")
  in_client=(ip netns exec "$ns_c")
  if ip netns exec "$ns_c" tc qdisc add dev "$veth_c" root tbf rate 100mbit burst 64kb latency 50ms 2>"$logs/tc.err"; then
    ip netns exec "$ns_c" tc qdisc del dev "$veth_c" root
    use_tbf=yes
  else
    note "tc tbf is unavailable ($(head -1 "$logs/tc.err")); the proxy paces the rate instead."
  fi
  if ip netns exec "$ns_c" tc qdisc add dev "$veth_c" root netem delay 1ms 2>/dev/null; then
    ip netns exec "$ns_c" tc qdisc del dev "$veth_c" root
    note "(netem exists on this kernel, but the proxy adds the delay so results compare across machines.)"
  fi
}

shape_link() { # rate: "" clears
  [ "$use_tbf" = yes ] || return 0
  local rate=$1 side dev burst
  for side in c r; do
    if [ $side = c ]; then ns=$ns_c dev=$veth_c; else ns=$ns_r dev=$veth_r; fi
    ip netns exec "$ns" tc qdisc del dev "$dev" root 2>/dev/null || true
    if [ -n "$rate" ]; then
      # Burst: 4 ms at the rate, at least 64 KB (a full GSO packet).
      burst=$(($(rate_mbit "$rate") * 1000 / 8 * 4))
      [ "$burst" -ge 65536 ] || burst=65536
      ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$rate" burst "$burst" latency 50ms
    fi
  done
}

free_port() {
  "${in_reg[@]}" python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_registry() {
  rm -rf "$work/run" "$storage"
  mkdir -p "$work/run"
  cat >"$work/run/registry.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $storage}}
http: {addr: 127.0.0.1:$registry_port}
YAML
  "${in_reg[@]}" docker-registry serve "$work/run/registry.yml" >"$work/run/registry.log" 2>&1 &
  registry_pid=$!
  local _
  for _ in $(seq 100); do
    "${in_reg[@]}" curl -fs -o /dev/null "http://127.0.0.1:$registry_port/v2/" && return 0
    sleep 0.05
  done
  echo "the registry did not start; see $work/run/registry.log" >&2
  cat "$work/run/registry.log" >&2
  return 1
}

stop_registry() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=""
  fi
  rm -rf "$storage"
}

# The source of the copy rows: a second registry with its own storage, seeded once with
# the image by this tool's push (not measured), kept for every copy run of the image.
source_pid="" source_port=""
start_source_registry() { # image
  stop_source_registry
  source_port=$(free_port)
  mkdir -p "$work/source"
  cat >"$work/source/registry.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $storage-source}}
http: {addr: 127.0.0.1:$source_port}
YAML
  "${in_reg[@]}" docker-registry serve "$work/source/registry.yml" >"$work/source/registry.log" 2>&1 &
  source_pid=$!
  local _
  for _ in $(seq 100); do
    "${in_reg[@]}" curl -fs -o /dev/null "http://127.0.0.1:$source_port/v2/" && break
    sleep 0.05
  done
  "${in_reg[@]}" "$bin" push -q --source "$work/images/$1.tar" \
    --target "http://127.0.0.1:$source_port/bench/$1:1" --cache-dir "$work/source/cache" >&2
}

stop_source_registry() {
  if [ -n "$source_pid" ]; then
    kill "$source_pid" 2>/dev/null || true
    wait "$source_pid" 2>/dev/null || true
    source_pid=""
  fi
  rm -rf "$storage-source" "$work/source"
}

# Sets `endpoint` (host:port the clients use) and `client` (command prefix) for a profile.
start_link() {
  local name=$1
  stop_proxy
  if [ "$name" = loopback ]; then
    shape_link ""
    endpoint=127.0.0.1:$registry_port
    client=("${in_reg[@]}")
    return
  fi
  local listen=127.0.0.1:0 pacing=()
  if [ "$use_netns" = yes ]; then listen=$addr_r:0; fi
  if [ "$use_tbf" = yes ]; then shape_link "$p_rate"; else pacing=(--rate-mbit "$(rate_mbit "$p_rate")"); fi
  local cut=()
  [ -z "$p_cut" ] || cut=(--cut-every "$p_cut" --seed 7)
  # The log exists before the proxy starts, so polling it never races the redirection.
  : >"$logs/proxy-$name.log"
  "${in_reg[@]}" "$examples/link-proxy" --listen "$listen" --upstream "127.0.0.1:$registry_port" \
    --rtt-ms "$p_rtt" "${pacing[@]}" "${cut[@]}" >>"$logs/proxy-$name.log" 2>&1 &
  proxy_pid=$!
  local _
  for _ in $(seq 100); do
    endpoint=$(sed -n 's/^listening on //p' "$logs/proxy-$name.log")
    [ -z "$endpoint" ] || break
    sleep 0.05
  done
  [ -n "$endpoint" ] || { echo "the link proxy did not start" >&2; cat "$logs/proxy-$name.log" >&2; return 1; }
  client=("${in_client[@]}")
}

stop_proxy() {
  if [ -n "$proxy_pid" ]; then
    kill "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
    proxy_pid=""
  fi
}

# ---------------------------------------------------------------------------------------
# One measured push: a fresh registry (empty storage, so every run uploads the same bytes),
# the client under /usr/bin/time -v, then a check that the registry serves the manifest.
seconds_of() { # h:mm:ss.ss or m:ss.ss
  awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }' <<<"$1"
}

# One run of one client: label, then the command.
measure() {
  local profile_name=$1 image=$2 round=$3 label=$4
  shift 4
  local id="$profile_name-$image-${label// /_}-$round"
  # Every client starts with its input in the page cache.
  if [ "$label" = "curl ceiling" ]; then cat "$work/images/$image.blobs"/* >/dev/null; else
    cat "$work/images/$image.tar" >/dev/null; fi
  start_registry
  local proxy_log=$logs/proxy-$profile_name.log cuts_before=0
  [ ! -f "$proxy_log" ] || cuts_before=$(grep -c ', cut$' "$proxy_log" || true)
  log "$p_title | $(image_label "$image") | $label | run $round of $p_repeat"
  local status=ok
  if ! /usr/bin/time -v -o "$work/run/time.txt" "$@" >"$logs/$id.log" 2>&1; then
    status="failed (exit $(sed -n 's/.*Exit status: //p' "$work/run/time.txt"))"
  fi
  if [ "$status" = ok ] && ! "${in_reg[@]}" curl -fsI -o /dev/null \
      -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
      "http://127.0.0.1:$registry_port/v2/bench/$image/manifests/1"; then
    status="failed (no manifest)"
  fi
  cp "$work/run/registry.log" "$logs/$id.registry.log"
  stop_registry
  local cuts=""
  if [ -n "$p_cut" ]; then
    # Connections still open when the run ends are logged once they close; give them a moment.
    sleep 0.3
    cuts=$(($(grep -c ', cut$' "$proxy_log" || true) - cuts_before))
  fi
  local wall cpu rss
  wall=$(seconds_of "$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/run/time.txt")")
  cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.1f", s }' "$work/run/time.txt")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/run/time.txt")
  [ "$label" != "curl ceiling" ] || rss=""
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p_title" "$(image_label "$image")" \
    "$(layer_bytes "$image")" "$label" "$status" "$wall" "$cpu" "$rss" "$cuts" >>"$runs"
  if [ "$status" != ok ]; then
    # The client's last line says why; registry upload URLs carry a long signed state, cut it.
    note "$label on $p_title, $(image_label "$image"), run $round: $status: $(tail -1 "$logs/$id.log" |
      sed -E 's/_state=[^" ]*/_state=.../g' | cut -c1-300)"
  fi
}

# Every client in turn, round after round, so a burst of load from elsewhere on the machine
# does not land on one client's runs only.
push_all_ways() {
  local name=$1 image=$2 archive=$work/images/$2.tar round c
  local target=$endpoint/bench/$image:1
  for round in $(seq "$p_repeat"); do
    measure "$name" "$image" "$round" "curl ceiling" "${client[@]}" "$repo_root/bench/ceiling.sh" \
      "http://$endpoint" "bench/$image" 1 "$work/images/$image.blobs" "$ceiling_jobs"
    measure "$name" "$image" "$round" "skopeo" "${client[@]}" skopeo copy -q --retry-times 3 \
      --dest-tls-verify=false "docker-archive:$archive" "docker://$target"
    for c in $concurrency; do
      measure "$name" "$image" "$round" "pusher -c $c" "${client[@]}" "$bin" push \
        --source "$archive" --target "http://$target" --max-concurrent "$c"
    done
    if [ "$dynamic" = yes ]; then
      measure "$name" "$image" "$round" "pusher dynamic" "${client[@]}" "$bin" push \
        --source "$archive" --target "http://$target" --enable-dynamic-concurrency
    fi
  done
}

# The compressor alone, as a baseline row: the gzip command on the image's largest layer
# (one thread; the loopback image has one layer), timed like a push, with no registry.
measure_command() { # profile image round label command...
  local profile_name=$1 image=$2 round=$3 label=$4
  shift 4
  log "$p_title | $(image_label "$image") | $label | run $round of $p_repeat"
  local id="$profile_name-$image-${label// /_}-$round" status=ok
  if ! /usr/bin/time -v -o "$work/run/time.txt" "$@" >"$logs/$id.log" 2>&1; then
    status="failed (exit $(sed -n 's/.*Exit status: //p' "$work/run/time.txt"))"
  fi
  local wall cpu rss
  wall=$(seconds_of "$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/run/time.txt")")
  cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.1f", s }' "$work/run/time.txt")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/run/time.txt")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p_title" "$(image_label "$image")" \
    "$(layer_bytes "$image")" "$label" "$status" "$wall" "$cpu" "$rss" "" >>"$runs"
}

# The --compress rows for one image: skopeo (which gzips on one or more cores), the pusher
# with --compress none, gzip and zstd (on loopback with each thread count, elsewhere on all
# cores) and auto; on loopback also the gzip command on the largest layer. The pusher runs
# 4 layers at once, as skopeo does several.
compress_all_ways() {
  local name=$1 image=$2 archive=$work/images/$2.tar round threads algorithm
  local target=$endpoint/bench/$image:1
  local push=("$bin" push --max-concurrent 4)
  local layer
  layer=$(ls -S "$work/images/$image.blobs" | head -1)
  for round in $(seq "$p_repeat"); do
    if [ "$name" = loopback ]; then
      mkdir -p "$work/run"
      measure_command "$name" "$image" "$round" "gzip -6 command, 1 thread" \
        sh -c "gzip -6 -c '$work/images/$image.blobs/$layer' >/dev/null"
    fi
    measure "$name" "$image" "$round" "skopeo" "${client[@]}" skopeo copy -q --retry-times 3 \
      --dest-tls-verify=false "docker-archive:$archive" "docker://$target"
    measure "$name" "$image" "$round" "pusher --compress none" "${client[@]}" "${push[@]}" \
      --source "$archive" --target "http://$target" --compress none
    for algorithm in gzip zstd; do
      if [ "$name" = loopback ]; then
        for threads in $compress_threads; do
          measure "$name" "$image" "$round" "pusher --compress $algorithm, $threads thread$([ "$threads" = 1 ] || echo s)" \
            "${client[@]}" "${push[@]}" --source "$archive" --target "http://$target" \
            --compress $algorithm --compress-threads "$threads"
        done
      else
        measure "$name" "$image" "$round" "pusher --compress $algorithm" "${client[@]}" "${push[@]}" \
          --source "$archive" --target "http://$target" --compress $algorithm
      fi
    done
    if [ "$name" != loopback ]; then
      # A fresh cache each time: auto measures the link (or remembers it) as a first push would.
      measure "$name" "$image" "$round" "pusher --compress auto" "${client[@]}" env \
        DOCKER_PUSHER_CACHE_DIR="$work/run/auto-cache" "${push[@]}" --source "$archive" \
        --target "http://$target" --compress auto
    fi
  done
}

# The copy rows: the image from the source registry into an empty one, by skopeo and by
# this tool, each as a user would run it (the pusher with a fresh state directory).
copy_all_ways() {
  local name=$1 image=$2 round
  local source=127.0.0.1:$source_port/bench/$image:1 target=$endpoint/bench/$image:1
  start_source_registry "$image"
  row_suffix=", registry to registry"
  for round in $(seq "$p_repeat"); do
    measure "$name" "$image" "$round" "skopeo" "${client[@]}" skopeo copy -q --retry-times 3 \
      --src-tls-verify=false --dest-tls-verify=false "docker://$source" "docker://$target"
    # skopeo gzips uncompressed layers for a registry (new digests, CPU spent on gzip);
    # with --preserve-digests it copies the bytes as they are, as the pusher does.
    measure "$name" "$image" "$round" "skopeo --preserve-digests" "${client[@]}" skopeo copy -q \
      --preserve-digests --retry-times 3 --src-tls-verify=false --dest-tls-verify=false \
      "docker://$source" "docker://$target"
    rm -rf "$work/copy-state"
    measure "$name" "$image" "$round" "pusher copy" "${client[@]}" "$bin" copy -q \
      --cache-dir "$work/copy-state" "http://$source" "http://$target"
  done
  row_suffix=""
  stop_source_registry
}

# The --memory-limit rows (issue 13): compressing pushes with default flags, whose peak RSS
# must stay within the default 32 MiB limit whatever the layers (bench/compress-memory.awk).
compress_memory() {
  local name=$1 image=$2 archive=$work/images/$2.tar round algorithm
  local target=$endpoint/bench/$image:1
  for round in $(seq "$p_repeat"); do
    for algorithm in gzip zstd; do
      measure "$name" "$image" "$round" "pusher --compress $algorithm, default flags" "${client[@]}" \
        "$bin" push --source "$archive" --target "http://$target" --compress $algorithm
    done
  done
}

# ---------------------------------------------------------------------------------------
started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if "$bin" push --help 2>&1 | grep -q -- --enable-dynamic-concurrency; then dynamic=yes; else
  dynamic=no
  note "This binary has no --enable-dynamic-concurrency: no dynamic rows."
fi

for name in $profiles; do
  profile "$name"
  for image in $p_images $p_compress_images $p_memory_images $p_copy_images; do ensure_image "$image"; done
done
setup_network
registry_port=$(free_port)

for name in $profiles; do
  profile "$name"
  start_link "$name"
  for image in $p_images; do push_all_ways "$name" "$image"; done
  for image in $p_compress_images; do compress_all_ways "$name" "$image"; done
  for image in $p_copy_images; do copy_all_ways "$name" "$image"; done
  for image in $p_memory_images; do compress_memory "$name" "$image"; done
done
stop_proxy

# Budgets of issue 6.
log "binary size"
cp "$bin" "$work/stripped"
strip "$work/stripped"
size_built=$(stat -c %s "$bin")
size_stripped=$(stat -c %s "$work/stripped")
static_note=""
if [ -x "$repo_root/dist/docker-image-pusher" ]; then
  static_note="$(stat -c %s "$repo_root/dist/docker-image-pusher")"
fi

log "start-up to first request ($startup_runs runs each)"
startup_archive=$work/images/big2g.tar
[ -f "$startup_archive" ] || { ensure_image big2g; }
startup() { # binary, as the probe runs it
  "$examples/startup-probe" "$startup_runs" "$1" push --source "$startup_archive" \
    --target "http://{addr}/bench/startup:1" || echo "- - - (the probe failed)"
}
startup_ours=$(startup "$bin")
startup_static=""
[ -z "$static_note" ] || startup_static=$(startup "$repo_root/dist/docker-image-pusher")
startup_skopeo=$("$examples/startup-probe" "$((startup_runs / 2 > 0 ? startup_runs / 2 : 1))" skopeo copy \
  --dest-tls-verify=false "docker-archive:$startup_archive" "docker://{addr}/bench/startup:1" ||
  echo "- - - (the probe failed)")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Everything the report needs beyond the runs themselves, so `bench/report.sh` can render it
# again (for example after a change to the report) without pushing anything.
storage_kind=disk
[ "${storage#/dev/shm}" = "$storage" ] || storage_kind=tmpfs
cut_mib=""
for name in $profiles; do
  profile "$name"
  [ -z "$p_cut" ] || cut_mib=$((p_cut >> 20))
done
version=$(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo unknown)
declare -p started load_before load_after ceiling_jobs storage_kind cut_mib version size_built \
  size_stripped static_note startup_runs startup_ours startup_static startup_skopeo >"$work/facts.sh"
bench/report.sh "$work"
