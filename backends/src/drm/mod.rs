//! DRM devices: node enumeration, lookup by driver name, capabilities, a
//! KMS resource summary, PRIME, dumb buffers and syncobjs.
//!
//! Card numbers follow module load order, so devices are always found by
//! the driver name `DRM_IOCTL_VERSION` reports, never by number.

mod caps;
mod device;
mod dumb;
mod gem;
mod kms;
mod syncobj;

pub use caps::Caps;
pub use device::{DrmDevice, NodeKind};
pub use dumb::{DumbBuffer, DumbMap};
pub use gem::{GemHandle, GemTable};
pub use kms::{ConnectorSummary, CrtcSummary, KmsSummary, PlaneKind, PlaneSummary};
pub use syncobj::{Syncobj, SyncobjPoint, WaitFor};
