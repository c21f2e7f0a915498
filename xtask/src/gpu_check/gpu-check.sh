#!/bin/sh
# bufsync gpu-check: run on a machine with a real GPU, from the prebuilt
# binaries in ./bin (written by `cargo xtask gpu-check DIR` on the build
# machine; no cargo, no network needed). Every step runs under `timeout`;
# outputs go to ./out, the summary to ./report.md. Nothing on the machine
# is changed (no module is loaded, no setting touched).
#
# Environment:
#   GPU_CHECK_KEEP_ICD=1  keep a VK_ICD_FILENAMES / VK_DRIVER_FILES that
#                         points at lavapipe (by default it is unset, so the
#                         loader finds the real driver)
#   GPU_CHECK_SCALE=N     multiply every step's timeout by N (default 1)
#   GPU_CHECK_MAX_STEP=S  cap every step's timeout at S seconds
#
# Exit status: 0 when no step failed (not testable steps do not fail), 1
# otherwise.
set -u
DIR=$(cd "$(dirname "$0")" && pwd)
BIN=$DIR/bin
OUT=$DIR/out
REPORT=$DIR/report.md
SCALE=${GPU_CHECK_SCALE:-1}
mkdir -p "$OUT"
rm -f "$OUT"/*
STEPS=$OUT/steps.tsv
: >"$STEPS"
START=$(date +%s)

# `step NAME STATUS SECONDS DETAIL`: one row of the report's table.
step() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$STEPS"
    printf 'gpu-check: %-22s %-13s %ss  %s\n' "$1" "$2" "$3" "$4"
}

# `run_to NAME LIMIT FILE CMD ...`: runs CMD under `timeout` with stdout
# in out/FILE and stderr in out/FILE.err; sets RC and SECS.
run_to() {
    _name=$1 _limit=$(($2 * SCALE)) _file=$3
    shift 3
    if [ -n "${GPU_CHECK_MAX_STEP:-}" ] && [ "$_limit" -gt "$GPU_CHECK_MAX_STEP" ]; then
        _limit=$GPU_CHECK_MAX_STEP
    fi
    _t0=$(date +%s)
    timeout -k 5 "$_limit" "$@" >"$OUT/$_file" 2>"$OUT/$_file.err" </dev/null
    RC=$?
    SECS=$(($(date +%s) - _t0))
    if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
        TIMED_OUT="timed out after ${_limit} s"
    else
        TIMED_OUT=
    fi
}

# `verdict NAME DETAIL`: passed / failed from RC (set by run_to).
verdict() {
    if [ -n "$TIMED_OUT" ]; then
        step "$1" failed "$SECS" "$TIMED_OUT; $2"
    elif [ "$RC" -eq 0 ]; then
        step "$1" passed "$SECS" "$2"
    else
        step "$1" failed "$SECS" "exit $RC; $2"
    fi
}

# --- The machine --------------------------------------------------------
case "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" in
*lvp*)
    if [ "${GPU_CHECK_KEEP_ICD:-0}" = 1 ]; then
        ICD_NOTE="VK_ICD_FILENAMES/VK_DRIVER_FILES point at lavapipe and were kept (GPU_CHECK_KEEP_ICD=1): ${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}"
    else
        ICD_NOTE="VK_ICD_FILENAMES/VK_DRIVER_FILES pointed at lavapipe and were unset, so the loader finds the real driver"
        unset VK_ICD_FILENAMES VK_DRIVER_FILES
    fi
    ;;
'') ICD_NOTE="VK_ICD_FILENAMES unset: the loader's ICDs" ;;
*) ICD_NOTE="VK_ICD_FILENAMES/VK_DRIVER_FILES set by the caller and kept: ${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ;;
esac
# The Vulkan loader: the machine's, else the one bundled in lib/ (the build
# machine's libvulkan.so.1; it finds the machine's ICD manifests as usual).
has_loader() {
    ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 ' && return 0
    _ifs=$IFS
    IFS=:
    for _d in ${LD_LIBRARY_PATH:-}; do
        [ -n "$_d" ] && [ -e "$_d/libvulkan.so.1" ] && IFS=$_ifs && return 0
    done
    IFS=$_ifs
    return 1
}
if has_loader; then
    LOADER_NOTE="the machine's libvulkan.so.1"
elif [ -f "$DIR/lib/libvulkan.so.1" ]; then
    export LD_LIBRARY_PATH="$DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    LOADER_NOTE="no libvulkan.so.1 on the machine: the bundled one (lib/)"
else
    LOADER_NOTE="no libvulkan.so.1 on the machine and none bundled"
fi
# The tests pick the loader's device, not lavapipe's (tests/src/lib.rs).
unset BUFSYNC_LVP_ICD BUFSYNC_IN_VM
export BUFSYNC_VK_DEVICE=any

NODES=$(ls /dev/dri 2>/dev/null | tr '\n' ' ')
CARDS=$(ls /dev/dri 2>/dev/null | grep -c '^card')
ICDS=$(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d 2>/dev/null | grep '\.json$' | tr '\n' ' ')
MODULES=$(for m in nvidia nvidia_drm nvidia_modeset amdgpu i915 xe; do [ -d /sys/module/$m ] && printf '%s ' $m; done)
if [ -d /sys/module/nvidia_drm ]; then
    MODESET=$(cat /sys/module/nvidia_drm/parameters/modeset 2>/dev/null || echo '?')
else
    MODESET=
fi
if [ -z "$NODES" ]; then
    NO_DRM="no DRM node (/dev/dri absent or empty"
    if [ -d /sys/module/nvidia ] && [ ! -d /sys/module/nvidia_drm ]; then
        NO_DRM="$NO_DRM; nvidia is loaded without nvidia_drm: \`modprobe nvidia-drm modeset=1\` as root would create it"
    elif [ ! -d /sys/module/nvidia ]; then
        NO_DRM="$NO_DRM; no GPU kernel module loaded"
    fi
    NO_DRM="$NO_DRM)"
else
    NO_DRM=
fi

# --- Steps ---------------------------------------------------------------
INFO=$BIN/bufsync-info

run_to devices 10 devices.json "$INFO" devices --json
if [ -n "$NO_DRM" ] && [ "$RC" -eq 0 ]; then
    step "devices --json" "not testable" "$SECS" "$NO_DRM; the JSON lists no node"
else
    verdict "devices --json" "DRM nodes: $NODES"
fi
run_to devices 10 devices.txt "$INFO" devices
if [ -n "$NO_DRM" ] && [ "$RC" -eq 0 ]; then
    step devices "not testable" "$SECS" "$NO_DRM"
else
    verdict devices "DRM nodes: $NODES"
fi

run_to vulkan 30 vulkan.json "$INFO" vulkan --json
# Pretty JSON (docs/info.md): each device's keys at six spaces.
VK_DEVS=$(grep -c '^      "id": "vk' "$OUT/vulkan.json" 2>/dev/null)
VK_GPUS=$(grep '^      "type": ' "$OUT/vulkan.json" 2>/dev/null | grep -vc '"cpu"')
# `untested` names each device without VK_EXT_image_drm_format_modifier.
VK_NO_MODS=$(grep -c '"DRM modifiers on vk' "$OUT/vulkan.json" 2>/dev/null)
: "${VK_DEVS:=0}" "${VK_GPUS:=0}" "${VK_NO_MODS:=0}"
# The report's first `untested` line says why, when it has one.
VK_WHY=$(sed -n '/^  "untested": \[/,/^  \]/p' "$OUT/vulkan.json" 2>/dev/null | sed -n '2s/^ *"\(.*\)",\{0,1\}$/\1/p')
if [ "$RC" -eq 0 ] && [ "$VK_DEVS" -eq 0 ]; then
    step "vulkan --json" "not testable" "$SECS" "no Vulkan device (${VK_WHY:+$VK_WHY; }ICD manifests: ${ICDS:-none}; $ICD_NOTE)"
else
    VK_DETAIL="$VK_DEVS device(s), $VK_GPUS not a CPU"
    verdict "vulkan --json" "$VK_DETAIL"
    if [ "$VK_NO_MODS" -gt 0 ]; then
        step "DRM modifiers" "not testable" 0 "no modifier support on $VK_NO_MODS of $VK_DEVS device(s) (no VK_EXT_image_drm_format_modifier): tiled import/export untested"
    fi
fi
run_to vulkan 30 vulkan.txt "$INFO" vulkan
if [ "$RC" -eq 0 ] && [ "$VK_DEVS" -eq 0 ]; then
    step vulkan "not testable" "$SECS" "no Vulkan device"
else
    verdict vulkan "see out/vulkan.txt"
fi

run_to paths 60 paths-verify.txt "$INFO" paths --verify
PATHS_DETAIL="CPU waiter"
[ "$VK_DEVS" -gt 0 ] && PATHS_DETAIL="$PATHS_DETAIL, $VK_DEVS Vulkan device(s)"
[ -z "$NO_DRM" ] && PATHS_DETAIL="$PATHS_DETAIL, KMS planes of $CARDS card(s)"
[ -n "$NO_DRM" ] && PATHS_DETAIL="$PATHS_DETAIL; KMS plane and DRM fence cells not testable: $NO_DRM"
[ "$VK_DEVS" -eq 0 ] && PATHS_DETAIL="$PATHS_DETAIL; Vulkan cells not testable: no Vulkan device"
verdict "paths --verify" "$PATHS_DETAIL"

if [ "$CARDS" -eq 0 ]; then
    NEG_WHY="no KMS display (headless: ${NO_DRM:-no card node})"
else
    NEG_WHY="no connected KMS display on $CARDS card(s) (headless)"
fi
[ "$VK_DEVS" -eq 0 ] && NEG_WHY="$NEG_WHY; no Vulkan device"
run_to negotiate 20 negotiate.json "$INFO" negotiate --json
NO_PAIRS=0
[ "$RC" -eq 0 ] && grep -q '"pairs": \[\]' "$OUT/negotiate.json" && NO_PAIRS=1
if [ "$NO_PAIRS" = 1 ]; then
    step "negotiate --json" "not testable" "$SECS" "$NEG_WHY"
else
    verdict "negotiate --json" "see out/negotiate.json"
fi
run_to negotiate 20 negotiate.txt "$INFO" negotiate
if [ "$NO_PAIRS" = 1 ] && [ "$RC" -eq 0 ]; then
    step negotiate "not testable" "$SECS" "$NEG_WHY"
else
    verdict negotiate "see out/negotiate.txt"
fi

TESTS=$BIN/host_vulkan
if [ -x "$TESTS" ]; then
    run_to host_vulkan 100 host_vulkan.txt env BUFSYNC_SKIP_LOG="$OUT/host_vulkan.skipped" \
        "$TESTS" --test-threads=1 --skip checked_in_spirv_is_fresh
    # libtest prints to stdout; the tests' logs and SKIPPED lines to stderr.
    SUMMARY=$(grep '^test result:' "$OUT/host_vulkan.txt" | tail -n 1)
    FAILED=$(grep -E '^test .* \.\.\. FAILED$' "$OUT/host_vulkan.txt" | sed 's/^test //; s/ \.\.\. FAILED$//' | tr '\n' ' ')
    SKIPPED=$(cut -f1 "$OUT/host_vulkan.skipped" 2>/dev/null | sort -u | wc -l)
    RAN=$(grep -cE '^test .* \.\.\. (ok|FAILED)$' "$OUT/host_vulkan.txt")
    if [ "$RC" -eq 0 ] && [ "$VK_DEVS" -eq 0 ]; then
        step "host_vulkan tests" "not testable" "$SECS" "no Vulkan device: $SKIPPED test(s) skipped (${SUMMARY#test result: })"
    else
        D="${SUMMARY#test result: }; $SKIPPED skipped for want of a device"
        [ -n "$FAILED" ] && D="$D; failed: $FAILED"
        [ "$VK_GPUS" -eq 0 ] && [ "$VK_DEVS" -gt 0 ] && D="$D; ran on a CPU device (lavapipe), not a GPU"
        verdict "host_vulkan tests" "$D"
    fi
else
    step "host_vulkan tests" "not testable" 0 "bin/host_vulkan missing"
fi

# --- The report ------------------------------------------------------------
TOTAL=$(($(date +%s) - START))
NFAILED=$(cut -f2 "$STEPS" | grep -c '^failed$')
NPASSED=$(cut -f2 "$STEPS" | grep -c '^passed$')
NUNTESTED=$(cut -f2 "$STEPS" | grep -c '^not testable$')

fence() { # `fence TITLE FILE`: a file (its first 300 lines) in a code block.
    printf '\n### %s\n\n```\n' "$1"
    if [ -s "$OUT/$2" ]; then head -n 300 "$OUT/$2"; else echo "(empty)"; fi
    [ "$(wc -l <"$OUT/$2" 2>/dev/null || echo 0)" -gt 300 ] && echo "... (cut at 300 lines: out/$2)"
    printf '```\n'
}

{
    echo "# bufsync gpu-check report"
    echo
    echo "$NPASSED passed, $NFAILED failed, $NUNTESTED not testable, in $TOTAL s."
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(uname -srm), $(uname -n), uid $(id -u)"
    [ -f "$DIR/build.txt" ] && echo "- build: $(cat "$DIR/build.txt")"
    GPU="$(cat /proc/driver/nvidia/gpus/*/information 2>/dev/null | sed -n 's/^Model:[[:space:]]*//p' | sort -u | tr '\n' ' ')$(command -v nvidia-smi >/dev/null 2>&1 && timeout 10 nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | tr '\n' ' ')"
    echo "- GPU: ${GPU:-none found (no /proc/driver/nvidia, no nvidia-smi)}"
    echo "- GPU kernel modules: ${MODULES:-none}${MODESET:+ (nvidia_drm modeset=$MODESET)}"
    echo "- /dev/dri: ${NODES:-absent}"
    echo "- Vulkan loader: $LOADER_NOTE"
    echo "- Vulkan ICD manifests: ${ICDS:-none}; $ICD_NOTE"
    echo "- Vulkan devices: $VK_DEVS ($VK_GPUS not a CPU)"
    echo
    echo "| step | result | time | details |"
    echo "|---|---|---|---|"
    while IFS="$(printf '\t')" read -r n s t d; do
        echo "| $n | $s | $t s | $d |"
    done <"$STEPS"
    if [ "$NUNTESTED" -gt 0 ]; then
        echo
        echo "## Not testable here"
        echo
        while IFS="$(printf '\t')" read -r n s t d; do
            [ "$s" = "not testable" ] && echo "- $n: $d"
        done <"$STEPS"
    fi
    if [ -s "$OUT/host_vulkan.skipped" ]; then
        echo
        echo "Tests skipped for want of a device (out/host_vulkan.skipped):"
        echo
        sort -u "$OUT/host_vulkan.skipped" | sed 's/\t/: /; s/^/- /'
    fi
    echo
    echo "Some host_vulkan tests assert lavapipe's own answers (memfd import as a dma-buf,"
    echo "no SYNC_FD export): on another driver their failure messages say what it does instead."
    echo
    echo "## Outputs"
    fence "bufsync-info devices" devices.txt
    fence "bufsync-info vulkan" vulkan.txt
    fence "bufsync-info paths --verify" paths-verify.txt
    fence "bufsync-info paths --verify (stderr)" paths-verify.txt.err
    fence "bufsync-info negotiate" negotiate.txt
    fence "host_vulkan tests" host_vulkan.txt
    echo
    echo "All outputs, stderr and JSON: out/."
} >"$REPORT"

echo "gpu-check: $NPASSED passed, $NFAILED failed, $NUNTESTED not testable in $TOTAL s; report: $REPORT"
[ "$NFAILED" -eq 0 ]
