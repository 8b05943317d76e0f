use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Slot<T> {
    value: T,
}

#[derive(SharedLayout)]
#[repr(C)]
struct Buffer<const N: usize> {
    data: [u8; N],
}

#[derive(SharedLayout)]
#[repr(C)]
struct Named<'a> {
    name: &'a str,
}

fn main() {}
