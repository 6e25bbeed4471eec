//! `linux.resources.devices`: the device cgroup's allow rules for the nodes the container gets.

use serde_json::{Map, Value};

use super::build::{allow_rule, PlanError};
use crate::gpu::DeviceNode;
use crate::spec::{array_at, field, object_at, Appender};

fn rule_allows(rule: &Value, node: &DeviceNode) -> bool {
    let mut kind = [0; 4];
    let kind: &str = node.kind.encode_utf8(&mut kind);
    field(rule, "allow").and_then(Value::as_bool) == Some(true)
        && field(rule, "type").and_then(Value::as_str) == Some(kind)
        && field(rule, "major").and_then(Value::as_u64) == Some(node.major)
        && field(rule, "minor").and_then(Value::as_u64) == Some(node.minor)
        && field(rule, "access")
            .and_then(Value::as_str)
            .is_some_and(|a| a.contains('r') && a.contains('w') && a.contains('m'))
}

/// An allow rule per node, appended after whatever is there (docker leads with a deny-all, so
/// the allows must come after it).
pub fn add(
    root: &mut Map<String, Value>,
    nodes: &[DeviceNode],
    to: &mut Appender<'_>,
) -> Result<bool, PlanError> {
    let linux = object_at(root, "linux", "linux")?;
    let resources = object_at(linux, "resources", "linux.resources")?;
    let rules = array_at(resources, "devices", "linux.resources.devices")?;
    // Only the rules that were there are looked through: one added here is for an earlier node
    // of `nodes`, checked directly (every create would otherwise scan its own new rules).
    let mut added = Vec::with_capacity(64 * nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let added_already = nodes[..i]
            .iter()
            .any(|n| (n.kind, n.major, n.minor) == (node.kind, node.major, node.minor));
        if added_already || rules.iter().any(|r| rule_allows(r, node)) {
            continue;
        }
        allow_rule(&mut added, node);
    }
    to.append(rules, &added)?;
    Ok(!added.is_empty())
}
