# Renders bench rows (TSV: link, image, image bytes, client, status, wall s, CPU s, peak RSS KiB,
# remark)
# as one Markdown table, with each client's throughput relative to the curl ceiling and to
# skopeo on the same link and image.
{
  n++
  link[n] = $1; image[n] = $2; bytes[n] = $3; client[n] = $4; status[n] = $5
  wall[n] = $6; cpu[n] = $7; rss[n] = $8; remark[n] = $9
  group = $1 SUBSEP $2
  if ($5 == "ok" && $6 > 0) {
    rate[n] = $3 / $6 / 1e6
    if ($4 == "curl ceiling") ceiling[group] = rate[n]
    if ($4 == "skopeo") skopeo[group] = rate[n]
  }
}
function ratio(value, base) {
  return (value == "" || base == "") ? "-" : sprintf("%.2fx", value / base)
}
END {
  print "| Link | Image | Client | Wall s | MB/s | vs ceiling | vs skopeo | Peak RSS MiB | CPU s | Notes |"
  print "|---|---|---|---:|---:|---:|---:|---:|---:|---|"
  for (i = 1; i <= n; i++) {
    group = link[i] SUBSEP image[i]
    shown_link = link[i] == link[i - 1] ? "" : link[i]
    shown_image = (group == previous) ? "" : image[i]
    previous = group
    if (status[i] != "ok") {
      printf "| %s | %s | %s | %s | **%s** | - | - | - | %s | %s |\n", shown_link, shown_image, client[i], wall[i], status[i],
        cpu[i], remark[i]
      continue
    }
    printf "| %s | %s | %s | %.2f | %.1f | %s | %s | %s | %s | %s |\n", shown_link, shown_image, client[i], wall[i], rate[i],
      ratio(rate[i], ceiling[group]), ratio(rate[i], skopeo[group]),
      rss[i] == "" ? "-" : sprintf("%.1f", rss[i] / 1024), cpu[i], remark[i]
  }
}
