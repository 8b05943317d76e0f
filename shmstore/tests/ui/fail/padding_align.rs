use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C, align(16))]
struct Slot {
    seq: u64,
    len: u32,
}

fn main() {}
