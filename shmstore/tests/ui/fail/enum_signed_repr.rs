use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(i8)]
enum Level {
    Low = -1,
    High = 1,
}

#[derive(SharedLayout)]
#[repr(usize)]
enum Kind {
    A,
    B,
}

fn main() {}
