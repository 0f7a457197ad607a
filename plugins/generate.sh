#!/usr/bin/env bash
# Regenerates proto/*.pb.go from proto/trainer.proto with pinned generators. Installs
# protoc (Debian packages) and the Go generators into <repo>/.tools when missing.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
tools="$root/.tools/bin"
if ! command -v protoc >/dev/null || [ ! -d /usr/include/google/protobuf ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev
fi
GOBIN="$tools" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN="$tools" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PATH="$tools:$PATH" protoc -I proto \
  --go_out=proto --go_opt=paths=source_relative \
  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
  proto/trainer.proto
