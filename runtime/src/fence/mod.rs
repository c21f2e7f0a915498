//! Fences: the `dma_fence` contract in user space.
