//! The digest's file: a checksummed text a create reads without scanning it, and of which it
//! parses only the devices it needs.
//!
//! ```text
//! gpu-share cdi digest 3 <checksum, 16 hex> <body length>\n         header
//! k <path> <mtime_s> <mtime_ns> <size> <ino>\n  a key (stat fields `-` where the file is missing)
//! p <problem>\n                                  why the specs cannot be used, where they cannot
//! s <path> <start> <end>\n                       a spec and its common edits' block
//! d <name> <spec> <start> <end>\n                a device, its spec's index and its edits' block
//! \n                                             end of the index; the blocks follow
//! e <env>\n
//! n <path> <hostPath> <type> <major> <minor> <fileMode> <uid> <gid>\n
//! m <hostPath> <containerPath> <type> <option>...\n   (containerPath `-`: the same as hostPath)
//! M <hostPath> <containerPath> <type>\n                 the options of the mount line before it
//! h <hookName> <path> <timeout> <count of args> <arg>... <env>...\n
//! ```
//! (shown with spaces; each field is `<length>:<bytes>`, or `-` for none, with nothing between:
//! `text`). Block ranges count from the first byte after the index. Devices with the same edits
//! (`0` and its UUID) share one block.
//!
//! Owns the encoding and the reading of it, nothing else: never a file, a stat or a spec.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::digest::{Digest, Key, Stat};
use super::edits::{CdiHook, CdiMount, CdiNode, ContainerEdits};
use super::text::{checksum, field_into, num_into, opt_into, Reader};

/// The header's start; the number is the format's version: another one is rebuilt, never read.
const MAGIC: &str = "gpu-share cdi digest 3 ";

/// A spec in the index: its path and its common edits' block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecEntry {
    pub path: PathBuf,
    block: Range<usize>,
}

/// A device in the index: its name, its spec (an index into `specs`) and its edits' block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub name: String,
    pub spec: usize,
    block: Range<usize>,
}

/// A digest as its file holds it: the index read, the edits left as text until asked for.
#[derive(Debug, Clone)]
pub struct Packed {
    text: String,
    /// Where the blocks start in `text`.
    base: usize,
    pub keys: Vec<Key>,
    pub problem: Option<String>,
    pub specs: Vec<SpecEntry>,
    pub devices: Vec<DeviceEntry>,
}

/// An encoded digest; `exact` is false where a path was not UTF-8 and was written lossily (such
/// a digest is used once, in memory, and not saved: its keys would never match).
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub exact: bool,
}

/// The file for `digest`.
pub fn encode(digest: &Digest) -> Encoded {
    let mut exact = true;
    let mut path_into = |out: &mut String, p: &Path| {
        exact &= p.to_str().is_some();
        field_into(out, &p.to_string_lossy());
    };
    let mut index = String::with_capacity(1024);
    let mut blocks = String::with_capacity(8192);
    for k in &digest.keys {
        index.push('k');
        path_into(&mut index, &k.path);
        let s = k.stat;
        num_into(&mut index, s.map(|s| s.mtime_s));
        num_into(&mut index, s.map(|s| s.mtime_ns));
        num_into(&mut index, s.map(|s| s.size));
        num_into(&mut index, s.map(|s| s.ino));
        index.push('\n');
    }
    if let Some(problem) = &digest.problem {
        index.push('p');
        field_into(&mut index, problem);
        index.push('\n');
    }
    let mut written: Vec<Range<usize>> = Vec::new();
    for s in &digest.specs {
        let r = block(&mut blocks, &mut written, &s.edits);
        index.push('s');
        path_into(&mut index, &s.path);
        num_into(&mut index, Some(r.start));
        num_into(&mut index, Some(r.end));
        index.push('\n');
    }
    for d in &digest.devices {
        let r = block(&mut blocks, &mut written, &d.edits);
        index.push('d');
        field_into(&mut index, &d.name);
        num_into(&mut index, Some(d.spec));
        num_into(&mut index, Some(r.start));
        num_into(&mut index, Some(r.end));
        index.push('\n');
    }
    index.push('\n');
    index.push_str(&blocks);
    let header = format!(
        "{MAGIC}{:016x} {}\n",
        checksum(index.as_bytes()),
        index.len()
    );
    let mut bytes = header.into_bytes();
    bytes.extend_from_slice(index.as_bytes());
    Encoded { bytes, exact }
}

/// Appends `edits` as a block, or finds the same block already written; returns its range.
fn block(
    out: &mut String,
    written: &mut Vec<Range<usize>>,
    edits: &ContainerEdits,
) -> Range<usize> {
    let start = out.len();
    for e in &edits.env {
        out.push('e');
        field_into(out, e);
        out.push('\n');
    }
    for n in &edits.device_nodes {
        out.push('n');
        field_into(out, &n.path);
        opt_into(out, n.host_path.as_deref());
        opt_into(out, n.kind.as_deref());
        num_into(out, n.major);
        num_into(out, n.minor);
        num_into(out, n.file_mode);
        num_into(out, n.uid);
        num_into(out, n.gid);
        out.push('\n');
    }
    // nvidia-ctk gives every mount the same options, and most a container path that is the
    // host path: each is written (and parsed) once.
    let mut before: Option<&[String]> = None;
    for m in &edits.mounts {
        let same_options = before == Some(m.options.as_slice());
        out.push(if same_options { 'M' } else { 'm' });
        field_into(out, &m.host_path);
        opt_into(
            out,
            Some(m.container_path.as_str()).filter(|c| *c != m.host_path),
        );
        opt_into(out, m.kind.as_deref());
        if !same_options {
            for o in &m.options {
                field_into(out, o);
            }
        }
        out.push('\n');
        before = Some(&m.options);
    }
    for h in &edits.hooks {
        out.push('h');
        field_into(out, &h.hook_name);
        field_into(out, &h.path);
        num_into(out, h.timeout);
        num_into(out, Some(h.args.len()));
        for a in h.args.iter().chain(&h.env) {
            field_into(out, a);
        }
        out.push('\n');
    }
    let new = start..out.len();
    if let Some(same) = written
        .iter()
        .find(|r| out[(*r).clone()] == out[new.clone()])
    {
        let same = same.clone();
        out.truncate(start);
        return same;
    }
    written.push(new.clone());
    new
}

impl Packed {
    /// Reads a digest file; `None` where it is of another version, damaged or malformed.
    pub fn parse(bytes: Vec<u8>) -> Option<Packed> {
        let rest = bytes.strip_prefix(MAGIC.as_bytes())?;
        let eol = rest.iter().take(64).position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&rest[..eol]).ok()?;
        let (sum, len) = header.split_once(' ')?;
        let body_at = MAGIC.len() + eol + 1;
        let body = &bytes[body_at..];
        if len.parse::<usize>().ok()? != body.len()
            || u64::from_str_radix(sum, 16).ok()? != checksum(body)
        {
            return None;
        }
        let text = String::from_utf8(bytes).ok()?;
        let mut packed = Packed {
            text: String::new(),
            base: 0,
            keys: Vec::new(),
            problem: None,
            specs: Vec::new(),
            devices: Vec::new(),
        };
        let mut r = Reader::new(text.get(body_at..)?);
        while !r.end_of_line() {
            packed.index_line(&mut r)?;
        }
        packed.base = body_at + r.at();
        let blocks = text.get(packed.base..)?;
        let specs = packed.specs.len();
        if !packed
            .specs
            .iter()
            .all(|s| blocks.get(s.block.clone()).is_some())
            || !packed
                .devices
                .iter()
                .all(|d| d.spec < specs && blocks.get(d.block.clone()).is_some())
        {
            return None;
        }
        packed.text = text;
        Some(packed)
    }

    fn index_line(&mut self, r: &mut Reader) -> Option<()> {
        match r.byte()? {
            b'k' => {
                let path = PathBuf::from(r.field()?);
                let (s, ns, size, ino) = (r.opt_num()?, r.opt_num()?, r.opt_num()?, r.opt_num()?);
                let stat = match (s, ns, size, ino) {
                    (Some(mtime_s), Some(mtime_ns), Some(size), Some(ino)) => Some(Stat {
                        mtime_s,
                        mtime_ns,
                        size,
                        ino,
                    }),
                    (None, None, None, None) => None,
                    _ => return None,
                };
                self.keys.push(Key { path, stat });
            }
            b'p' => self.problem = Some(r.owned()?),
            b's' => {
                let path = PathBuf::from(r.field()?);
                let block = r.num()?..r.num()?;
                self.specs.push(SpecEntry { path, block });
            }
            b'd' => {
                let (name, spec) = (r.owned()?, r.num()?);
                let block = r.num()?..r.num()?;
                self.devices.push(DeviceEntry { name, spec, block });
            }
            _ => return None,
        }
        r.end_of_line().then_some(())
    }

    fn block(&self, block: &Range<usize>) -> Reader<'_> {
        let (start, end) = (self.base + block.start, self.base + block.end);
        Reader::new(self.text.get(start..end).unwrap_or_default())
    }

    /// Whether device `device` gives the node `path` (its `deviceNodes[].path`).
    pub fn gives_node(&self, device: usize, path: &str) -> bool {
        let Some(d) = self.devices.get(device) else {
            return false;
        };
        let mut r = self.block(&d.block);
        while !r.is_done() {
            match line(&mut r) {
                Some(Line::Node(n)) if n.path == path => return true,
                Some(_) => {}
                None => return false,
            }
        }
        false
    }

    /// The common edits of spec `i`; `None` where its block does not read.
    pub fn spec_edits(&self, i: usize) -> Option<ContainerEdits> {
        self.edits(&self.specs.get(i)?.block)
    }

    /// The edits of device `i`; `None` where its block does not read.
    pub fn device_edits(&self, i: usize) -> Option<ContainerEdits> {
        self.edits(&self.devices.get(i)?.block)
    }

    fn edits(&self, block: &Range<usize>) -> Option<ContainerEdits> {
        let mut edits = ContainerEdits::default();
        // A mount's line is longer than 64 bytes: room for every mount of the block at once (a
        // growing list would be copied, and each old copy left behind in the runtime's arena).
        edits.mounts.reserve(block.len() / 64);
        let mut r = self.block(block);
        while !r.is_done() {
            match line(&mut r)? {
                Line::Env(e) => edits.env.push(e),
                Line::Node(n) => edits.device_nodes.push(n),
                Line::Mount(m) => edits.mounts.push(m),
                Line::SameOptions(mut m) => {
                    m.options = edits.mounts.last()?.options.clone();
                    edits.mounts.push(m);
                }
                Line::Hook(h) => edits.hooks.push(h),
            }
        }
        Some(edits)
    }
}

enum Line {
    Env(String),
    Node(CdiNode),
    Mount(CdiMount),
    /// A mount whose options are the previous mount's.
    SameOptions(CdiMount),
    Hook(CdiHook),
}

/// One line of a block, newline included.
fn line(r: &mut Reader) -> Option<Line> {
    let line = match r.byte()? {
        b'e' => Line::Env(r.owned()?),
        b'n' => Line::Node(CdiNode {
            path: r.owned()?,
            host_path: r.opt_owned()?,
            kind: r.opt_owned()?,
            major: r.opt_num()?,
            minor: r.opt_num()?,
            file_mode: r.opt_num()?,
            uid: r.opt_num()?,
            gid: r.opt_num()?,
        }),
        tag @ (b'm' | b'M') => {
            let host_path = r.owned()?;
            let container_path = r.opt()?.map_or_else(|| host_path.clone(), str::to_owned);
            let mut mount = CdiMount {
                host_path,
                container_path,
                kind: r.opt_owned()?,
                options: Vec::new(),
            };
            if tag == b'M' {
                return r.end_of_line().then_some(Line::SameOptions(mount));
            }
            mount.options.reserve_exact(8);
            r.rest_owned(&mut mount.options)?;
            return Some(Line::Mount(mount));
        }
        b'h' => {
            let (hook_name, path, timeout) = (r.owned()?, r.owned()?, r.opt_num()?);
            let args_len: usize = r.num()?;
            let mut args = Vec::with_capacity(args_len.min(64));
            for _ in 0..args_len {
                args.push(r.owned()?);
            }
            let mut env = Vec::new();
            r.rest_owned(&mut env)?;
            return Some(Line::Hook(CdiHook {
                hook_name,
                path,
                args,
                env,
                timeout,
            }));
        }
        _ => return None,
    };
    r.end_of_line().then_some(line)
}

#[cfg(test)]
pub mod tests;
