//! Tokio task helpers any layer may use (a leaf, as `x509` and `k8s` are):
//! blocking work off the executor, and work that a dropped caller must not
//! cut short. The error type says how a task that panicked or was cancelled
//! reads, through [`TaskFailed`].

use std::future::Future;

/// Which helper's task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// [`detached`]
    Detached,
    /// [`blocking`]
    Blocking,
}

/// An error that can say "the task itself failed" (it panicked, or the
/// runtime shut down under it).
pub trait TaskFailed {
    fn task_failed(kind: TaskKind, e: tokio::task::JoinError) -> Self;
}

/// Runs `f` as its own task and waits for it: a caller that gives up (a
/// kubelet deadline drops the gRPC future) does not cut the operation or its
/// rollback short.
pub async fn detached<T: Send + 'static, E: TaskFailed + Send + 'static>(
    f: impl Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, E> {
    tokio::spawn(f)
        .await
        .map_err(|e| E::task_failed(TaskKind::Detached, e))?
}

/// Runs blocking work (file system, syscalls, exec) on the blocking pool.
pub async fn blocking<T: Send + 'static, E: TaskFailed>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| E::task_failed(TaskKind::Blocking, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Failed(TaskKind);

    impl TaskFailed for Failed {
        fn task_failed(kind: TaskKind, _: tokio::task::JoinError) -> Self {
            Failed(kind)
        }
    }

    #[tokio::test]
    async fn results_pass_through_and_a_panic_is_the_error() {
        assert_eq!(blocking::<_, Failed>(|| 7).await, Ok(7));
        assert_eq!(
            blocking::<(), Failed>(|| panic!("boom")).await,
            Err(Failed(TaskKind::Blocking))
        );
        assert_eq!(detached(async { Ok::<_, Failed>(3) }).await, Ok(3));
        assert_eq!(
            detached(async { Err::<(), _>(Failed(TaskKind::Blocking)) }).await,
            Err(Failed(TaskKind::Blocking)),
            "the task's own error is returned as it is"
        );
        assert_eq!(
            detached::<(), Failed>(async { panic!("boom") }).await,
            Err(Failed(TaskKind::Detached))
        );
    }
}
