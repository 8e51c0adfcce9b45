# CMake toolchain file: cross-compile for ARM64 with Debian's
# gcc-aarch64-linux-gnu and run the tests under qemu-user.
#   bash .ci/deps arm64
#   cmake -S . -B build-arm64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=.ci/aarch64-linux-gnu.cmake \
#         -DSLUICE_BUILD_BENCH=OFF -DSLUICE_BUILD_CRITERION=OFF
# Libraries come from dpkg multiarch (liburcu-dev:arm64, libxxhash-dev:arm64,
# libc6:arm64 and libstdc++6:arm64 in /usr/lib/aarch64-linux-gnu), so qemu
# finds the arm64 loader at /lib/ld-linux-aarch64.so.1 without -L.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# ctest prefixes every test command that names a target with the emulator.
set(CMAKE_CROSSCOMPILING_EMULATOR /usr/bin/qemu-aarch64-static)
# pkg-config must see only the arm64 .pc files.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
unset(ENV{PKG_CONFIG_PATH})
