#!/usr/bin/env bash
# Real data from Debian packages for the tests and benchmarks (nothing is downloaded at test
# time): watertight meshes from libcgal-demo, voice clips from alsa-utils and (for
# hyperproj.modulation) photos from opencv-doc and libjxl-testdata, unpacked by
# `python -m hyperproj.inr.data` and `python -m hyperproj.modulation` into .data/ (git-ignored;
# HYPERPROJ_DATA points there).
# Needs apt-get and dpkg-deb; set HYPERPROJ_APT_UPDATE=1 to run `apt-get update` first.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data/debs
if [ "${HYPERPROJ_APT_UPDATE:-0}" = "1" ]; then apt-get update -qq; fi
(cd .data/debs && for pkg in libcgal-demo alsa-utils opencv-doc libjxl-testdata; do
   ls ${pkg}_*.deb >/dev/null 2>&1 || apt-get download -qq "$pkg" 2>/dev/null
 done)
HYPERPROJ_DATA="$PWD/.data" .venv/bin/python -m hyperproj.inr.data .data/debs/*.deb
# training photos for hyperproj.modulation (opencv-doc, libjxl-testdata) into .data/photos
HYPERPROJ_DATA="$PWD/.data" .venv/bin/python -m hyperproj.modulation .data/debs/*.deb
