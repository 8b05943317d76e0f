use shmstore::SharedLayout;

#[derive(SharedLayout, Clone, Copy)]
#[repr(u8)]
enum Mode {
    Idle,
    Serving,
    Draining,
}

#[derive(SharedLayout, Clone, Copy)]
#[repr(u16)]
enum Port {
    Http = 80,
    Https = 443,
    Alt = 8080,
}

#[derive(SharedLayout, Clone, Copy)]
#[repr(u32)]
enum Code {
    Ok = 0,
    Later,
    Far = 100_000,
}

#[derive(SharedLayout, Clone, Copy)]
#[repr(u64)]
enum Big {
    Small = 1,
    Huge = u64::MAX,
}

#[derive(SharedLayout)]
#[repr(C)]
struct Status {
    code: Code,
    port: Port,
    mode: Mode,
    _pad: [u8; 1],
    big: Big,
}

fn main() {
    assert_eq!(Status::LAYOUT.size, 16);
}
