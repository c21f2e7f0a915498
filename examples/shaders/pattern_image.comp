// bufsync test pattern into a storage image (any tiling, including DRM
// format modifiers). The image is viewed as R8G8B8A8; for B8G8R8A8 memory
// the shader swaps red and blue itself. See pattern.glsl.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "pattern.glsl"

layout(local_size_x = 8, local_size_y = 8, local_size_z = 1) in;

layout(set = 0, binding = 0, rgba8) uniform writeonly image2D img;

layout(push_constant) uniform Params {
    uint width;
    uint height;
    uint unused0;
    uint unused1;
    uint frame;
    uint bgra;       // 1: memory is B,G,R,A
} p;

void main() {
    uvec2 g = gl_GlobalInvocationID.xy;
    if (g.x >= p.width || g.y >= p.height) {
        return;
    }
    vec4 v = vec4(pattern(g.x, g.y, p.width, p.frame)) / 255.0;
    if (p.bgra != 0u) {
        v = v.bgra;
    }
    imageStore(img, ivec2(g), v);
}
