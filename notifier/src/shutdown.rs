//! SIGTERM / SIGINT turn into a shutdown request that the delivery loop
//! watches. Nothing is cancelled mid-delivery: the requests in flight are
//! finished and acked or failed (each bounded by the request timeout), so a
//! clean stop never leaves a message delivered but unacked.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use tracing::info;

#[derive(Clone)]
pub struct Shutdown {
    requested: watch::Receiver<bool>,
}

impl Shutdown {
    /// Installs the handlers. Must be called inside the runtime, before the
    /// first connection, so a signal during startup is not the default
    /// (immediate) termination.
    pub fn install() -> std::io::Result<Shutdown> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            info!("{name} received: releasing the messages not sent yet, finishing the requests in flight");
            let _ = tx.send(true);
            // Later signals are ignored: the handlers stay installed, and the
            // wait they would cut short is at most one request timeout.
            loop {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
        });
        Ok(Shutdown { requested: rx })
    }

    pub fn requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// Resolves once shutdown is requested.
    pub async fn wait(&self) {
        let mut rx = self.requested.clone();
        // Err means the sender is gone, which only happens if the runtime is
        // shutting down: treat it as a request too.
        let _ = rx.wait_for(|requested| *requested).await;
    }
}
