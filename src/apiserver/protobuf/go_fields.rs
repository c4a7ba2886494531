//! What the Go types say about proto fields that the .proto files do not:
//! embedded (inline) structs, non-pointer `omitempty` fields, JSON names that
//! differ, and named slices whose JSON is a bare array. Read from
//! proto/k8s.io/go-fields.txt, which hack/gen-k8s-proto-fields generates
//! from the same Kubernetes tag as the .proto files.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

const TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proto/k8s.io/go-fields.txt"
));

#[derive(Debug, Default, Clone)]
pub struct Field {
    /// An embedded struct: its fields are the parent's in JSON.
    pub inline: bool,
    /// Non-pointer with `omitempty`: Go's protobuf always writes it, its
    /// JSON drops it when zero.
    pub omit_zero: bool,
    /// The JSON name, where it is not the proto name.
    pub json: Option<String>,
}

pub struct GoFields {
    fields: HashMap<String, Field>,
    lists: HashSet<String>,
}

static GO: LazyLock<GoFields> = LazyLock::new(|| parse(TEXT));

static PLAIN: Field = Field {
    inline: false,
    omit_zero: false,
    json: None,
};

fn parse(text: &str) -> GoFields {
    let mut fields = HashMap::new();
    let mut lists = HashSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        let mut field = Field::default();
        for word in words {
            match word {
                "list" => {
                    lists.insert(name.to_string());
                }
                "inline" => field.inline = true,
                "omitzero" => field.omit_zero = true,
                w => field.json = w.strip_prefix("json=").map(String::from),
            }
        }
        fields.insert(name.to_string(), field);
    }
    GoFields { fields, lists }
}

/// The Go facts of a field, by its full proto name
/// (`k8s.io.api.core.v1.PodSpec.restartPolicy`).
pub fn field(full_name: &str) -> &'static Field {
    GO.fields.get(full_name).unwrap_or(&PLAIN)
}

/// Whether a message is a named Go slice (`Verbs`, `ExtraValue`).
pub fn is_list(message: &str) -> bool {
    GO.lists.contains(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_generated_table() {
        assert!(field("k8s.io.api.core.v1.Volume.volumeSource").inline);
        assert!(field("k8s.io.api.core.v1.PodSpec.restartPolicy").omit_zero);
        // Pointers keep their zero values.
        assert!(!field("k8s.io.api.core.v1.PodSpec.terminationGracePeriodSeconds").omit_zero);
        assert!(!field("k8s.io.api.discovery.v1.EndpointConditions.ready").omit_zero);
        assert!(is_list("k8s.io.apimachinery.pkg.apis.meta.v1.Verbs"));
        assert!(!is_list("k8s.io.api.core.v1.PodList"));
    }
}
