//! Implements `hearth:plugin/type-filter@0.2.0`, which the host (0.1.x) must
//! refuse at load with a message naming both versions.

wit_bindgen::generate!({ path: "wit", world: "type-filter-plugin" });

struct Component;

impl exports::hearth::plugin::type_filter::Guest for Component {
    fn evaluate_all(ndjson: Vec<u8>) -> Vec<bool> {
        ndjson.split(|b| *b == b'\n').map(|_| true).collect()
    }
}

export!(Component);
