# embed_script.cmake - run by `cmake -P` at build time (src/CMakeLists.txt):
# writes the text file IN as a C source OUT that defines
#   const char NAME[];        the text, NUL-terminated
#   const size_t NAME_len;    its length in bytes (without the NUL)
# so the Redis backend sends src/redis/limits.lua byte for byte (SCRIPT LOAD)
# while the script stays a plain .lua file. OUT is rewritten only when its
# content changes, so an unrelated rebuild recompiles nothing.
if(NOT IN OR NOT OUT OR NOT NAME)
  message(FATAL_ERROR "embed_script.cmake: set -DIN=<file> -DOUT=<file.c> -DNAME=<symbol>")
endif()
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR len "${hex_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# 16 bytes a line (CMake's regex has no {n} repetition).
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 line_re)
string(REGEX REPLACE "(${line_re})" "\\1\n\t" bytes "${bytes}")
get_filename_component(in_name "${IN}" NAME)
file(WRITE "${OUT}.tmp"
  "/* Generated from ${in_name} by embed_script.cmake at build time: do not edit. */\n"
  "#include \"redis/redis_internal.h\"\n\n"
  "const char ${NAME}[${len} + 1] = {\n\t${bytes}0x00\n};\n"
  "const size_t ${NAME}_len = ${len};\n")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
file(REMOVE "${OUT}.tmp")
