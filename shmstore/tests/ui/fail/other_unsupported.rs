use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Misc {
    letter: char,
    counter: std::sync::atomic::AtomicUsize,
    lock: std::sync::Mutex<u32>,
    handler: fn(),
    pair: (u32, u32),
}

fn main() {}
