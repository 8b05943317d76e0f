//! The catalog of a format-v2 store: lookups through the index, lazily checked entry blocks, the
//! allocator with its two free lists, and the entry life cycle (create, remove, rename, replace).
//!
//! Lookups never lock. They hash the name, probe the current index table, and compare the 64-bit
//! hash before they touch a block; a candidate block is checked (checksum, geometry) the first
//! time this process uses it, and its byte ranges enter a per-process interval set that refuses
//! any block overlapping one this process already accepted and that is still live: no two handles
//! in one process ever alias. A hit is cached by name until `catalog_seq` changes.
//!
//! Every change takes the admin lock (byte `2^62`, through [`StoreInner::lock_catalog`]); entry
//! operations take the entry's own exclusive lock first. Each change has one commit point, a
//! single store, so a process killed at any instant leaves the old state or the new one, and at
//! worst leaks space:
//!
//! - **create**: block and data written, `state = live`, then the index slot (hash, then block);
//! - **remove**: `state = removed`; then a tombstone in the index and the space to the free lists;
//! - **rename** and **replace** (resize, migrate): the new block is written as a *shadow* whose
//!   `moved_to` points *back* at the block it replaces (a deviation from the design, recorded in
//!   `docs/format.md`), then `moved_to = new` and `state = moved` in the old block: the commit
//!   point. A shadow counts as live only while the block it points back at is `moved` to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::file::lock::Wait;
use crate::file::state::StoreInner;
use crate::format::align_up;
use crate::format::checksum::hash64;
use crate::format::entry::{Entry, EntryError, EntryKind};
use crate::format::schema::{self, Schema, SchemaKind};
use crate::format::v2::block::{self as blk, BLOCK_SIZE};
use crate::format::v2::free::FreeExtent;
use crate::format::v2::header as v2h;
use crate::format::v2::index as idx;
use crate::layout::Layout;
use crate::options::Durability;

use super::catalog::Found;

/// What a handle says of the entry now under its name: the error for a handle of its layout, or
/// `None` if the entry has that layout.
pub(crate) type LayoutCheck<'a> = &'a dyn Fn(&Entry) -> Option<Error>;
/// Objects start on their own cache line, and each of their slots takes whole cache lines.
const OBJECT_ALIGN: u64 = 64;
/// The alignment of arrays of a page or more.
const PAGE: u64 = 4096;
/// How many `moved_to` links a lookup follows before it calls the chain a loop.
const MAX_HOPS: usize = 64;
/// How many times a lookup starts over because the catalog changed under it.
const MAX_RETRIES: usize = 100_000;
/// How many times a lookup that met an error looks again before it believes it.
const TRANSIENT_ERRORS: usize = 64;

/// A hasher for the process's own maps (names, block offsets, lock bytes): the keys come from
/// this process's lookups and from checked blocks, so the DoS resistance of SipHash buys nothing,
/// and lookups are on the hot path. Word at a time, as [`checksum64`](crate::format::checksum).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.write_u64(u64::from_le_bytes(last) ^ (bytes.len() as u64) << 56);
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
    }

    fn write_u8(&mut self, byte: u8) {
        self.write_u64(u64::from(byte));
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }
}

/// Builds [`FastHasher`]s.
pub(crate) type FastBuild = std::hash::BuildHasherDefault<FastHasher>;

/// What this process knows of a v2 catalog.
#[derive(Debug, Default)]
pub(crate) struct V2Cache {
    /// The `catalog_seq` at which `names` was filled.
    seq: u64,
    /// Entries found by name since `catalog_seq` was `seq`, keyed by the name's `hash64` (no
    /// copy of the name: a hit is checked against the entry's own name, and of two names with
    /// one hash the later found replaces the other).
    names: HashMap<u64, Found, FastBuild>,
    /// Blocks accepted by this process: block offset -> (serial, entry).
    blocks: HashMap<u64, (u64, Arc<Entry>), FastBuild>,
    /// The byte ranges of accepted blocks (block, data, schema), disjoint.
    ranges: Ranges,
}

impl V2Cache {
    /// The entry found under `name` (whose `hash64` is `hash`) while `catalog_seq` was `seq`, if
    /// it was found since then.
    fn name_hit(&self, seq: u64, hash: u64, name: &str) -> Option<Found> {
        if self.seq != seq {
            return None;
        }
        self.names.get(&hash).filter(|hit| hit.entry.name == name).cloned()
    }

    /// Remembers `hit`, found under the name whose `hash64` is `hash` while `catalog_seq` was
    /// `seq` (forgetting every name found under another `seq`).
    fn remember_name(&mut self, seq: u64, hash: u64, hit: Found) {
        if self.seq != seq {
            self.names.clear();
            self.seq = seq;
        }
        self.names.insert(hash, hit);
    }

    /// The accepted blocks that own a range overlapping `start..end` (no allocation when none do).
    fn overlapping(&self, start: u64, end: u64) -> Vec<u64> {
        self.ranges.overlapping(start, end)
    }

    fn forget(&mut self, block: u64) {
        if let Some((_, entry)) = self.blocks.remove(&block) {
            for (start, end) in block_ranges(block, &entry) {
                self.ranges.remove(start, end, block);
            }
        }
    }
}

/// The size of the windows [`Ranges`] files short ranges under.
const WINDOW: u64 = 4096;

/// A set of byte ranges, each with its owner (a block offset), that answers which ranges overlap
/// a given one. The ranges an accepted block claims are short (an entry block with its data and
/// schema is a few hundred bytes), and lookups accept them in any order, so a sorted tree would
/// pay a descent per query and per insertion; short ranges are filed instead in a hash map under
/// the [`WINDOW`]-aligned windows they touch (one or two), and only long ranges go to a tree.
#[derive(Debug, Default)]
struct Ranges {
    /// Ranges of at most [`WINDOW`] bytes, under the index of each window they touch:
    /// `(start, end, owner)`.
    short: HashMap<u64, Vec<(u64, u64, u64)>, FastBuild>,
    /// Longer ranges, disjoint: start -> (end, owner).
    long: BTreeMap<u64, (u64, u64)>,
}

impl Ranges {
    /// The windows `start..end` (not empty) touches.
    fn windows(start: u64, end: u64) -> std::ops::RangeInclusive<u64> {
        start / WINDOW..=(end - 1) / WINDOW
    }

    /// The owners of the ranges that overlap `start..end`, each once.
    fn overlapping(&self, start: u64, end: u64) -> Vec<u64> {
        let mut owners = Vec::new();
        if start >= end {
            return owners;
        }
        // The long ranges are disjoint, so sorted by start they are sorted by end too.
        for (_, &(range_end, owner)) in self.long.range(..end).rev() {
            if range_end <= start {
                break;
            }
            owners.push(owner);
        }
        // A short range filed under two windows is reported under the window that holds the
        // first byte it shares with `start..end`. A query over more windows than hold short
        // ranges walks those instead: the work is bounded by the smaller of the two counts.
        let overlap = |w: u64, &(s, e, owner): &(u64, u64, u64)| {
            (s < end && start < e && s.max(start) / WINDOW == w).then_some(owner)
        };
        let windows = Self::windows(start, end);
        if windows.end() - windows.start() < self.short.len() as u64 {
            for w in windows {
                if let Some(list) = self.short.get(&w) {
                    owners.extend(list.iter().filter_map(|r| overlap(w, r)));
                }
            }
        } else {
            for (&w, list) in &self.short {
                owners.extend(list.iter().filter_map(|r| overlap(w, r)));
            }
        }
        owners
    }

    /// Adds `start..end`, owned by `owner` (an empty range claims nothing, and is not added).
    fn insert(&mut self, start: u64, end: u64, owner: u64) {
        if start >= end {
            return;
        }
        if end - start > WINDOW {
            self.long.insert(start, (end, owner));
            return;
        }
        for w in Self::windows(start, end) {
            self.short.entry(w).or_default().push((start, end, owner));
        }
    }

    /// Removes `start..end` if `owner` owns it.
    fn remove(&mut self, start: u64, end: u64, owner: u64) {
        if start >= end {
            return;
        }
        if end - start > WINDOW {
            if self.long.get(&start).is_some_and(|&(e, o)| (e, o) == (end, owner)) {
                self.long.remove(&start);
            }
            return;
        }
        for w in Self::windows(start, end) {
            if let Some(list) = self.short.get_mut(&w) {
                list.retain(|&r| r != (start, end, owner));
                if list.is_empty() {
                    self.short.remove(&w);
                }
            }
        }
    }
}

/// The non-empty byte ranges an entry block claims: itself, its data, its schema. A range that
/// follows another within a cache line is joined to it (with the gap, padding of the entry's own
/// extent): the allocator places the schema right after the data, and a new entry's block right
/// after its extent, so most entries claim one range, which halves the work of the interval set.
fn block_ranges(at: u64, entry: &Entry) -> impl Iterator<Item = (u64, u64)> {
    let (data, schema) = (entry.data_range(), entry.schema_range());
    let follows = |next: &std::ops::Range<u64>, prev: &std::ops::Range<u64>| {
        !next.is_empty() && !prev.is_empty() && next.start >= prev.end && next.start - prev.end < 64
    };
    let joined = match (&data, &schema) {
        (Some(d), Some(s)) if follows(s, d) => [Some(d.start..s.end), None],
        _ => [data, schema],
    };
    let block = at..at + BLOCK_SIZE;
    let mut ranges = [Some(block.clone()), joined[0].clone(), joined[1].clone()];
    // The block right after the last of the entry's other ranges: one range from its start.
    if let Some(last) = ranges[1..].iter_mut().rev().flatten().next() {
        if follows(&block, last) {
            last.end = block.end;
            ranges[0] = None;
        }
    }
    ranges.into_iter().flatten().filter(|r| !r.is_empty()).map(|r| (r.start, r.end))
}

/// Whether a schema holds an atomic anywhere: such an entry's space is never reused (a
/// superset of "all atomic", whose `&T` cannot be revoked).
fn has_atomics(schema: &Schema) -> bool {
    match &schema.kind {
        SchemaKind::Atomic(_) => true,
        SchemaKind::Array { elem, len } => *len > 0 && has_atomics(elem),
        SchemaKind::Struct { fields } => fields.iter().any(|f| has_atomics(&f.schema)),
        _ => false,
    }
}

/// What a new entry block holds.
pub(crate) struct NewBlock<'a> {
    pub(crate) name: &'a str,
    pub(crate) kind: EntryKind,
    pub(crate) shape: &'a Shape,
    pub(crate) count: u64,
}

/// The layout facts an entry block records, from a [`Layout`] or from stored schema bytes.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// The type's name, for error messages.
    pub(crate) type_name: String,
    pub(crate) elem_size: u64,
    pub(crate) elem_align: u64,
    pub(crate) version: u32,
    pub(crate) fingerprint: u64,
    /// Whether the type holds an atomic anywhere (objects of such types are not double-buffered).
    pub(crate) atomics: bool,
    /// The encoded schema.
    pub(crate) schema: Vec<u8>,
}

impl Shape {
    /// The shape of `layout`.
    pub(crate) fn of(layout: &Layout) -> Shape {
        Shape {
            type_name: layout.display_name(),
            elem_size: layout.size as u64,
            elem_align: layout.align as u64,
            version: layout.version,
            fingerprint: layout.fingerprint,
            atomics: layout.contains_atomics(),
            schema: schema::encode(layout),
        }
    }

    /// The shape of `layout`, computed once per layout descriptor in this process (encoding a
    /// schema and checking that it decodes costs more than the rest of a creation).
    pub(crate) fn cached(layout: &'static Layout) -> Arc<Shape> {
        type Shapes = std::sync::Mutex<HashMap<usize, Arc<Shape>, FastBuild>>;
        static SHAPES: std::sync::OnceLock<Shapes> = std::sync::OnceLock::new();
        let shapes = SHAPES.get_or_init(Default::default);
        // Keyed by the descriptor's address: two addresses of one type only cost a second entry.
        let key = std::ptr::from_ref(layout) as usize;
        if let Some(shape) = shapes.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return shape.clone();
        }
        let shape = Arc::new(Shape::of(layout));
        shapes.lock().unwrap_or_else(|e| e.into_inner()).insert(key, shape.clone());
        shape
    }

    /// The shape recorded by the encoded schema `bytes`, or why they cannot be recorded.
    pub(crate) fn from_schema(bytes: &[u8]) -> std::result::Result<Shape, String> {
        let decoded = schema::decode(bytes).map_err(|e| e.to_string())?;
        Ok(Shape {
            type_name: decoded.display_name(),
            elem_size: decoded.size,
            elem_align: decoded.align,
            version: decoded.version,
            fingerprint: decoded.fingerprint,
            atomics: has_atomics(&decoded),
            schema: bytes.to_vec(),
        })
    }
}

impl StoreInner {
    fn word64(&self, offset: u64) -> Result<&AtomicU64> {
        self.map()
            .atomic_u64(offset)
            .ok_or_else(|| self.corrupt(format!("a live word at byte {offset} lies outside the mapping")))
    }

    fn word32(&self, offset: u64) -> Result<&AtomicU32> {
        self.map()
            .atomic_u32(offset)
            .ok_or_else(|| self.corrupt(format!("a live word at byte {offset} lies outside the mapping")))
    }

    fn v2_cache(&self) -> std::sync::MutexGuard<'_, V2Cache> {
        self.v2.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot count and home function of the index table at `root`, checked.
    ///
    /// The header is read with atomic word loads, not a plain copy: lookups read it without the
    /// admin lock while a creator counts a slot in its `used` word (ThreadSanitizer reported the
    /// plain copy racing with that `fetch_add`).
    pub(crate) fn index_table(&self, root: u64) -> Result<idx::Table> {
        let mut bytes = [0u8; idx::HEADER_LEN as usize];
        let Some(words) = self.map().atomic_words(root, bytes.len() / 8) else {
            return Err(
                self.corrupt(format!("the index table at byte {root} lies outside the mapping or is misaligned"))
            );
        };
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        idx::decode_table(&bytes, root, self.capacity())
            .map_err(|e| self.corrupt(format!("{e} (index table at byte {root})")))
    }

    fn catalog_seq(&self) -> &AtomicU64 {
        self.live_u64(v2h::CATALOG_SEQ)
    }

    /// The live entry `name`, if any. Lock-free; cached by name until the catalog changes.
    pub(crate) fn v2_lookup(&self, name: &str) -> Result<Option<Found>> {
        self.check_not_forked()?;
        // Errors seen while no catalog change was visible: a block being reused right now (its
        // writer bumps `catalog_seq` only when done) looks damaged for a moment, so an error is
        // believed only once it persists.
        let mut errors = 0;
        let hash = hash64(name);
        for _ in 0..MAX_RETRIES {
            let seq = self.catalog_seq().load(Ordering::Acquire);
            // The slot a probe would read first is most likely not in the cache: start loading
            // it now, so that the load overlaps the name cache's check.
            self.prefetch_home(hash);
            {
                if let Some(hit) = self.v2_cache().name_hit(seq, hash, name) {
                    return Ok(Some(hit));
                }
            }
            let result = self.v2_probe(name, hash);
            let unchanged = self.catalog_seq().load(Ordering::Acquire) == seq;
            match result {
                Ok(Some(hit)) => {
                    if unchanged {
                        self.v2_cache().remember_name(seq, hash, hit.clone());
                    }
                    return Ok(Some(hit));
                }
                // A miss or an error while the catalog changed may come from a table that was
                // replaced (and its bytes reused) under the probe: look again.
                _ if !unchanged => continue,
                Err(_) if errors < TRANSIENT_ERRORS => {
                    errors += 1;
                    std::thread::yield_now();
                }
                other => return other,
            }
        }
        Err(self.corrupt(format!("the catalog kept changing while entry `{name}` was looked up")))
    }

    /// Starts loading the index slot where a probe for `hash` starts in the current table. A
    /// hint: the table's header is read without its checks (which [`StoreInner::v2_probe`]
    /// makes before it uses the table), and a header that makes no sense prefetches nothing.
    fn prefetch_home(&self, hash: u64) {
        let map = self.map();
        let root = self.live_u64(v2h::INDEX_ROOT).load(Ordering::Acquire);
        let mut head = [0u8; 16];
        if !map.read(root, &mut head) {
            return;
        }
        let slots = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        if !slots.is_power_of_two() || !(idx::MIN_SLOTS..=idx::MAX_SLOTS).contains(&slots) {
            return;
        }
        let probe = if head[..8] == idx::LEGACY_MAGIC { idx::Probe::Legacy } else { idx::Probe::Mixed };
        let home = idx::Table { slots, probe }.home(hash);
        map.prefetch(root.saturating_add(idx::slot_offset(home)), idx::SLOT_LEN);
    }

    /// Probes the current index table for `name`, whose `hash64` is `hash`.
    fn v2_probe(&self, name: &str, hash: u64) -> Result<Option<Found>> {
        self.probe_index(hash, |slot, block| {
            if block == idx::TOMBSTONE || self.word64(slot + idx::SLOT_HASH)?.load(Ordering::Acquire) != hash {
                return Ok(None);
            }
            // The block's live words and its static part, which the checks below read (the
            // state word first, then the static part): load their lines at once, not one cache
            // miss after the other.
            self.map().prefetch(block, 64);
            self.map().prefetch(block + blk::STATIC_OFFSET, blk::STATIC_SIZE as u64);
            self.resolve_block(block, Some(name))
        })
    }

    /// Walks the probe sequence of `hash` in the current index table, from its home slot to the
    /// first empty slot (at most once around the table), calling `visit(slot, block)` for each
    /// slot on the way (tombstones included) until it answers.
    #[inline]
    fn probe_index<R>(&self, hash: u64, mut visit: impl FnMut(u64, u64) -> Result<Option<R>>) -> Result<Option<R>> {
        let root = self.live_u64(v2h::INDEX_ROOT).load(Ordering::Acquire);
        let table = self.index_table(root)?;
        let slots = table.slots;
        let mut i = table.home(hash);
        for _ in 0..slots {
            let slot = root + idx::slot_offset(i);
            let block = self.word64(slot + idx::SLOT_BLOCK)?.load(Ordering::Acquire);
            if block == idx::EMPTY {
                return Ok(None);
            }
            if let Some(answer) = visit(slot, block)? {
                return Ok(Some(answer));
            }
            i = (i + 1) & (slots - 1);
        }
        Ok(None)
    }

    /// Whether the shadow block `at` is committed: the block its `moved_to` points back at is
    /// `moved`, to `at`.
    fn shadow_committed(&self, at: u64) -> Result<bool> {
        let back = self.word64(at + blk::MOVED_TO)?.load(Ordering::Acquire);
        if !blk::block_in_bounds(back, self.capacity()) {
            return Ok(false);
        }
        Ok(self.word32(back + blk::STATE)?.load(Ordering::Acquire) == blk::STATE_MOVED
            && self.word64(back + blk::MOVED_TO)?.load(Ordering::Acquire) == at)
    }

    /// The live entry that the block at `at` is or was replaced by, if it is named `name` (any
    /// name if `None`).
    fn resolve_block(&self, mut at: u64, name: Option<&str>) -> Result<Option<Found>> {
        for _ in 0..MAX_HOPS {
            if !blk::block_in_bounds(at, self.capacity()) {
                return Err(self.corrupt(format!("the catalog points at byte {at}, where no entry block can be")));
            }
            let mapped = self.map().len();
            if at + BLOCK_SIZE > mapped {
                // Another process grew the store, and this one could not map the new size.
                return Err(Error::BeyondMapping { name: name.unwrap_or("").to_owned(), mapped });
            }
            match self.word32(at + blk::STATE)?.load(Ordering::Acquire) {
                blk::STATE_LIVE => {}
                blk::STATE_SHADOW if self.shadow_committed(at)? => {}
                blk::STATE_MOVED => {
                    at = self.word64(at + blk::MOVED_TO)?.load(Ordering::Acquire);
                    continue;
                }
                blk::STATE_FREE | blk::STATE_SHADOW | blk::STATE_REMOVED => return Ok(None),
                other => return Err(self.corrupt(format!("entry block at byte {at} has unknown state {other}"))),
            }
            let found = self.accept(at)?;
            return Ok(name.is_none_or(|name| found.entry.name == name).then_some(found));
        }
        Err(self.corrupt(format!("the chain of replaced entry blocks from byte {at} loops")))
    }

    /// Whether the block at `at`, accepted with `serial`, is still an entry (live, or a
    /// committed shadow) with that serial.
    fn still_live(&self, at: u64, serial: u64) -> bool {
        let check = || -> Result<bool> {
            let state = self.word32(at + blk::STATE)?.load(Ordering::Acquire);
            let live = state == blk::STATE_LIVE || (state == blk::STATE_SHADOW && self.shadow_committed(at)?);
            Ok(live && self.word64(at + blk::SERIAL)?.load(Ordering::Acquire) == serial)
        };
        check().unwrap_or(false)
    }

    /// The block at `at`, checked once per process (per serial), and accepted only if its ranges
    /// overlap no other accepted block that is still live.
    pub(crate) fn accept(&self, at: u64) -> Result<Found> {
        let serial = self.word64(at + blk::SERIAL)?.load(Ordering::Acquire);
        // One hold of the cache's mutex for the check and the acceptance (the decoding between
        // them only reads the mapping).
        let mut cache = self.v2_cache();
        if let Some((known, entry)) = cache.blocks.get(&at) {
            if *known == serial {
                return Ok(Found { at, serial, entry: entry.clone() });
            }
        }
        let mut raw = [0u8; blk::STATIC_SIZE];
        if !self.map().read(at + blk::STATIC_OFFSET, &mut raw) {
            return Err(self.corrupt(format!("the entry block at byte {at} lies outside the mapping")));
        }
        let block = blk::decode(&raw, at, self.capacity()).map_err(|e| match e {
            EntryError::BadChecksum => {
                Error::BadChecksum { path: self.path.clone(), what: format!("the entry block at byte {at}") }
            }
            other => self.corrupt(format!("entry block at byte {at}: {other}")),
        })?;
        if block.serial != serial {
            return Err(self.corrupt(format!(
                "entry block at byte {at} (`{}`) has serial {} in its static part but {serial} live",
                block.entry.name, block.serial
            )));
        }
        self.accept_locked(&mut cache, at, serial, block.entry)
    }

    /// Accepts the block at `at` with `serial`, whose static part decoded to `entry` (just now,
    /// or as this process wrote it): see [`StoreInner::accept`].
    fn accept_decoded(&self, at: u64, serial: u64, entry: Entry) -> Result<Found> {
        self.accept_locked(&mut self.v2_cache(), at, serial, entry)
    }

    /// [`StoreInner::accept_decoded`], with the cache's mutex held.
    fn accept_locked(&self, cache: &mut V2Cache, at: u64, serial: u64, entry: Entry) -> Result<Found> {
        let entry = Arc::new(entry);
        cache.forget(at);
        for (start, end) in block_ranges(at, &entry) {
            for owner in cache.overlapping(start, end) {
                let owner_serial = cache.blocks.get(&owner).map_or(0, |(s, _)| *s);
                if self.still_live(owner, owner_serial) {
                    let other = cache.blocks.get(&owner).map_or_else(String::new, |(_, e)| e.name.clone());
                    return Err(self.corrupt(format!(
                        "entry `{}` (block at byte {at}) overlaps entry `{other}` (block at byte {owner})",
                        entry.name
                    )));
                }
                cache.forget(owner);
            }
        }
        for (start, end) in block_ranges(at, &entry) {
            cache.ranges.insert(start, end, at);
        }
        cache.blocks.insert(at, (serial, entry.clone()));
        Ok(Found { at, serial, entry })
    }

    /// Refuses `start..end` (space about to be reused) if it overlaps an entry this process has
    /// accepted and that is still live; forgets accepted entries that are not.
    fn claim(&self, start: u64, end: u64) -> Result<()> {
        let mut cache = self.v2_cache();
        for owner in cache.overlapping(start, end) {
            let serial = cache.blocks.get(&owner).map_or(0, |(s, _)| *s);
            if self.still_live(owner, serial) {
                return Err(self.corrupt(format!(
                    "the allocator would hand out bytes {start}..{end}, which the live entry block at byte {owner} uses: the allocation end or a free list is damaged"
                )));
            }
            cache.forget(owner);
        }
        Ok(())
    }

    /// Checks both free lists against each other and against the live entries (see
    /// [`Store::check_free_lists`](crate::Store::check_free_lists)): returns how many nodes
    /// they hold. Looks again while the catalog changes under the walk.
    pub(crate) fn v2_check_free_lists(&self) -> Result<u64> {
        for _ in 0..MAX_RETRIES {
            let seq = self.catalog_seq().load(Ordering::Acquire);
            let result = self.v2_check_free_lists_once();
            if self.catalog_seq().load(Ordering::Acquire) == seq || result.is_ok() {
                return result;
            }
        }
        Err(self.corrupt("the catalog kept changing while its free lists were checked".into()))
    }

    fn v2_check_free_lists_once(&self) -> Result<u64> {
        // Every byte range a live entry claims, then every free node's, each with what to call it.
        let mut claimed: Vec<(u64, u64, String)> = Vec::new();
        for found in self.v2_scan_once()? {
            let name = &found.entry.name;
            claimed.extend(block_ranges(found.at, &found.entry).map(|(s, e)| (s, e, format!("entry `{name}`"))));
        }
        // A node met twice ends the walk (a loop); distinct nodes each lie in the file, so their
        // count, and the memory the walk takes, is bounded by the file's length.
        let mut seen = std::collections::HashSet::<u64, FastBuild>::default();
        for (list, what) in [(v2h::FREE_EXTENTS, "free extent"), (v2h::FREE_BLOCKS, "free block")] {
            let mut at = self.live_u64(list).load(Ordering::Acquire);
            while at != 0 {
                if !seen.insert(at) {
                    return Err(
                        self.corrupt(format!("the free lists reach the {what} at byte {at} twice: a free list loops"))
                    );
                }
                let extent = self.free_header(list, at).map_err(|e| match e {
                    Error::Corrupt { detail, .. } => self.corrupt(format!("{detail}, on the list of {what}s")),
                    other => other,
                })?;
                if list == v2h::FREE_BLOCKS && extent.len != BLOCK_SIZE {
                    return Err(self.corrupt(format!(
                        "the free block at byte {at} claims {} bytes; an entry block has {BLOCK_SIZE}",
                        extent.len
                    )));
                }
                claimed.push((at, at + extent.len, format!("the {what} at byte {at}")));
                at = extent.next;
            }
        }
        claimed.sort_unstable_by_key(|c| c.0);
        if let Some(pair) = claimed.windows(2).find(|pair| pair[1].0 < pair[0].1) {
            return Err(self.corrupt(format!("{} overlaps {}", pair[1].2, pair[0].2)));
        }
        Ok(seen.len() as u64)
    }

    /// Every live entry, in creation order.
    pub(crate) fn v2_scan(&self) -> Result<Vec<Found>> {
        for _ in 0..MAX_RETRIES {
            let seq = self.catalog_seq().load(Ordering::Acquire);
            let result = self.v2_scan_once();
            if self.catalog_seq().load(Ordering::Acquire) == seq || result.is_ok() {
                return result;
            }
        }
        Err(self.corrupt("the catalog kept changing while it was listed".into()))
    }

    fn v2_scan_once(&self) -> Result<Vec<Found>> {
        let root = self.live_u64(v2h::INDEX_ROOT).load(Ordering::Acquire);
        let slots = self.index_table(root)?.slots;
        let mut found: Vec<Found> = Vec::new();
        for i in 0..slots {
            let slot = root + idx::slot_offset(i);
            let block = self.word64(slot + idx::SLOT_BLOCK)?.load(Ordering::Acquire);
            if block == idx::EMPTY || block == idx::TOMBSTONE {
                continue;
            }
            if let Some(hit) = self.resolve_block(block, None)? {
                if hash64(&hit.entry.name) == self.word64(slot + idx::SLOT_HASH)?.load(Ordering::Acquire) {
                    found.push(hit);
                }
            }
        }
        found.sort_by_key(|f| (f.serial, f.at));
        found.dedup_by_key(|f| f.at);
        let mut names: Vec<(&str, u64)> = found.iter().map(|f| (f.entry.name.as_str(), f.at)).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(self.corrupt(format!(
                "entry blocks at bytes {} and {} are both live and named `{}`",
                pair[0].1, pair[1].1, pair[0].0
            )));
        }
        Ok(found)
    }

    /// The entry `name`, created if absent. `init` gives the bytes of one value, which fill the
    /// new entry's first slot (every element, for arrays); it runs only if the entry was missing,
    /// and *before* the admin lock is taken, since it may be the caller's code. If another thread
    /// or process creates the entry meanwhile, its value is dropped.
    pub(crate) fn v2_find_or_create(
        &self,
        name: &str,
        kind: EntryKind,
        layout: &'static Layout,
        count: u64,
        init: impl FnOnce() -> Vec<u8>,
    ) -> Result<Found> {
        if let Some(hit) = self.v2_lookup(name)? {
            return Ok(hit);
        }
        if self.read_only {
            return Err(self.read_only_error("creating a new entry"));
        }
        let value = init();
        let _held = self.lock_catalog("creating", name)?;
        if let Some(hit) = self.v2_lookup(name)? {
            return Ok(hit);
        }
        if let Some(cap) = self.max_entries {
            if self.live_u64(v2h::ENTRY_COUNT).load(Ordering::Acquire) >= u64::from(cap) {
                return Err(Error::CatalogFull { path: self.path.clone(), max_entries: cap });
            }
        }
        debug_assert_eq!(value.len(), layout.size);
        let shape = Shape::cached(layout);
        let new = NewBlock { name, kind, shape: &shape, count };
        let (at, entry, serial) = self.v2_place(&new, 0, blk::STATE_LIVE, 0, |data, fresh| match kind {
            EntryKind::Array | EntryKind::Bytes => self.fill_repeated(data, &value, count, fresh),
            _ => self.map().write(data, &value),
        })?;
        self.index_insert(hash64(name), at)?;
        self.live_u64(v2h::ENTRY_COUNT).fetch_add(1, Ordering::AcqRel);
        self.catalog_changed()?;
        // This process wrote the block: no need to decode it again.
        self.accept_decoded(at, serial, entry)
    }

    /// Bumps `catalog_seq`, so that every process's cache of names is dropped.
    pub(crate) fn catalog_changed(&self) -> Result<()> {
        self.catalog_seq().fetch_add(1, Ordering::AcqRel);
        self.sync_if(0, v2h::HEADER_SIZE)
    }

    /// Syncs `offset..offset + len` if the store's durability is power loss.
    fn sync_if(&self, offset: u64, len: u64) -> Result<()> {
        if self.durability == Durability::PowerLoss {
            self.sync_range(offset, len)?;
        }
        Ok(())
    }

    /// Allocates and writes a new entry block for `new`, with data filled by `write_data` (given
    /// the data offset and whether that space is fresh, hence zero), and publishes it with
    /// `state` (and `moved_to`, the block a shadow replaces) and `seq`. The caller holds the admin
    /// lock. Returns the block's offset, its static part and its serial.
    pub(crate) fn v2_place(
        &self,
        new: &NewBlock<'_>,
        seq: u64,
        state: u32,
        moved_to: u64,
        write_data: impl FnOnce(u64, bool) -> bool,
    ) -> Result<(u64, Entry, u64)> {
        let NewBlock { name, kind, shape, count } = *new;
        let (elem_size, elem_align) = (shape.elem_size, shape.elem_align);
        let unsupported = |reason: String| Error::UnsupportedLayout {
            name: name.to_owned(),
            type_name: shape.type_name.clone(),
            reason,
        };
        if elem_align > PAGE {
            return Err(unsupported(format!(
                "it is aligned to {elem_align} bytes, but store data is aligned to at most {PAGE}; lower its `align`"
            )));
        }
        if !elem_align.is_power_of_two() || !elem_size.is_multiple_of(elem_align) {
            return Err(unsupported(format!("its size {elem_size} and alignment {elem_align} do not fit together")));
        }
        if kind == EntryKind::Bytes && shape.fingerprint != <u8 as crate::SharedLayout>::LAYOUT.fingerprint {
            return Err(unsupported("a byte region holds u8 bytes; copy them into a new array entry instead".into()));
        }
        let schema_bytes = &shape.schema;
        if let Err(e) = schema::decode(schema_bytes) {
            return Err(unsupported(format!("its layout descriptor cannot be recorded: {e}")));
        }
        let (slot_count, slot_stride, data_align, data_len) = match kind {
            EntryKind::Array | EntryKind::Bytes => {
                let len = elem_size.checked_mul(count);
                let align = if len.is_none_or(|l| l >= PAGE) { PAGE } else { OBJECT_ALIGN };
                (1u8, 0, elem_align.max(align), len)
            }
            _ => {
                let stride = align_up(elem_size.max(1), OBJECT_ALIGN).unwrap_or(u64::MAX);
                if shape.atomics {
                    (1, 0, elem_align.max(OBJECT_ALIGN), Some(stride))
                } else {
                    (2, stride, elem_align.max(OBJECT_ALIGN), stride.checked_mul(2))
                }
            }
        };
        // Data, then the schema (8-aligned), in one extent of whole cache lines.
        let schema_at = data_len.and_then(|len| align_up(len.max(1), 8));
        let extent = schema_at
            .and_then(|s| s.checked_add(schema_bytes.len() as u64))
            .and_then(|end| align_up(end, 64))
            .filter(|&len| len <= crate::file::create::MAX_CAPACITY);
        let Some(extent) = extent else {
            return Err(Error::EntryTooLarge {
                name: name.to_owned(),
                len: count,
                elem_size,
                maximum: crate::file::create::MAX_CAPACITY,
            });
        };
        let schema_at = schema_at.expect("checked with the extent");
        let (data, fresh) = self.alloc_extent(extent, data_align)?;
        let block = match self.alloc_block() {
            Ok(block) => block,
            Err(e) => {
                self.give_extent(data, extent);
                return Err(e);
            }
        };
        let entry = Entry {
            name: name.to_owned(),
            kind,
            slot_count,
            version: shape.version,
            fingerprint: shape.fingerprint,
            elem_size,
            elem_align,
            count,
            data_offset: data,
            slot_stride,
            schema_offset: data + schema_at,
            schema_len: schema_bytes.len() as u64,
            lock_offset: v2h::entry_lock_byte(block),
        };
        if !(self.map().write(entry.schema_offset, schema_bytes) && write_data(data, fresh)) {
            return Err(self.corrupt("the allocator handed out space outside the file".into()));
        }
        self.sync_if(data, extent)?;
        let serial = self.publish_block(block, &entry, seq, state, moved_to)?;
        Ok((block, entry, serial))
    }

    /// Writes the block at `block` for `entry` (a new serial; `seq` rounded up past the block's
    /// own, so that a reader of its previous entry never sees the same sequence again), and
    /// publishes it with `state`. The caller holds the admin lock.
    pub(crate) fn publish_block(&self, block: u64, entry: &Entry, seq: u64, state: u32, moved_to: u64) -> Result<u64> {
        let serial = self.live_u64(v2h::NEXT_SERIAL).fetch_add(1, Ordering::AcqRel);
        let serial = serial.max(1);
        if !self.map().write(block + blk::STATIC_OFFSET, &blk::encode(entry, serial)) {
            return Err(self.corrupt("the allocator handed out a block outside the file".into()));
        }
        let seq_word = self.word64(block + blk::SEQ)?;
        // Keep a double-buffered object's active slot: slot 0 for a new entry, the old one's for
        // a replacement whose data was copied slot for slot (`seq` of the replaced block).
        let old = seq_word.load(Ordering::Acquire);
        let next = if old == 0 { seq } else { ((old + 2) & !1).max(seq & !1) | (seq & 1) };
        seq_word.store(next, Ordering::Release);
        self.word64(block + blk::MOVED_TO)?.store(moved_to, Ordering::Release);
        self.word32(block + blk::INTERRUPTED)?.store(0, Ordering::Release);
        self.word64(block + blk::SERIAL)?.store(serial, Ordering::Release);
        self.sync_if(block, BLOCK_SIZE)?;
        self.sync_if(0, v2h::HEADER_SIZE)?;
        // Publish: everything above happens-before any reader that sees the state.
        self.word32(block + blk::STATE)?.store(state, Ordering::Release);
        self.sync_if(block, BLOCK_SIZE)?;
        Ok(serial)
    }

    /// Writes `value` into `count` consecutive elements at `offset`. Fresh store space is zero, so
    /// a zero value writes nothing there and leaves the file sparse.
    pub(crate) fn fill_repeated(&self, offset: u64, value: &[u8], count: u64, fresh: bool) -> bool {
        if value.is_empty() || (fresh && value.iter().all(|&b| b == 0)) {
            return true;
        }
        const CHUNK: usize = 64 * 1024;
        let per_chunk = (CHUNK / value.len()).max(1) as u64;
        let chunk: Vec<u8> = value.repeat(per_chunk.min(count) as usize);
        let mut done = 0u64;
        while done < count {
            let n = per_chunk.min(count - done);
            if !self.map().write(offset + done * value.len() as u64, &chunk[..(n as usize) * value.len()]) {
                return false;
            }
            done += n;
        }
        true
    }

    /// `len` bytes (a multiple of 64) aligned to `align`: first fit from the free extents, else
    /// from the allocation end (growing the store if needed). Returns the offset and whether the
    /// space is fresh (zero). The caller holds the admin lock.
    fn alloc_extent(&self, len: u64, align: u64) -> Result<(u64, bool)> {
        if let Some(at) = self.take_free(v2h::FREE_EXTENTS, len, align)? {
            return Ok((at, false));
        }
        self.bump(len, align).map(|at| (at, true))
    }

    /// A block: from the free blocks, else from the allocation end. The caller holds the admin
    /// lock.
    fn alloc_block(&self) -> Result<u64> {
        if let Some(at) = self.take_free(v2h::FREE_BLOCKS, BLOCK_SIZE, 64)? {
            return Ok(at);
        }
        self.bump(BLOCK_SIZE, 64)
    }

    /// The header of the free extent (or block) at `at`. A free block's header lies in its
    /// static part, so that its live words keep their meaning for handles of its last entry.
    fn free_header(&self, list: u64, at: u64) -> Result<FreeExtent> {
        let header_at = if list == v2h::FREE_BLOCKS { at + blk::STATIC_OFFSET } else { at };
        let mut bytes = [0u8; 32];
        if !self.map().read(header_at, &mut bytes) {
            return Err(self.corrupt(format!("a free-list extent at byte {at} lies outside the mapping")));
        }
        FreeExtent::decode(&bytes, at, self.capacity()).map_err(|e| self.corrupt(format!("{e} (byte {at})")))
    }

    fn write_free_header(&self, list: u64, at: u64, extent: FreeExtent) -> bool {
        let header_at = if list == v2h::FREE_BLOCKS { at + blk::STATIC_OFFSET } else { at };
        self.map().write(header_at, &extent.encode()[..32])
    }

    /// Takes `len` bytes aligned to `align` from the free list whose head is the header word
    /// `list`: the first extent that starts aligned and is long enough. Its remainder (whole cache
    /// lines) becomes a new extent, written before the one store that unlinks the taken extent.
    /// A damaged list is cut where the damage starts (its space leaks; nothing is handed out
    /// twice).
    fn take_free(&self, list: u64, len: u64, align: u64) -> Result<Option<u64>> {
        let head = self.live_u64(list);
        // `pred` is the extent whose `next` leads to `at` (0: the header word `list`).
        let (mut pred, mut pred_extent) = (0u64, None::<FreeExtent>);
        let mut at = head.load(Ordering::Acquire);
        let mut steps = 0u64;
        while at != 0 {
            steps += 1;
            let Ok(extent) = self.free_header(list, at) else { break };
            if steps > self.capacity() / 64 {
                break;
            }
            let fits =
                at.is_multiple_of(align) && extent.len >= len && (list != v2h::FREE_BLOCKS || extent.len == BLOCK_SIZE);
            if fits {
                self.claim(at, at + extent.len)?;
                let rest = extent.len - len;
                let next = if rest >= 64 && list == v2h::FREE_EXTENTS {
                    let remainder = at + len;
                    if !self.write_free_header(list, remainder, FreeExtent { len: rest, next: extent.next }) {
                        return Err(self.corrupt("a free extent lies outside the mapping".into()));
                    }
                    self.sync_if(remainder, 64)?;
                    remainder
                } else {
                    extent.next
                };
                match pred_extent {
                    None => head.store(next, Ordering::Release),
                    Some(p) => {
                        if !self.write_free_header(list, pred, FreeExtent { len: p.len, next }) {
                            return Err(self.corrupt("a free extent lies outside the mapping".into()));
                        }
                    }
                }
                self.sync_if(pred, 64)?;
                self.sync_if(0, v2h::HEADER_SIZE)?;
                let taken = if next == extent.next { extent.len } else { len };
                let free = self.live_u64(v2h::FREE_BYTES);
                let _ = free.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| Some(b.saturating_sub(taken)));
                return Ok(Some(at));
            }
            pred = at;
            pred_extent = Some(extent);
            at = extent.next;
        }
        Ok(None)
    }

    /// `len` bytes aligned to `align` from the allocation end, growing the store if needed. The
    /// end is advanced before anything is written, so a crash can leak the space but never hand
    /// it out twice.
    fn bump(&self, len: u64, align: u64) -> Result<u64> {
        let start = self.alloc_end();
        let capacity = self.capacity().min(self.map().len());
        let placed = align_up(start, align).and_then(|at| Some((at, at.checked_add(len)?)));
        let (at, end) = match placed {
            Some(p) if p.1 <= capacity => p,
            Some(p) if let Some(target) = self.growth_target(p.1) => {
                self.grow_to(target)?;
                if self.map().len() < p.1 {
                    return Err(self.io("map", std::io::Error::other("could not map the grown store")));
                }
                p
            }
            other => {
                let needed = other.map_or(u64::MAX, |p| p.1 - start);
                return Err(Error::StoreFull {
                    path: self.path.clone(),
                    needed,
                    available: capacity.saturating_sub(start),
                    capacity,
                    suggested: start.saturating_add(needed).checked_next_power_of_two().unwrap_or(u64::MAX),
                });
            }
        };
        self.live_u64(self.words.alloc_end).store(end, Ordering::Release);
        // The allocation end is a live word: if it lags behind entries (a crafted file), refuse
        // to hand out the bytes of an entry this process uses.
        self.claim(at, end)?;
        Ok(at)
    }

    /// Gives the extent `at..at + len` (64-aligned, whole cache lines) to the free extents:
    /// header first, then one store links it at the head. A crash before the link leaks it.
    fn give_extent(&self, at: u64, len: u64) {
        self.give(v2h::FREE_EXTENTS, at, len);
    }

    fn give(&self, list: u64, at: u64, len: u64) {
        if len < 64 || !at.is_multiple_of(64) || !len.is_multiple_of(64) {
            return;
        }
        let head = self.live_u64(list);
        if !self.write_free_header(list, at, FreeExtent { len, next: head.load(Ordering::Acquire) }) {
            return;
        }
        let _ = self.sync_if(at, 64);
        head.store(at, Ordering::Release);
        self.live_u64(v2h::FREE_BYTES).fetch_add(len, Ordering::AcqRel);
        let _ = self.sync_if(0, v2h::HEADER_SIZE);
    }

    /// Gives the data and schema of `entry` back (unless its layout holds atomics, whose
    /// references may outlive it), and its block `at` if `block` is set.
    fn give_entry_space(&self, at: u64, entry: &Entry, data: bool, block: bool) {
        if data {
            let atomics = self.stored_schema(entry).map_or(true, |s| has_atomics(&s));
            if !atomics {
                if let (Some(d), Some(s)) = (entry.data_range(), entry.schema_range()) {
                    let start = d.start.min(s.start);
                    let end = d.end.max(s.end);
                    // One extent when the schema follows the data, as this allocator places it.
                    if s.start >= d.end && s.start - d.end < 64 && start.is_multiple_of(64) {
                        self.give_extent(start, align_up(end - start, 64).unwrap_or(0));
                    }
                }
            }
        }
        if block {
            self.give(v2h::FREE_BLOCKS, at, BLOCK_SIZE);
        }
    }

    /// Inserts `block` under `hash` into the index, replacing the table first if it would be
    /// more than half full. The caller holds the admin lock.
    pub(crate) fn index_insert(&self, hash: u64, block: u64) -> Result<()> {
        let mut root = self.live_u64(v2h::INDEX_ROOT).load(Ordering::Acquire);
        let mut table = self.index_table(root)?;
        let used = self.word64(root + idx::USED)?.load(Ordering::Acquire);
        if idx::must_grow(used, table.slots) {
            root = self.grow_index(root, table.slots)?;
            table = self.index_table(root)?;
        }
        let slots = table.slots;
        let mut i = table.home(hash);
        for _ in 0..slots {
            let slot = root + idx::slot_offset(i);
            let word = self.word64(slot + idx::SLOT_BLOCK)?;
            let current = word.load(Ordering::Acquire);
            if current == idx::EMPTY || current == idx::TOMBSTONE {
                if current == idx::EMPTY {
                    // Counted before the slot is used: a crash overcounts, which only grows sooner.
                    self.word64(root + idx::USED)?.fetch_add(1, Ordering::AcqRel);
                }
                self.word64(slot + idx::SLOT_HASH)?.store(hash, Ordering::Release);
                word.store(block, Ordering::Release);
                return self.sync_if(slot, idx::SLOT_LEN);
            }
            i = (i + 1) & (slots - 1);
        }
        // Full (its `used` word undercounted): replace it and try again.
        let root = self.grow_index(root, slots)?;
        let table = self.index_table(root)?;
        let slots = table.slots;
        let mut i = table.home(hash);
        for _ in 0..slots {
            let slot = root + idx::slot_offset(i);
            if self.word64(slot + idx::SLOT_BLOCK)?.load(Ordering::Acquire) == idx::EMPTY {
                self.word64(root + idx::USED)?.fetch_add(1, Ordering::AcqRel);
                self.word64(slot + idx::SLOT_HASH)?.store(hash, Ordering::Release);
                self.word64(slot + idx::SLOT_BLOCK)?.store(block, Ordering::Release);
                return self.sync_if(slot, idx::SLOT_LEN);
            }
            i = (i + 1) & (slots - 1);
        }
        Err(self.corrupt("the index is full after growing".into()))
    }

    /// The slot of the current index table that holds `block` under `hash`, if any.
    fn index_slot_of(&self, hash: u64, block: u64) -> Result<Option<u64>> {
        self.probe_index(hash, |slot, current| Ok((current == block).then_some(slot)))
    }

    /// Replaces the index table at `root` (of `slots` slots) by one twice the live count, with
    /// every slot that still leads to an entry; returns the new table's offset. The old table's
    /// space goes to the free extents. The caller holds the admin lock.
    fn grow_index(&self, root: u64, slots: u64) -> Result<u64> {
        let mut keep = Vec::new();
        for i in 0..slots {
            let slot = root + idx::slot_offset(i);
            let block = self.word64(slot + idx::SLOT_BLOCK)?.load(Ordering::Acquire);
            if block == idx::EMPTY || block == idx::TOMBSTONE || !blk::block_in_bounds(block, self.capacity()) {
                continue;
            }
            let state = self.word32(block + blk::STATE)?.load(Ordering::Acquire);
            if matches!(state, blk::STATE_LIVE | blk::STATE_SHADOW | blk::STATE_MOVED) {
                keep.push((self.word64(slot + idx::SLOT_HASH)?.load(Ordering::Acquire), block));
            }
        }
        let new_slots = idx::grown_slots(keep.len() as u64)
            .ok_or_else(|| Error::CatalogFull { path: self.path.clone(), max_entries: u32::MAX })?;
        let len = align_up(idx::table_len(new_slots), 64).expect("bounded by MAX_SLOTS");
        let (at, fresh) = self.alloc_extent(len, 64)?;
        if !fresh && !self.map().write(at, &vec![0u8; len as usize]) {
            return Err(self.corrupt("the allocator handed out space outside the file".into()));
        }
        if !self.map().write(at, &idx::encode_header(new_slots)) {
            return Err(self.corrupt("the allocator handed out space outside the file".into()));
        }
        for &(hash, block) in &keep {
            let mut i = idx::home(hash, new_slots);
            loop {
                let slot = at + idx::slot_offset(i);
                if self.word64(slot + idx::SLOT_BLOCK)?.load(Ordering::Relaxed) == idx::EMPTY {
                    self.word64(slot + idx::SLOT_HASH)?.store(hash, Ordering::Relaxed);
                    self.word64(slot + idx::SLOT_BLOCK)?.store(block, Ordering::Relaxed);
                    break;
                }
                i = (i + 1) & (new_slots - 1);
            }
        }
        self.word64(at + idx::USED)?.store(keep.len() as u64, Ordering::Release);
        self.sync_if(at, len)?;
        // The switch: one store.
        self.live_u64(v2h::INDEX_ROOT).store(at, Ordering::Release);
        self.catalog_changed()?;
        let old_len = align_up(idx::table_len(slots), 64).expect("bounded by MAX_SLOTS");
        self.give_extent(root, old_len);
        Ok(at)
    }

    /// Takes the exclusive lock of `found`'s entry, then the admin lock, for `requested`, and
    /// checks that the entry is still the one found; `None` if it changed meanwhile (look again).
    fn lock_entry_and_admin<'a>(
        &'a self,
        found: &Found,
        requested: &'static str,
        lock: &'a crate::file::lock::EntryLock,
    ) -> Result<Option<(crate::file::lock::Held<'a>, crate::file::lock::Held<'a>)>> {
        let name = &found.entry.name;
        let entry = self.lock_entry(lock, name, true, found.entry.slot_count != 2, Wait::Forever, None)?;
        let admin = self.lock_catalog(requested, name)?;
        Ok(self.still_live(found.at, found.serial).then_some((entry, admin)))
    }

    /// Wakes the waiters of `entry` (at `at`) after a change that ends it: its `seq` moves (by 2
    /// for a double-buffered object, so that its active slot stays; by 1 otherwise), so lock-free
    /// readers retry and see the new state.
    fn end_entry(&self, at: u64, entry: &Entry) -> Result<()> {
        let step = if entry.slot_count == 2 { 2 } else { 1 };
        self.word64(at + blk::SEQ)?.fetch_add(step, Ordering::AcqRel);
        let futex = self.word32(at + blk::FUTEX)?;
        futex.fetch_add(1, Ordering::SeqCst);
        if self.word32(at + blk::WAITERS)?.load(Ordering::SeqCst) != 0 {
            crate::sys::futex_wake(futex);
        }
        Ok(())
    }

    /// Removes the entry `name`; see [`Store::remove`](crate::Store::remove).
    pub(crate) fn v2_remove(&self, name: &str) -> Result<()> {
        if self.read_only {
            return Err(self.read_only_error("removing an entry"));
        }
        for _ in 0..MAX_RETRIES {
            let found = self.find(name)?;
            let lock = self.entry_lock(found.entry.lock_offset)?;
            let Some(_held) = self.lock_entry_and_admin(&found, "removing", &lock)? else { continue };
            // The commit point.
            self.word32(found.at + blk::STATE)?.store(blk::STATE_REMOVED, Ordering::Release);
            self.sync_if(found.at, BLOCK_SIZE)?;
            self.end_entry(found.at, &found.entry)?;
            if let Some(slot) = self.index_slot_of(hash64(name), found.at)? {
                self.word64(slot + idx::SLOT_BLOCK)?.store(idx::TOMBSTONE, Ordering::Release);
                self.sync_if(slot, idx::SLOT_LEN)?;
            }
            let count = self.live_u64(v2h::ENTRY_COUNT);
            let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| Some(c.saturating_sub(1)));
            self.catalog_changed()?;
            self.v2_cache().forget(found.at);
            self.give_entry_space(found.at, &found.entry, true, true);
            return Ok(());
        }
        Err(self.corrupt(format!("entry `{name}` kept changing while it was removed")))
    }

    /// Renames the entry `from` to `to`; see [`Store::rename`](crate::Store::rename).
    pub(crate) fn v2_rename(&self, from: &str, to: &str) -> Result<()> {
        crate::file::catalog::valid_name(to)?;
        if self.read_only {
            return Err(self.read_only_error("renaming an entry"));
        }
        for _ in 0..MAX_RETRIES {
            let found = self.find(from)?;
            if from == to {
                return Ok(());
            }
            let lock = self.entry_lock(found.entry.lock_offset)?;
            let Some(_held) = self.lock_entry_and_admin(&found, "renaming", &lock)? else { continue };
            if self.v2_lookup(to)?.is_some() {
                return Err(Error::NameTaken { from: from.to_owned(), to: to.to_owned() });
            }
            let old = found.at;
            let block = self.alloc_block()?;
            let entry =
                Entry { name: to.to_owned(), lock_offset: v2h::entry_lock_byte(block), ..(*found.entry).clone() };
            let seq = self.word64(old + blk::SEQ)?.load(Ordering::Acquire);
            self.publish_block(block, &entry, seq, blk::STATE_SHADOW, old)?;
            self.index_insert(hash64(to), block)?;
            self.commit_move(old, block)?;
            if let Some(slot) = self.index_slot_of(hash64(from), old)? {
                self.word64(slot + idx::SLOT_BLOCK)?.store(idx::TOMBSTONE, Ordering::Release);
                self.sync_if(slot, idx::SLOT_LEN)?;
            }
            self.end_entry(old, &found.entry)?;
            self.catalog_changed()?;
            self.v2_cache().forget(old);
            self.give_entry_space(old, &found.entry, false, true);
            return Ok(());
        }
        Err(self.corrupt(format!("entry `{from}` kept changing while it was renamed")))
    }

    /// The commit point of a rename or a replacement: the old block forwards to the new one and
    /// is `moved`; then the new one, a shadow until now, becomes plainly live.
    fn commit_move(&self, old: u64, new: u64) -> Result<()> {
        self.word64(old + blk::MOVED_TO)?.store(new, Ordering::Release);
        self.word32(old + blk::STATE)?.store(blk::STATE_MOVED, Ordering::Release);
        self.sync_if(old, BLOCK_SIZE)?;
        self.word32(new + blk::STATE)?.store(blk::STATE_LIVE, Ordering::Release);
        self.word64(new + blk::MOVED_TO)?.store(0, Ordering::Release);
        self.sync_if(new, BLOCK_SIZE)
    }

    /// Replaces the entry `found` (whose exclusive lock the caller holds) by a new block of
    /// `count` values of `layout` under the same name, with data written by `write_data` (given
    /// the data offset and whether the space is fresh): resize and migration. The index slot is
    /// switched to the new block and the old space is given back. `seq` keeps the active slot of
    /// a double-buffered object whose data is copied slot for slot.
    pub(crate) fn v2_replace(
        &self,
        found: &Found,
        layout: &'static Layout,
        count: u64,
        seq: u64,
        write_data: impl FnOnce(u64, bool) -> bool,
    ) -> Result<()> {
        let name = &found.entry.name;
        let _admin = self.lock_catalog("replacing", name)?;
        let old = found.at;
        if !self.still_live(old, found.serial) {
            return Err(Error::Removed { name: name.clone() });
        }
        let shape = Shape::cached(layout);
        let new = NewBlock { name, kind: found.entry.kind, shape: &shape, count };
        let (block, _, _) = self.v2_place(&new, seq, blk::STATE_SHADOW, old, write_data)?;
        self.commit_move(old, block)?;
        if let Some(slot) = self.index_slot_of(hash64(name), old)? {
            self.word64(slot + idx::SLOT_BLOCK)?.store(block, Ordering::Release);
            self.sync_if(slot, idx::SLOT_LEN)?;
        }
        self.end_entry(old, &found.entry)?;
        self.catalog_changed()?;
        self.v2_cache().forget(old);
        self.give_entry_space(old, &found.entry, true, true);
        Ok(())
    }

    /// Fails unless the block `at` still holds the entry with `serial` that a handle was made
    /// for: [`Error::Removed`], [`Error::Moved`] (renamed or resized), or the error `mismatch`
    /// gives for the entry now under the same name (migrated away from the handle's layout).
    pub(crate) fn v2_check_current(
        &self,
        at: u64,
        serial: u64,
        entry: &Entry,
        mismatch: Option<LayoutCheck<'_>>,
    ) -> Result<()> {
        // A committed shadow (a replacement whose last step a crash cut off) is live too.
        if self.still_live(at, serial) {
            return Ok(());
        }
        let state = self.word32(at + blk::STATE)?.load(Ordering::Acquire);
        let same = self.word64(at + blk::SERIAL)?.load(Ordering::Acquire) == serial;
        if state != blk::STATE_MOVED || !same {
            return Err(Error::Removed { name: entry.name.clone() });
        }
        let next = self.word64(at + blk::MOVED_TO)?.load(Ordering::Acquire);
        // The block may be reused right now (its words rewritten): then the entry is gone.
        let resolved = self.resolve_block(next, None);
        let reused = self.word64(at + blk::SERIAL)?.load(Ordering::Acquire) != serial;
        let Ok(Some(newest)) = resolved.map(|found| found.filter(|_| !reused)) else {
            return Err(Error::Removed { name: entry.name.clone() });
        };
        let e = &newest.entry;
        if let Some(error) = mismatch.filter(|_| e.name == entry.name).and_then(|mismatch| mismatch(e)) {
            return Err(error);
        }
        Err(Error::Moved { name: entry.name.clone(), to: e.name.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object of two 64-byte slots at `data`, its 40-byte schema at `schema`.
    fn object(data: u64, schema: u64) -> Entry {
        Entry {
            name: "e".into(),
            kind: EntryKind::Object,
            slot_count: 2,
            version: 1,
            fingerprint: 7,
            elem_size: 8,
            elem_align: 8,
            count: 1,
            data_offset: data,
            slot_stride: 64,
            schema_offset: schema,
            schema_len: 40,
            lock_offset: 0,
        }
    }

    #[test]
    fn an_entry_placed_in_one_run_claims_one_range() {
        // Data 8192..8320, schema 8320..8360, padding to 8384, then the block: one range.
        let ranges: Vec<_> = block_ranges(8384, &object(8192, 8320)).collect();
        assert_eq!(ranges, [(8192, 8384 + BLOCK_SIZE)]);
        // A block elsewhere (reused from the free blocks) is a range of its own.
        let ranges: Vec<_> = block_ranges(65536, &object(8192, 8320)).collect();
        assert_eq!(ranges, [(65536, 65536 + BLOCK_SIZE), (8192, 8360)]);
        // A schema apart from its data, and the block right after the schema.
        let ranges: Vec<_> = block_ranges(16448, &object(8192, 16384)).collect();
        assert_eq!(ranges, [(8192, 8320), (16384, 16448 + BLOCK_SIZE)]);
        // A block a cache line or more past the extent is not joined.
        let ranges: Vec<_> = block_ranges(8448, &object(8192, 8320)).collect();
        assert_eq!(ranges, [(8448, 8448 + BLOCK_SIZE), (8192, 8360)]);
    }

    /// The owners of the ranges in `model` that overlap `start..end`, sorted.
    fn brute(model: &[(u64, u64, u64)], start: u64, end: u64) -> Vec<u64> {
        let mut owners: Vec<u64> = model.iter().filter(|r| r.0 < end && start < r.1).map(|r| r.2).collect();
        owners.sort_unstable();
        owners
    }

    fn sorted(mut owners: Vec<u64>) -> Vec<u64> {
        owners.sort_unstable();
        owners
    }

    #[test]
    fn ranges_report_each_overlapping_owner_once() {
        let mut set = Ranges::default();
        // Short ranges, one across a window boundary, and a long one.
        let model = [(100, 200, 1), (4000, 4200, 2), (8192, 8192 + 64, 3), (20_000, 90_000, 4)];
        for &(s, e, o) in &model {
            set.insert(s, e, o);
        }
        for (start, end) in
            [(0, 100), (0, 101), (150, 4100), (4100, 4101), (0, 1 << 20), (8200, 30_000), (90_000, 1 << 40)]
        {
            assert_eq!(sorted(set.overlapping(start, end)), brute(&model, start, end), "{start}..{end}");
        }
        // Removal needs the owner; a removed range is not reported, the others still are.
        // An empty range is not added.
        set.insert(0, 0, 7);
        set.insert(5000, 5000, 7);
        assert!(sorted(set.overlapping(0, 1 << 20)).iter().all(|&o| o != 7));
        set.remove(4000, 4200, 9);
        assert_eq!(set.overlapping(4100, 4101), [2]);
        set.remove(4000, 4200, 2);
        set.remove(20_000, 90_000, 4);
        assert!(set.overlapping(4000, 4200).is_empty());
        assert!(set.overlapping(30_000, 30_001).is_empty());
        assert_eq!(sorted(set.overlapping(0, 1 << 20)), [1, 3]);
        // Window 1 held only range 2: emptied, it is dropped; window 0 still holds range 1.
        assert!(!set.short.contains_key(&1));
        assert_eq!(set.short[&0], [(100, 200, 1)]);
    }

    proptest::proptest! {
        /// Against a list searched in full: disjoint ranges of any length, inserted and removed in
        /// any order, queried over any span.
        #[test]
        fn ranges_agree_with_a_list(
            lens in proptest::collection::vec((0u64..3, 1u64..10_000, 0u64..6000), 1..40),
            queries in proptest::collection::vec((0u64..300_000, 1u64..100_000), 1..20),
            drop_every in 2usize..5,
        ) {
            let mut set = Ranges::default();
            let mut model = Vec::new();
            let mut at = 0;
            for (i, &(gap_kind, len, gap)) in lens.iter().enumerate() {
                at += if gap_kind == 0 { 0 } else { gap };
                let len = if gap_kind == 2 { len * 8 } else { len % 5000 + 1 };
                set.insert(at, at + len, i as u64 + 1);
                model.push((at, at + len, i as u64 + 1));
                at += len;
            }
            for i in (0..model.len()).step_by(drop_every) {
                let (s, e, o) = model[i];
                set.remove(s, e, o);
            }
            let model: Vec<_> = model.iter().enumerate().filter(|(i, _)| i % drop_every != 0).map(|(_, r)| *r).collect();
            for (start, len) in queries {
                proptest::prop_assert_eq!(sorted(set.overlapping(start, start + len)), brute(&model, start, start + len));
            }
        }
    }
}
