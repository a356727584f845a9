# vzrepl — the README's two commands: `make demo` and `make test`. Both install what is missing.
SHELL := /bin/bash
SWIFT ?= swift
CONFIG ?= release
BUILD_FLAGS := -c $(CONFIG) -Xswiftc -enable-testing
BIN = $(shell $(SWIFT) build $(BUILD_FLAGS) --show-bin-path 2>/dev/null)

# libssh2 1.11.1, vendored with one patch (ThirdParty/libssh2/README.md): AES-256-GCM, and one
# cipher call a packet. Built static into .build/vendor; SwiftPM finds it through this
# PKG_CONFIG_PATH (a plain `swift build` without it links Debian's libssh2 1.10 and still works,
# with aes256-ctr only). The tests check they run on the library the Makefile built.
LIBSSH2_VERSION := 1.11.1
LIBSSH2_PREFIX := $(CURDIR)/.build/vendor/libssh2-$(LIBSSH2_VERSION)
export PKG_CONFIG_PATH := $(LIBSSH2_PREFIX)/lib/pkgconfig$(if $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH))
export VZREPL_EXPECT_LIBSSH2 := $(LIBSSH2_VERSION)

# Debian packages the build, the tests and the demo need (the C libraries, zlib for VMDK grains, and the real
# components the tests run: sshd, qemu-img, mkfs, strace, lz4/openssl/rsync for the bench; the ABM
# fixtures and oracles: mke2fs/debugfs/dumpe2fs, mkfs.fat + mtools + fsck.fat, sgdisk, sfdisk,
# mkswap, mkntfs/ntfscp/ntfsinfo, partclone.extfs/ntfs/xfs, mkfs.xfs/xfs_db/xfs_repair/xfs_logprint).
DEB_PACKAGES := libssh2-1-dev libssl-dev liblz4-dev zlib1g-dev openssh-server openssh-client qemu-utils \
                lz4 openssl rsync strace e2fsprogs util-linux procps time coreutils python3 \
                dosfstools mtools gdisk fdisk partclone ntfs-3g xfsprogs grep \
                python3-prometheus-client tar gzip logrotate gcc make patch

.PHONY: all deps libssh2 build demo test bench fuzz clean

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "swift not found: install the Swift 6 toolchain (see README)"; exit 1; }

libssh2: deps
	Scripts/build-libssh2.sh "$(LIBSSH2_PREFIX)"

build: libssh2
	$(SWIFT) build $(BUILD_FLAGS)

demo: build
	VZREPL_BIN="$(BIN)" Scripts/demo.sh

# Unit tests of the pure core and formats, then end-to-end tests that run the release
# executables against real files, qemu-img and a real sshd. First the layering check
# (Docs/architecture.md), and its proof that it catches planted bad imports.
test: build
	python3 Scripts/check-layering.py && python3 Scripts/check-layering.py --self-test
	VZREPL_BIN="$(BIN)" $(SWIFT) test $(BUILD_FLAGS) --disable-swift-testing

bench: build
	VZREPL_BIN="$(BIN)" Scripts/bench.sh
	VZREPL_BIN="$(BIN)" Scripts/bench-abm.sh

fuzz: deps
	Scripts/fuzz.sh

clean:
	rm -rf .build .build-*
