//! The shape of what a sample publishes: a `Record` is a group of metrics that share dimensions,
//! with the dimension sets they go under and the context that is neither.
//!
//! Owns these types only, so that every module building records (`records`, `task_records`) and
//! every sink rendering them (`emf`, `cloudwatch`) can share them without importing each other.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    /// A CloudWatch unit name: `Percent`, `Bytes`, `Count`, `None`.
    pub unit: &'static str,
    /// A JSON number, so whole numbers stay whole in EMF.
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Every dimension's value.
    pub dimensions: Vec<(String, String)>,
    /// The combinations of dimension names the metrics are published under.
    pub dimension_sets: Vec<Vec<String>>,
    pub metrics: Vec<Metric>,
    /// Context that is neither metric nor dimension (`GpuUuid`, `TaskArn`, ...): EMF carries it
    /// as log fields; PutMetricData has no place for it.
    pub properties: Vec<(String, Value)>,
}

pub fn metric(name: &'static str, unit: &'static str, value: Value) -> Metric {
    Metric { name, unit, value }
}

/// The names of `dimensions`, in order: a dimension set of all of them.
pub fn keys(dimensions: &[(String, String)]) -> Vec<String> {
    dimensions.iter().map(|(k, _)| k.clone()).collect()
}
