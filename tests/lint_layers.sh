#!/bin/sh
# The layering lint (docs/conventions.md, "Layering"; docs/design.md, "Layers"): every
# #include in src/ and include/sluice/ must point to the file's own layer or
# to a layer it uses, as src/layers.txt declares; programs (src/server/) use
# public headers only; no folder of src/ is missing from the table; and the
# include graph of src/ and include/ has no cycle.
# Usage: lint_layers.sh [ROOT]. Prints each offence; ends with "N passed,
# N failed".
root=${1:-$(dirname "$0")/..}
table=$root/src/layers.txt
[ -f "$table" ] || { echo "lint_layers: no $table"; echo "0 passed, 1 failed"; exit 1; }

# Every include of every file, as "FILE<TAB>TARGET", where TARGET is
# "priv:LAYER/NAME" for a quoted include with a folder, "pub:NAME" for
# <sluice/NAME> (or a quoted sibling in include/sluice/), "local:NAME" for a
# quoted include without a folder.
edges=$(cd "$root" && for f in $(find src include -name '*.[ch]' | sort); do
	sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*\([<"][^>"]*[>"]\).*/\1/p' "$f" |
	while read -r inc; do
		name=$(echo "$inc" | tr -d '<>"')
		case "$inc" in
		\<sluice/*|\"sluice/*) printf '%s\t%s\n' "$f" "pub:${name#sluice/}" ;;
		\<sluice.h\>) printf '%s\t%s\n' "$f" "pub:sluice.h" ;;
		\<*) ;;
		*/*) printf '%s\t%s\n' "$f" "priv:$name" ;;
		*) case "$f" in
		   include/sluice/*) printf '%s\t%s\n' "$f" "pub:$name" ;;
		   *) printf '%s\t%s\n' "$f" "local:$name" ;;
		   esac ;;
		esac
	done
done)

folders=$(cd "$root/src" && for d in */; do echo "${d%/}"; done)
printf '%s\n' "$edges" | awk -F '\t' -v table="$table" -v folders="$folders" '
BEGIN {
	while ((getline line < table) > 0) {
		if (line ~ /^[[:space:]]*(#|$)/) continue
		n = split(line, w, /[[:space:]]+/)
		layer = w[1]; known[layer] = 1
		# Columns: layer, uses (words or "-"), headers (words ending .h or "-").
		for (i = 2; i <= n; i++) {
			if (w[i] == "-") continue
			if (w[i] ~ /\.h$/) header[w[i]] = layer
			else uses[layer, w[i]] = 1
		}
	}
	split(folders, fs, "\n")
	for (i in fs) if (fs[i] != "" && !(fs[i] in known)) {
		printf "src/%s/ is not a layer of src/layers.txt\n", fs[i]; bad++
	}
	header["sluice.h"] = "umbrella"
}
function layer_of(file,   p) {
	if (file ~ /^src\//) { split(file, p, "/"); return p[2] }
	if (file == "include/sluice.h") return "umbrella"
	if (file ~ /^include\/sluice\//) { sub(/^include\/sluice\//, "", file); return header[file] }
	return ""
}
function allowed(from, to) {
	# The umbrella header includes every public header; only programs include it.
	return from == to || (from, to) in uses || from == "umbrella" || (to == "umbrella" && from == "server")
}
{
	file = $1; dep = $2; from = layer_of(file); checked++
	if (from == "") { printf "%s: not in any layer of src/layers.txt\n", file; bad++; next }
	if (dep ~ /^pub:/) {
		name = substr(dep, 5)
		if (!(name in header)) { printf "%s: includes <sluice/%s>, a header no layer owns\n", file, name; bad++; next }
		to = header[name]; node = "include/sluice/" name
		if (name == "sluice.h") node = "include/sluice.h"
	} else if (dep ~ /^priv:/) {
		name = substr(dep, 6); split(name, p, "/"); to = p[1]; node = "src/" name
		if (from == "server" || file ~ /^include\//) {
			printf "%s: includes private header \"%s\" (programs and public headers use the public API only)\n", file, name; bad++; next
		}
	} else {
		name = substr(dep, 7); to = from
		d = file; sub(/[^\/]*$/, "", d); node = d name
	}
	if (!allowed(from, to)) {
		printf "%s (layer %s) includes %s of layer %s, which %s does not use\n", file, from, node, to, from; bad++
	}
	g[file] = g[file] " " node
}
function visit(v,   i, n, e) {
	if (color[v] == 1) { printf "include cycle through %s\n", v; bad++; return }
	if (color[v] == 2) return
	color[v] = 1
	n = split(g[v], e, " ")
	for (i = 1; i <= n; i++) if (e[i] != "") visit(e[i])
	color[v] = 2
}
END {
	for (v in g) visit(v)
	if (bad) { printf "%d include(s) checked\n0 passed, 1 failed\n", checked; exit 1 }
	printf "%d include(s) checked\n1 passed, 0 failed\n", checked
}'
