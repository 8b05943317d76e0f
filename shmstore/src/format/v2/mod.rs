//! Format version 2, as pure code over byte slices: the header (static part, open state, live
//! words), the index, entry blocks and free-extent headers. `docs/format.md` is the
//! specification.

pub mod block;
pub mod free;
pub mod header;
pub mod index;
