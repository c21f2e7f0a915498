//! Buffer negotiation: the strategies in order (render-alloc, then
//! display-alloc with GBM then dumb buffers, then a GPU copy, then a CPU
//! copy), each candidate's first buffer built and verified with an atomic
//! TEST_ONLY commit (the full modeset it will need); the first that passes
//! is used for every buffer. Every refusal is recorded with its errno.
//!
//! Kernel and Mesa counterparts: PRIME import (`DRM_IOCTL_PRIME_FD_TO_HANDLE`
//! and `ADDFB2`) for render-alloc; `gbm_bo_create` or `CREATE_DUMB` with a
//! `VK_EXT_external_memory_dma_buf` import for display-alloc; Mesa's PRIME
//! blit (render locally, copy into a linear buffer the display scans out)
//! for copy.
//!
//! Locking: none; runs once at creation on the caller's thread.

use bufsync_backends::kms::{FlipRequest, KmsError};

use crate::alloc::{self, Env, SlotBuffers};
use crate::config::{AllocatorChoice, PresenterConfig, StrategyChoice};
use crate::error::PresentError;
use crate::master;
use crate::strategy::{Allocator, CopyEngine, Negotiation, Refusal, Strategy};

/// The candidates `cfg` allows, in order.
fn candidates(cfg: &PresenterConfig, gbm: bool) -> Vec<Strategy> {
    let allocators: Vec<Allocator> = match cfg.allocator {
        AllocatorChoice::Auto if gbm => vec![Allocator::Gbm, Allocator::Dumb],
        AllocatorChoice::Auto | AllocatorChoice::Dumb => vec![Allocator::Dumb],
        AllocatorChoice::Gbm => vec![Allocator::Gbm],
    };
    let mut out = Vec::new();
    if matches!(
        cfg.strategy,
        StrategyChoice::Auto | StrategyChoice::RenderAlloc
    ) {
        out.push(Strategy::RenderAlloc);
    }
    if matches!(
        cfg.strategy,
        StrategyChoice::Auto | StrategyChoice::DisplayAlloc
    ) {
        out.extend(allocators.iter().map(|&a| Strategy::DisplayAlloc(a)));
    }
    if matches!(cfg.strategy, StrategyChoice::Auto | StrategyChoice::Copy) {
        for engine in [CopyEngine::Gpu, CopyEngine::Cpu] {
            out.extend(allocators.iter().map(|&a| Strategy::Copy(engine, a)));
        }
    }
    out
}

fn build(env: &Env<'_>, s: Strategy) -> Result<SlotBuffers, Refusal> {
    match s {
        Strategy::RenderAlloc => alloc::render_alloc(env),
        Strategy::DisplayAlloc(a) => alloc::display_alloc(env, a),
        Strategy::Copy(e, a) => alloc::copy(env, e, a),
    }
}

fn is_eacces(e: &KmsError) -> bool {
    e.errno() == Some(rustix::io::Errno::ACCESS.raw_os_error())
}

/// TEST_ONLY of the modeset that shows `slot`; EACCES (not master) once
/// more after trying to become master, then [`PresentError::NotMaster`].
fn verify(env: &Env<'_>, slot: &SlotBuffers) -> Result<Result<(), KmsError>, PresentError> {
    let display = env.display;
    match display.test_commit(FlipRequest::new(&slot.fb)) {
        Err(e) if is_eacces(&e) => {
            if master::try_become_master(display.device()) {
                if let Err(e) = display.test_commit(FlipRequest::new(&slot.fb)) {
                    if !is_eacces(&e) {
                        return Ok(Err(e));
                    }
                } else {
                    return Ok(Ok(()));
                }
            }
            Err(master::not_master(display.device().path()))
        }
        r => Ok(r),
    }
}

/// Negotiates and allocates `cfg.buffers` slots.
pub(crate) fn negotiate(
    env: &Env<'_>,
    cfg: &PresenterConfig,
    mut negotiation: Negotiation,
) -> Result<(Negotiation, Vec<SlotBuffers>), PresentError> {
    for s in candidates(cfg, cfg!(feature = "gbm")) {
        let first = match build(env, s) {
            Ok(b) => b,
            Err(r) => {
                log::debug!("negotiation: refused {r}");
                negotiation.refusals.push(r);
                continue;
            }
        };
        if let Err(e) = verify(env, &first)? {
            let r = Refusal::kms(
                s,
                format!("TEST_ONLY commit on {}", env.display.driver()),
                &e,
            );
            log::debug!("negotiation: refused {r}");
            negotiation.refusals.push(r);
            continue;
        }
        negotiation.chosen = Some(s);
        negotiation.modifier = first.modifier;
        let mut slots = vec![first];
        for slot in 1..cfg.buffers {
            let b = build(env, s).map_err(|refusal| PresentError::Allocate {
                strategy: s,
                slot,
                refusal,
            })?;
            slots.push(b);
        }
        log::info!("{negotiation}");
        return Ok((negotiation, slots));
    }
    log::info!("{negotiation}");
    Err(PresentError::NoStrategy(Box::new(negotiation)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_order_and_the_choice() {
        let mut cfg = PresenterConfig::default();
        let all = candidates(&cfg, true);
        assert_eq!(
            all,
            vec![
                Strategy::RenderAlloc,
                Strategy::DisplayAlloc(Allocator::Gbm),
                Strategy::DisplayAlloc(Allocator::Dumb),
                Strategy::Copy(CopyEngine::Gpu, Allocator::Gbm),
                Strategy::Copy(CopyEngine::Gpu, Allocator::Dumb),
                Strategy::Copy(CopyEngine::Cpu, Allocator::Gbm),
                Strategy::Copy(CopyEngine::Cpu, Allocator::Dumb),
            ]
        );
        assert!(!candidates(&cfg, false).iter().any(|s| matches!(
            s,
            Strategy::DisplayAlloc(Allocator::Gbm) | Strategy::Copy(_, Allocator::Gbm)
        )));
        cfg.strategy = StrategyChoice::Copy;
        cfg.allocator = AllocatorChoice::Dumb;
        assert_eq!(
            candidates(&cfg, true),
            vec![
                Strategy::Copy(CopyEngine::Gpu, Allocator::Dumb),
                Strategy::Copy(CopyEngine::Cpu, Allocator::Dumb)
            ]
        );
    }
}
