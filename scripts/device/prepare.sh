#!/usr/bin/env bash
# Prepares device-bin/ for the device checks (run here, on the development machine):
# a stripped release `wax`, and the builtin 100M model's config and tokenizer (no weights: the
# device check makes random ones). device-bin/ must be ignored by git (.git/info/exclude) and
# named in the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin wax
mkdir -p device-bin
cp target/release/wax device-bin/wax
strip device-bin/wax
# The GPU test binary (worker/tests/gpu_decode.rs), run by decode_check.sh.
test_bin=$(cargo test --release -p wax-worker --test gpu_decode --no-run --message-format json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu_decode":
        print(m["executable"])')
cp "$test_bin" device-bin/gpu_decode
strip device-bin/gpu_decode
snap=$(target/release/wax --output json model inspect builtin:100m | python3 -c 'import json,sys; print(json.load(sys.stdin)["dir"])')
rm -rf device-bin/builtin-100m && mkdir -p device-bin/builtin-100m
for f in config.json generation_config.json tokenizer.json tokenizer_config.json; do
  [ -f "$snap/$f" ] && cp "$snap/$f" device-bin/builtin-100m/
done
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx 'device-bin/' "$exclude" 2>/dev/null || echo 'device-bin/' >> "$exclude"
du -sh device-bin
