use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
#[shared(version = 7)]
struct V7 {
    x: u32,
}

#[derive(SharedLayout)]
#[repr(u8)]
#[shared(version = 2u32)]
enum E {
    A,
}

// Other attributes and derives coexist with the derive.
/// Documented.
#[derive(SharedLayout, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[shared()]
struct Plain {
    /// A field.
    x: u32,
}

fn main() {
    assert_eq!(V7::LAYOUT.version, 7);
    assert_eq!(E::LAYOUT.version, 2);
    assert_eq!(Plain::LAYOUT.version, 1);
}
