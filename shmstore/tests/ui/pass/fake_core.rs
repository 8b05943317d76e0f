// A crate root can rebind `core`: `extern crate self as core;` makes `::core::...` name this crate.
// Here `::core` is an impostor whose `size_of`, `align_of` and `offset_of!` lie and whose `assert!`
// checks nothing, and `u64` is an alias of `u8`. The derive's layouts and checks must not change:
// it names everything through `::shmstore::__private`.
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
        1
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
pub mod marker {
    pub trait Sized {}
    pub trait Send {}
    pub trait Sync {}
}

use shmstore::{SharedLayout, TypeKind};

#[derive(SharedLayout)]
#[repr(C)]
struct Config {
    port: u16,
    verbose: bool,
    level: u8,
    max_conn: u32,
}

mod shadowed {
    type u64 = u8;

    /// `Wide::Big as u64` would be `as u8` here, and truncate the discriminant.
    #[derive(shmstore::SharedLayout)]
    #[repr(u64)]
    pub enum Wide {
        Small = 1,
        Big = 0x1_0000_0001,
    }
}

fn main() {
    assert_eq!(Config::LAYOUT.size, std::mem::size_of::<Config>());
    assert_eq!(Config::LAYOUT.align, std::mem::align_of::<Config>());
    let TypeKind::Struct { fields } = Config::LAYOUT.kind else { unreachable!() };
    let offsets: Vec<usize> = fields.iter().map(|f| f.offset).collect();
    assert_eq!(
        offsets,
        [
            std::mem::offset_of!(Config, port),
            std::mem::offset_of!(Config, verbose),
            std::mem::offset_of!(Config, level),
            std::mem::offset_of!(Config, max_conn),
        ]
    );
    assert_eq!(offsets, [0, 2, 3, 4]);

    let TypeKind::Enum { variants, .. } = shadowed::Wide::LAYOUT.kind else { unreachable!() };
    assert_eq!(variants[1].value, 0x1_0000_0001);
    assert_eq!(shadowed::Wide::LAYOUT.size, 8);
}
