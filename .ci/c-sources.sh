# Sourced by lint.sh and format.sh: c_sources prints the hand-written C files of kernels/ (NUL-separated).
# Generated files (a "generated" or "do not edit" note in their first 5 lines) are left as their generator writes them.
c_sources() {
    git ls-files -z -- 'kernels/*.c' 'kernels/*.h' | while IFS= read -r -d '' f; do
        [ -f "$f" ] || continue
        head -n 5 "$f" | grep -qiE 'generated|do not edit' || printf '%s\0' "$f"
    done
}
