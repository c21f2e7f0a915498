//! Reservations and tickets: `dma_resv`, `ww_mutex` and `drm_exec` in user space.
