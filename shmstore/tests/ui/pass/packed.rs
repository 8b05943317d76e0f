use shmstore::SharedLayout;

// Every field is at a multiple of its own alignment, so `packed` only drops the tail padding.
#[derive(SharedLayout)]
#[repr(C, packed)]
struct Header {
    len: u32,
    kind: u16,
    tag: u8,
    flag: u8,
}

#[derive(SharedLayout)]
#[repr(C, packed(2))]
struct Pairs {
    a: u16,
    b: u16,
    c: [u8; 2],
}

fn main() {
    assert_eq!(Header::LAYOUT.size, 8);
    assert_eq!(Header::LAYOUT.align, 1);
    assert_eq!(Pairs::LAYOUT.align, 2);
}
