use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(Rust)]
struct Config {
    port: u16,
}

#[derive(SharedLayout)]
#[repr(packed)]
struct Packed {
    port: u16,
}

#[derive(SharedLayout)]
#[repr(align(8))]
struct Aligned {
    port: u16,
}

fn main() {}
