//! Store calls and plugin loading block (disk, fsync, compiling), so they run
//! on tokio's blocking pool, never on the threads that drive connections.

use crate::store::Store;

use super::AppState;
use super::error::ApiError;

/// Runs `f` on the blocking pool. A panic inside `f` becomes a 500.
pub async fn run<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("blocking task failed: {e}")))?
}

/// Runs `f` with the store on the blocking pool.
pub async fn with_store<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let store = state.store.clone();
    run(move || f(store.as_ref())).await
}
