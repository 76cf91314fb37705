//! `sqlx::migrate!` embeds migrations/ at compile time: rebuild when they
//! change. (The protos are compiled by the wire crate, `wire/build.rs`.)

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
