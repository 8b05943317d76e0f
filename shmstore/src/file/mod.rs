//! The state of one store file, below the entry machinery: its mappings ([`map`]), its catalog
//! ([`catalog`], [`catalog_v2`], [`image`]) and its locks ([`lock`], [`lock_mode`]).

pub(crate) mod catalog;
pub(crate) mod catalog_v2;
pub(crate) mod copy;
pub(crate) mod image;
pub(crate) mod lock;
pub(crate) mod lock_mode;
pub(crate) mod map;
pub(crate) mod state;
