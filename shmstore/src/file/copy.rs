//! The shape of a value's bytes ([`Shape`]: where its atomics are) and the copies into and out of
//! shared memory that follow it: under a lock ([`copy_shared`], [`store_atomics`]), racing with a
//! writer for an optimistic read ([`copy_racy`], [`copy_racy_shaped`]), and the validation of
//! values in place ([`validate_shared`]). Raw-pointer work over the mapping, below the entry
//! machinery, which calls it as the file's lock-free readers do.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::format::schema::{Schema, SchemaKind};
use crate::layout::{InvalidValue, Layout, TypeKind};

/// The shape of a value's bytes, as far as copying them out of shared memory goes: which byte
/// ranges are atomics (that other threads and processes may change at any time, even under a
/// shared lock) and which are plain bytes (that nobody cooperating changes under a shared lock).
/// Implemented by the compile-time [`Layout`] and by the [`Schema`] decoded from a file.
pub(crate) trait Shape {
    /// Size in bytes.
    fn byte_size(&self) -> u64;
    /// `Some(width in bytes)` if this is an atomic.
    fn atomic_width(&self) -> Option<usize>;
    /// Whether any byte of it is an atomic.
    fn holds_atomics(&self) -> bool;
    /// Calls `f(offset, part)` for each direct part (array element, struct field), in order, until
    /// `f` returns `false`.
    fn parts(&self, f: &mut dyn FnMut(u64, &Self) -> bool);

    /// Whether every byte belongs to an atomic: it is one, or its parts all are and cover it
    /// (a shape with no bytes counts). Such values are only ever accessed atomically.
    fn is_all_atomic(&self) -> bool {
        if self.atomic_width().is_some() {
            return true;
        }
        let (mut all, mut covered) = (true, 0u64);
        self.parts(&mut |_, part| {
            all = part.is_all_atomic();
            covered = covered.saturating_add(part.byte_size());
            all
        });
        all && covered == self.byte_size()
    }
}

impl Shape for Layout {
    fn byte_size(&self) -> u64 {
        self.size as u64
    }

    fn atomic_width(&self) -> Option<usize> {
        match self.kind {
            TypeKind::Atomic(p) => Some(p.size()),
            _ => None,
        }
    }

    fn holds_atomics(&self) -> bool {
        self.contains_atomics()
    }

    fn parts(&self, f: &mut dyn FnMut(u64, &Self) -> bool) {
        match self.kind {
            TypeKind::Array { elem, len } => {
                for i in 0..len as u64 {
                    if !f(i * elem.size as u64, elem) {
                        return;
                    }
                }
            }
            TypeKind::Struct { fields } => {
                for field in fields {
                    if !f(field.offset as u64, field.layout) {
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}

impl Shape for Schema {
    fn byte_size(&self) -> u64 {
        self.size
    }

    fn atomic_width(&self) -> Option<usize> {
        match self.kind {
            SchemaKind::Atomic(p) => Some(p.size()),
            _ => None,
        }
    }

    fn holds_atomics(&self) -> bool {
        match &self.kind {
            SchemaKind::Atomic(_) => true,
            SchemaKind::Array { elem, len } => *len > 0 && elem.holds_atomics(),
            SchemaKind::Struct { fields } => fields.iter().any(|f| f.schema.holds_atomics()),
            _ => false,
        }
    }

    fn parts(&self, f: &mut dyn FnMut(u64, &Self) -> bool) {
        match &self.kind {
            SchemaKind::Array { elem, len } => {
                for i in 0..*len {
                    // A decoded schema's sizes are consistent; one that is not stops here.
                    let Some(offset) = i.checked_mul(elem.size) else { return };
                    if !f(offset, elem) {
                        return;
                    }
                }
            }
            SchemaKind::Struct { fields } => {
                for field in fields {
                    if !f(field.offset, &field.schema) {
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Copies `out.len()` bytes from `src`, a run of whole values of shape `shape` in shared memory,
/// into `out`: every atomic with one atomic load of its own width, every other byte with a plain
/// copy. Bytes the shape leaves undescribed (none, for a well-formed shape) are left as they are
/// in `out`.
///
/// This is how bytes are copied out of an entry that holds atomics under a *shared* lock: other
/// holders of the shared lock may store to the atomics (through `&T`) at any time, so those bytes
/// must be read atomically (at the width they are written with: Rust does not allow racing
/// atomic accesses of different sizes), while the shared lock keeps every cooperating writer away
/// from the other bytes.
///
/// # Safety
///
/// `src..src + out.len()` lies in a live mapping, and the caller holds a shared or exclusive lock
/// on the entry that owns those bytes, whose values have shape `shape`, so that no cooperating
/// thread or process changes any byte other than an atomic's during the call.
pub(crate) unsafe fn copy_shared<S: Shape>(shape: &S, src: NonNull<u8>, out: &mut [u8]) {
    let size = shape.byte_size();
    let Ok(size) = usize::try_from(size) else { return };
    if size == 0 {
        return;
    }
    for (i, chunk) in out.chunks_exact_mut(size).enumerate() {
        // SAFETY: `chunk` is the `i`-th `size` bytes of `out`, so `src + i * size` is the start of
        // the `i`-th value, inside the range the caller vouches for; the rest is the contract.
        unsafe { copy_value(shape, src.add(i * size), chunk) };
    }
}

/// Copies `out.len()` bytes from `src` with relaxed atomic loads only (8-byte words where the
/// source is aligned, single bytes elsewhere), for an optimistic read that a writer may race with:
/// the caller checks afterwards (after an acquire fence) that no writer was in, and discards the
/// copy otherwise. A copy a writer raced with holds any mix of old and new bytes, which is why it
/// is never used before that check.
///
/// # Safety
///
/// `src..src + out.len()` lies in a live mapping, and nothing in it is ever accessed by this
/// process with atomics of another width than 8 (a racing access of a different width is not
/// allowed in Rust's memory model): the entry is changed in place by plain stores in the writer's
/// process, and holds no atomics (which this process would access at their own width).
pub(crate) unsafe fn copy_racy(src: NonNull<u8>, out: &mut [u8]) {
    let mut i = 0;
    while i < out.len() {
        // SAFETY: `src + i` is inside the range the caller vouches for (`i < out.len()`).
        let at = unsafe { src.add(i) };
        if (at.as_ptr() as usize).is_multiple_of(8) && out.len() - i >= 8 {
            // SAFETY: 8 aligned bytes in the mapping, read as one atomic word (the contract).
            let word = unsafe { AtomicU64::from_ptr(at.as_ptr().cast()) }.load(Ordering::Relaxed);
            out[i..i + 8].copy_from_slice(&word.to_ne_bytes());
            i += 8;
        } else {
            // SAFETY: one byte in the mapping, read as an atomic byte (the contract).
            out[i] = unsafe { AtomicU8::from_ptr(at.as_ptr()) }.load(Ordering::Relaxed);
            i += 1;
        }
    }
}

/// [`copy_racy`] for values of shape `shape` that hold atomics: each atomic is loaded at its own
/// width (as every process accesses it), the plain bytes as [`copy_racy`] does. For an
/// optimistic read of an entry changed in place, which the caller checks afterwards; the atomics
/// may change without a writer announcing it (through read guards), so each is whole but they
/// are not one snapshot, as under a shared lock.
///
/// # Safety
///
/// `src..src + out.len()` lies in a live mapping and holds values of shape `shape`, whose plain
/// bytes this process never accesses atomically at a width other than [`copy_racy`]'s.
pub(crate) unsafe fn copy_racy_shaped<S: Shape>(shape: &S, src: NonNull<u8>, out: &mut [u8]) {
    let Ok(size) = usize::try_from(shape.byte_size()) else { return };
    if size == 0 {
        return;
    }
    for (i, chunk) in out.chunks_exact_mut(size).enumerate() {
        // SAFETY: the `i`-th value lies in the range the caller vouches for.
        unsafe { copy_value_racy(shape, src.add(i * size), chunk) };
    }
}

/// [`copy_racy_shaped`] for one value.
///
/// # Safety
///
/// As for [`copy_racy_shaped`].
unsafe fn copy_value_racy<S: Shape>(shape: &S, src: NonNull<u8>, out: &mut [u8]) {
    if !shape.holds_atomics() {
        // SAFETY: plain bytes inside the range (the contract).
        unsafe { copy_racy(src, out) };
        return;
    }
    if let Some(width) = shape.atomic_width() {
        // SAFETY: one atomic of the shape, inside the range, accessed by everyone at this width.
        unsafe { load_atomic(src, width, out) };
        return;
    }
    for_each_part(shape, out, |part, start, chunk| {
        // SAFETY: `chunk` mirrors the bytes `src + start..` of one value of shape `part`.
        unsafe { copy_value_racy(part, src.add(start), chunk) }
    });
}

/// [`copy_shared`] for one value: `out` holds the bytes `src..src + out.len()`.
///
/// # Safety
///
/// As for [`copy_shared`].
unsafe fn copy_value<S: Shape>(shape: &S, src: NonNull<u8>, out: &mut [u8]) {
    if !shape.holds_atomics() {
        // SAFETY: `out.len()` bytes from `src` lie in the mapping (the contract); no cooperating
        // writer changes them (the caller's lock, and they are not atomics); `out` is a distinct,
        // exclusively borrowed buffer.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr(), out.len()) };
        return;
    }
    if let Some(width) = shape.atomic_width() {
        // SAFETY: the contract, for the `width` bytes at `src`, which this atomic covers.
        unsafe { load_atomic(src, width, out) };
        return;
    }
    for_each_part(shape, out, |part, start, chunk| {
        // SAFETY: `chunk` is `out[start..start + len]`, so the bytes `src + start..` it mirrors lie
        // in the range the caller vouches for, and they are one value of shape `part`.
        unsafe { copy_value(part, src.add(start), chunk) }
    });
}

/// Calls `f(part, start, chunk)` for each direct part of `shape`, in order, with `chunk` the part's
/// bytes `out[start..start + size]`. A part that does not fit in `out` (possible only in a
/// malformed schema) ends the walk: the bytes beyond are left as they are.
fn for_each_part<S: Shape>(shape: &S, out: &mut [u8], mut f: impl FnMut(&S, usize, &mut [u8])) {
    shape.parts(&mut |offset, part| {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(usize::try_from(part.byte_size()).ok()?)?));
        let Some(range) = range else { return false };
        let start = range.start;
        let Some(chunk) = out.get_mut(range) else { return false };
        f(part, start, chunk);
        true
    });
}

/// Loads the atomic of `width` bytes at `src` into `out` (whose length is that width).
///
/// # Safety
///
/// As for [`copy_shared`], with `src..src + out.len()` one atomic of the shape.
unsafe fn load_atomic(src: NonNull<u8>, width: usize, out: &mut [u8]) {
    let aligned = src.as_ptr().align_offset(width) == 0;
    let p = src.as_ptr();
    // SAFETY (each arm): `p` is aligned for the atomic of `width` bytes (checked just above), the
    // `width` bytes lie in a live mapping for the whole call, and every cooperating access to them
    // is an atomic access of this same width (the shape says they are an atomic of this width,
    // and the `SharedLayout` contract makes every type that describes them so access them only
    // through a std atomic). Any bit pattern is a valid integer.
    let bytes: [u8; 8] = match (width, aligned && out.len() == width) {
        (1, true) => u64::from(unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed)).to_ne_bytes(),
        (2, true) => widen(&unsafe { AtomicU16::from_ptr(p.cast()) }.load(Ordering::Relaxed).to_ne_bytes()),
        (4, true) => widen(&unsafe { AtomicU32::from_ptr(p.cast()) }.load(Ordering::Relaxed).to_ne_bytes()),
        (8, true) => unsafe { AtomicU64::from_ptr(p.cast()) }.load(Ordering::Relaxed).to_ne_bytes(),
        _ => {
            // No std atomic has this width or sits at this address (possible only in a malformed
            // schema), so no cooperating process stores to these bytes atomically, and they are
            // as still under the caller's lock as any plain byte.
            // SAFETY: as for the plain copy in `copy_value`.
            unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
            return;
        }
    };
    out.copy_from_slice(&bytes[..width]);
}

/// Copies `bytes`, values of the all-atomic `shape` (see [`Shape::is_all_atomic`]), to `dst` with
/// one atomic store per atomic, at that atomic's own width. Returns `false`, having stored
/// nothing, if the shape is not all atomics or `bytes` is not a whole number of values.
///
/// This is how an entry made only of atomics is written: holders of the `&T` that
/// [`Shared::get`](crate::Shared::get) hands out use its atomics at any moment without a lock, so
/// no byte of it may ever be written with a plain store. (Generic over [`Shape`] so that writers
/// that know the entry only by its stored [`Schema`] can write the same way.)
///
/// # Safety
///
/// `dst..dst + bytes.len()` lies in a live, writable mapping, aligned for the shape, and holds
/// values of shape `shape`, whose every byte (the shape is all atomics) is only ever accessed
/// by cooperating threads and processes through a std atomic of the width the shape gives it.
pub(crate) unsafe fn store_atomics<S: Shape>(shape: &S, dst: NonNull<u8>, bytes: &[u8]) -> bool {
    let Ok(size) = usize::try_from(shape.byte_size()) else { return false };
    if !shape.is_all_atomic() {
        return false;
    }
    if size == 0 || !bytes.len().is_multiple_of(size) {
        return bytes.is_empty();
    }
    for (i, value) in bytes.chunks_exact(size).enumerate() {
        // SAFETY: value `i` lies at `dst + i * size`, inside the range the caller vouches for.
        unsafe { store_value(shape, dst.add(i * size), value) };
    }
    true
}

/// [`store_atomics`] for one value of an all-atomic shape.
///
/// # Safety
///
/// As for [`store_atomics`], with `value.len()` the shape's size.
unsafe fn store_value<S: Shape>(shape: &S, dst: NonNull<u8>, value: &[u8]) {
    if let Some(width) = shape.atomic_width() {
        let p = dst.as_ptr();
        let mut word = [0u8; 8];
        let n = width.min(8).min(value.len());
        word[..n].copy_from_slice(&value[..n]);
        // SAFETY (each arm): `p` is aligned for this atomic (the shape places it at an offset
        // aligned for its type, inside a value aligned for the shape), its `width` bytes lie in a
        // live, writable mapping, and every cooperating access to them is an atomic access of
        // this width (the caller's contract). Any bits are a valid integer; an `AtomicBool` is
        // stored from a validated value, whose byte is 0 or 1.
        match width {
            1 => unsafe { AtomicU8::from_ptr(p) }.store(word[0], Ordering::Relaxed),
            2 => unsafe { AtomicU16::from_ptr(p.cast()) }
                .store(u16::from_ne_bytes([word[0], word[1]]), Ordering::Relaxed),
            4 => unsafe { AtomicU32::from_ptr(p.cast()) }
                .store(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]), Ordering::Relaxed),
            8 => unsafe { AtomicU64::from_ptr(p.cast()) }.store(u64::from_ne_bytes(word), Ordering::Relaxed),
            // No std atomic has another width: `is_all_atomic` shapes have none.
            _ => {}
        }
        return;
    }
    shape.parts(&mut |offset, part| {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(usize::try_from(part.byte_size()).ok()?)?));
        // A part that does not fit (possible only in a malformed schema) ends the walk.
        let Some(range) = range.filter(|r| r.end <= value.len()) else { return false };
        // SAFETY: the part lies at `dst + range.start`, inside this value (checked just above).
        unsafe { store_value(part, dst.add(range.start), &value[range]) };
        true
    });
}

/// `bytes` (at most 8) at the start of an 8-byte array.
fn widen(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..bytes.len()].copy_from_slice(bytes);
    out
}

/// Checks that the `count` values of `layout` at `ptr` are valid, reading them as
/// [`copy_shared`] does: safe even while other holders of a shared lock store to their atomics.
/// On failure, returns the index of the first invalid value and what is wrong with it.
///
/// # Safety
///
/// `ptr..ptr + count * layout.size` lies in a live mapping, and the caller holds a shared or
/// exclusive lock on the entry that owns those bytes, whose values have layout `layout`.
pub(crate) unsafe fn validate_shared(
    layout: &Layout,
    ptr: NonNull<u8>,
    count: usize,
) -> Result<(), (usize, InvalidValue)> {
    let size = layout.size;
    if !layout.contains_atomics() {
        // SAFETY: the range lies in the mapping (the contract) and no cooperating thread or process
        // changes any of its bytes while the caller holds the lock: none of them is an atomic, and
        // `Layout` describes every byte that can change through `&T` as an atomic (the
        // `SharedLayout` contract), so no other lock holder can write them either. `u8` is valid
        // for any byte.
        let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), count * size) };
        for (i, chunk) in bytes.chunks_exact(size.max(1)).enumerate() {
            layout.validate(chunk).map_err(|invalid| (i, invalid))?;
        }
        return Ok(());
    }
    // Atomics may be stored to meanwhile: validate a snapshot of each value, taken atomically.
    let mut snapshot = vec![0u8; size];
    for i in 0..count {
        // SAFETY: value `i` lies in the range the caller vouches for, under the caller's lock.
        unsafe { copy_shared(layout, ptr.add(i * size), &mut snapshot) };
        layout.validate(&snapshot).map_err(|invalid| (i, invalid))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SharedLayout;

    #[derive(SharedLayout)]
    #[repr(C)]
    struct Counters {
        a: AtomicU64,
        b: [AtomicU32; 2],
        flag: [std::sync::atomic::AtomicBool; 8],
    }

    /// `store_atomics` writes every byte of all-atomic values, through the compile-time layout and
    /// through the schema stored in a file alike, and refuses shapes with plain bytes.
    #[test]
    fn store_atomics_writes_all_atomic_values_and_refuses_others() {
        let schema = Schema::from(&Counters::LAYOUT);
        assert!(Shape::is_all_atomic(&Counters::LAYOUT) && Counters::LAYOUT.is_all_atomic());
        assert!(schema.is_all_atomic());
        let value: Vec<u8> = (0..24u8).map(|i| if i >= 16 { i % 2 } else { i + 1 }).collect();
        for shape_is_schema in [false, true] {
            let words: Vec<AtomicU64> = (0..6).map(|_| AtomicU64::new(u64::MAX)).collect();
            let dst = NonNull::from(&words[0]).cast::<u8>();
            let two_values = [value.clone(), value.clone()].concat();
            // SAFETY: `words` holds 48 bytes, 8-aligned, that only this thread uses.
            let stored = unsafe {
                if shape_is_schema {
                    store_atomics(&schema, dst, &two_values)
                } else {
                    store_atomics(&Counters::LAYOUT, dst, &two_values)
                }
            };
            assert!(stored);
            let mut back = vec![0u8; 48];
            // SAFETY: as above.
            unsafe { copy_shared(&Counters::LAYOUT, dst, &mut back) };
            assert_eq!(back, two_values, "every byte of both values, via the schema: {shape_is_schema}");
            // SAFETY: as above; nothing is stored for a partial value.
            assert!(!unsafe { store_atomics(&Counters::LAYOUT, dst, &value[..20]) });
        }
        let plain = Schema::from(&u64::LAYOUT);
        let words = [AtomicU64::new(5)];
        // SAFETY: as above, 8 bytes.
        let stored = unsafe { store_atomics(&plain, NonNull::from(&words[0]).cast(), &[0; 8]) };
        assert!(!stored && !plain.is_all_atomic());
        assert_eq!(words[0].load(Ordering::Relaxed), 5, "a refused store writes nothing");
    }
}
