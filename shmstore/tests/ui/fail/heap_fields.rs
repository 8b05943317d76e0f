use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Config {
    name: String,
    ports: Vec<u16>,
    parent: Box<u64>,
    tags: std::sync::Arc<[u8; 4]>,
    timeout: Option<u32>,
}

fn main() {}
