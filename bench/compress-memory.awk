# Peak RSS of the compressing pushes with default flags (issue 13): each must stay within
# the default --memory-limit of 32 MiB, whatever the number and size of the layers.
$1 ~ /^loopback/ && $4 ~ /^pusher --compress (gzip|zstd), default flags$/ {
  key = $2 " | " $4
  if ($5 != "ok") { failed[key] = $5; next }
  if (!(key in peak) || $8 > peak[key]) peak[key] = $8
  if (!(key in wall) || $6 < wall[key]) wall[key] = $6
  bytes[key] = $3
}
END {
  limit = 32 * 1024
  n = 0
  for (key in peak) n++
  for (key in failed) n++
  if (n == 0) { print "Not measured (needs the loopback profile's compression set)."; exit }
  print "| Image | Client | Wall | MB/s | Peak RSS |"
  print "|---|---|---|---|---|"
  for (key in failed) { split(key, p, " \\| "); printf "| %s | %s | %s | | |\n", p[1], p[2], failed[key] }
  for (key in peak) {
    split(key, p, " \\| ")
    printf "| %s | %s | %.2f s | %.0f | %.1f MiB%s |\n", p[1], p[2], wall[key],
      (wall[key] > 0 ? bytes[key] / wall[key] / 1e6 : 0), peak[key] / 1024,
      (peak[key] <= limit ? "" : " **VIOLATION: over 32 MiB**")
  }
}
