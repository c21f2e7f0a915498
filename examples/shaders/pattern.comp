// bufsync test pattern into a storage buffer with an image layout (offset,
// stride): the LINEAR dma-buf path. See pattern.glsl.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "pattern.glsl"

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
