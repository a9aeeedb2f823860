#!/usr/bin/env bash
# The demo: start a registry on loopback, make a sample image archive, push it, show the
# result, stop the registry. Everything lives in a temporary directory removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/docker-image-pusher
sample=target/release/examples/sample-image
[ -x "$bin" ] || cargo build --release
[ -x "$sample" ] || cargo build --release --example sample-image

work=$(mktemp -d)
registry_pid=""
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/storage}}
http: {addr: 127.0.0.1:$port}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
echo "== registry running on 127.0.0.1:$port"

echo "== making a sample image archive"
"$sample" "$work/hello.tar" demo/hello:1.0

echo "== pushing it"
"$bin" push --source "$work/hello.tar" --target "http://127.0.0.1:$port/demo/hello:1.0" --max-concurrent 2

echo "== pushing again (every blob already exists)"
"$bin" push --source "$work/hello.tar" --target "http://127.0.0.1:$port/demo/hello:1.0"

echo "== what the registry now serves"
curl -fs "http://127.0.0.1:$port/v2/demo/hello/tags/list"; echo
curl -fsI -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://127.0.0.1:$port/v2/demo/hello/manifests/1.0" | grep -i docker-content-digest
echo "== done; stopping the registry"
