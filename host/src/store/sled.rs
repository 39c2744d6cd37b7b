//! The embedded [`Store`](super::Store) on sled.

use std::path::Path;

use super::StoreError;

pub struct SledStore {
    db: ::sled::Db,
}

impl SledStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = ::sled::open(path).map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(SledStore { db })
    }
}
