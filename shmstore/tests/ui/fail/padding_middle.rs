use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Config {
    verbose: bool,
    max_conn: u32,
}

// Every gap is reported, each on the field it follows.
#[derive(SharedLayout)]
#[repr(C)]
struct Record {
    kind: u8,
    id: u64,
    flags: u16,
    weight: f32,
}

fn main() {}
