#!/usr/bin/env bash
# Real data from Debian packages for the tests (no network at test time): watertight meshes from
# libcgal-demo and voice clips from alsa-utils, unpacked into .data/ (git-ignored).
# Needs apt (as root, `apt-get update` first on a fresh machine). Tests skip, saying why, when the
# data is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data/debs
cd .data/debs
if [ "${HYPERPROJ_APT_UPDATE:-0}" = "1" ]; then apt-get update -qq; fi
for pkg in libcgal-demo alsa-utils; do
  ls ${pkg}_*.deb >/dev/null 2>&1 || apt-get download -qq "$pkg"
  [ -d "../$pkg" ] || dpkg-deb -x ${pkg}_*.deb "../$pkg"
done
cd ..
mkdir -p meshes audio
if [ ! -f meshes/.done ]; then
  find libcgal-demo -name 'data.tar.gz' | head -1 | xargs -r -I{} tar -xzf {} -C meshes
  touch meshes/.done
fi
find alsa-utils -name '*.wav' -exec cp -n {} audio/ \;
echo "test data: $(find meshes -name '*.off' | wc -l) meshes, $(ls audio/*.wav 2>/dev/null | wc -l) wav clips in $(pwd)"
