//! The layout fingerprint is structural: it changes with anything that changes what the bytes mean
//! (field names, order, offsets, types, sizes, nested layouts) and with nothing else (the type's
//! name, its module, its version).

use shmstore::SharedLayout;

fn fp<T: SharedLayout>() -> u64 {
    T::LAYOUT.fingerprint
}

mod a {
    use shmstore::SharedLayout;

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct Inner {
        pub flag: u8,
        pub level: u8,
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct Config {
        pub port: u32,
        pub inner: Inner,
        pub _pad: [u8; 2],
        pub tag: [u8; 4],
    }
}

/// The same definitions as in `a`, written again in another module.
mod b {
    use shmstore::SharedLayout;

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct Inner {
        pub flag: u8,
        pub level: u8,
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct Config {
        pub port: u32,
        pub inner: Inner,
        pub _pad: [u8; 2],
        pub tag: [u8; 4],
    }
}

/// Each struct here differs from `a::Config` in one way.
mod changed {
    use shmstore::SharedLayout;

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct RenamedField {
        pub port_number: u32,
        pub inner: super::a::Inner,
        pub _pad: [u8; 2],
        pub tag: [u8; 4],
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct Reordered {
        pub port: u32,
        pub tag: [u8; 4],
        pub inner: super::a::Inner,
        pub _pad: [u8; 2],
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct Retyped {
        pub port: i32,
        pub inner: super::a::Inner,
        pub _pad: [u8; 2],
        pub tag: [u8; 4],
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct Resized {
        pub port: u64,
        pub inner: super::a::Inner,
        pub _pad: [u8; 2],
        pub tag: [u8; 4],
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct LongerArray {
        pub port: u32,
        pub inner: super::a::Inner,
        pub _pad: [u8; 1],
        pub tag: [u8; 5],
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct Inner {
        pub flag: u8,
        pub priority: u8,
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct NestedChanged {
        pub port: u32,
        pub inner: Inner,
        pub _pad: [u8; 2],
        pub tag: [u8; 4],
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    #[shared(version = 9)]
    pub struct Config {
        pub port: u32,
        pub inner: super::a::Inner,
        pub _pad: [u8; 2],
        pub tag: [u8; 4],
    }

    #[derive(SharedLayout)]
    #[repr(C)]
    pub struct Settings {
        pub port: u32,
        pub inner: super::a::Inner,
        pub _pad: [u8; 2],
        pub tag: [u8; 4],
    }
}

#[test]
fn same_definition_same_fingerprint() {
    assert_eq!(fp::<a::Config>(), fp::<b::Config>());
    assert_eq!(fp::<a::Inner>(), fp::<b::Inner>());
    assert_eq!(a::Config::LAYOUT, b::Config::LAYOUT);
}

#[test]
fn every_structural_change_changes_it() {
    let base = fp::<a::Config>();
    let variants = [
        ("renamed field", fp::<changed::RenamedField>()),
        ("reordered fields", fp::<changed::Reordered>()),
        ("u32 -> i32", fp::<changed::Retyped>()),
        ("u32 -> u64", fp::<changed::Resized>()),
        ("[u8; 4] -> [u8; 5]", fp::<changed::LongerArray>()),
        ("nested struct's field renamed", fp::<changed::NestedChanged>()),
    ];
    for (i, (what, value)) in variants.iter().enumerate() {
        assert_ne!(*value, base, "{what} must change the fingerprint");
        for (other, other_value) in &variants[i + 1..] {
            assert_ne!(value, other_value, "{what} and {other} collide");
        }
    }
    assert_ne!(fp::<a::Inner>(), fp::<changed::Inner>());
}

#[test]
fn version_and_type_name_do_not_change_it() {
    // By design: the version is the user's own label, checked separately, and renaming or moving
    // a type keeps its data readable.
    let base = a::Config::LAYOUT;
    let versioned = changed::Config::LAYOUT;
    assert_eq!(versioned.version, 9);
    assert_eq!(versioned.fingerprint, base.fingerprint);

    let renamed = changed::Settings::LAYOUT;
    assert_eq!(renamed.type_name, "Settings");
    assert_eq!(renamed.fingerprint, base.fingerprint);
}

#[derive(SharedLayout)]
#[repr(u8)]
enum Mode {
    Idle,
    Busy,
}

mod enums {
    use shmstore::SharedLayout;

    #[derive(SharedLayout)]
    #[repr(u8)]
    pub enum Renumbered {
        Idle,
        Busy = 2,
    }

    #[derive(SharedLayout)]
    #[repr(u8)]
    pub enum RenamedVariant {
        Idle,
        Working,
    }

    #[derive(SharedLayout)]
    #[repr(u16)]
    pub enum Wider {
        Idle,
        Busy,
    }

    #[derive(SharedLayout)]
    #[repr(u8)]
    pub enum Mode {
        Idle,
        Busy,
    }
}

#[test]
fn enum_fingerprints() {
    let base = fp::<Mode>();
    assert_eq!(fp::<enums::Mode>(), base);
    assert_ne!(fp::<enums::Renumbered>(), base);
    assert_ne!(fp::<enums::RenamedVariant>(), base);
    assert_ne!(fp::<enums::Wider>(), base);
}

#[derive(SharedLayout)]
#[repr(C)]
struct Pinned {
    a: u32,
    b: [u16; 2],
}

#[test]
fn pinned_fingerprint() {
    // This literal guards cross-build and cross-machine stability: the fingerprint is written into
    // files, so the same definition must hash to the same value with every compiler, on every
    // target and in every release. If this fails, existing files stop opening: change the value
    // only together with the file format version.
    //
    // The value was computed independently of this crate, by hashing with FNV-1a 64 the sequence
    // that `layout.rs` documents: size 8, align 4, tag 4 (struct), 2 fields, then for each field its
    // length-prefixed name, its offset and its own fingerprint (`u32`; `[u16; 2]`), all as
    // little-endian u64s.
    assert_eq!(Pinned::LAYOUT.fingerprint, 0x194d_39e9_5b81_7a3d);
}
