#!/usr/bin/env bash
# DKIM signing cost per message: RSA-2048 and ed25519 keys made with openssl, 4 KB messages,
# one core (`ferry bench-dkim`). Usage: bench/dkim.sh [messages] [size]
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-5000}
size=${2:-4096}
cargo build --release --bin ferry >/dev/null
work=$(mktemp -d /tmp/ferry-dkim.XXXXXX)
trap 'rm -rf "$work"' EXIT
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$work/ed25519.pem"
target/release/ferry bench-dkim --rsa-key "$work/rsa.pem" --ed25519-key "$work/ed25519.pem" \
  --messages "$messages" --size "$size"
