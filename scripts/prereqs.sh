# shellcheck shell=bash
# What building and testing Kai needs on Debian, in one place. Sourced (not run) by
# scripts/run, scripts/test and .ci/run:
#
#   source scripts/prereqs.sh
#   kai_prereqs run|test    # installs what is missing, or says what to install and returns 1
#   kai_cargo_env           # CARGO_TARGET_DIR, CCACHE_DIR and ccache compilers, unless already set
#
# Installing needs root or sudo without a password (`sudo -n`); anyone else gets the exact
# commands to run. The Rust toolchain itself (rustup) is not installed here.

# Building (`run`): a C/C++ toolchain for RocksDB, libclang for its bindings (bindgen), ccache
# (RocksDB rebuilds take seconds), CA certificates for cargo's downloads from crates.io.
KAI_BUILD_PACKAGES=(build-essential clang libclang-dev ccache ca-certificates)
# Testing (`test`), on top of building:
# memcached, libmemcached-tools, python3-pylibmc, python3-pip: real clients and the reference server
# of the differential tests. faketime: the clock-jump test; iproute2, iptables: the
# network-namespace partition test. ruby-dalli ruby-rack ruby-connection-pool php-cli
# php-memcached libsasl2-modules: binary-protocol clients and their SASL PLAIN
# (tests/binary_clients.rs); sasl2-bin: memcached -S's user database in tests/differential.rs.
# openssl: test certificates and s_client (tests/tls.rs, deploy/make-certs.sh).
# chromium, chromium-driver (with PyPI's selenium): the dashboard's browser test.
KAI_TEST_PACKAGES=(memcached libmemcached-tools python3-pylibmc python3-pip faketime iproute2 iptables
  ruby-dalli ruby-rack ruby-connection-pool php-cli php-memcached libsasl2-modules sasl2-bin openssl chromium chromium-driver)
# PyPI packages of the tests and the Python modules they provide (same order).
KAI_PIP_PACKAGES=(pymemcache django meta-memcache selenium)
KAI_PIP_MODULES=(pymemcache django meta_memcache selenium)

# The Debian packages among "$@" that are not installed.
kai_missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

# The PyPI packages whose module `python3` cannot import.
kai_missing_pip() {
  local i
  for i in "${!KAI_PIP_MODULES[@]}"; do
    python3 -c "import ${KAI_PIP_MODULES[$i]}" 2>/dev/null || echo "${KAI_PIP_PACKAGES[$i]}"
  done
}

# Whether this user may install Debian packages: root, or sudo without a password.
kai_may_install() {
  [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }
}

# Runs "$@" as root (see kai_may_install).
kai_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# pip into the `python3` the tests run: system-wide as root, for the user otherwise. Debian's
# own Python refuses pip without --break-system-packages (PEP 668); these packages replace
# nothing Debian installs, so the flag is safe here.
kai_pip_install() {
  local scope=()
  [ "$(id -u)" -eq 0 ] || scope=(--user)
  python3 -m pip install --quiet "${scope[@]}" "$@" 2>/dev/null \
    || python3 -m pip install --quiet "${scope[@]}" --break-system-packages "$@"
}

# Makes sure what `purpose` (run or test) needs is installed. Prints what it installs; when it
# may not install, prints the commands that would and returns 1.
kai_prereqs() {
  local purpose=$1 packages=("${KAI_BUILD_PACKAGES[@]}")
  [ "$purpose" = test ] && packages+=("${KAI_TEST_PACKAGES[@]}")
  if ! command -v cargo >/dev/null; then
    echo "kai: cargo not found: install Rust with rustup (https://rustup.rs), then open a new shell" >&2
    return 1
  fi
  if ! command -v dpkg-query >/dev/null; then
    echo "kai: not a Debian-like system; install the equivalents of: ${packages[*]}" >&2
    [ "$purpose" = test ] && echo "kai: and from PyPI: ${KAI_PIP_PACKAGES[*]}" >&2
    return 0
  fi
  local missing
  mapfile -t missing < <(kai_missing_packages "${packages[@]}")
  if [ "${#missing[@]}" -gt 0 ]; then
    if kai_may_install; then
      echo "kai: installing ${missing[*]}" >&2
      kai_as_root apt-get update -qq || return 1
      kai_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || return 1
    else
      echo "kai: missing Debian packages, and no permission to install them (not root, no password-less sudo)." >&2
      echo "kai: install them with:" >&2
      echo "  sudo apt-get install -y ${missing[*]}" >&2
      if [ "$purpose" = test ]; then
        echo "kai: then run $0 again (it installs the PyPI packages ${KAI_PIP_PACKAGES[*]} for you)." >&2
      fi
      return 1
    fi
  fi
  [ "$purpose" = test ] || return 0
  local pip_missing
  mapfile -t pip_missing < <(kai_missing_pip)
  if [ "${#pip_missing[@]}" -gt 0 ]; then
    echo "kai: installing from PyPI: ${pip_missing[*]}" >&2
    if ! kai_pip_install "${pip_missing[@]}"; then
      echo "kai: pip failed; install them with: python3 -m pip install --user ${pip_missing[*]}" >&2
      return 1
    fi
  fi
}

# Build products outside the clone (shared by run and test, so RocksDB is compiled once) and
# ccache in front of the C/C++ compilers. Values already in the environment win.
kai_cargo_env() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kai-target}"
  export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
  export CC="${CC:-ccache gcc}" CXX="${CXX:-ccache g++}"
  mkdir -p "$CCACHE_DIR"
}
