#!/usr/bin/env bash
# The README's install command: what the tests need from Debian when it is missing and apt is at hand (Chromium for the
# end-to-end tests, the Vulkan loader for WebGPU on SwiftShader, PyTorch with OpenBLAS for the scale-out trainer),
# then npm ci.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z ${CHROMIUM_PATH:-} ]] && ! command -v chromium >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium (the end-to-end tests drive it)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: the end-to-end tests need Chromium: install it, or set CHROMIUM_PATH to a Chrome/Chromium binary" >&2
  fi
fi

# the WebGPU tests run Dawn (npm's webgpu) on SwiftShader's Vulkan driver from that chromium package; Dawn loads the
# system's Vulkan loader, libvulkan.so.1
if [[ $(uname -s) == Linux ]] && ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's libvulkan1 (the WebGPU tests run Dawn on SwiftShader)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libvulkan1 >/dev/null
  else
    echo "setup: the WebGPU tests need the Vulkan loader (libvulkan.so.1): install libvulkan1" >&2
  fi
fi

# digpt_torch (scaleout/) and its tests run on Debian's PyTorch; /usr/bin/python3 is the interpreter they use
if ! "${DIGPT_PYTHON:-/usr/bin/python3}" -c 'import torch, numpy' >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's python3-torch (the scale-out trainer's tests run on it)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-numpy >/dev/null
  else
    echo "setup: the scale-out tests need PyTorch for /usr/bin/python3: apt install python3-torch, or set DIGPT_PYTHON" >&2
  fi
fi

# Debian's torch runs its products on whatever libblas.so.3 is: the reference BLAS makes it 5-8x slower than OpenBLAS
if [[ $(uname -s) == Linux ]] && ! ldconfig -p 2>/dev/null | grep -q 'libopenblas'; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's libopenblas0-pthread (the BLAS of the scale-out trainer's PyTorch)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread >/dev/null
  fi
fi

npm ci
