# Issue 3's bar for dynamic mode, per link and image: at least 90% of the throughput of the
# best fixed concurrency, and never worse than --max-concurrent 1 (3% allowed for run-to-run
# noise). Input: the folded rows (link, image, bytes, client, status, wall s, ...).
$5 == "ok" && $6 > 0 && $4 ~ /^pusher (dynamic|-c )/ {
  group = $1 SUBSEP $2
  if (!(group in seen)) { seen[group] = 1; order[++n] = group; link[group] = $1; image[group] = $2 }
  rate = $3 / $6 / 1e6
  if ($4 == "pusher dynamic") dynamic[group] = rate
  else if ($4 ~ /^pusher -c [0-9]+$/) {
    if (rate > best[group]) { best[group] = rate; best_label[group] = substr($4, 8) }
    if ($4 == "pusher -c 1") single[group] = rate
  }
}
END {
  for (i = 1; i <= n; i++) if (order[i] in dynamic) any = 1
  if (!any) { print "No dynamic rows (the binary has no --enable-dynamic-concurrency)."; exit }
  print "| Link | Image | Best fixed | Dynamic | vs best fixed | vs -c 1 | Bar met |"
  print "|---|---|---|---:|---:|---:|---|"
  for (i = 1; i <= n; i++) {
    g = order[i]
    if (!(g in dynamic) || !(g in best)) continue
    total++
    to_best = dynamic[g] / best[g]
    to_single = (g in single) ? dynamic[g] / single[g] : 0
    ok = to_best >= 0.9 && (!(g in single) || to_single >= 0.97)
    met += ok
    printf "| %s | %s | %s: %.1f MB/s | %.1f MB/s | %.2fx | %s | %s |\n", link[g], image[g], best_label[g], best[g],
      dynamic[g], to_best, (g in single) ? sprintf("%.2fx", to_single) : "-", ok ? "yes" : "**no**"
  }
  printf "\nDynamic mode met the bar on %d of %d link/image pairs.\n", met, total
}
