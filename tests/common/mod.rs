//! Helpers shared by the integration tests: real peers for sensorcast to talk to, and one way
//! to start it. `broker` runs a private mosquitto per test, `redis` a private redis-server (`cluster` starts several instances on them); `proxy` stands between sensorcast
//! and the broker to lose or hold a SUBSCRIBE; `jsclient` drives the official Socket.io client
//! (`rawws` a raw websocket); `config` builds the files sensorcast runs on and `service` starts
//! it on them; `http` asks its endpoints; `notify` reads what the binary tells systemd; `wait`
//! is how every test waits; `webhook` receives webhooks; `fixtures` says where the payload fixtures are.
#![allow(dead_code)]

pub mod broker;
pub mod cluster;
pub mod config;
pub mod fixtures;
pub mod http;
pub mod jsclient;
pub mod notify;
pub mod proxy;
pub mod rawws;
pub mod redis;
pub mod service;
pub mod wait;
pub mod webhook;
