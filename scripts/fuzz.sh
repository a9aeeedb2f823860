#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS seconds each (default 60).
# Usage: scripts/fuzz.sh [target...]   (FUZZ_SECONDS=600 scripts/fuzz.sh archive_index)
#
# cargo-fuzz passes nightly-only -Z flags to rustc; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. No sanitizer (-s none): the code is safe Rust, so what the
# fuzzers look for is panics, overflows (debug assertions stay on), hangs and unbounded
# allocation (-rss_limit_mb). A crash leaves its input in fuzz/artifacts/<target>/: turn
# it into a test in the normal suite (tests/fuzz_regressions.rs) before fixing it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
if [ $# -gt 0 ]; then targets=("$@"); else
  targets=(archive_index manifest_config reference www_authenticate)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

# A tiny but complete docker save archive seeds the archive reader.
mkdir -p fuzz/corpus/archive_index
python3 - fuzz/corpus/archive_index/seed-docker-save.tar <<'PY'
import hashlib, io, json, sys, tarfile
def add(tar, name, data):
    info = tarfile.TarInfo(name); info.size = len(data); info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.GNU_FORMAT) as t:
    add(t, "etc/hello", b"hello\n")
layer = layer.getvalue()
diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
config_name = hashlib.sha256(config).hexdigest() + ".json"
manifest = json.dumps([{"Config": config_name, "RepoTags": ["seed:1"],
                        "Layers": ["l1/layer.tar"]}]).encode()
with tarfile.open(sys.argv[1], mode="w", format=tarfile.GNU_FORMAT) as t:
    add(t, "l1/layer.tar", layer)
    add(t, config_name, config)
    add(t, "manifest.json", manifest)
PY

for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
  echo "== fuzzing $target for ${seconds}s" >&2
  cargo fuzz run -s none "$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10
done
