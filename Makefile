# gpu-share. `make demo` and `make test` are the two commands the README opens with.

CARGO   ?= cargo
TARGET  ?= x86_64-unknown-linux-gnu
# The release runtime is linked statically: no dynamic loader on every container start.
STATIC  := RUSTFLAGS="-C target-feature=+crt-static"
RELEASE := target/$(TARGET)/release
PREFIX  ?= /usr/local
DESTDIR ?=

.PHONY: all deps build release demo test lint unit bench install clean

all: release

deps:
	scripts/install-deps.sh

build:
	$(CARGO) build --all-targets

release:
	$(STATIC) $(CARGO) build --release --target $(TARGET) --bins

demo: deps
	$(STATIC) $(CARGO) build --release --target $(TARGET) --bins --example demo
	$(RELEASE)/examples/demo

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

test: deps lint
	$(CARGO) test

bench: deps
	$(STATIC) $(CARGO) bench --target $(TARGET) --bench startup

install: release
	install -D -m 0755 $(RELEASE)/gpu-share-runtime $(DESTDIR)$(PREFIX)/bin/gpu-share-runtime

clean:
	$(CARGO) clean
