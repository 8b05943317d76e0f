use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C, packed)]
struct Header {
    tag: u8,
    len: u32,
    checksum: u16,
}

fn main() {}
