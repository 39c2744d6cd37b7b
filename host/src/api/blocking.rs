//! Store calls block (disk, fsync), so they run on tokio's blocking pool,
//! never on the threads that drive connections.

use crate::store::Store;

use super::AppState;
use super::error::ApiError;

/// Runs `f` with the store on the blocking pool. A panic inside `f` becomes
/// a 500.
pub async fn with_store<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?
}
