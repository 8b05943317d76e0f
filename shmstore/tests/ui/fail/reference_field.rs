use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Config {
    name: &'static str,
    ids: &'static [u32],
    parent: &'static Config,
}

fn main() {}
