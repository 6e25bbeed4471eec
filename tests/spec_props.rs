//! Properties of the spec edit over generated specs and `NVIDIA_VISIBLE_DEVICES` values: it never
//! panics, never drops or changes a field it does not own, and editing twice is editing once;
//! under the legacy hook and under CDI.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gpu_share::cdi::edits::{CdiHook, CdiMount, Injected};
use gpu_share::config::{DefaultGpus, SharingSection};
use gpu_share::gpu::Inventory;
use gpu_share::placement::{self, Assignment, Decided, Load};
use gpu_share::plan::mps::MpsClient;
use gpu_share::plan::{devices, Driver, Hook, Plan};
use gpu_share::request::{Channel, Request};
use gpu_share::spec::{self, env_value, Appender};
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

fn host(gpus: u32) -> Inventory {
    Inventory::synthetic(gpus)
}

/// What the create path decides for `spec` on `inventory` under the default policy; `None`
/// where it refuses the request.
fn assignment(spec: &Value, default: DefaultGpus, inventory: &Inventory) -> Option<Assignment> {
    let sharing = SharingSection {
        default,
        ..SharingSection::default()
    };
    let request = Request::from_spec(spec, &sharing, Channel::Default).ok()?;
    let claim = placement::claim(&request, inventory).ok()?;
    match placement::decide(claim, inventory, &sharing, &Load::new(), &[]).ok()? {
        Decided::Gpus(a) => Some(a),
        Decided::Nothing(_) => None,
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "[a-zA-Z0-9=/_ .-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn visible_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("all".to_owned()),
        Just("none".to_owned()),
        Just("void".to_owned()),
        Just(String::new()),
        "[0-5](,[0-5]){0,3}",
        "GPU-[0-9a-f]{8}",
        ".{0,10}",
    ]
}

fn device_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u32..6).prop_map(|i| serde_json::json!({"path": format!("/dev/nvidia{i}"), "type": "c", "major": 195, "minor": i})),
        // A GPU's path over some other number, or a GPU's number under some other path.
        (0u32..6, 0u32..6, prop_oneof![Just(195u32), Just(1)]).prop_map(|(i, m, major)| serde_json::json!({"path": format!("/dev/nvidia{i}"), "type": "c", "major": major, "minor": m})),
        (0u32..6).prop_map(|i| serde_json::json!({"path": format!("/dev/gpu{i}"), "type": "c", "major": 195, "minor": i})),
        Just(serde_json::json!({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229})),
        any_json(),
    ]
}

fn mount_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"})),
        // A destination NVIDIA's CDI spec also mounts: the container's own wins.
        Just(
            serde_json::json!({"destination": "/usr/lib64/libcuda.so.1", "source": "/mine", "options": ["ro"]})
        ),
        any_json(),
    ]
}

fn rule_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(serde_json::json!({"allow": false, "access": "rwm"})),
        (0u64..6, "[rwm]{0,3}").prop_map(|(m, a)| serde_json::json!({"allow": true, "type": "c", "major": 195, "minor": m, "access": a})),
        any_json(),
    ]
}

fn hook_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(serde_json::json!({"path": "/proc/1/exe", "args": ["libnetwork-setkey"]})),
        // docker's `--gpus`, the toolkit's runtime (full path in args[0]), a renamed copy.
        Just(
            serde_json::json!({"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["nvidia-container-runtime-hook", "prestart"]})
        ),
        Just(
            serde_json::json!({"path": "/usr/bin/nvidia-container-toolkit", "args": ["/usr/bin/nvidia-container-toolkit", "prestart"]})
        ),
        Just(
            serde_json::json!({"path": "/opt/renamed", "args": ["nvidia-container-runtime-hook", "prestart"]})
        ),
        // What `nvidia-ctk cdi generate` writes, through either of its executables.
        Just(
            serde_json::json!({"path": "/usr/bin/nvidia-cdi-hook", "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", "/usr/lib64"], "env": ["NVIDIA_CTK_DEBUG=false"]})
        ),
        Just(
            serde_json::json!({"path": "/usr/bin/nvidia-ctk", "args": ["nvidia-ctk", "hook", "create-symlinks", "--link", "a::b"]})
        ),
        any_json(),
    ]
}

/// The stages a spec's hooks are generated in: the legacy hook's two, and CDI's.
const HOOK_STAGES: &[&str] = &["prestart", "createRuntime", "createContainer"];

/// Whether `spec` already has NVIDIA's hooks, by what they run as (path or args[0]): the legacy
/// hook before the container's process, or the toolkit's CDI hooks anywhere.
fn has_nvidia_hooks(spec: &Value) -> bool {
    let base = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|p| std::path::Path::new(p).file_name())
            .and_then(|n| n.to_str())
            .map(str::to_owned)
    };
    HOOK_STAGES.iter().any(|stage| {
        array_at(spec, &["hooks", stage]).iter().any(|h| {
            [
                base(h.get("path")),
                base(h.get("args").and_then(|a| a.get(0))),
            ]
            .into_iter()
            .flatten()
            .any(|n| match n.as_str() {
                "nvidia-container-runtime-hook" | "nvidia-container-toolkit" => {
                    *stage != "createContainer"
                }
                "nvidia-cdi-hook" | "nvidia-ctk" => true,
                _ => false,
            })
        })
    })
}

/// Specs shaped like docker's, with random extra fields everywhere and sometimes a wrong shape.
fn spec() -> impl Strategy<Value = Value> {
    let env = prop::collection::vec(
        prop_oneof![
            "[A-Z]{1,5}=[a-z0-9]{0,5}".prop_map(Value::from),
            visible_value().prop_map(|v| Value::from(format!("NVIDIA_VISIBLE_DEVICES={v}"))),
            any_json(),
        ],
        0..5,
    );
    (
        prop::option::of(env),
        prop::option::of(prop::collection::vec(device_entry(), 0..4)),
        prop::option::of(prop::collection::vec(rule_entry(), 0..4)),
        prop::option::of(prop::collection::vec(hook_entry(), 0..3)),
        prop::collection::vec((0..HOOK_STAGES.len() - 1, hook_entry()), 0..2),
        prop::collection::vec(("x-[a-z]{1,6}", any_json()), 0..3),
        any_json(),
        0u8..14,
        prop::option::of(prop::collection::vec(mount_entry(), 0..3)),
    )
        .prop_map(|(env, devices, rules, prestart, later, extra, noise, wrong, mounts)| {
            let mut spec = serde_json::json!({"ociVersion": "1.0.2", "process": {"args": ["sh"]}, "linux": {"netDevices": noise.clone()}});
            if let Some(env) = env {
                spec["process"]["env"] = Value::Array(env);
            }
            if let Some(d) = devices {
                spec["linux"]["devices"] = Value::Array(d);
            }
            if let Some(r) = rules {
                spec["linux"]["resources"] = serde_json::json!({"devices": r, "x-limits": noise.clone()});
            }
            if let Some(p) = prestart {
                spec["hooks"] = serde_json::json!({"prestart": p, "poststop": []});
            }
            for (stage, hook) in later {
                let stage = HOOK_STAGES[stage + 1];
                if !spec["hooks"].is_object() {
                    spec["hooks"] = serde_json::json!({});
                }
                if !spec["hooks"][stage].is_array() {
                    spec["hooks"][stage] = serde_json::json!([]);
                }
                spec["hooks"][stage].as_array_mut().unwrap().push(hook);
            }
            if let Some(m) = mounts {
                spec["mounts"] = Value::Array(m);
            }
            for (k, v) in extra {
                spec[k] = v;
            }
            // Now and then one owned part has the wrong type: the edit must refuse, not panic.
            match wrong {
                0 => spec["linux"]["devices"] = noise,
                1 => spec["process"]["env"] = Value::from("A=1"),
                2 => spec["hooks"] = Value::from(3),
                3 => spec["mounts"] = Value::from("m"),
                _ => {}
            }
            spec
        })
}

/// Whether `spec` has a `/dev/nvidiaN` entry that is not `c 195:N`.
fn has_contradicting_gpu_node(spec: &Value) -> bool {
    array_at(spec, &["linux", "devices"]).iter().any(|d| {
        let Some(n) = d
            .get("path")
            .and_then(Value::as_str)
            .and_then(|p| p.strip_prefix("/dev/nvidia"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        d.get("type").and_then(Value::as_str) != Some("c")
            || d.get("major").and_then(Value::as_u64) != Some(195)
            || d.get("minor").and_then(Value::as_u64) != n.parse().ok()
    })
}

/// Removes the parts the shim owns, and the containers it had to create for them.
fn without_owned(v: &Value, original: &Value) -> Value {
    without(v, original, &["prestart"], false)
}

/// As [`without_owned`], for a CDI edit: its hook stage and the mounts are owned too.
fn without_owned_by_cdi(v: &Value, original: &Value) -> Value {
    without(v, original, &["createContainer"], true)
}

fn without(v: &Value, original: &Value, stages: &[&str], mounts: bool) -> Value {
    let mut v = v.clone();
    let remove = |v: &mut Value, path: &[&str]| {
        let (last, parents) = path.split_last().unwrap();
        let mut cur = Some(v);
        for p in parents {
            cur = cur.and_then(|c| c.get_mut(*p));
        }
        if let Some(Value::Object(m)) = cur {
            m.remove(*last);
        }
    };
    remove(&mut v, &["linux", "devices"]);
    remove(&mut v, &["linux", "resources", "devices"]);
    remove(&mut v, &["process", "env"]);
    for stage in stages {
        remove(&mut v, &["hooks", stage]);
    }
    if mounts {
        remove(&mut v, &["mounts"]);
    }
    for path in [&["linux", "resources"][..], &["hooks"], &["linux"]] {
        let absent = path.iter().try_fold(original, |c, p| c.get(*p)).is_none();
        let target = path.iter().try_fold(&v, |c, p| c.get(*p));
        if absent && target == Some(&Value::Object(Map::new())) {
            remove(&mut v, path);
        }
    }
    v
}

/// What NVIDIA's CDI spec gives `gpus` on `inventory`: their nodes and the control nodes, two
/// library mounts, two createContainer hooks, and its env.
fn cdi_edits(inventory: &Inventory, gpus: &[u32]) -> Injected {
    let mut nodes: Vec<_> = gpus
        .iter()
        .filter_map(|&i| inventory.gpu(i))
        .map(|g| g.node.clone())
        .collect();
    nodes.extend(inventory.controls.iter().cloned());
    let mount = |lib: &str| CdiMount {
        host_path: format!("/usr/lib64/{lib}"),
        container_path: format!("/usr/lib64/{lib}"),
        kind: None,
        options: ["ro", "nosuid", "nodev", "rbind", "rprivate"]
            .map(String::from)
            .to_vec(),
    };
    let hook = |args: &[&str]| CdiHook {
        hook_name: "createContainer".into(),
        path: "/usr/bin/nvidia-cdi-hook".into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        timeout: None,
    };
    Injected {
        nodes,
        mounts: vec![mount("libcuda.so.1"), mount("libnvidia-ml.so.535.104.05")],
        hooks: vec![
            hook(&[
                "nvidia-cdi-hook",
                "create-symlinks",
                "--link",
                "libcuda.so.1::/usr/lib64/libcuda.so",
            ]),
            hook(&[
                "nvidia-cdi-hook",
                "update-ldcache",
                "--folder",
                "/usr/lib64",
            ]),
        ],
        env: vec![
            "NVIDIA_VISIBLE_DEVICES=void".into(),
            "NVIDIA_CTK_DEBUG=false".into(),
        ],
    }
}

fn array_at(v: &Value, path: &[&str]) -> Vec<Value> {
    path.iter()
        .try_fold(v, |c, p| c.get(*p))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn edit_is_lossless_idempotent_and_never_panics(
        original in spec(),
        gpus in 0u32..5,
        default_all in any::<bool>(),
        hook in any::<bool>(),
    ) {
        let inventory = host(gpus);
        let default = if default_all { DefaultGpus::All } else { DefaultGpus::None };
        let Some(chosen) = assignment(&original, default, &inventory) else { return Ok(()) };

        let path = PathBuf::from("/usr/bin/nvidia-container-runtime-hook");
        let hook_present = hook;
        let hook = if hook { Hook::Present(path) } else { Hook::Missing(path) };
        let plan = Plan::new(&chosen, &inventory, Driver::Legacy(hook));
        let mut once = original.clone();
        if plan.apply(&mut once).is_err() {
            return Ok(());
        }
        // A GPU node whose number disagrees with its path is never let through.
        prop_assert!(!has_contradicting_gpu_node(&original), "{}", original);
        // Every GPU given is held by the edited spec, and held GPUs are the host's.
        let held = devices::held_gpus(&once, &inventory).unwrap();
        for g in &chosen.gpus {
            prop_assert!(held.contains(g));
        }
        prop_assert!(held.iter().all(|&g| g < gpus));

        // Nothing outside the owned parts changed.
        prop_assert_eq!(without_owned(&once, &original), without_owned(&original, &original));

        // Owned arrays only grew at the end.
        for path in [&["linux", "devices"][..], &["linux", "resources", "devices"], &["hooks", "prestart"]] {
            let before = array_at(&original, path);
            let after = array_at(&once, path);
            prop_assert!(after.len() >= before.len());
            prop_assert_eq!(&after[..before.len()], &before[..]);
        }

        // In env, only NVIDIA_VISIBLE_DEVICES entries may change (every one of them, so that
        // whichever one a reader takes is ours), or one entry is appended.
        let env_before = array_at(&original, &["process", "env"]);
        let env_after = array_at(&once, &["process", "env"]);
        let ours = |e: &Value| e.as_str().is_some_and(|s| s.starts_with("NVIDIA_VISIBLE_DEVICES="));
        prop_assert!(env_after.len() == env_before.len() || env_after.len() == env_before.len() + 1);
        let wanted = Value::from(format!("NVIDIA_VISIBLE_DEVICES={}", plan.visible()));
        for (i, e) in env_before.iter().enumerate() {
            if ours(e) {
                prop_assert_eq!(&env_after[i], &wanted);
            } else {
                prop_assert_eq!(e, &env_after[i]);
            }
        }
        prop_assert_eq!(env_value(&once, "NVIDIA_VISIBLE_DEVICES"), Some(plan.visible()));

        // Every device given is there with an allow rule.
        for n in plan.devices() {
            let path = n.path.to_str().unwrap();
            prop_assert!(array_at(&once, &["linux", "devices"]).iter().any(|d| d["path"] == path));
        }

        // NVIDIA's legacy hook is added once, and never where NVIDIA's hooks are already there.
        let added = array_at(&once, &["hooks", "prestart"]).len()
            - array_at(&original, &["hooks", "prestart"]).len();
        prop_assert_eq!(added, usize::from(hook_present && !has_nvidia_hooks(&original)));

        // Twice is once.
        let mut twice = once.clone();
        prop_assert!(!plan.apply(&mut twice).unwrap());
        prop_assert_eq!(&twice, &once);

        // And the spec text round-trips.
        let text = serde_json::to_string(&once).unwrap();
        prop_assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), once);
    }

    #[test]
    fn cdi_edit_is_lossless_idempotent_and_adds_no_legacy_hook(
        original in spec(),
        gpus in 0u32..5,
        default_all in any::<bool>(),
    ) {
        let inventory = host(gpus);
        let default = if default_all { DefaultGpus::All } else { DefaultGpus::None };
        let Some(chosen) = assignment(&original, default, &inventory) else { return Ok(()) };
        let cdi = cdi_edits(&inventory, &chosen.gpus);
        let plan = Plan::new(&chosen, &inventory, Driver::Cdi(cdi.clone()));
        let mut once = original.clone();
        if plan.apply(&mut once).is_err() {
            return Ok(());
        }
        prop_assert_eq!(without_owned_by_cdi(&once, &original), without_owned_by_cdi(&original, &original));
        for path in [&["linux", "devices"][..], &["linux", "resources", "devices"], &["mounts"], &["hooks", "createContainer"]] {
            let before = array_at(&original, path);
            let after = array_at(&once, path);
            prop_assert!(after.len() >= before.len());
            prop_assert_eq!(&after[..before.len()], &before[..]);
        }
        // Under CDI the legacy hook is not added.
        prop_assert_eq!(array_at(&once, &["hooks", "prestart"]), array_at(&original, &["hooks", "prestart"]));
        // Placement's NVIDIA_VISIBLE_DEVICES, never CDI's `void`; CDI's other variables only
        // where the container does not set them.
        prop_assert_eq!(env_value(&once, "NVIDIA_VISIBLE_DEVICES"), Some(plan.visible()));
        let env_before = array_at(&original, &["process", "env"]);
        let env_after = array_at(&once, &["process", "env"]);
        for (i, e) in env_before.iter().enumerate() {
            if !e.as_str().is_some_and(|s| s.starts_with("NVIDIA_VISIBLE_DEVICES=")) {
                prop_assert_eq!(e, &env_after[i]);
            }
        }
        prop_assert!(env_value(&once, "NVIDIA_CTK_DEBUG").is_some());
        // Every mount destination CDI gives is there: added once where it was free, and not at
        // all where the container already mounts something there.
        let count = |spec: &Value, dest: &str| {
            array_at(spec, &["mounts"]).iter().filter(|e| e["destination"] == dest).count()
        };
        for m in &cdi.mounts {
            let before = count(&original, &m.container_path);
            prop_assert_eq!(count(&once, &m.container_path), before.max(1));
        }
        let hooks = array_at(&once, &["hooks", "createContainer"]);
        for h in &cdi.hooks {
            prop_assert!(hooks.iter().any(|e| e["path"] == h.path.as_str() && e["args"] == serde_json::json!(h.args)));
        }
        for n in plan.devices() {
            let path = n.path.to_str().unwrap();
            prop_assert!(array_at(&once, &["linux", "devices"]).iter().any(|d| d["path"] == path));
        }
        let mut twice = once.clone();
        prop_assert!(!plan.apply(&mut twice).unwrap());
        prop_assert_eq!(&twice, &once);
        // A create keeps the entries it adds as text, and an MPS edit after CDI's reads CDI's
        // mounts back: both write what the edits built as values write.
        let mps = plan.clone().with_mps(MpsClient {
            pipe_dir: PathBuf::from("/run/gpu-share/mps/0"),
            owned_root: PathBuf::from("/run/gpu-share/mps"),
        });
        for plan in [&plan, &mps] {
            let mut built = original.clone();
            plan.apply(&mut built).unwrap();
            // A create refuses a spec with a key repeated in another case (runc would merge
            // the two), when it reads it or the part it edits: the generator makes some, and
            // there is nothing to write for them.
            let (mut kept, mut raw) = match spec::parse(serde_json::to_vec(&original).unwrap(), "config.json") {
                Ok(parsed) => parsed,
                Err(e) => {
                    prop_assert!(matches!(e, spec::SpecError::RepeatedKey { .. }), "{}", e);
                    return Ok(());
                }
            };
            if let Err(e) = spec::expand(&mut kept, &raw, &plan.paths(), "config.json") {
                prop_assert!(matches!(e, spec::SpecError::RepeatedKey { .. }), "{}", e);
                return Ok(());
            }
            plan.apply_with(&mut kept, &mut Appender::Text(&mut raw)).unwrap();
            prop_assert_eq!(
                String::from_utf8(spec::to_vec(&kept, &raw)).unwrap(),
                serde_json::to_string(&built).unwrap()
            );
        }
    }

    #[test]
    fn any_env_value_parses_or_is_refused_without_panic(value in ".{0,40}", gpus in 0u32..5) {
        let inventory = host(gpus);
        let spec = serde_json::json!({"process": {"env": [format!("NVIDIA_VISIBLE_DEVICES={value}")]}});
        if let Some(chosen) = assignment(&spec, DefaultGpus::All, &inventory) {
            for g in chosen.gpus {
                prop_assert!(g < gpus);
            }
        }
    }
}

/// Subtrees the shim never reads, as text: numbers `Value` could not hold exactly, unicode
/// escapes, a big array, and (the last) a key repeated where only runc reads it.
const RAW_SUBTREES: &[&str] = &[
    r#"{"n": 1e400, "f": 0.1000, "m": -0.0, "i": 123456789012345678901234567890}"#,
    r#"["\u00e9\ud83d\ude00", "tab\there", "\"quoted\"", "\/slash"]"#,
    r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["accept","bind","clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"op":"SCMP_CMP_MASKED_EQ"}]},{"names":["x"],"action":"SCMP_ACT_ALLOW"}]}"#,
    r#"{"k": 1, "k": {"deep": [1, {"k": 2, "k": 3}]}}"#,
];

/// `text` with `raw` as the first member of the object `"key": {` opens (the top level where
/// `key` is empty), in compact or pretty-printed text.
fn with_member(text: &str, key: &str, name: &str, raw: &str) -> String {
    let at = if key.is_empty() {
        Some(0)
    } else {
        [format!("\"{key}\":{{"), format!("\"{key}\": {{")]
            .iter()
            .find_map(|p| text.find(p.as_str()).map(|i| i + p.len() - 1))
    };
    match at {
        Some(i) => format!("{}{{\"{name}\": {raw},{}", &text[..i], &text[i + 1..]),
        None => text.to_owned(),
    }
}

/// The members of the object at `path` in `text`, as written.
fn members<'a>(text: &'a str, path: &[&str]) -> Vec<(String, &'a RawValue)> {
    let mut object: Vec<(String, &RawValue)> = Vec::new();
    let mut raw: &RawValue = serde_json::from_str(text).unwrap();
    for key in path {
        let Ok(map) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) else {
            return object;
        };
        match map.get(*key) {
            Some(v) => raw = *v,
            None => return object,
        }
    }
    if let Ok(map) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) {
        object = map.into_iter().collect();
    }
    object
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lazy_load_edit_save_is_the_full_one_and_keeps_raw_subtrees_byte_for_byte(
        original in spec(),
        gpus in 1u32..5,
        pretty in any::<bool>(),
        raws in prop::collection::vec((0..RAW_SUBTREES.len(), 0usize..3), 0..4),
        repeated_parsed_key in 0u8..8,
    ) {
        let mut text = if pretty {
            serde_json::to_string_pretty(&original).unwrap()
        } else {
            serde_json::to_string(&original).unwrap()
        };
        let mut repeated_raw = false;
        for (n, (raw, at)) in raws.iter().enumerate() {
            repeated_raw |= *raw == RAW_SUBTREES.len() - 1;
            text = with_member(&text, ["", "process", "linux"][*at], &format!("x-raw{n}"), RAW_SUBTREES[*raw]);
        }
        // A key repeated on a level the shim parses is refused by both readings.
        let repeated_parsed = repeated_parsed_key == 0;
        if repeated_parsed {
            text = with_member(&text, "process", "cwd", "\"/\"");
            text = with_member(&text, "process", "Cwd", "\"/\"");
        }
        let lazy = spec::parse(text.clone().into_bytes(), "config.json");
        let full = spec::parse_full(text.clone().into_bytes(), "config.json");
        if repeated_parsed {
            prop_assert!(lazy.is_err() && full.is_err());
            // Where a raw subtree comes first, the full reading refuses that instead.
            if !repeated_raw {
                prop_assert_eq!(lazy.unwrap_err().to_string(), full.unwrap_err().to_string());
            }
            return Ok(());
        }
        let (mut lazy_value, raw) = match lazy {
            Ok(l) => l,
            // The generated unknown fields may themselves repeat a key (or one that differs
            // only in case, which Go's decoder also merges) on a parsed level: both refuse.
            Err(e) => {
                prop_assert!(full.is_err(), "only the lazy reading refused: {}", e);
                return Ok(());
            }
        };
        // A key repeated in a raw subtree reaches runc as written: only the full reading refuses.
        if repeated_raw {
            prop_assert!(full.is_err());
        }
        let reference = full.ok();

        let inventory = host(gpus);
        let chosen = assignment(&lazy_value, DefaultGpus::All, &inventory);
        if let Some((full_value, _)) = &reference {
            prop_assert_eq!(&chosen, &assignment(full_value, DefaultGpus::All, &inventory));
        }
        let plan = chosen.map(|c| Plan::new(&c, &inventory, Driver::Legacy(Hook::Present(PathBuf::from("/usr/bin/nvidia-container-runtime-hook")))));
        let applied = plan.as_ref().map(|p| {
            spec::expand(&mut lazy_value, &raw, &p.paths(), "config.json").map_err(|e| e.to_string())?;
            p.apply(&mut lazy_value).map_err(|e| e.to_string())
        });
        let out = spec::to_vec(&lazy_value, &raw);
        let out_text = std::str::from_utf8(&out).unwrap();
        // A create keeps the entries it adds as text: the same bytes.
        if let Some(p) = &plan {
            let (mut kept, mut kept_raw) = spec::parse(text.clone().into_bytes(), "config.json").unwrap();
            let kept_applied = spec::expand(&mut kept, &kept_raw, &p.paths(), "config.json")
                .map_err(|e| e.to_string())
                .and_then(|()| p.apply_with(&mut kept, &mut Appender::Text(&mut kept_raw)).map_err(|e| e.to_string()));
            prop_assert_eq!(&applied, &Some(kept_applied));
            let kept_out = spec::to_vec(&kept, &kept_raw);
            prop_assert_eq!(std::str::from_utf8(&kept_out).unwrap(), out_text);
        }

        if let Some((mut full_value, full_raw)) = reference {
            let full_applied = plan.as_ref().map(|p| p.apply(&mut full_value).map_err(|e| e.to_string()));
            prop_assert_eq!(&applied, &full_applied);
            let full_out = spec::to_vec(&full_value, &full_raw);
            prop_assert_eq!(
                serde_json::from_slice::<Value>(&out).unwrap(),
                serde_json::from_slice::<Value>(&full_out).unwrap()
            );
        }
        // Every member the shim does not parse is the input's own text.
        for path in [&[][..], &["process"], &["linux"]] {
            let before = members(&text, path);
            let after = members(out_text, path);
            for (key, raw_before) in &before {
                let mut full_path: Vec<&str> = path.to_vec();
                full_path.push(key);
                let parsed = spec::PARSED.iter().any(|p| p.starts_with(&full_path));
                if parsed || (path.is_empty() && (key == "process" || key == "linux")) {
                    continue;
                }
                let raw_after = after.iter().find(|(k, _)| k == key).map(|(_, v)| v.get());
                prop_assert_eq!(Some(raw_before.get()), raw_after, "{} in {}", key, out_text);
            }
        }
    }
}
