//! The entry machinery under the typed handles: an entry's handle ([`handle`]), its commits
//! ([`commit`], [`seqlock`]) and its read and write guards ([`guard`]).

pub(crate) mod commit;
pub(crate) mod guard;
pub(crate) mod handle;
pub(crate) mod seqlock;
pub(crate) mod staging;
