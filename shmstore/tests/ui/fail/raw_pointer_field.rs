use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Node {
    value: u64,
    next: *const Node,
    data: *mut u8,
}

fn assert_shared<T: SharedLayout>() {}

fn main() {
    // A struct holding raw pointers is neither `Send` nor `Sync`, so no stub impl comes with the
    // errors above: this use fails once, with the trait's own message, instead of once per pointer
    // field and auto trait.
    assert_shared::<Node>();
}
