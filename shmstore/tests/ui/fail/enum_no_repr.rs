use shmstore::SharedLayout;

#[derive(SharedLayout)]
enum Mode {
    Idle,
    Serving,
}

#[derive(SharedLayout)]
#[repr(C)]
enum State {
    Up,
    Down,
}

fn main() {}
