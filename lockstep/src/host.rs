//! The host: lockstep's own thread and Tokio runtime for one registry.
//!
//! A registry's fetches, schema publishes and writes run here, never on the
//! runtime that called `start()`: that one may be a `current_thread`
//! runtime that stops being polled, a test's runtime that is dropped at the
//! end of the test, or a runtime built just to await `start()`. The thread
//! lives as long as its registry (for a `static`, the process).

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::Error;

/// One registry's thread, running a current-thread Tokio runtime until the
/// host is dropped.
pub(crate) struct Host {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl Host {
    /// Starts the thread `lockstep-{namespace}`.
    pub(crate) fn spawn(namespace: &str) -> Result<Host, Error> {
        let (ready, handle) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let cannot = |e: std::io::Error| Error::Store {
            store: String::new(),
            message: format!("cannot start lockstep's thread for `{namespace}`: {e}"),
        };
        std::thread::Builder::new()
            .name(format!("lockstep-{namespace}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => {
                        let _ = ready.send(Ok(runtime.handle().clone()));
                        // Until the host is dropped: a failed start.
                        let _ = runtime.block_on(stopped);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            })
            .map_err(cannot)?;
        let handle = handle
            .recv()
            .map_err(|_| cannot(std::io::Error::other("the thread ended")))?
            .map_err(cannot)?;
        Ok(Host {
            handle,
            _stop: stop,
        })
    }

    /// Runs `work` on the host's runtime and waits for it, from any runtime
    /// or none.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        run_on(&self.handle, work).await
    }

    /// The runtime's handle, to spawn the registry's long-running tasks.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// Runs `work` on `handle`'s runtime and waits for it.
pub(crate) async fn run_on<T: Send + 'static>(
    handle: &Handle,
    work: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    handle.spawn(work).await.map_err(|e| Error::Store {
        store: String::new(),
        message: format!("lockstep's task failed: {e}"),
    })?
}
