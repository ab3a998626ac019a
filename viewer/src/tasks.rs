//! Slow work of the views (history queries, file listings) runs here, on the
//! app's tokio runtime, never on the UI thread: [`Tasks::run`] starts a future
//! and returns a [`Pending`] the view polls each frame without blocking; the
//! UI is woken (repainted) when the result arrives.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Wakes the UI when something arrived (eframe: `ctx.request_repaint()`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Runs the views' work on a tokio runtime and wakes the UI when it ends.
#[derive(Clone)]
pub struct Tasks {
    handle: Handle,
    wake: Waker,
    /// Present when the runtime is our own: its thread ends when the last
    /// clone drops.
    _own: Option<Arc<oneshot::Sender<()>>>,
}

impl Tasks {
    /// Work on an existing runtime (the network side's).
    pub fn new(handle: Handle, wake: Waker) -> Self {
        Self {
            handle,
            wake,
            _own: None,
        }
    }

    /// A runtime of its own, on two worker threads, for views with no network
    /// side (the analyzer opened on its own, tests).
    pub fn start(wake: Waker) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("openmosixview-tasks")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("openmosixview-rt".into())
            .spawn(move || {
                // Returns when every `Tasks` is gone; the runtime then drops
                // here, outside any async context.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Self {
            handle,
            wake,
            _own: Some(Arc::new(stop)),
        })
    }

    /// Starts `work`; its result is waiting in the returned [`Pending`] and the
    /// UI is woken when it is there. Dropping the `Pending` cancels the work.
    pub fn run<T, F>(&self, work: F) -> Pending<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let wake = self.wake.clone();
        let task = self.handle.spawn(async move {
            let out = work.await;
            if tx.send(out).is_ok() {
                wake();
            }
        });
        Pending {
            rx,
            task: task.abort_handle(),
        }
    }

    /// The runtime, for work that streams results over its own channel.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The UI's waker, for such streams.
    pub fn waker(&self) -> Waker {
        self.wake.clone()
    }
}

/// The result of [`Tasks::run`], once there.
pub struct Pending<T> {
    rx: oneshot::Receiver<T>,
    task: tokio::task::AbortHandle,
}

/// What polling a [`Pending`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll<T> {
    /// Still running.
    Running,
    /// Finished with this result.
    Ready(T),
    /// The work ended without a result (it panicked or the runtime stopped).
    Lost,
}

impl<T> Pending<T> {
    /// The result if it is there (never blocks).
    pub fn poll(&mut self) -> Poll<T> {
        match self.rx.try_recv() {
            Ok(v) => Poll::Ready(v),
            Err(oneshot::error::TryRecvError::Empty) => Poll::Running,
            Err(oneshot::error::TryRecvError::Closed) => Poll::Lost,
        }
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        // A superseded query is not worth finishing.
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn results_arrive_without_blocking_and_wake_the_ui() {
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        let tasks = Tasks::start(Arc::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap();
        let (go, wait) = oneshot::channel::<()>();
        let mut p = tasks.run(async move {
            let _ = wait.await;
            42
        });
        assert_eq!(p.poll(), Poll::Running);
        go.send(()).unwrap();
        let t = Instant::now();
        loop {
            match p.poll() {
                Poll::Ready(v) => break assert_eq!(v, 42),
                Poll::Running if t.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dropping_the_pending_result_cancels_the_work() {
        let tasks = Tasks::start(Arc::new(|| {})).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let p = tasks.run(async move {
            let _keep = tx;
            std::future::pending::<()>().await
        });
        drop(p);
        let t = Instant::now();
        // The task is aborted, so its sender drops and the channel closes.
        while rx.try_recv() != Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the task kept running"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
