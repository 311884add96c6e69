//! Test-only fault injection: makes a named component panic or stall at
//! its next fault point, so that the tests can prove the agent restarts
//! (crash-only) and reports the stall before it does.
//!
//! Compiled only with the `fault-injection` feature *and* debug assertions:
//! a release or gateway build never contains it, whatever features a
//! workspace build unifies (`scripts/cross-ci.sh` checks the shipped binary).
//! The local HTTP server then takes `POST /debug/fault/{component}/{kind}`,
//! `kind` being `panic` or `stall`.
//!
//! Fault points: `broker` (the accept loop), `gate` (a client's PUBLISH),
//! `store` (the writer thread, any command), `segmenter` (each tick),
//! `uplink` (each turn), `serial` (each read or poll), `upstream` (each
//! event from an upstream broker).

/// What a fault point does when armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Panic,
    Stall,
}

#[cfg(all(feature = "fault-injection", debug_assertions))]
mod armed {
    use std::sync::Mutex;

    use super::FaultKind;

    static PLAN: Mutex<Vec<(String, FaultKind)>> = Mutex::new(Vec::new());

    pub(super) fn arm(component: &str, kind: FaultKind) {
        PLAN.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((component.to_owned(), kind));
    }

    pub(super) fn take(component: &str) -> Option<FaultKind> {
        let mut plan = PLAN.lock().unwrap_or_else(|e| e.into_inner());
        let at = plan.iter().position(|(c, _)| c == component)?;
        Some(plan.swap_remove(at).1)
    }
}

/// Arms a fault (only in builds with fault injection; otherwise `false`).
pub fn arm(component: &str, kind: FaultKind) -> bool {
    #[cfg(all(feature = "fault-injection", debug_assertions))]
    {
        tracing::warn!(component, ?kind, "fault injection armed");
        armed::arm(component, kind);
        true
    }
    #[cfg(not(all(feature = "fault-injection", debug_assertions)))]
    {
        let _ = (component, kind);
        false
    }
}

/// A fault point in async code: panics, or never returns, when armed.
#[inline]
pub async fn point(component: &'static str) {
    #[cfg(all(feature = "fault-injection", debug_assertions))]
    match armed::take(component) {
        Some(FaultKind::Panic) => panic!("injected fault in {component}"),
        Some(FaultKind::Stall) => {
            tracing::warn!(component, "injected stall");
            std::future::pending::<()>().await
        }
        None => {}
    }
    #[cfg(not(all(feature = "fault-injection", debug_assertions)))]
    let _ = component;
}

/// A fault point on a thread of its own: panics, or blocks for good.
#[inline]
pub fn point_blocking(component: &'static str) {
    #[cfg(all(feature = "fault-injection", debug_assertions))]
    match armed::take(component) {
        Some(FaultKind::Panic) => panic!("injected fault in {component}"),
        Some(FaultKind::Stall) => {
            tracing::warn!(component, "injected stall");
            loop {
                std::thread::park();
            }
        }
        None => {}
    }
    #[cfg(not(all(feature = "fault-injection", debug_assertions)))]
    let _ = component;
}
