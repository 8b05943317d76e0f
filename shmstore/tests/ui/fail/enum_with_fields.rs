use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(u8)]
enum Command {
    Stop,
    Start { delay_ms: u32 },
    Restart(u32),
    Pause(),
}

fn main() {}
