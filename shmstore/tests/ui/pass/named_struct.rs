use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
pub struct Config {
    pub max_conn: u64,
    pub timeout_ms: u32,
    pub port: u16,
    pub verbose: bool,
    pub level: i8,
    pub ratio: f64,
    r#type: u32,
    _pad: [u8; 4],
}

fn main() {
    assert_eq!(Config::LAYOUT.size, std::mem::size_of::<Config>());
}
