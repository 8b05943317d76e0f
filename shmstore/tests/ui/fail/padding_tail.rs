use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Entry {
    id: u64,
    flag: u8,
}

fn main() {}
