# pfs: build, test, install.
#
#   make run    mount the default store at ~/pfs (MNT=dir to choose)
#   make test   vet, gofmt check, unit tests with -race, integration tests
#
# Both install what they need first (as root, with apt-get).

GO      ?= go
BIN     := bin/pfs
MNT     ?= $(HOME)/pfs
PREFIX  ?= /usr/local
SBINDIR ?= /sbin

# Packages with unit tests; ./test/ drives the built binary and runs apart.
UNIT_PKGS := ./registry/... ./chunkstore/... ./engine/... ./fs/... ./internal/...

.PHONY: all build deps deps-run test test-unit test-integ lint bench install uninstall run clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/pfs

# deps-run: what mounting needs. Root mounts with mount(2) directly, but
# go-fuse and unmount as non-root need fusermount3.
deps-run:
	@$(call need,fusermount3,fuse3)
	@test -c /dev/fuse || { echo "deps: /dev/fuse is missing (load the fuse module: modprobe fuse)" >&2; exit 1; }

# deps: what the tests need as well: the S3 tests run against a real
# S3 server, versitygw, installed from the Go module proxy.
VERSITYGW := github.com/versity/versitygw/cmd/versitygw@v1.8.0
deps: deps-run
	@$(call need,rsync,rsync) && $(call need,sqlite3,sqlite3) && $(call need,git,git)
	@command -v versitygw >/dev/null 2>&1 || test -x "$$($(GO) env GOPATH)/bin/versitygw" || \
	  { echo "deps: installing versitygw"; $(GO) install $(VERSITYGW); }

# need,COMMAND,PACKAGE: install PACKAGE with apt-get if COMMAND is missing
# and we are root; fail with a hint otherwise.
define need
if ! command -v $(1) >/dev/null 2>&1; then \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
    echo "deps: installing $(2)"; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null || exit 1; \
  else \
    echo "deps: $(1) is missing: install package $(2) (e.g. sudo apt-get install $(2))" >&2; exit 1; \
  fi; \
fi
endef

test: deps build
	$(GO) vet ./...
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(MAKE) test-unit
	$(MAKE) test-integ

test-unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

# test-integ mounts the built binary in subprocesses; -p 1 keeps the
# mount tests from competing for the two CPUs. The tests get their own
# TMPDIR, so that a leftover mount of this run, and not one of a test run
# next to it, fails the run even when the tests passed. It is 0755 because
# the permission test acts as user nobody, who must reach its mount.
test-integ: build
	@tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/pfs-test.XXXXXX") && chmod 0755 "$$tmp" && rc=0; \
	echo "TMPDIR=$$tmp PFS_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -p 1 -timeout 40m ./test/..."; \
	TMPDIR=$$tmp PFS_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -p 1 -timeout 40m ./test/... || rc=1; \
	if scripts/no-leftover-mounts.sh "$$tmp"; then rm -rf "$$tmp"; else rc=1; fi; \
	exit $$rc

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v golangci-lint >/dev/null 2>&1; then golangci-lint run ./...; \
	  else echo "lint: golangci-lint not installed; ran gofmt and go vet only"; fi
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck scripts/*.sh .ci/run bench/run.sh bench/fuse-latency.sh; fi

# bench: pfs against the disk, go-fuse's loopback and gocryptfs
# (bench/README.md). QUICK=1 for a short run. It prints; it never fails on
# a ratio.
bench: build
	bench/run.sh

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/pfs
	mkdir -p $(DESTDIR)$(SBINDIR)
	ln -sf $(PREFIX)/bin/pfs $(DESTDIR)$(SBINDIR)/mount.pfs
	ln -sf $(PREFIX)/bin/pfs $(DESTDIR)$(SBINDIR)/mount.fuse.pfs

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/pfs $(DESTDIR)$(SBINDIR)/mount.pfs $(DESTDIR)$(SBINDIR)/mount.fuse.pfs

# run mounts the default store ($$XDG_DATA_HOME/pfs or ~/.local/share/pfs)
# at $(MNT) in the background.
run: deps-run build
	@mkdir -p "$(MNT)"
	@if grep -q " $(MNT) fuse.pfs " /proc/mounts; then \
	  echo "pfs: already mounted at $(MNT); unmount with: $(BIN) unmount $(MNT)"; \
	else \
	  $(BIN) mount "$(MNT)" && \
	  echo "pfs: mounted the default store at $(MNT); unmount with: $(BIN) unmount $(MNT)"; \
	fi

clean:
	rm -rf bin
