#!/bin/sh
# Compiles every GLSL shader in this directory to SPIR-V and validates it.
# Usage: shaders/build.sh [OUTDIR]   (default: next to the sources)
# The .spv files are checked in; tests/host/vulkan.rs recompiles into a
# temporary directory and fails when the checked-in ones are stale.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
mkdir -p "$out"
for src in "$here"/*.comp; do
    name=$(basename "$src")
    glslc --target-env=vulkan1.2 -O -I "$here" -o "$out/$name.spv" "$src"
    spirv-val --target-env vulkan1.2 "$out/$name.spv"
done
