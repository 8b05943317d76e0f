use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
#[shared(version = "2")]
struct A {
    x: u32,
}

#[derive(SharedLayout)]
#[repr(C)]
#[shared(verison = 2)]
struct B {
    x: u32,
}

#[derive(SharedLayout)]
#[repr(C)]
#[shared(version = 5000000000)]
struct C {
    x: u32,
}

#[derive(SharedLayout)]
#[repr(C)]
#[shared(version = 2, version = 3)]
struct D {
    x: u32,
}

#[derive(SharedLayout)]
#[repr(C)]
#[shared]
struct E {
    #[shared(version = 2)]
    x: u32,
}

// Every problem in one attribute is reported, not just the first.
#[derive(SharedLayout)]
#[repr(C)]
#[shared(verison = 2, version = -1, size = 4)]
struct F {
    x: u32,
}

#[derive(SharedLayout)]
#[repr(C)]
#[shared(version)]
struct G {
    x: u32,
}

fn main() {}
