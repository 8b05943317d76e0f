use shmstore::SharedLayout;

#[derive(SharedLayout)]
struct Config {
    port: u16,
    max_conn: u16,
}

fn main() {}
