use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Handle {
    id: u64,
}

impl Drop for Handle {
    fn drop(&mut self) {}
}

fn main() {}
