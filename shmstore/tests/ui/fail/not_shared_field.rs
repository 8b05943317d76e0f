use shmstore::SharedLayout;

// Plain data, but without `#[derive(SharedLayout)]`.
#[repr(C)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(SharedLayout)]
#[repr(C)]
struct Shape {
    origin: Point,
    corners: [Point; 4],
}

fn main() {}
