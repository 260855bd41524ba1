//! The memory backend: an OpenDAL `Memory` operator per `memory://` URI.
//!
//! Used by the embedded single-process mode and by tests. The one idea: the
//! stores sit in a process-wide registry keyed by URI, so two services that
//! resolve the same root share one archive.

use opendal::Operator;

use crate::error::{StorageError, StorageResult};
use crate::uri::StorageUri;

/// Memory stores live as long as the process and are shared by URI, so the
/// recorder and the packager of one embedded process see the same archive.
pub(super) fn operator(uri: &StorageUri) -> StorageResult<Operator> {
    use std::collections::HashMap;
    use std::sync::{Mutex as StdMutex, OnceLock};
    static STORES: OnceLock<StdMutex<HashMap<String, Operator>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = stores.lock().map_err(|_| StorageError::Config {
        uri: uri.to_string(),
        detail: "memory store registry poisoned".into(),
    })?;
    if let Some(op) = stores.get(&uri.to_string()) {
        return Ok(op.clone());
    }
    let op = Operator::new(opendal::services::Memory::default().root("/")).map_err(|e| {
        StorageError::Config {
            uri: uri.to_string(),
            detail: e.to_string(),
        }
    })?;
    stores.insert(uri.to_string(), op.clone());
    Ok(op)
}
