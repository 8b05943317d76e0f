use shmstore::SharedLayout;

// Plain data, but without `#[derive(SharedLayout)]`.
#[repr(C)]
struct Plain {
    x: u32,
}

// Several problems at once: all of them are reported in one build, each on its own item (including
// `Plain`, which only the compiler can judge), and the uses of `Config` below add no errors of
// their own.
#[derive(SharedLayout)]
struct Config {
    name: String,
    max_conn: usize,
    peer: &'static u32,
    ok: u32,
    plain: Plain,
    callback: fn(u32) -> u32,
    pair: (u8, u8),
}

#[derive(SharedLayout)]
#[repr(C)]
struct Outer {
    config: Config,
    count: u64,
}

fn assert_shared<T: SharedLayout>() {}

fn main() {
    assert_shared::<Config>();
    assert_shared::<Outer>();
    let _ = Config::LAYOUT.fingerprint;
}
