# Entry points documented in the README.
CARGO ?= cargo

.PHONY: build demo test bench static fuzz lint clean

build:
	$(CARGO) build --release

demo:
	scripts/ensure-deps.sh demo
	$(CARGO) build --release --example sample-image
	scripts/demo.sh

test:
	scripts/ensure-deps.sh test
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets
	@# The privileged tests are #[ignore]d (cargo test lists them as ignored); they run here,
	@# as root, and are never counted as passed when they did not run.
	@if [ "$$(id -u)" -eq 0 ]; then \
		echo "$(CARGO) test --test privileged -- --ignored"; \
		$(CARGO) test --test privileged -- --ignored; \
	else \
		echo "NOT RUN: the privileged tests (tests/privileged: chroot, network and mount namespaces) need root; run make test as root." >&2; \
	fi

# Not part of `test`: needs root for network namespaces and takes about half an hour.
bench:
	scripts/ensure-deps.sh bench
	$(CARGO) build --release --bin docker-image-pusher --example bench-image --example link-proxy --example startup-probe
	$(MAKE) static
	bench/run.sh

# Each fuzz target for FUZZ_SECONDS seconds (default 60): make fuzz FUZZ_SECONDS=600
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf dist tmp

# A fully static x86_64 Linux binary: glibc linked statically (the musl target cannot be
# installed here). Name resolution does not depend on glibc's NSS (see src/resolve.rs).
STATIC_TARGET ?= x86_64-unknown-linux-gnu
static:
	RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" $(CARGO) build --release --target $(STATIC_TARGET)
	mkdir -p dist
	cp target/$(STATIC_TARGET)/release/docker-image-pusher dist/docker-image-pusher
	file dist/docker-image-pusher
	ls -l dist/docker-image-pusher
