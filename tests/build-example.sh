#!/usr/bin/env bash
# Builds one example image (default: the manual's `hello`) with this machine's Nix, offline,
# and prints where the image is. Installs what is missing first (tests/setup.sh).
#   tests/build-example.sh [hello|hello-with-ssl]
set -euo pipefail
cd "$(dirname "$0")/.."
example=${1:-hello}
tests/setup.sh
NIX_CONFIG=$(cat tests/nix/nix.conf)
export NIX_CONFIG
nix build -L -f tests/nix/offline.nix "examples.$example" --no-link
image=$(nix eval --raw -f tests/nix/offline.nix "examples.$example.image")
echo "image: $image"
