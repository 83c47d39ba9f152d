//! What the cluster keeps in Redis, and the Lua scripts that change it. Every change that must
//! be exclusive to a unit's owner (numbering a reading, committing alert state) runs as one
//! script that first checks, with Redis's own clock, that this instance still owns the unit and
//! is still alive: a stalled or partitioned instance whose units were taken over cannot write
//! (fencing), and what a script writes (history, latest, the stream entry) is all or nothing.
//!
//! Keys, under `key_prefix` (`P`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `P:epoch` | string | the epoch seqs are numbered under; a new one after Redis lost its data |
//! | `P:nodes` | sorted set | live instances, scored by when they expire (ms, Redis time) |
//! | `P:conns` | hash | node → its socket count (`clusterConnections`) |
//! | `P:owner` | hash | unit → the node that owns it |
//! | `P:u:{unit}` | hash | `seq`, `latest` (JSON), `at` (ms of the latest reading's receipt) |
//! | `P:h:{unit}` | list | the unit's recent readings, newest first (resume from any instance) |
//! | `P:f:{unit}` | list | fingerprints of the unit's last published messages, newest first |
//! | `P:tracks` | hash | unit → its alert state (JSON) |
//! | `P:events` | stream | every event, in order: readings, doors, alerts, unit states, acks |
//! | `P:n` | string | the number of the stream's last entry: each entry carries the next (`n`) |
//!
//! The stream is trimmed (`stream_max_len`, approximately): a reader that fell further behind
//! would skip what was trimmed without noticing, so every entry carries a consecutive number
//! and the reader checks it (`relay`).
//!
//! Redis Cluster (sharded) is not supported: the scripts touch keys of several units. A
//! standalone Redis or Valkey, with replicas and Sentinel if wanted, is.

use redis::Script;

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    pub fn conns(&self) -> String {
        format!("{}:conns", self.prefix)
    }
    pub fn owner(&self) -> String {
        format!("{}:owner", self.prefix)
    }
    pub fn tracks(&self) -> String {
        format!("{}:tracks", self.prefix)
    }
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }
    /// The stream's entry counter.
    pub fn numbered(&self) -> String {
        format!("{}:n", self.prefix)
    }
    pub fn unit(&self, unit: &str) -> String {
        format!("{}:u:{unit}", self.prefix)
    }
    pub fn history(&self, unit: &str) -> String {
        format!("{}:h:{unit}", self.prefix)
    }
    pub fn fingerprints(&self, unit: &str) -> String {
        format!("{}:f:{unit}", self.prefix)
    }
}

/// Redis's clock in ms, and the fencing check: `ARGV[1]` (this node) owns `ARGV[2]` (the
/// unit) in `KEYS[1]` (owner) and is alive in `KEYS[2]` (nodes).
const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function fenced()
  if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[1] then return true end
  local alive = redis.call('ZSCORE', KEYS[2], ARGV[1])
  return (not alive) or tonumber(alive) < now
end
"#;

/// KEYS: nodes, conns, epoch. ARGV: node, ttl ms (0: only look, not joined yet), socket
/// count, an epoch to use if there is none. Returns `{epoch, cluster sockets, live nodes}`.
const HEARTBEAT: &str = r#"
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
local old = '(' .. (now - 600000)
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', old)) do
  redis.call('HDEL', KEYS[2], n)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', old)
local epoch = redis.call('GET', KEYS[3])
if not epoch then epoch = ARGV[4]; redis.call('SET', KEYS[3], epoch) end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local conns = 0
for _, n in ipairs(live) do conns = conns + tonumber(redis.call('HGET', KEYS[2], n) or '0') end
return {epoch, conns, live}
"#;

/// KEYS: owner, nodes, fingerprints, tracks, unit. ARGV: node, unit. Takes the unit if nobody
/// owns it, its owner is dead, or it is this node's already. Returns `{0}`, or `{1, previous
/// owner, fingerprints (newest first), alert state, last reading ms}`.
const CLAIM: &str = r#"
local me = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not me or tonumber(me) < now then return {0} end
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if cur and cur ~= ARGV[1] then
  local s = redis.call('ZSCORE', KEYS[2], cur)
  if s and tonumber(s) >= now then return {0} end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
return {1, cur or '', redis.call('LRANGE', KEYS[3], 0, -1),
  redis.call('HGET', KEYS[4], ARGV[2]) or '', redis.call('HGET', KEYS[5], 'at') or ''}
"#;

/// KEYS: owner. ARGV: node, unit. Gives the unit up if this node owns it.
const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[2]) end
return 1
"#;

/// KEYS: nodes, conns. ARGV: node. This node leaves (a clean stop).
const LEAVE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"#;

/// KEYS: owner, nodes, epoch, unit, history, fingerprints, events, entry counter. ARGV: node, unit, the unit
/// id as JSON string content, fingerprint, door JSON or '', the reading's JSON after its
/// `"seq":0` or '', history length, fingerprints kept, stream length, an epoch to use if there
/// is none, the reading's receipt ms, the lowest seq it may get less one. Returns `{0}`
/// (fenced) or `{1, seq}` (0 without a reading).
const PUBLISH: &str = r#"
if fenced() then return {0} end
local epoch = redis.call('GET', KEYS[3])
if not epoch then epoch = ARGV[10]; redis.call('SET', KEYS[3], epoch) end
redis.call('LPUSH', KEYS[6], ARGV[4])
redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[8]) - 1)
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[9], '*', 'k', 'd', 'u', ARGV[2], 'f', ARGV[4], 'p', ARGV[5],
    'n', redis.call('INCR', KEYS[8]))
end
local seq = 0
if ARGV[6] ~= '' then
  seq = math.max(tonumber(redis.call('HGET', KEYS[4], 'seq') or '0'), tonumber(ARGV[12])) + 1
  local json = '{"id":"' .. epoch .. '-' .. ARGV[3] .. '-' .. seq .. '","seq":' .. seq .. ARGV[6]
  redis.call('HSET', KEYS[4], 'seq', seq, 'latest', json, 'at', ARGV[11])
  if tonumber(ARGV[7]) > 0 then
    redis.call('LPUSH', KEYS[5], json)
    redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[7]) - 1)
  end
  redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[9], '*', 'k', 'r', 'u', ARGV[2], 'f', ARGV[4], 'e', epoch, 'p', json,
    'n', redis.call('INCR', KEYS[8]))
end
return {1, seq}
"#;

/// KEYS: owner, nodes, tracks, events, entry counter. ARGV: node, unit, the unit's alert state JSON or '',
/// stream length, then per event: name, payload, organization, site. Returns 0 when fenced.
const COMMIT: &str = r#"
if fenced() then return 0 end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'k', 's', 'u', ARGV[2], 'p', ARGV[3],
    'n', redis.call('INCR', KEYS[5]))
end
for i = 5, #ARGV, 4 do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'k', 'a', 'u', ARGV[2],
    'e', ARGV[i], 'p', ARGV[i + 1], 'o', ARGV[i + 2], 's', ARGV[i + 3], 'n', redis.call('INCR', KEYS[5]))
end
return 1
"#;

/// KEYS: events, entry counter. ARGV: stream length, then field, value pairs. Appends one
/// numbered entry (forwarded acknowledgements and their answers).
const APPEND: &str = r#"
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'n'
fields[#fields + 1] = redis.call('INCR', KEYS[2])
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
"#;

/// ARGV: prefix, then unit, seq pairs. Raises each unit's seq to at least the given one (what
/// an instance numbered alone while Redis was unreachable). Keys are built here: standalone
/// Redis only (see the module doc).
const FLOOR: &str = r#"
for i = 2, #ARGV, 2 do
  local k = ARGV[1] .. ':u:' .. ARGV[i]
  if tonumber(redis.call('HGET', k, 'seq') or '0') < tonumber(ARGV[i + 1]) then
    redis.call('HSET', k, 'seq', ARGV[i + 1])
  end
end
return 1
"#;

/// The scripts, loaded once per process (their SHA1 is what is sent).
pub struct Scripts {
    pub heartbeat: Script,
    pub claim: Script,
    pub release: Script,
    pub leave: Script,
    pub publish: Script,
    pub commit: Script,
    pub floor: Script,
    pub append: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            heartbeat: with_prelude(HEARTBEAT),
            claim: with_prelude(CLAIM),
            release: Script::new(RELEASE),
            leave: Script::new(LEAVE),
            publish: with_prelude(PUBLISH),
            commit: with_prelude(COMMIT),
            floor: Script::new(FLOOR),
            append: Script::new(APPEND),
        }
    }
}

impl Scripts {
    pub fn all(&self) -> [&Script; 8] {
        [
            &self.heartbeat,
            &self.claim,
            &self.release,
            &self.leave,
            &self.publish,
            &self.commit,
            &self.floor,
            &self.append,
        ]
    }
}

/// An `EVALSHA` of `script` with `keys` and `args`, for a pipeline (scripts are loaded on
/// every connection; a `NOSCRIPT` answer loads them again).
pub fn evalsha(script: &Script, keys: &[String], args: Vec<Vec<u8>>) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    for a in args {
        cmd.arg(a);
    }
    cmd
}
