//! The seqlock and double-slot commit protocol of double-buffered objects, on its own.
//!
//! This module holds every atomic access and fence of the protocol that
//! [`commit`](crate::entry::commit) describes, and nothing else: no mapping, no locks, no system calls.
//! It is generic over the atomic word ([`Word`]), so that the library runs it on
//! `std::sync::atomic::AtomicU64` words in the mapping and the model check
//! (`shmstore/tests/loom.rs`, run with `RUSTFLAGS="--cfg loom"`) runs **the same functions, with
//! the same orderings**, on loom's atomics. The model includes this file by path, so it must not
//! refer to the rest of the crate.
//!
//! The protocol, for a sequence word `seq` and two slots of words:
//! - the active slot is `seq & 1`;
//! - [`commit`] (run by one writer at a time, under a lock that orders writers) loads `seq`,
//!   issues a release fence, copies the value into the inactive slot with relaxed stores, and
//!   stores `seq + 1` with release ordering: that store is the commit point;
//! - [`read`] loads `seq` (acquire), copies the active slot with relaxed loads, issues an acquire
//!   fence and loads `seq` again (relaxed); the copy is a committed value if `seq` did not move.
//!
//! Why a successful read is never torn: the reader's copy of slot `s & 1` can only be disturbed
//! by the second writer after the commit of `s` (the first one writes the other slot). That writer
//! starts after the first one's `seq` store (the lock orders them) and fences before its first
//! slot store, so a reader whose copy saw any of its bytes synchronises with that fence through
//! its own acquire fence, and then sees a `seq` past `s`.
//!
//! Everything is `#[inline(always)]` and generic: no dynamic dispatch reaches `Shared::load`.

use std::sync::atomic::{AtomicU64, Ordering};

/// An atomic 64-bit word and the fences and spin hint that go with it: the only operations the
/// protocol uses. Implemented for `std::sync::atomic::AtomicU64`, and by the model for loom's.
pub(crate) trait Word {
    /// An atomic load.
    fn load(&self, order: Ordering) -> u64;
    /// An atomic store.
    fn store(&self, value: u64, order: Ordering);
    /// A memory fence of this word's memory model.
    fn fence(order: Ordering);
    /// A hint that the caller is spinning (a scheduling point in a model).
    fn spin();
}

impl Word for AtomicU64 {
    #[inline(always)]
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }

    #[inline(always)]
    fn store(&self, value: u64, order: Ordering) {
        AtomicU64::store(self, value, order)
    }

    #[inline(always)]
    fn fence(order: Ordering) {
        std::sync::atomic::fence(order)
    }

    #[inline(always)]
    fn spin() {
        std::hint::spin_loop()
    }
}

/// The index (0 or 1) of the slot that is active when the sequence word holds `seq`.
#[inline(always)]
pub(crate) fn active(seq: u64) -> usize {
    (seq & 1) as usize
}

/// Loads one word of a slot, as every copy out of a slot does: relaxed, because the fences and
/// the sequence word order it.
#[inline(always)]
pub(crate) fn load_word<W: Word>(word: &W) -> u64 {
    word.load(Ordering::Relaxed)
}

/// Stores one word of a slot, as every copy into a slot does: relaxed, because the release fence
/// before the copy and the release store of `seq` after it order it.
#[inline(always)]
pub(crate) fn store_word<W: Word>(word: &W, value: u64) {
    word.store(value, Ordering::Relaxed)
}

/// Copies the words of a slot into `out` with [`load_word`]; the last word may be cut short.
/// `false`, with `out` untouched, if the words do not cover `out`.
#[inline(always)]
pub(crate) fn copy_out<W: Word>(words: &[W], out: &mut [u8]) -> bool {
    if words.len() < out.len().div_ceil(8) {
        return false;
    }
    let full = out.len() / 8;
    let mut chunks = out.chunks_exact_mut(8);
    for (chunk, word) in (&mut chunks).zip(words) {
        chunk.copy_from_slice(&load_word(word).to_ne_bytes());
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let n = tail.len();
        tail.copy_from_slice(&load_word(&words[full]).to_ne_bytes()[..n]);
    }
    true
}

/// Copies `bytes` into the words of a slot with [`store_word`]; the bytes of the last word past
/// the value become zero. `false`, with nothing written, if the words do not cover `bytes`.
#[inline(always)]
pub(crate) fn copy_in<W: Word>(words: &[W], bytes: &[u8]) -> bool {
    if words.len() < bytes.len().div_ceil(8) {
        return false;
    }
    for (chunk, word) in bytes.chunks(8).zip(words) {
        let mut buf = [0u8; 8];
        buf[..chunk.len()].copy_from_slice(chunk);
        store_word(word, u64::from_ne_bytes(buf));
    }
    true
}

/// An optimistic read: up to `tries` attempts to copy the active slot while no commit
/// intervenes.
///
/// Each attempt loads `seq` (acquire), calls `check` (which may stop the read with an error, for
/// example because the entry moved), copies the active slot with `copy`, fences (acquire) and
/// loads `seq` again. Returns the copy and the `seq` it belongs to from the first attempt in which
/// `seq` did not move, or `Ok(None)` if every attempt lost the race. `copy` must read the slot
/// only with [`load_word`] (as [`copy_out`] does); what it returns from a lost attempt is dropped.
#[inline(always)]
pub(crate) fn read<W: Word, R, E>(
    seq: &W,
    slots: [&[W]; 2],
    tries: u32,
    mut check: impl FnMut() -> Result<(), E>,
    mut copy: impl FnMut(&[W]) -> R,
) -> Result<Option<(R, u64)>, E> {
    for _ in 0..tries {
        let before = seq.load(Ordering::Acquire);
        check()?;
        // A select rather than an index: the slots stay in registers instead of being stored to
        // the stack as an array on every read.
        let value = copy(if active(before) == 0 { slots[0] } else { slots[1] });
        // Pairs with the release fence of the writer that might be refilling this slot: if `copy`
        // saw any of its stores, the load below sees the `seq` store that made this slot inactive.
        W::fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) == before {
            return Ok(Some((value, before)));
        }
        W::spin();
    }
    Ok(None)
}

/// A commit of `bytes`: run by one writer at a time, under a lock that orders writers.
///
/// Loads `seq`, gets the inactive slot from `slot` (given the `seq` value the commit will
/// publish), issues a release fence, copies `bytes` in with [`copy_in`], calls `written` (to sync
/// the slot to disk, say) and then stores the new `seq` with release ordering: the commit point.
/// Returns the published `seq`. An error from `slot` or `written`, or a slot too short for
/// `bytes` (reported through `short`), leaves `seq`, and so the committed value, untouched.
#[inline(always)]
pub(crate) fn commit<'w, W: Word + 'w, E>(
    seq: &W,
    bytes: &[u8],
    slot: impl FnOnce(u64) -> Result<&'w [W], E>,
    short: impl FnOnce() -> E,
    written: impl FnOnce() -> Result<(), E>,
) -> Result<u64, E> {
    // The sequence word only grows; it wraps (after 2^64 commits, or in a crafted file) rather
    // than overflow, and the slot alternation survives the wrap.
    let next = seq.load(Ordering::Relaxed).wrapping_add(1);
    let target = slot(next)?;
    // Pairs with the acquire fence of optimistic readers: one that reads any byte stored below
    // also reads the `seq` store of the commit that made this slot inactive.
    W::fence(Ordering::Release);
    if !copy_in(target, bytes) {
        return Err(short());
    }
    written()?;
    seq.store(next, Ordering::Release);
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(u64::MAX)).collect()
    }

    #[test]
    fn copies_round_trip_and_zero_the_tail() {
        let slot = words(2);
        let value: Vec<u8> = (1..=11).collect();
        assert!(copy_in(&slot, &value));
        let mut out = [0u8; 11];
        assert!(copy_out(&slot, &mut out));
        assert_eq!(out.as_slice(), value.as_slice());
        // The five bytes past the value in the last word are zero, not the old 0xff.
        let mut whole = [0xaau8; 16];
        assert!(copy_out(&slot, &mut whole));
        assert_eq!(&whole[11..], &[0; 5]);
        // Exactly whole words: nothing is cut.
        let mut eight = [0u8; 8];
        assert!(copy_out(&slot, &mut eight));
        assert_eq!(eight.as_slice(), &value[..8]);
    }

    #[test]
    fn short_slots_are_refused_untouched() {
        let slot = words(1);
        assert!(!copy_in(&slot, &[7; 9]));
        assert_eq!(slot[0].load(Ordering::Relaxed), u64::MAX, "a refused copy writes nothing");
        let mut out = [3u8; 9];
        assert!(!copy_out(&slot, &mut out));
        assert_eq!(out, [3; 9], "a refused copy reads nothing");
        // Empty values need no words.
        assert!(copy_in::<AtomicU64>(&[], &[]));
        assert!(copy_out::<AtomicU64>(&[], &mut []));
    }

    #[test]
    fn the_active_slot_is_the_low_bit() {
        assert_eq!((active(0), active(1), active(2), active(u64::MAX)), (0, 1, 0, 1));
    }

    #[test]
    fn commits_alternate_slots_and_publish_the_next_sequence() {
        let seq = AtomicU64::new(6);
        let slots = [words(1), words(1)];
        let mut asked = Vec::new();
        for (i, v) in [10u64, 11, 12].into_iter().enumerate() {
            let published = commit::<_, ()>(
                &seq,
                &v.to_ne_bytes(),
                |next| {
                    asked.push(next);
                    Ok(&slots[active(next)])
                },
                || (),
                || Ok(()),
            );
            assert_eq!(published, Ok(7 + i as u64));
            assert_eq!(seq.load(Ordering::Relaxed), 7 + i as u64);
            let read = read::<_, _, ()>(&seq, [&slots[0], &slots[1]], 1, || Ok(()), |w| load_word(&w[0]));
            assert_eq!(read, Ok(Some((v, 7 + i as u64))), "a read after a commit returns it");
        }
        assert_eq!(asked, [7, 8, 9]);
        // 7 and 9 went to slot 1, 8 to slot 0.
        assert_eq!((slots[1][0].load(Ordering::Relaxed), slots[0][0].load(Ordering::Relaxed)), (12, 11));
    }

    #[test]
    fn a_sequence_word_at_its_maximum_wraps_to_slot_zero() {
        let seq = AtomicU64::new(u64::MAX);
        let slots = [words(1), words(1)];
        let published = commit::<_, ()>(&seq, &5u64.to_ne_bytes(), |next| Ok(&slots[active(next)]), || (), || Ok(()));
        assert_eq!(published, Ok(0));
        assert_eq!(slots[0][0].load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_failed_commit_leaves_the_sequence_word() {
        let seq = AtomicU64::new(3);
        let slots = [words(1), words(1)];
        let no_slot = commit::<AtomicU64, &str>(&seq, &[1], |_| Err("outside"), || "short", || Ok(()));
        assert_eq!(no_slot, Err("outside"));
        let short = commit(&seq, &[1; 9], |next| Ok(&slots[active(next)]), || "short", || Ok(()));
        assert_eq!(short, Err("short"));
        assert_eq!(slots[0][0].load(Ordering::Relaxed), u64::MAX, "a slot too short is not written");
        let sync_failed = commit(&seq, &[1], |next| Ok(&slots[active(next)]), || "short", || Err("msync"));
        assert_eq!(sync_failed, Err("msync"));
        assert_eq!(seq.load(Ordering::Relaxed), 3, "no failure publishes");
    }

    #[test]
    fn reads_check_before_copying_and_give_up_after_their_tries() {
        let seq = AtomicU64::new(4);
        let slots = [words(1), words(1)];
        slots[0][0].store(40, Ordering::Relaxed);
        slots[1][0].store(50, Ordering::Relaxed);
        let mut copies = 0;
        let refused = read(&seq, [&slots[0], &slots[1]], 5, || Err("moved"), |_| copies += 1);
        assert_eq!(refused, Err("moved"));
        assert_eq!(copies, 0, "the check runs before the copy");

        // A commit lands during every copy: every try loses.
        let mut attempts = 0;
        let lost = read::<_, _, ()>(
            &seq,
            [&slots[0], &slots[1]],
            3,
            || Ok(()),
            |w| {
                attempts += 1;
                let value = load_word(&w[0]);
                seq.store(seq.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                value
            },
        );
        assert_eq!(lost, Ok(None));
        assert_eq!(attempts, 3);

        // One lost race, then a clean copy of the slot the new `seq` names.
        let mut raced = false;
        let won = read::<_, _, ()>(
            &seq,
            [&slots[0], &slots[1]],
            3,
            || Ok(()),
            |w| {
                let value = load_word(&w[0]);
                if !raced {
                    raced = true;
                    seq.store(seq.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                }
                value
            },
        );
        assert_eq!(won, Ok(Some((40, 8))));
        assert_eq!(read::<_, _, ()>(&seq, [&slots[0], &slots[1]], 0, || Ok(()), |_| ()), Ok(None));
    }
}
