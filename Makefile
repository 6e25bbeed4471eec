# gpu-share. `make demo` and `make test` are the two commands the README opens with.

CARGO   ?= cargo
# What `make release` leaves: the runtime linked statically (no dynamic loader on every container
# start), with packed relative relocations and its hot functions together
# (scripts/runtime-link-args.sh), gpu-share dynamically (it dlopens libnvidia-ml).
DIST    := target/dist
PREFIX  ?= /usr/local
DESTDIR ?=

# Packer variables for `make ami`, e.g. AMI_VARS='-var region=eu-west-1 -var sharing_placement=spread'
PACKER   ?= packer
AMI_VARS ?=

.PHONY: all deps build release demo test lint bench simulate symbol-order install ami clean

all: release

deps:
	scripts/install-deps.sh

build:
	$(CARGO) build --all-targets

release:
	$(CARGO) build --release --bin gpu-share
	args="$$(scripts/runtime-link-args.sh '$(CARGO)')" && $(CARGO) rustc --release --bin gpu-share-runtime -- $$args
	install -D -s -m 0755 target/release/gpu-share-runtime $(DIST)/gpu-share-runtime
	install -D -s -m 0755 target/release/gpu-share $(DIST)/gpu-share
	@# The runtime must start (and exec what it is given) as built: a bad link fails here.
	GPU_SHARE_RUNC=/bin/true $(DIST)/gpu-share-runtime --version >/dev/null

demo: deps release
	$(CARGO) build --release --example demo
	target/release/examples/demo $(abspath $(DIST))/gpu-share-runtime

# fmt, clippy, unused dependencies (cargo-machete), and the layout rules of scripts/check-layout.py
# (no import cycles between modules, no file under src/ over 400 lines).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) machete
	python3 scripts/check-layout.py

test: deps lint
	$(CARGO) test

bench: deps release
	GPU_SHARE_BENCH_RUNTIME=$(abspath $(DIST))/gpu-share-runtime $(CARGO) bench --bench startup --bench agent --bench isolation

# A day of a GPU service under service target tracking and capacity-provider scaling
# (docs/scaling.md): prints the summary and redraws docs/scaling-simulation.png.
simulate: deps
	python3 scripts/simulate.py --plot docs/scaling-simulation.png

# Rewrites scripts/runtime-symbol-order.txt: the functions the runtime runs on pass-through and
# create, first run first, traced natively under gdb on a fake host (needs gdb and root).
symbol-order:
	$(CARGO) rustc --release --bin gpu-share-runtime -- -C target-feature=+crt-static
	python3 scripts/symbol-order.py target/release/gpu-share-runtime scripts/runtime-symbol-order.txt

install: release
	install -D -m 0755 $(DIST)/gpu-share-runtime $(DESTDIR)$(PREFIX)/bin/gpu-share-runtime
	install -D -m 0755 $(DIST)/gpu-share $(DESTDIR)$(PREFIX)/bin/gpu-share

ami: release
	cd packer && $(PACKER) init gpu-share.pkr.hcl
	cd packer && $(PACKER) build $(AMI_VARS) -var dist_dir=$(abspath $(DIST)) gpu-share.pkr.hcl

clean:
	$(CARGO) clean
