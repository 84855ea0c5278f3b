//! Stage supervision. In: every stage's task, by name. Out: the first stage
//! that ended before shutdown (with an error, a panic, or silently), logged
//! with its error, kept for /readyz (503 naming it), and handed to the
//! pipeline, which then stops the agent with that error (a non-zero exit).
//!
//! Without this a stage that returned an error at start was never awaited
//! until shutdown: the stage before it counted every record as `queue_full`
//! and /readyz stayed 200.

use std::{
    future::Future,
    sync::{Arc, Mutex},
};

use tokio::{sync::watch, task::JoinHandle};

/// Why a stage is down: the first one to end early, with its error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageFailure {
    pub stage: &'static str,
    pub error: String,
}

impl std::fmt::Display for StageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage {} failed: {}", self.stage, self.error)
    }
}

/// Shared by the stages' wrappers, the pipeline and /readyz.
#[derive(Default)]
pub struct Supervisor {
    first: Mutex<Option<StageFailure>>,
    /// Set when the agent is stopping: stages ending then are not failures.
    stopping: std::sync::atomic::AtomicBool,
    failed: watch::Sender<bool>,
}

impl Supervisor {
    pub fn new() -> Arc<Supervisor> {
        Arc::new(Supervisor::default())
    }

    /// Spawn `stage` as a task named `name`. Its end is reported here when it
    /// comes before `stopping`: an error as is, `Ok` as "ended before shutdown".
    pub fn spawn<F>(self: &Arc<Self>, name: &'static str, stage: F) -> JoinHandle<anyhow::Result<()>>
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let inner = tokio::spawn(stage);
        let sup = self.clone();
        tokio::spawn(async move {
            let res = match inner.await {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("task {}", panic_text(e))),
            };
            sup.ended(name, &res);
            res
        })
    }

    /// `spawn` for a blocking stage (its own thread).
    pub fn spawn_blocking<F>(self: &Arc<Self>, name: &'static str, stage: F) -> JoinHandle<anyhow::Result<()>>
    where
        F: FnOnce() -> anyhow::Result<()> + Send + 'static,
    {
        let inner = tokio::task::spawn_blocking(stage);
        self.spawn(name, async move { inner.await.map_err(|e| anyhow::anyhow!("task {}", panic_text(e)))? })
    }

    fn ended(&self, name: &'static str, res: &anyhow::Result<()>) {
        let stopping = self.stopping.load(std::sync::atomic::Ordering::Acquire);
        let error = match res {
            Ok(()) if stopping => return,
            Ok(()) => "ended before shutdown without an error".to_string(),
            Err(e) => format!("{e:#}"),
        };
        let mut first = self.first.lock().expect("supervisor lock");
        if first.is_none() && !stopping {
            tracing::error!(stage = name, "stage failed, stopping the agent: {error}");
            *first = Some(StageFailure { stage: name, error });
            self.failed.send_replace(true);
        } else {
            // A consequence of the first failure, or of shutdown: still said.
            tracing::warn!(stage = name, "stage ended with an error: {error}");
        }
    }

    /// The agent is stopping: stages ending from now on are expected.
    pub fn stopping(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<StageFailure> {
        self.first.lock().expect("supervisor lock").clone()
    }

    /// Resolves at the first failure (never when none happens).
    pub async fn failed(&self) -> StageFailure {
        let mut rx = self.failed.subscribe();
        let _ = rx.wait_for(|f| *f).await;
        self.failure().expect("failed is set with the failure")
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-text payload)".into());
            format!("panicked: {msg}")
        }
        Err(e) => format!("was cancelled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_error_is_kept_later_ones_are_not() {
        let s = Supervisor::new();
        let a = s.spawn("chain", async { Err(anyhow::anyhow!("bad rule")) });
        let _ = a.await;
        let b = s.spawn("conntrack", async { Err(anyhow::anyhow!("downstream gone")) });
        let _ = b.await;
        assert_eq!(s.failed().await, StageFailure { stage: "chain", error: "bad rule".into() });
    }

    #[tokio::test]
    async fn ending_early_without_error_is_a_failure_but_not_at_shutdown() {
        let s = Supervisor::new();
        let _ = s.spawn("reader", async { Ok(()) }).await;
        assert_eq!(s.failure().map(|f| f.stage), Some("reader"));

        let s = Supervisor::new();
        s.stopping();
        let _ = s.spawn("reader", async { Ok(()) }).await;
        let _ = s.spawn("store", async { Err(anyhow::anyhow!("late")) }).await;
        assert_eq!(s.failure(), None);
    }

    #[tokio::test]
    async fn a_panic_is_a_failure_with_its_message() {
        let s = Supervisor::new();
        let _ = s.spawn_blocking("lines", || panic!("boom")).await;
        let f = s.failure().expect("a failure");
        assert_eq!((f.stage, f.error.as_str()), ("lines", "task panicked: boom"));
    }
}
