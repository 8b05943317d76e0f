//! The state of one store file, below the entry machinery and above `format/` and `sys/`: the
//! per-file state ([`state`]) and the making of new files ([`create`]), the mappings ([`map`]) and
//! the shaped copies out of them ([`copy`]), the catalog ([`catalog`], [`catalog_v2`], [`image`])
//! and the locks ([`lock`], [`lock_mode`]).

pub(crate) mod catalog;
pub(crate) mod catalog_v2;
pub(crate) mod copy;
pub(crate) mod create;
pub(crate) mod image;
pub(crate) mod lock;
pub(crate) mod lock_mode;
pub(crate) mod map;
pub(crate) mod state;
