use shmstore::SharedLayout;

// A cache-line sized slot: the alignment is kept, and the tail is filled explicitly.
#[derive(SharedLayout)]
#[repr(C, align(64))]
struct Slot {
    seq: u64,
    len: u32,
    _pad: [u8; 52],
}

#[derive(SharedLayout)]
#[repr(align(16), C)]
struct Line {
    a: u64,
    b: u64,
}

fn main() {
    assert_eq!(Slot::LAYOUT.size, 64);
    assert_eq!(Slot::LAYOUT.align, 64);
    assert_eq!(Line::LAYOUT.align, 16);
}
