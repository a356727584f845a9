#!/usr/bin/env bash
# Builds the vendored libssh2 (ThirdParty/libssh2: the upstream release tarball plus our one
# patch) as a static library for vzrepl-source, and writes a pkg-config file for SwiftPM:
#
#   Scripts/build-libssh2.sh PREFIX
#
# PREFIX/lib/libssh2_vz.a, PREFIX/include/libssh2*.h, PREFIX/lib/pkgconfig/libssh2.pc. The
# archive has its own name so that the linker cannot pick Debian's libssh2.so (same -l name,
# earlier -L directory) by accident. Why vendored and what the patch does: ThirdParty/libssh2/README.md.
# Does nothing when PREFIX already holds a build of the same tarball and patch.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
vendor="$repo/ThirdParty/libssh2"
version=1.11.1
sha256=d9ec76cbe34db98eec3539fe2c899d26b0c837cb3eb466a56b0f109cabf658f7
tarball="$vendor/libssh2-$version.tar.gz"
patchfile="$vendor/whole-packet-crypt.patch"

prefix=${1:?usage: build-libssh2.sh PREFIX}
stamp="$prefix/.stamp"
want="$version $(sha256sum "$patchfile" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$prefix/lib/libssh2_vz.a" ]]; then
    exit 0
fi

echo "build-libssh2: building libssh2 $version (static, patched) into $prefix"
echo "$sha256  $tarball" | sha256sum -c --quiet - ||
    { echo "build-libssh2: $tarball does not have the SHA-256 of the libssh2 $version release" >&2; exit 1; }
for tool in patch make cc; do
    command -v "$tool" >/dev/null || { echo "build-libssh2: '$tool' not found (make deps installs it)" >&2; exit 1; }
done

work="$prefix.work"
rm -rf "$work" "$prefix"
mkdir -p "$work"
tar -xzf "$tarball" -C "$work"
src="$work/libssh2-$version"
patch -s -p1 -d "$src" <"$patchfile"
(
    cd "$src"
    ./configure -q --disable-shared --enable-static --with-pic --with-crypto=openssl \
        --disable-examples-build --disable-docker-tests --disable-sshd-tests >"$work/configure.log" 2>&1 ||
        { cat "$work/configure.log" >&2; exit 1; }
    make -s -j"$(nproc)" -C src >"$work/make.log" 2>&1 || { cat "$work/make.log" >&2; exit 1; }
)
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
cp "$src/src/.libs/libssh2.a" "$prefix/lib/libssh2_vz.a"
cp "$src"/include/libssh2.h "$src"/include/libssh2_publickey.h "$src"/include/libssh2_sftp.h "$prefix/include/"
cat >"$prefix/lib/pkgconfig/libssh2.pc" <<EOF
# libssh2 $version, vendored and patched (ThirdParty/libssh2), static; written by Scripts/build-libssh2.sh
prefix=$prefix
Name: libssh2
Description: libssh2 $version with whole-packet crypt (vzrepl)
Version: $version
Libs: -L\${prefix}/lib -lssh2_vz -lcrypto -lz
Cflags: -I\${prefix}/include
EOF
rm -rf "$work"
# SwiftPM does not see a changed archive: drop what links it, so the next build relinks.
find "$repo/.build" -maxdepth 3 \( -name vzrepl-source -o -name vzrepl-target -o -name '*PackageTests.xctest' \) \
    -exec rm -rf {} + 2>/dev/null || true
echo "$want" >"$stamp"
echo "build-libssh2: done"
