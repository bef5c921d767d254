# Sourced by scripts/test.sh and scripts/build-matrix.sh: compile through ccache when it is
# installed, with its cache keyed on paths relative to the checkout, so a fresh clone somewhere
# else (CI's) hits what an earlier build of the same sources left. Sets ccache_launcher, an
# array to pass to cmake (empty without ccache).
ccache_launcher=()
if command -v ccache >/dev/null; then
  ccache_launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  CCACHE_BASEDIR="$(pwd -P)"
  export CCACHE_BASEDIR
  # The build directory is not part of the key (debug info then names the first one's path).
  export CCACHE_NOHASHDIR=1
  export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
fi
