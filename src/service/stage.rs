//! A stage of the service: a cancellation token and the tasks that stop when it is cancelled.
//! The service starts its stages in data-flow order and stops them in the order written down
//! in [`super::run_with`], each one bounded by the shutdown timeout.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

pub struct Stage {
    name: &'static str,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Stage {
    pub fn new(name: &'static str) -> Stage {
        Stage {
            name,
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// The token the stage's tasks watch.
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// The tracker, for a task that spawns helpers of its own that must finish with it.
    pub fn tracker(&self) -> TaskTracker {
        self.tasks.clone()
    }

    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Cancels the stage and waits for its tasks, at most `limit`.
    pub async fn stop(&self, limit: Duration) {
        self.stop.cancel();
        self.tasks.close();
        bounded(self.name, limit, self.tasks.wait()).await;
    }
}

/// Waits for `f`, at most `limit`; says so when it did not finish in time.
pub async fn bounded(what: &str, limit: Duration, f: impl Future<Output = ()>) {
    if tokio::time::timeout(limit, f).await.is_err() {
        warn!(what, "did not finish within the shutdown timeout");
    }
}
