use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(transparent)]
struct Meters(f64);

#[derive(SharedLayout)]
#[repr(transparent)]
struct UserId {
    raw: u64,
}

// A zero-sized field next to the real one is allowed by `repr(transparent)`.
#[derive(SharedLayout)]
#[repr(transparent)]
struct Tagged(u32, [u8; 0]);

fn main() {
    assert_eq!(Meters::LAYOUT.size, 8);
    assert_eq!(UserId::LAYOUT.align, 8);
    assert_eq!(Tagged::LAYOUT.size, 4);
}
