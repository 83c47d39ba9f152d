//! Fuzzes the `tasmota` decoder: see common.rs for how input bytes become messages.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(sensorcast::decode::Format::Tasmota, data));
