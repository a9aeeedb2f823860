# Folds the runs of each client (TSV: link, image, image bytes, client, status, wall s, CPU s,
# peak RSS KiB, connection cuts) into one row: the fastest successful run's wall and CPU time,
# the highest peak RSS of any run, and a remark on rounds, failures and cuts.
{
  key = $1 SUBSEP $2 SUBSEP $4
  if (!(key in runs)) { order[++n] = key; head[key] = $1 FS $2 FS $3 FS $4 }
  runs[key]++
  cuts[key] = cuts[key] (cuts[key] == "" ? "" : "/") $9
  if ($8 > rss[key]) rss[key] = $8
  if ($5 != "ok") { failed[key]++; failure[key] = $5; next }
  if (!(key in wall) || $6 < wall[key]) { wall[key] = $6; cpu[key] = $7 }
}
END {
  for (i = 1; i <= n; i++) {
    key = order[i]
    remark = runs[key] > 1 ? "best of " runs[key] : ""
    if (failed[key] && key in wall) remark = remark ", " failed[key] " failed: " failure[key]
    if (cuts[key] ~ /[0-9]/) remark = remark (remark == "" ? "" : ", ") cuts[key] " cuts"
    status = key in wall ? "ok" : failure[key]
    printf "%s\t%s\t%s\t%s\t%s\t%s\n", head[key], status, key in wall ? wall[key] : "-", cpu[key], rss[key], remark
  }
}
