# Peak RSS of the 4-worker loopback pushes: the 4 GiB image may use at most a few MiB more
# than the 2 GiB one, or memory grows with image size.
$1 ~ /^loopback/ && $4 == "pusher -c 4" && $5 == "ok" {
  if ($3 == 2 ^ 31) { small = $8; small_name = $2 }
  if ($3 == 2 ^ 32) { large = $8; large_name = $2 }
}
END {
  tolerance = 4 * 1024
  if (small == "" || large == "") {
    print "Not measured (needs the loopback profile's 2 GiB and 4 GiB pushes with 4 workers to succeed)."
    exit
  }
  printf "- %s: %.1f MiB\n- %s: %.1f MiB\n", small_name, small / 1024, large_name, large / 1024
  if (large <= small + tolerance)
    printf "- OK: the 4 GiB push used %+.1f MiB relative to the 2 GiB one (tolerance +4 MiB).\n", (large - small) / 1024
  else
    printf "- **VIOLATION**: the 4 GiB push used %.1f MiB more than the 2 GiB one (tolerance 4 MiB).\n", (large - small) / 1024
}
