#!/usr/bin/env bash
# Renders the benchmark report from a run's records: WORK/runs.tsv (one line per push),
# WORK/facts.sh (machine-independent facts of the run: sizes, start-up, load) and
# WORK/notes.txt. Prints it and writes bench/results/latest.md. `bench/run.sh` calls it at
# the end; run it by hand to re-render without pushing anything.
# Usage: bench/report.sh [WORK] (default target/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/bench}
results=bench/results/latest.md
# shellcheck source=/dev/null
source "$work/facts.sh"
rows=$work/rows.tsv
awk -F'\t' -f bench/best.awk "$work/runs.tsv" >"$rows"

mem_total=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
startup_row() { # label, "median min max first-line", whether to show the first line
  local med min max line
  read -r med min max line <<<"$2"
  printf '| %s | - | %s ms (min %s, max %s)%s |\n' "$1" "$med" "$min" "$max" "${3:+; first bytes: $line}"
}
mkdir -p "$(dirname "$results")"
{
  echo "## Benchmarks"
  echo
  echo "Run $started on $(nproc) CPUs ($cpu_model), $mem_total RAM, Linux $(uname -r);"
  echo "commit $version; $(skopeo --version); $(docker-registry --version | awk '{print "distribution " $3}')."
  echo "Load average before / after: $load_before / $load_after (the machine is shared with other work)."
  echo
  awk -F'\t' -f bench/table.awk "$rows"
  echo
  echo "- *curl ceiling*: the same blob files sent by curl, one POST + one monolithic PUT per blob, $ceiling_jobs transfers at a time"
  echo "  (all POSTs first from one \`curl --parallel\`, then the PUTs, largest first, from $ceiling_jobs curl processes, connections reused)."
  echo "  For 40 small layers it is a reference rather than a bound: a client that overlaps one blob's POST with another's PUT can beat it."
  echo "- *skopeo*: \`skopeo copy --dest-tls-verify=false --retry-times 3 docker-archive:IMAGE.tar docker://...\`."
  echo "  skopeo decompresses docker-archive layers and gzips them again for the registry: it sends different bytes and spends CPU on gzip."
  echo "- *registry to registry*: the image pushed once into a second registry, then copied from there into an empty one:"
  echo "  *skopeo* is \`skopeo copy --src-tls-verify=false --dest-tls-verify=false --retry-times 3 docker://... docker://...\`,"
  echo "  *skopeo --preserve-digests* adds that flag: skopeo then copies the layers as they are instead of gzipping them."
  echo "  *pusher copy* is \`docker-image-pusher copy http://... http://...\` with defaults and an empty state directory."
  echo "- *pusher -c N*: \`docker-image-pusher push --max-concurrent N\`; *pusher dynamic*: \`--enable-dynamic-concurrency\` with no tuning (what a plain \`push\` does by default)."
  echo "- *pusher --compress ALGORITHM[, N threads]*: \`push --max-concurrent 4 --compress ALGORITHM --compress-threads N\` (all CPUs when not given),"
  echo "  on *text* images (compressible text, like the files of real layers) and on the random ones; *--compress auto* starts"
  echo "  from an empty cache, so it measures the link first. *gzip -6 command*: \`gzip -6\` on the image's one layer, no push:"
  echo "  the single-threaded compressor skopeo and docker are often compared with. MB/s counts uncompressed image bytes."
  echo "- MB/s = image bytes / wall time (10^6 bytes). Peak RSS from \`/usr/bin/time -v\` (not shown for the multi-process ceiling)."
  echo "- Links: two network namespaces joined by a veth pair, \`tbf\` on both ends for the rate, and the project's delaying proxy"
  echo "  (\`bench/link-proxy.rs\`) for the round trip${cut_mib:+ and, on the 20 Mbit/s link, connection cuts (on average one per $cut_mib MiB sent)}."
  echo "  Images are scaled down on the slower links to keep the whole run near half an hour."
  echo "- Every run starts with an empty registry (storage: $storage_kind) and its input in the page cache."
  if [ -s "$work/notes.txt" ]; then
    sed 's/^/- /' "$work/notes.txt"
  fi
  echo
  echo "### Dynamic mode against fixed concurrency"
  echo
  awk -F'\t' -f bench/dynamic.awk "$rows"
  echo
  echo "### Memory: peak RSS must not grow with image size (4 workers, loopback)"
  echo
  awk -F'\t' -f bench/memory.awk "$rows"
  echo
  echo "### Memory while compressing: peak RSS within the default --memory-limit (32 MiB), loopback"
  echo
  awk -F'\t' -f bench/compress-memory.awk "$rows"
  echo
  echo "### Budgets (issue 6)"
  echo
  echo "| Budget | Aim | Measured |"
  echo "|---|---|---|"
  awk -v built="$size_built" -v stripped="$size_stripped" -v static="$static_note" 'BEGIN {
    printf "| Release binary, stripped (`strip` of a copy) | <= 5 MiB | %.2f MiB (%d bytes; as built: %d bytes)%s |\n",
      stripped / 1048576, stripped, built, stripped <= 5 * 1048576 ? "" : " **over budget**"
    if (static != "") printf "| Static binary `dist/docker-image-pusher` (`make static`) | <= 5 MiB | %.2f MiB (%d bytes)%s |\n",
      static / 1048576, static, static <= 5 * 1048576 ? "" : " **over budget**"
  }'
  awk -F'\t' '$1 ~ /^loopback/ && $4 == "pusher -c 4" && $3 >= 2 ^ 31 && $5 == "ok" {
      if ($8 > max) { max = $8; what = $2 } }
    END { if (max) printf "| Peak RSS, 4-worker push of a multi-GiB image | <= 32 MiB | %.1f MiB (%s)%s |\n",
      max / 1024, what, max <= 32 * 1024 ? "" : " **over budget**" }' "$rows"
  awk -F'\t' '$1 ~ /^loopback/ && $2 ~ /registry to registry$/ && $5 == "ok" {
      if ($4 == "skopeo") skopeo = $6; if ($4 == "skopeo --preserve-digests") same = $6
      if ($4 == "pusher copy") { ours = $6; rss = $8 } }
    END { if (ours && skopeo) printf "| `copy` of the 2 GiB image between two registries: wall time vs `skopeo copy docker:// docker://` | <= 0.6x | %.2fx (%.1f s vs %.1f s)%s |\n",
      ours / skopeo, ours, skopeo, ours <= 0.6 * skopeo ? "" : " **over budget**"
      if (ours && same) printf "| ... against `skopeo copy --preserve-digests` (the same bytes, no gzip) | - | %.2fx (%.1f s vs %.1f s) |\n", ours / same, ours, same
      if (rss) printf "| Peak RSS of that copy | <= 32 MiB | %.1f MiB%s |\n", rss / 1024, rss <= 32 * 1024 ? "" : " **over budget**" }' "$rows"
  startup_row "Start-up to first request, release binary (median of $startup_runs)" "$startup_ours" yes
  [ -z "$startup_static" ] || startup_row "... the static binary" "$startup_static"
  startup_row "... skopeo on the same archive, for comparison" "$startup_skopeo" yes
  echo
  echo "Start-up is measured by \`bench/startup-probe.rs\`: the clock starts just before the process is spawned and stops"
  echo "when its first request bytes arrive at a socket on loopback (archive: the 2 GiB, 4-layer image)."
} >"$results"

echo
cat "$results"
echo
echo "(written to $results; logs in $work/logs)"
