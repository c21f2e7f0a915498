// bufsync test pattern, shared by the buffer and image shaders. Every pixel
// is a function of (x, y, width, frame); the top STRIP_ROWS rows encode the
// frame number as 32 black/white blocks (most significant bit on the left).
// The Rust twin is backends/src/vulkan/renderer.rs::pattern_pixel; keep
// them in step.

const uint STRIP_ROWS = 16u;

uvec4 pattern(uint x, uint y, uint w, uint frame) {
    if (y < STRIP_ROWS) {
        uint bit = 31u - (x * 32u) / w;
        uint v = ((frame >> bit) & 1u) * 255u;
        return uvec4(v, v, v, 255u);
    }
    return uvec4((x + frame * 4u) & 255u, (y + frame * 2u) & 255u, (x ^ y ^ frame) & 255u, 255u);
}
