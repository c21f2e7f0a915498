// bufsync test pattern: every pixel is a function of (x, y, width, frame),
// and the top 16 rows encode the frame number as 32 black/white blocks
// (most significant bit on the left). The Rust twin is
// backends/src/vulkan/renderer.rs::pattern_pixel; keep them in step.
#version 450
layout(local_size_x = 8, local_size_y = 8, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) writeonly buffer Pixels {
    uint px[];
};

layout(push_constant) uniform Params {
    uint width;
    uint height;
    uint stride_px;  // row pitch in pixels
    uint offset_px;  // first pixel in the buffer, in pixels
    uint frame;
    uint bgra;       // 1: bytes B,G,R,A (DRM ARGB8888); 0: R,G,B,A (ABGR8888)
} p;

const uint STRIP_ROWS = 16u;

uvec4 pattern(uint x, uint y, uint w, uint frame) {
    if (y < STRIP_ROWS) {
        uint bit = 31u - (x * 32u) / w;
        uint v = ((frame >> bit) & 1u) * 255u;
        return uvec4(v, v, v, 255u);
    }
    return uvec4((x + frame * 4u) & 255u, (y + frame * 2u) & 255u, (x ^ y ^ frame) & 255u, 255u);
}

void main() {
    uvec2 g = gl_GlobalInvocationID.xy;
    if (g.x >= p.width || g.y >= p.height) {
        return;
    }
    uvec4 c = pattern(g.x, g.y, p.width, p.frame);
    uint word = p.bgra != 0u
        ? (c.b | (c.g << 8) | (c.r << 16) | (c.a << 24))
        : (c.r | (c.g << 8) | (c.b << 16) | (c.a << 24));
    px[p.offset_px + g.y * p.stride_px + g.x] = word;
}
