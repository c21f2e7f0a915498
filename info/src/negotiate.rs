//! `bufsync-info negotiate`: the presenter's buffer negotiation
//! ([`Presenter::new`]) for every pair of a Vulkan device and a KMS display
//! found here, headless when there is none: no display is ever assumed.
//! Each pair gets the strategy chosen and every refusal with its errno;
//! nothing is shown (the negotiation only makes TEST_ONLY commits) and the
//! display is put back as it was.

use bufsync_present::{DisplayTarget, PresentError, Presenter, PresenterConfig, RenderDevice};
use schemars::JsonSchema;
use serde::Serialize;

use crate::devices::DevicesReport;
use crate::vulkan::VkDevice;

/// The `negotiate` report (JSON schema `bufsync-info.negotiate`, version 1).
#[derive(Debug, Serialize, JsonSchema)]
pub struct NegotiateReport {
    /// `bufsync-info.negotiate`.
    pub schema: &'static str,
    /// Schema version ([`crate::schema::VERSION`]).
    pub version: u32,
    /// The displays found (primary nodes with a connected connector).
    pub displays: Vec<String>,
    /// One per (render device, display).
    pub pairs: Vec<Pair>,
    /// What could not be tried here, and why.
    pub untested: Vec<String>,
}

/// One negotiation.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Pair {
    /// The Vulkan device (`vk0`...).
    pub renderer: String,
    /// The display node.
    pub display: String,
    /// The chosen strategy (`render-alloc`, `display-alloc (dumb)`...),
    /// `null` when every one was refused or the presenter failed first.
    pub chosen: Option<String>,
    /// The display buffers' modifier, hex.
    pub modifier: Option<String>,
    /// Each refused strategy: `strategy: step: reason`.
    pub refusals: Vec<String>,
    /// The presenter's own error, when it did not get to negotiate.
    pub error: Option<String>,
}

/// Runs every negotiation (`devices` says which displays exist).
pub fn collect(devices: &DevicesReport, vk: &Result<Vec<VkDevice>, String>) -> NegotiateReport {
    let mut r = NegotiateReport {
        schema: "bufsync-info.negotiate",
        version: crate::schema::VERSION,
        displays: Vec::new(),
        pairs: Vec::new(),
        untested: Vec::new(),
    };
    for n in &devices.nodes {
        let Some(k) = &n.kms else { continue };
        if k.connectors
            .iter()
            .any(|c| !c.writeback && c.state == "connected" && !c.modes.is_empty())
        {
            r.displays.push(n.path.clone());
        }
    }
    if r.displays.is_empty() {
        r.untested.push(
            "presenter negotiation: headless (no KMS node with a connected connector)".into(),
        );
    }
    let renderers: Vec<&VkDevice> = match vk {
        Ok(l) => l.iter().filter(|d| d.ctx.is_ok()).collect(),
        Err(e) => {
            r.untested
                .push(format!("presenter negotiation: no Vulkan ({e})"));
            Vec::new()
        }
    };
    for d in renderers {
        let Ok(ctx) = &d.ctx else { continue };
        for display in &r.displays {
            let result = Presenter::new(
                RenderDevice::Vulkan(ctx.clone()),
                DisplayTarget::parse(display),
                PresenterConfig::default(),
            );
            let n = match &result {
                Ok(p) => Some(p.negotiation().clone()),
                Err(PresentError::NoStrategy(n)) => Some((**n).clone()),
                Err(_) => None,
            };
            r.pairs.push(Pair {
                renderer: format!("{} {}", d.id(), d.info.name),
                display: display.clone(),
                chosen: n.as_ref().and_then(|n| n.chosen.map(|s| s.to_string())),
                modifier: n
                    .as_ref()
                    .filter(|n| n.chosen.is_some())
                    .map(|n| format!("{:#x}", n.modifier)),
                refusals: n
                    .as_ref()
                    .map(|n| n.refusals.iter().map(|x| x.to_string()).collect())
                    .unwrap_or_default(),
                error: match result {
                    Ok(_) | Err(PresentError::NoStrategy(_)) => None,
                    Err(e) => Some(e.to_string()),
                },
            });
        }
    }
    r
}

/// The report as text (at most 100 columns).
pub fn render(r: &NegotiateReport) -> String {
    let mut out = String::from("presenter negotiation (Presenter::new, TEST_ONLY commits only)\n");
    if r.displays.is_empty() {
        out.push_str("  no display found: headless\n");
    }
    for p in &r.pairs {
        let what = match (&p.chosen, &p.error) {
            (Some(s), _) => format!("{s}, modifier {}", p.modifier.as_deref().unwrap_or("?")),
            (None, Some(e)) => format!("failed: {e}"),
            (None, None) => "every strategy refused".to_string(),
        };
        out.push_str(&crate::text::para(
            &format!("  {} -> {}: ", p.renderer, p.display),
            &what,
        ));
        for x in &p.refusals {
            out.push_str(&crate::text::para("    refused ", x));
        }
    }
    for u in &r.untested {
        out.push_str(&crate::text::para("untested: ", u));
    }
    out
}
