//! Links the `tributary-mock-kafka` binary with a wrapper around one function
//! of librdkafka's mock cluster; see `member_ids` in `src/bin/mock_kafka.rs`.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(mock_member_ids)");
    println!("cargo:rerun-if-changed=build.rs");
    // GNU ld's `--wrap`: calls to the symbol from other object files go to
    // `__wrap_<symbol>`, which reaches the original as `__real_<symbol>`.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!(
            "cargo:rustc-link-arg-bin=tributary-mock-kafka=\
             -Wl,--wrap=rd_kafka_mock_cgrp_classic_member_add"
        );
        println!("cargo:rustc-cfg=mock_member_ids");
    }
}
