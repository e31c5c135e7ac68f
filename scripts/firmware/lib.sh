# Shared by scripts/firmware/*.sh: picks the Cortex-M toolchain and checks system packages.
# Source it; it defines `cross_cargo TARGET CRATES... -- CARGO_ARGS...` helpers below.

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
shared_dir="${EMBER_SHARED_DIR:-$repo_root/../shared}"

# Prints the apt packages missing from `$@`.
missing_packages() {
  local p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || printf '%s ' "$p"; done
}

# Installs apt packages when root, else prints exactly what to install and fails.
require_packages() {
  local missing
  missing=$(missing_packages "$@")
  [[ -z "$missing" ]] && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing: $missing"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "error: missing packages: $missing" >&2
    echo "       install them with: sudo apt-get install -y $missing" >&2
    return 1
  fi
}

# True when the rustup toolchain that applies in $repo_root has `target` installed.
rustup_has_target() {
  command -v rustup >/dev/null && (cd "$repo_root" && rustup target list --installed 2>/dev/null) | grep -qx "$1"
}

# Runs `cargo build` for a Cortex-M target: with the rustup target when it is installed,
# else with Debian's rustc-web and `-Z build-std` (which needs the std sources, rust-web-src).
# Usage: cross_cargo TARGET BUILD_STD_CRATES cargo-args...   (BUILD_STD_CRATES: core or core,alloc)
cross_cargo() {
  local target=$1 std_crates=$2
  shift 2
  if rustup_has_target "$target"; then
    echo "   (rustup toolchain, target $target installed)"
    cargo build --target "$target" "$@"
  else
    require_packages rustc-web rust-web-src cargo-web
    echo "   (Debian rustc-web with -Z build-std=$std_crates; rustup has no $target)"
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build -Z build-std="$std_crates" --target "$target" "$@"
  fi
}
