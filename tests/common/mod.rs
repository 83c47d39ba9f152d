//! Helpers shared by the integration tests: real peers for sensorcast to talk to.
//! `broker` runs a private mosquitto per test; `jsclient` drives the official Socket.io client;
//! `wait` is how every test waits for a condition.
#![allow(dead_code)]

pub mod broker;
pub mod jsclient;
pub mod rawws;
pub mod service;
pub mod wait;
