# scripts/lib.sh — helpers shared by scripts/test, scripts/demo and scripts/gpu-check.

# einlm_install_packages PKG... — installs the Debian packages that are not installed yet; as root
# through apt-get, otherwise it names them and stops.
einlm_install_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them (sudo apt-get install ${missing[*]}) or run this script as root" >&2
    exit 1
  fi
}

# einlm_require_cuda_toolkit — einlm's headers need the CUDA toolkit's headers (CCCL, cuda_bf16.h)
# even for CPU-only builds; puts nvcc on PATH when the toolkit sits in /usr/local/cuda.
einlm_require_cuda_toolkit() {
  if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH=/usr/local/cuda/bin:$PATH
  fi
  if ! command -v nvcc >/dev/null && [[ ! -d /usr/local/cuda/include ]]; then
    einlm_install_packages nvidia-cuda-toolkit
  fi
}
