use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
union Value {
    int: u64,
    float: f64,
}

fn main() {}
