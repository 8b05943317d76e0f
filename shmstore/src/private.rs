//! Support items for the code that `#[derive(SharedLayout)]` generates.
//!
//! Not public API: nothing here is covered by semver, and user code should never name it. The items
//! exist so that the derive's compile-time checks produce readable errors: every check is a call to a
//! `const fn` whose trait bound fails with a `#[diagnostic::on_unimplemented]` message written as
//! advice.

use crate::layout::SharedLayout;

// Everything the generated code needs from the language, re-exported so that it never names
// `::core` (or `::std`): a crate root can rebind those names (`extern crate self as core;`, or a
// dependency renamed to `core`), and the padding, offset and drop checks would then mean whatever
// the impostor's `size_of` or `assert!` mean. `::shmstore` is the one path the derive must trust.
pub use core::assert;
pub use core::marker::{Send, Sized, Sync};
pub use core::mem::{align_of, needs_drop, offset_of, size_of};
pub use core::primitive::{u64, u8};

/// Compiles only if `T` implements [`SharedLayout`].
///
/// The derive calls this once per field, with the field's type spanned on the user's source, so that
/// a field type without `SharedLayout` is reported on that field with the trait's advice.
pub const fn assert_shared_layout<T: SharedLayout>() {}

/// Implemented only for `[u8; 0]`: "zero bytes of padding".
///
/// The derive asks whether `[u8; GAP]: NoPaddingAfter<S>` holds, where `GAP` is the number of
/// padding bytes the compiler put after a field of struct `S`. When it does not hold, the error shows
/// the struct's name and the exact field to add (`_pad: [u8; 3]`), something a `const` panic cannot
/// do because it cannot format numbers.
#[diagnostic::on_unimplemented(
    message = "struct `{S}` has padding bytes: fill them with an explicit `_pad: {Self}` field",
    label = "add `_pad: {Self}` right after this field",
    note = "padding bytes are not part of any field: they would hold garbage in the shared file and \
            their contents are not preserved by copies, so `SharedLayout` types must have none",
    note = "give each explicit padding field its own name (`_pad0`, `_pad1`, ...), or reorder the \
            fields from the largest alignment to the smallest so that no padding is needed"
)]
pub trait NoPaddingAfter<S> {}

impl<S> NoPaddingAfter<S> for [u8; 0] {}

/// Compiles only if `Gap` is `[u8; 0]`; see [`NoPaddingAfter`].
pub const fn assert_no_padding_after<S, Gap: NoPaddingAfter<S>>() {}

/// The number of bytes between the end of one field (`end`) and the offset where the next thing
/// starts (`next`): the next field's offset, or the struct's size after the last field.
///
/// Saturates at zero, so that a malformed input (which the other checks reject) never turns into an
/// overflow error on top of the real one.
#[must_use]
pub const fn padding(next: usize, end: usize) -> usize {
    next.saturating_sub(end)
}

// The power-loss simulator's hook (`tests/power_loss.rs`): see `sys/sync.rs`.
pub use crate::sys::sync::{set_sync_hook, SyncEvent, SyncHook, SyncOp, SyncPhase};
