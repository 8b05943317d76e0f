// With `::core` rebound to an impostor whose `offset_of!` and `size_of` say every gap is empty and
// whose `assert!` checks nothing, padding must still be refused: the derive's checks name
// everything through `::shmstore::__private`, never `::core`.
#![allow(dead_code, unused_macros, unused_imports, non_camel_case_types)]

extern crate self as core;

macro_rules! fake_offset_of {
    ($($t:tt)*) => {
        0
    };
}
macro_rules! fake_assert {
    ($($t:tt)*) => {
        ()
    };
}

pub mod mem {
    pub const fn size_of<T>() -> usize {
        0
    }
    pub const fn align_of<T>() -> usize {
        1
    }
    pub const fn needs_drop<T>() -> bool {
        false
    }
    pub(crate) use fake_offset_of as offset_of;
}
pub(crate) use fake_assert as assert;
pub mod primitive {
    pub type u8 = ::std::primitive::u8;
}

#[derive(shmstore::SharedLayout)]
#[repr(C)]
struct Config {
    verbose: bool,
    max_conn: u32,
}

fn main() {}
