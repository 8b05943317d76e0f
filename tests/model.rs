//! Model-based test: random sequences of array operations against a `Vec<u32>` model, including
//! out-of-bounds operations that must fail and change nothing.

mod common;

use proptest::prelude::*;
use proptest::test_runner::Config;
use shmstore::{Error, SharedArray, Store};

#[derive(Debug, Clone)]
enum Op {
    WriteAt(usize, Vec<u32>),
    ReadAt(usize, usize),
    Set(usize, u32),
    Get(usize),
    Update(usize, usize, u32),
    Reopen,
}

/// Indices mostly near the array (so that both in-bounds and just-out-of-bounds are common), and
/// sometimes huge (to exercise overflow of index + length).
fn index() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..40,
        1 => Just(usize::MAX),
        1 => (usize::MAX - 4)..=usize::MAX,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (index(), prop::collection::vec(any::<u32>(), 0..12)).prop_map(|(i, v)| Op::WriteAt(i, v)),
        3 => (index(), 0usize..12).prop_map(|(i, n)| Op::ReadAt(i, n)),
        3 => (index(), any::<u32>()).prop_map(|(i, v)| Op::Set(i, v)),
        3 => index().prop_map(Op::Get),
        2 => (index(), 0usize..8, any::<u32>()).prop_map(|(i, n, d)| Op::Update(i, n, d)),
        1 => Just(Op::Reopen),
    ]
}

fn in_bounds(len: usize, index: usize, count: usize) -> bool {
    index.checked_add(count).is_some_and(|end| end <= len)
}

fn check_oob(result: shmstore::Result<()>, len: usize, index: usize, count: usize) -> Result<(), TestCaseError> {
    match result {
        Err(Error::OutOfBounds { start, end, len: l, name, .. }) => {
            prop_assert_eq!(name, "arr");
            prop_assert_eq!(start, index as u64);
            prop_assert_eq!(end, (index as u64).saturating_add(count as u64));
            prop_assert_eq!(l, len as u64);
            Ok(())
        }
        other => Err(TestCaseError::fail(format!("expected OutOfBounds at {index}+{count} of {len}, got {other:?}"))),
    }
}

fn run(len: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (_dir, path) = common::temp_store();
    let mut store = Store::open_or_create(&path, 1 << 20).unwrap();
    let mut arr: SharedArray<u32> = store.array_or_init("arr", len, 0xAAAA_AAAA).unwrap();
    let mut model = vec![0xAAAA_AAAAu32; len];

    for op in ops {
        match op {
            Op::WriteAt(i, values) => {
                let result = arr.write_at(i, &values);
                if in_bounds(len, i, values.len()) {
                    prop_assert!(result.is_ok(), "{:?}", result);
                    model[i..i + values.len()].copy_from_slice(&values);
                } else {
                    check_oob(result, len, i, values.len())?;
                }
            }
            Op::ReadAt(i, n) => {
                let mut buf = vec![0x5555_5555u32; n];
                let result = arr.read_at(i, &mut buf);
                if in_bounds(len, i, n) {
                    prop_assert!(result.is_ok(), "{:?}", result);
                    prop_assert_eq!(&buf[..], &model[i..i + n]);
                } else {
                    check_oob(result, len, i, n)?;
                    prop_assert!(buf.iter().all(|&x| x == 0x5555_5555), "a failed read_at touched the buffer");
                }
            }
            Op::Set(i, v) => {
                let result = arr.set(i, v);
                if in_bounds(len, i, 1) {
                    prop_assert!(result.is_ok(), "{:?}", result);
                    model[i] = v;
                } else {
                    check_oob(result, len, i, 1)?;
                }
            }
            Op::Get(i) => {
                let result = arr.get(i);
                if in_bounds(len, i, 1) {
                    prop_assert_eq!(result.ok(), Some(model[i]));
                } else {
                    check_oob(result.map(drop), len, i, 1)?;
                }
            }
            Op::Update(i, n, delta) => {
                let mut ran = false;
                let result = arr.update(i, n, |xs| {
                    ran = true;
                    xs.iter_mut().for_each(|x| *x = x.wrapping_add(delta));
                    xs.len()
                });
                if in_bounds(len, i, n) {
                    prop_assert_eq!(result.ok(), Some(n));
                    model[i..i + n].iter_mut().for_each(|x| *x = x.wrapping_add(delta));
                } else {
                    prop_assert!(!ran, "update ran its closure out of bounds");
                    check_oob(result.map(drop), len, i, n)?;
                }
            }
            Op::Reopen => {
                drop(arr);
                store.close().unwrap();
                store = Store::open(&path).unwrap();
                arr = store.array("arr").unwrap();
                prop_assert_eq!(arr.len(), len);
            }
        }
        // After every operation the whole array matches the model.
        prop_assert_eq!(&arr.read().unwrap()[..], &model[..]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 256, failure_persistence: None, ..Config::default() })]

    #[test]
    fn array_matches_a_vec_model(len in 0usize..32, ops in prop::collection::vec(op(), 1..40)) {
        run(len, ops)?;
    }
}

#[test]
fn model_sanity_check() {
    // The harness itself: a fixed sequence with known outcomes.
    run(
        4,
        vec![
            Op::WriteAt(1, vec![1, 2, 3]),
            Op::WriteAt(2, vec![9, 9, 9]),
            Op::Set(4, 1),
            Op::Update(3, 1, 10),
            Op::Reopen,
            Op::ReadAt(0, 4),
            Op::Get(usize::MAX),
        ],
    )
    .unwrap();
}
