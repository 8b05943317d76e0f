use shmstore::SharedLayout;

#[derive(SharedLayout, Clone, Copy)]
#[repr(C)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(SharedLayout)]
#[repr(C)]
struct Segment {
    from: Point,
    to: Point,
}

#[derive(SharedLayout)]
#[repr(C)]
struct Drawing {
    segments: [Segment; 16],
    corners: [[Point; 2]; 2],
    count: u32,
    _pad: [u8; 4],
    origin: Point,
}

fn main() {
    assert_eq!(Drawing::LAYOUT.size, 16 * 16 + 4 * 8 + 8 + 8);
}
