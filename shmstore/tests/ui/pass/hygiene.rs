// The generated code names everything by absolute path, so local items called like the ones it
// uses do not break it, and it triggers no warnings under strict lints.
#![deny(warnings, missing_docs, unused_qualifications, unsafe_code, clippy::all)]
//! Hygiene check.

#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
struct Layout;
#[allow(dead_code)]
struct Field;

mod inner {
    /// A shared struct in a module, deriving through the full path.
    #[derive(shmstore::SharedLayout)]
    #[repr(C)]
    pub struct Config {
        /// A field.
        pub port: u16,
        /// A field.
        pub mode: Mode,
        /// A field.
        pub level: u8,
    }

    /// A shared enum.
    #[derive(shmstore::SharedLayout)]
    #[repr(u8)]
    pub enum Mode {
        /// A variant.
        A,
        /// A variant.
        B,
    }
}

fn main() {
    use shmstore::SharedLayout;
    assert_eq!(inner::Config::LAYOUT.size, 4);
}
