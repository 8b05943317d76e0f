use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Pair(u32, i32);

#[derive(SharedLayout)]
#[repr(C)]
struct Unit;

#[derive(SharedLayout)]
#[repr(C)]
struct Empty {}

fn main() {
    assert_eq!(Pair::LAYOUT.size, 8);
    assert_eq!(Unit::LAYOUT.size, 0);
    assert_eq!(Empty::LAYOUT.size, 0);
}
