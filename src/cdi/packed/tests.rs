use super::*;
use crate::cdi::digest::{DigestDevice, DigestSpec};

fn sample() -> Digest {
    let node = |path: &str| CdiNode {
        path: path.to_owned(),
        host_path: Some(format!("/host{path}")),
        ..CdiNode::default()
    };
    let common = ContainerEdits {
        env: vec!["NVIDIA_VISIBLE_DEVICES=void".into(), "TAB=a\tb\\n".into()],
        device_nodes: vec![
            node("/dev/nvidiactl"),
            CdiNode {
                path: "/dev/nvidia-caps/nvidia-cap1".into(),
                host_path: Some(String::new()),
                kind: Some("c".into()),
                major: Some(508),
                minor: Some(1),
                file_mode: Some(0o100640),
                uid: Some(0),
                gid: Some(u32::MAX),
            },
        ],
        mounts: vec![
            CdiMount {
                host_path: "/usr/lib64/libcuda.so.1".into(),
                container_path: "/usr/lib64/libcuda.so.1".into(),
                kind: Some("bind".into()),
                options: vec!["ro".into(), String::new(), "nosuid".into()],
            },
            CdiMount {
                host_path: "/host/usr/bin/nvidia-smi".into(),
                container_path: "/usr/bin/nvidia-smi".into(),
                kind: None,
                options: vec!["ro".into(), String::new(), "nosuid".into()],
            },
            CdiMount {
                host_path: "/a".into(),
                container_path: "-".into(),
                kind: None,
                options: Vec::new(),
            },
            CdiMount {
                host_path: "/b".into(),
                container_path: "/b".into(),
                kind: None,
                options: Vec::new(),
            },
        ],
        hooks: vec![CdiHook {
            hook_name: "createContainer".into(),
            path: "/usr/bin/nvidia-cdi-hook".into(),
            args: vec!["nvidia-cdi-hook".into(), "update-ldcache".into()],
            env: vec!["NVIDIA_CTK_DEBUG=false".into()],
            timeout: Some(-5),
        }],
    };
    let gpu = |name: &str, n: &str| DigestDevice {
        name: name.into(),
        spec: 0,
        edits: ContainerEdits {
            device_nodes: vec![node(n)],
            ..ContainerEdits::default()
        },
    };
    Digest {
        keys: vec![
            Key {
                path: "/etc/cdi".into(),
                stat: None,
            },
            Key {
                path: "/var/run/cdi/nvidia\tx.yaml".into(),
                stat: Some(Stat {
                    mtime_s: -3,
                    mtime_ns: 999_999_999,
                    size: 15_000,
                    ino: u64::MAX,
                }),
            },
        ],
        specs: vec![DigestSpec {
            path: "/var/run/cdi/nvidia\tx.yaml".into(),
            edits: common,
        }],
        devices: vec![
            gpu("0", "/dev/nvidia0"),
            gpu("GPU-0", "/dev/nvidia0"),
            gpu("gpu\n1", "/dev/nvidia1"),
        ],
        problem: None,
    }
}

#[test]
fn a_digest_reads_back_as_it_was_built() {
    let digest = sample();
    let encoded = encode(&digest);
    assert!(encoded.exact);
    let packed = Packed::parse(encoded.bytes).unwrap();
    assert_eq!(packed.keys, digest.keys);
    assert_eq!(packed.problem, None);
    assert_eq!(packed.specs[0].path, digest.specs[0].path);
    assert_eq!(packed.spec_edits(0).unwrap(), digest.specs[0].edits);
    for (i, d) in digest.devices.iter().enumerate() {
        assert_eq!(packed.devices[i].name, d.name);
        assert_eq!(packed.devices[i].spec, d.spec);
        assert_eq!(packed.device_edits(i).unwrap(), d.edits);
    }
    assert!(packed.gives_node(2, "/dev/nvidia1"));
    assert!(!packed.gives_node(2, "/dev/nvidia0"));
    assert!(!packed.gives_node(9, "/dev/nvidia0"));
    // Devices with the same edits share one block.
    assert_eq!(packed.devices[0].block, packed.devices[1].block);
}

#[test]
fn a_recorded_problem_reads_back() {
    let digest = Digest {
        problem: Some("CDI spec x: not a valid spec:\ttab".into()),
        ..sample()
    };
    let packed = Packed::parse(encode(&digest).bytes).unwrap();
    assert_eq!(packed.problem, digest.problem);
}

#[test]
fn any_damage_or_another_version_is_refused_without_panicking() {
    let bytes = encode(&sample()).bytes;
    for cut in 0..bytes.len() {
        assert!(
            Packed::parse(bytes[..cut].to_vec()).is_none(),
            "cut at {cut}"
        );
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert!(Packed::parse(b).is_none(), "byte {i}");
    }
    let older = String::from_utf8(bytes)
        .unwrap()
        .replacen(MAGIC, "gpu-share cdi digest 2 ", 1);
    assert!(Packed::parse(older.into_bytes()).is_none());
    assert!(Packed::parse(b"{\"version\":1,".to_vec()).is_none());
}

/// `body` behind a header whose checksum and length hold, for tests that need a digest `encode`
/// would not write.
pub fn seal(body: &str) -> Vec<u8> {
    let mut b = format!("{MAGIC}{:016x} {}\n", checksum(body.as_bytes()), body.len());
    b.push_str(body);
    b.into_bytes()
}

/// The body of an encoded digest (what follows the header).
pub fn body(bytes: &[u8]) -> &str {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split_once('\n').unwrap().1
}

/// A file whose checksum holds but whose content is not what `encode` writes (a writer's bug,
/// or a hand edit that fixed the checksum): the index is refused, a bad block reads as `None`.
#[test]
fn a_well_summed_but_malformed_digest_is_refused() {
    let sealed = |body: &str| Packed::parse(seal(body));
    assert!(sealed("\n").is_some());
    assert!(sealed("k2:/a----\ns2:/a1:01:0\n\n").is_some());
    for bad_index in [
        "x1:a\n\n",
        "k2:/a1:11:2--\n\n",
        "k2:/a----1:x\n\n",
        "s2:/a1:01:9\n\n",
        "s2:/a1:01:1\nd1:n1:11:01:1\n\ne1:a\n",
        "s2:/a1:01:0\n",
        "p9:short\n\n",
        "p-\n\n",
    ] {
        assert!(sealed(bad_index).is_none(), "{bad_index:?}");
    }
    for bad_block in [
        "x1:y\n",
        "n12:/dev/nvidia0------\n",
        "n12:/dev/nvidia0--1:x----\n",
        "n12:/dev/nvidia0--------1:x\n",
        "m2:/a\n",
        "M2:/a--\n",
        "m2:/a--\nM2:/b--1:x\n",
        "h15:createContainer2:/p-1:31:a\n",
        "h15:createContainer2:/p-1:x\n",
        "e1:a",
        "e1:ab\n",
    ] {
        let body = format!(
            "s2:/a1:0{}:{}\n\n{bad_block}",
            bad_block.len().to_string().len(),
            bad_block.len()
        );
        let packed = sealed(&body).unwrap();
        assert_eq!(packed.spec_edits(0), None, "{bad_block:?}");
    }
}
