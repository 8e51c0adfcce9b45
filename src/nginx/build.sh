#!/bin/sh
# src/nginx/build.sh - build ngx_http_sluice_module against an nginx source
# tree as Debian's nginx-dev ships it (called by src/nginx/CMakeLists.txt).
#   build.sh configure NGX_SRC TREE MODULE_DIR CC SLUICE_INCLUDE SLUICE_LIBS
#       copy NGX_SRC to TREE and configure it with the flags of the nginx
#       binary it describes (conf_flags) plus the module
#   build.sh make TREE
#       (re)build TREE/objs/ngx_http_sluice_module.so
set -eu
case "$1" in
configure)
	src=$2 tree=$3 module=$4 cc=$5
	rm -rf "$tree"
	cp -r "$src" "$tree"
	cd "$tree"
	# shellcheck disable=SC1091
	flags=$(bash -c '. ./conf_flags && printf "%s\n" "${NGX_CONF_FLAGS[@]}"')
	# One flag per line: none contains a newline.
	old_ifs=$IFS
	IFS='
'
	# shellcheck disable=SC2086
	SLUICE_INCLUDE=$6 SLUICE_LIBS=$7 ./configure $flags --with-cc="$cc" \
		--add-dynamic-module="$module" >configure.log 2>&1 ||
		{ IFS=$old_ifs; cat configure.log; exit 1; }
	IFS=$old_ifs
	;;
make)
	cd "$2"
	# nginx's Makefile does not know sluice's headers: rebuild the module's
	# objects whenever CMake calls (it does when a header or libsluice.a changed).
	rm -f objs/ngx_http_sluice_module.so objs/addon/nginx/*.o
	make -f objs/Makefile modules >make.log 2>&1 || { cat make.log; exit 1; }
	;;
*)
	echo "usage: build.sh configure|make ..." >&2
	exit 2
	;;
esac
