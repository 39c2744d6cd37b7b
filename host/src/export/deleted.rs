//! How deleted resources are written: as a transaction Bundle with a DELETE
//! entry in the manifest's `deleted` files (HL7 IG, with `_since`), or as
//! the resource itself carrying the soft-delete marker `$import`
//! understands (`includeAssociatedData=_deleted`).

use serde_json::{Map, Value, json};

use crate::fhir::{ResourceId, ResourceType};
use crate::store::VersionMeta;

/// The marker of the import seed document ("Ingest soft-deleted
/// resources"): Azure's `$import` loads a resource carrying it in
/// `meta.extension` as deleted, so an export with `_deleted` loads back
/// losslessly.
pub const DELETED_STATE_URL: &str = "http://azurehealthcareapis.com/data-extensions/deleted-state";
pub const DELETED_STATE_VALUE: &str = "soft-deleted";

/// One `deleted` line: a transaction Bundle deleting `rtype/id`, its
/// `meta.lastUpdated` the instant of the delete.
pub fn bundle_line(rtype: ResourceType, id: &ResourceId, tombstone: &VersionMeta) -> Vec<u8> {
    let bundle = json!({
        "resourceType": "Bundle",
        "meta": {"lastUpdated": tombstone.last_updated.to_fhir()},
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": format!("{rtype}/{id}")}}],
    });
    let mut line = bundle.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// Turns the last live body of a deleted resource into the deleted version
/// itself: its `versionId` and `lastUpdated` become the tombstone's, so a
/// re-import recreates the delete at the right version and instant (and,
/// with `_history`, never collides with the live version exported too), and
/// `meta.extension` gets the marker.
pub fn mark(resource: &mut Map<String, Value>, tombstone: &VersionMeta) {
    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(meta) = meta else {
        return;
    };
    meta.insert(
        "versionId".into(),
        Value::String(tombstone.version.to_string()),
    );
    meta.insert(
        "lastUpdated".into(),
        Value::String(tombstone.last_updated.to_fhir()),
    );
    let extensions = meta.entry("extension").or_insert_with(|| json!([]));
    if let Value::Array(extensions) = extensions
        && !extensions.iter().any(|e| e["url"] == DELETED_STATE_URL)
    {
        extensions.push(json!({"url": DELETED_STATE_URL, "valueString": DELETED_STATE_VALUE}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::Instant;

    fn tombstone() -> VersionMeta {
        VersionMeta {
            version: 3,
            last_updated: Instant::parse("2024-05-01T12:00:00.5Z").unwrap(),
            deleted: true,
        }
    }

    #[test]
    fn bundle_deletes_one_resource() {
        let line = bundle_line(
            ResourceType::parse("Observation").unwrap(),
            &ResourceId::parse("o1").unwrap(),
            &tombstone(),
        );
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "{\"resourceType\":\"Bundle\",\"meta\":{\"lastUpdated\":\"2024-05-01T12:00:00.500Z\"},\"type\":\"transaction\",\"entry\":[{\"request\":{\"method\":\"DELETE\",\"url\":\"Observation/o1\"}}]}\n"
        );
    }

    #[test]
    fn marks_the_deleted_version() {
        let mut r: Map<String, Value> = serde_json::from_str(
            r#"{"resourceType":"Patient","id":"p","meta":{"versionId":"2","lastUpdated":"2024-01-01T00:00:00.000Z"},"gender":"male"}"#,
        )
        .unwrap();
        mark(&mut r, &tombstone());
        mark(&mut r, &tombstone());
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"resourceType":"Patient","id":"p","meta":{"versionId":"3","lastUpdated":"2024-05-01T12:00:00.500Z","extension":[{"url":"http://azurehealthcareapis.com/data-extensions/deleted-state","valueString":"soft-deleted"}]},"gender":"male"}"#
        );
    }
}
