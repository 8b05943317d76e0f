use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Counters {
    len: usize,
    delta: isize,
    history: [usize; 4],
}

fn main() {}
