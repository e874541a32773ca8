#!/bin/sh
# ui/gen-assets.sh OUT FILE...: the web UI's files as C arrays (xxd -i) and the list
# UI_ASSETS(X) of X("/name", "content type", array), for agent/ui_assets.c.
set -eu
out="$1"
shift
tmp="$out.tmp"
: >"$tmp"
list=""
for f in "$@"; do
	name=$(basename "$f")
	var="ui_file_$(echo "$name" | tr -c 'A-Za-z0-9\n' '_')"
	case "$name" in
	*.html) type="text/html; charset=utf-8" ;;
	*.js) type="text/javascript; charset=utf-8" ;;
	*.css) type="text/css; charset=utf-8" ;;
	*.svg) type="image/svg+xml" ;;
	*) echo "gen-assets.sh: no content type for $name" >&2 && exit 1 ;;
	esac
	printf 'static const unsigned char %s[] = {\n' "$var" >>"$tmp"
	xxd -i <"$f" >>"$tmp"
	printf '};\n' >>"$tmp"
	list="$list X(\"/$name\", \"$type\", $var)"
done
printf '#define UI_ASSETS(X)%s\n' "$list" >>"$tmp"
mv "$tmp" "$out"
