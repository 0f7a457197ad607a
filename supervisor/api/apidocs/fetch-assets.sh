#!/bin/sh
# fetch-assets.sh vendors the browser bundles behind /docs (Swagger UI) and
# /redoc (ReDoc) into assets/, from pinned npm package versions, so the daemon
# serves its API documentation without touching the internet.
#
# Run by `go generate` (see apidocs.go) or by hand from any directory.
# When assets/VERSIONS already names the pinned versions and every file still
# matches assets/SHA256SUMS, nothing is downloaded (so `make generate` works
# offline); set FORCE=1 to fetch anyway. Needs npm (and so node), tar and
# sha256sum.
#
# To upgrade: change a version below, clear its integrity value, run
# FORCE=1 ./fetch-assets.sh, check the diff, then paste the integrity it
# prints into the script so the next run is verified.
set -eu

SWAGGER_UI_VERSION=5.35.0
SWAGGER_UI_INTEGRITY=sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==
# ReDoc stays on 2.x: 3.x's standalone bundle is twice the size (2.3 MB)
# and phones home (telemetry) unless told not to.
REDOC_VERSION=2.5.4
REDOC_INTEGRITY=sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==

cd "$(dirname "$0")"
dest=assets

versions() {
	printf 'swagger-ui-dist %s %s\n' "$SWAGGER_UI_VERSION" "$SWAGGER_UI_INTEGRITY"
	printf 'redoc %s %s\n' "$REDOC_VERSION" "$REDOC_INTEGRITY"
	# Bump when the patch below changes, so the next run refetches.
	printf 'patch redoc-logo-data-url 1\n'
}

if [ "${FORCE:-0}" != 1 ] && [ -f "$dest/VERSIONS" ] && [ -f "$dest/SHA256SUMS" ] &&
	[ "$(cat "$dest/VERSIONS")" = "$(versions)" ] &&
	(cd "$dest" && sha256sum --quiet --check SHA256SUMS) >/dev/null 2>&1; then
	echo "fetch-assets: $dest is up to date (FORCE=1 to refetch)"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# fetch NAME VERSION INTEGRITY: npm pack into $tmp/NAME and unpack there.
fetch() {
	mkdir -p "$tmp/$1"
	(cd "$tmp/$1" && npm pack --silent "$1@$2" >/dev/null)
	tgz=$(ls "$tmp/$1"/*.tgz)
	got="sha512-$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write(c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$tgz")"
	if [ -n "$3" ] && [ "$got" != "$3" ]; then
		echo "fetch-assets: $1@$2 integrity $got, want $3" >&2
		exit 1
	fi
	[ -n "$3" ] || echo "fetch-assets: $1@$2 integrity $got (pin it in $0)" >&2
	tar -xzf "$tgz" -C "$tmp/$1"
}

fetch swagger-ui-dist "$SWAGGER_UI_VERSION" "$SWAGGER_UI_INTEGRITY"
fetch redoc "$REDOC_VERSION" "$REDOC_INTEGRITY"

# Stage everything first so a failed run leaves the old files in place.
mkdir -p "$tmp/out"
s="$tmp/swagger-ui-dist/package"
r="$tmp/redoc/package"
cp "$s/swagger-ui-bundle.js" "$s/swagger-ui.css" "$tmp/out/"
cp "$s/LICENSE" "$tmp/out/swagger-ui-LICENSE"
cp "$s/swagger-ui-bundle.js.LICENSE.txt" "$tmp/out/"
cp "$r/bundles/redoc.standalone.js" "$r/bundles/redoc.standalone.js.LICENSE.txt" "$tmp/out/"
cp "$r/LICENSE" "$tmp/out/redoc-LICENSE"
# One patch, and only one: ReDoc's sidebar footer shows a logo image from
# cdn.redoc.ly with no option to turn it off. Point it at an empty data: URL
# instead; the image then fails to decode and ReDoc's own onError handler
# removes it, so the page requests nothing from the internet (a CSP would
# block the request anyway, but with an error in the console on every load).
# Fail loudly when an upgrade moves the string. Every other file stays
# byte-identical to its npm tarball; their sourceMappingURL comments only
# make an open devtools ask for .map files that are not shipped (404).
logo='https://cdn.redoc.ly/redoc/logo-mini.svg'
n=$(grep -o -F "\"$logo\"" "$tmp/out/redoc.standalone.js" | wc -l)
if [ "$n" -ne 1 ]; then
	echo "fetch-assets: expected 1 reference to $logo in redoc.standalone.js, found $n; update the patch" >&2
	exit 1
fi
sed -i -e "s|\"$logo\"|\"data:,\"|" "$tmp/out/redoc.standalone.js"
versions >"$tmp/out/VERSIONS"
(cd "$tmp/out" && LC_ALL=C sha256sum $(LC_ALL=C ls | grep -v -e '^SHA256SUMS$' -e '^VERSIONS$') >SHA256SUMS)

mkdir -p "$dest"
for f in "$tmp/out"/*; do
	cp "$f" "$dest/"
	chmod 0644 "$dest/$(basename "$f")"
done
echo "fetch-assets: vendored swagger-ui-dist@$SWAGGER_UI_VERSION and redoc@$REDOC_VERSION into $dest"
ls -l "$dest"
