//! Rebuilds the SDK when the contract changes: `wit_bindgen::generate!`
//! reads `wit/` while compiling, and Cargo would not otherwise know, leaving
//! guests built against the previous contract.

fn main() {
    println!("cargo:rerun-if-changed=../wit");
}
