#!/usr/bin/env bash
# redocly.sh: run the pinned Redocly CLI (npm package @redocly/cli) from .cache/redocly,
# installing it there on first use, so `make openapi-lint` works on any Debian machine, CI
# included, without a global npm install.
#
#   scripts/redocly.sh lint FILE...      # any redocly command with its arguments
#
# The CLI needs Node.js 20.19+ (or 22.12+) and npm. Where node or npm is missing, Debian's
# nodejs and npm packages are installed (as `make torch-deps` does for Python). Where the
# node on PATH is older (Debian 12 ships 18), the Node.js binary that the npm package
# node-linux-<arch> carries is installed into .cache/redocly/node and runs the CLI instead.
# Telemetry and the update check are switched off: linting sends nothing anywhere.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${REDOCLY_CACHE_DIR:-$ROOT_DIR/.cache/redocly}"
# Pinned: a new release may add rules to the recommended set. Version 2 is one package
# with its dependencies bundled (15 MB, about a second to install).
REDOCLY_VERSION=2.77.0
# The Node.js used only where the system's is too old; a version published for x64 and arm64.
NODE_VERSION=22.20.0

log() { echo "redocly.sh: $*" >&2; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

apt_install() { # apt_install PKG...
  log "installing Debian packages: $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq update >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq install -y "$@" >&2
}

if ! command -v node >/dev/null 2>&1; then
  apt_install nodejs npm
elif ! command -v npm >/dev/null 2>&1; then
  apt_install npm
fi

# node_fits VERSION: whether Node.js VERSION (vMAJOR.MINOR.PATCH) runs the pinned CLI, whose
# package.json asks for ">=22.12.0 || >=20.19.0 <21.0.0".
node_fits() {
  local v="${1#v}" major minor
  major="${v%%.*}"
  minor="${v#*.}"
  minor="${minor%%.*}"
  [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || return 1
  ((major > 22 || (major == 22 && minor >= 12) || (major == 20 && minor >= 19)))
}

npm_install() { # npm_install DIR SPEC: install SPEC into DIR/node_modules
  mkdir -p "$1"
  npm install --prefix "$1" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error "$2" >&2
}

NODE=node
if ! node_fits "$(node --version)"; then
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) log "node $(node --version) is too old for @redocly/cli $REDOCLY_VERSION and no Node.js package exists for $(uname -m)"; exit 1 ;;
  esac
  NODE="$CACHE/node/node_modules/node-linux-$arch/bin/node"
  if [ ! -f "$CACHE/node/.installed-$NODE_VERSION" ]; then
    log "node $(node --version) is too old for @redocly/cli $REDOCLY_VERSION: fetching Node.js $NODE_VERSION into $CACHE/node"
    rm -rf "$CACHE/node"
    npm_install "$CACHE/node" "node-linux-$arch@$NODE_VERSION"
    touch "$CACHE/node/.installed-$NODE_VERSION"
  fi
fi

# The stamp is written after a complete install, so an interrupted one is redone.
if [ ! -f "$CACHE/cli/.installed-$REDOCLY_VERSION" ]; then
  log "fetching @redocly/cli $REDOCLY_VERSION into $CACHE/cli"
  rm -rf "$CACHE/cli"
  npm_install "$CACHE/cli" "@redocly/cli@$REDOCLY_VERSION"
  touch "$CACHE/cli/.installed-$REDOCLY_VERSION"
fi

export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
exec "$NODE" "$CACHE/cli/node_modules/@redocly/cli/bin/cli.js" "$@"
