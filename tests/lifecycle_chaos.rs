//! Kill -9 at random instants of create, remove, rename, resize and space reuse: the store always
//! opens, lists every entry, and holds exactly the committed ones (the operation in flight either
//! happened completely or not at all), and later operations never hand out overlapping space.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{emit, temp_store, ChildArgs, ChildProc, Rng};
use shmstore::{Error, Store};

const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "churn" => role_churn(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// One operation on the store, as the child reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Create { name: String, len: u64, tag: u64 },
    Remove { name: String },
    Rename { from: String, to: String },
    Resize { name: String, len: u64 },
}

impl Op {
    fn encode(&self) -> String {
        match self {
            Op::Create { name, len, tag } => format!("create {name} {len} {tag}"),
            Op::Remove { name } => format!("remove {name}"),
            Op::Rename { from, to } => format!("rename {from} {to}"),
            Op::Resize { name, len } => format!("resize {name} {len}"),
        }
    }

    fn decode(line: &str) -> Op {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[0] {
            "create" => Op::Create { name: w[1].into(), len: w[2].parse().unwrap(), tag: w[3].parse().unwrap() },
            "remove" => Op::Remove { name: w[1].into() },
            "rename" => Op::Rename { from: w[1].into(), to: w[2].into() },
            "resize" => Op::Resize { name: w[1].into(), len: w[2].parse().unwrap() },
            other => panic!("unknown op {other}"),
        }
    }

    /// The model after this operation, if it succeeds on `model`.
    fn apply(&self, model: &BTreeMap<String, (u64, u64)>) -> Option<BTreeMap<String, (u64, u64)>> {
        let mut m = model.clone();
        match self {
            Op::Create { name, len, tag } => {
                if m.contains_key(name) {
                    return None;
                }
                m.insert(name.clone(), (*len, *tag));
            }
            Op::Remove { name } => {
                m.remove(name)?;
            }
            Op::Rename { from, to } => {
                if m.contains_key(to) {
                    return None;
                }
                let v = m.remove(from)?;
                m.insert(to.clone(), v);
            }
            Op::Resize { name, len } => {
                // The fill is the first element's tag: 0 for an empty array.
                let e = m.get_mut(name)?;
                if e.0 == 0 {
                    e.1 = 0;
                }
                e.0 = *len;
            }
        }
        Some(m)
    }
}

/// Runs random operations for ever: arrays of u64 whose every element is the entry's tag (a
/// resize fills with the tag too), reporting `do OP` before each and `ok` or `err` after.
fn role_churn(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let mut rng = Rng::new(args.arg.parse().unwrap());
    emit("ready");
    loop {
        let name = NAMES[(rng.next_u64() % NAMES.len() as u64) as usize].to_owned();
        let len = [0u64, 1, 100, 600, 5000, 70_000][(rng.next_u64() % 6) as usize];
        let op = match rng.next_u64() % 4 {
            0 => Op::Create { name, len, tag: rng.next_u64() % 1000 + 1 },
            1 => Op::Remove { name },
            2 => Op::Rename { from: name, to: NAMES[(rng.next_u64() % NAMES.len() as u64) as usize].to_owned() },
            _ => Op::Resize { name, len },
        };
        emit(format!("do {}", op.encode()));
        let result = match &op {
            Op::Create { name, len, tag } => match store.array::<u64>(name) {
                Ok(_) => Err(Error::NameTaken { from: name.clone(), to: name.clone() }),
                Err(_) => store.array_or_init::<u64>(name, *len as usize, *tag).map(|_| ()),
            },
            Op::Remove { name } => store.remove(name),
            Op::Rename { from, to } if from == to => Err(Error::NameTaken { from: from.clone(), to: to.clone() }),
            Op::Rename { from, to } => store.rename(from, to),
            Op::Resize { name, len } => store.array::<u64>(name).and_then(|mut a| {
                let tag = if a.is_empty() { 0 } else { a.get(0)? };
                a.resize(*len as usize, tag)
            }),
        };
        emit(if result.is_ok() { "ok" } else { "err" });
    }
}

/// What the store holds: name -> (len, tag), checking that every element carries the tag.
fn observe(path: &std::path::Path) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let store = Store::open(path).map_err(|e| format!("open: {e}"))?;
    // A kill at any instant leaves free lists that `shmstore verify` accepts (space may leak,
    // but no node is damaged, loops or lies over a live entry).
    store.check_free_lists().map_err(|e| format!("free lists: {e}"))?;
    let mut out = BTreeMap::new();
    for info in store.entries().map_err(|e| format!("entries: {e}"))? {
        let a = store.array::<u64>(&info.name).map_err(|e| format!("{}: {e}", info.name))?;
        let values = a.read().map_err(|e| format!("{}: {e}", info.name))?;
        let tag = values.first().copied().unwrap_or(0);
        if let Some(i) = values.iter().position(|&v| v != tag) {
            return Err(format!("{}[{i}] is {} where {} was written", info.name, values[i], tag));
        }
        out.insert(info.name.clone(), (values.len() as u64, tag));
    }
    Ok(out)
}

#[test]
fn killing_a_process_during_remove_rename_resize_and_reuse_keeps_every_committed_entry() {
    let kills: u64 = std::env::var("SHMSTORE_LIFECYCLE_KILLS").map(|v| v.parse().unwrap()).unwrap_or(40);
    let mut rng = Rng::new(0x6c69_6665);
    let (_dir, path) = temp_store();
    drop(Store::open_or_create(&path, 1 << 20).unwrap());
    // The model: name -> (len, tag); an empty array's tag is 0.
    let mut model: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let normal = |m: &BTreeMap<String, (u64, u64)>| -> BTreeMap<String, (u64, u64)> {
        m.iter().map(|(k, &(len, tag))| (k.clone(), (len, if len == 0 { 0 } else { tag }))).collect()
    };
    let (mut in_flight, mut ops) = (0, 0);
    for round in 0..kills {
        let mut child = ChildProc::spawn("churn", &path, &(round + 1).to_string());
        child.expect("ready");
        // Chooses the instant of the kill; nothing depends on the child having reached any point.
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 20_000));
        let (status, stderr) = child.kill_and_stderr();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "round {round}: the child ended by itself:\n{stderr}");
        let messages = child.wait_exit().messages;

        let mut pending: Option<Op> = None;
        for m in &messages {
            if let Some(op) = m.strip_prefix("do ") {
                pending = Some(Op::decode(op));
            } else if m == "ok" {
                let op = pending.take().expect("ok after do");
                model = op.apply(&model).unwrap_or_else(|| panic!("round {round}: {op:?} succeeded against {model:?}"));
                ops += 1;
            } else if m == "err" {
                pending = None;
            }
        }
        let seen = observe(&path).unwrap_or_else(|e| panic!("round {round}: the store is broken: {e}"));
        let before = normal(&model);
        let after = pending.as_ref().and_then(|op| op.apply(&model)).map(|m| normal(&m));
        if seen == before {
        } else if Some(&seen) == after.as_ref() {
            model = pending.as_ref().unwrap().apply(&model).unwrap();
            in_flight += 1;
        } else {
            panic!("round {round}: the store holds {seen:?}; committed {before:?}; in flight {pending:?} -> {after:?}");
        }
    }
    eprintln!("lifecycle chaos: {kills} kills, {ops} operations reported, {in_flight} committed in flight");
    assert!(ops > kills, "the kills landed before any operation ran");
    // The store still works, and allocation after all those kills never overlaps: a new array
    // per name, each with its own tag, reads back intact.
    let store = Store::open(&path).unwrap();
    for (i, name) in ["x1", "x2", "x3", "x4"].iter().enumerate() {
        store.array_or_init::<u64>(name, 3000, i as u64 + 7).unwrap();
    }
    let seen = observe(&path).unwrap();
    for (i, name) in ["x1", "x2", "x3", "x4"].iter().enumerate() {
        assert_eq!(seen[*name], (3000, i as u64 + 7));
    }
}

/// Two processes create, remove, rename and resize entries while this one looks them up and
/// reads them: a lookup finds an entry or not, and a handle reads its own values or learns that
/// the entry is gone; nothing reads as damaged, and no array mixes two entries' values.
#[test]
fn lookups_racing_with_other_processes_changes_see_whole_entries() {
    let (_dir, path) = temp_store();
    drop(Store::open_or_create(&path, 1 << 20).unwrap());
    let mut churners: Vec<ChildProc> =
        (0..2).map(|i| ChildProc::spawn("churn", &path, &(100 + i).to_string())).collect();
    for c in &mut churners {
        c.expect("ready");
    }
    let store = Store::open(&path).unwrap();
    let (mut found, mut gone) = (0u64, 0u64);
    for i in 0..20_000usize {
        let name = NAMES[i % NAMES.len()];
        match store.array::<u64>(name) {
            Ok(a) => match a.read() {
                Ok(values) => {
                    let tag = values.first().copied().unwrap_or(0);
                    assert!(values.iter().all(|&v| v == tag), "`{name}` mixes values");
                    found += 1;
                }
                Err(Error::Removed { .. } | Error::Moved { .. }) => gone += 1,
                Err(e) => panic!("reading `{name}`: {e}"),
            },
            Err(Error::NotFound { .. }) => gone += 1,
            Err(e) => panic!("looking up `{name}`: {e}"),
        }
    }
    for c in &mut churners {
        let (status, stderr) = c.kill_and_stderr();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "a churner ended by itself:\n{stderr}");
    }
    eprintln!("racing lookups: {found} found, {gone} not found or gone");
    assert!(found > 0);
    observe(&path).unwrap();
}
