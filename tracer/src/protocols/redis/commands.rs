//! Redis command names and error prefixes: the only words of a Redis
//! exchange that leave the node. A name is kept when it is a known command
//! (or a module command `PREFIX.NAME` of a well-known module), else
//! `_OTHER`; an error prefix when it is a known one, else `_OTHER`, since a
//! script's error reply can start with any word.

use std::borrow::Cow;

/// Longest command name looked at (the longest known one is 20 bytes).
pub const MAX_NAME: usize = 24;

/// Every command of Redis 7.x and 8.0 (top-level names), sorted for
/// binary search.
const COMMANDS: &[&str] = &[
    "ACL",
    "APPEND",
    "ASKING",
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "BITCOUNT",
    "BITFIELD",
    "BITFIELD_RO",
    "BITOP",
    "BITPOS",
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZMPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "COPY",
    "DBSIZE",
    "DEBUG",
    "DECR",
    "DECRBY",
    "DEL",
    "DISCARD",
    "DUMP",
    "ECHO",
    "EVAL",
    "EVALSHA",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXEC",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "FAILOVER",
    "FCALL",
    "FCALL_RO",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS",
    "GEORADIUSBYMEMBER",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GEOSEARCHSTORE",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "HDEL",
    "HELLO",
    "HEXISTS",
    "HEXPIRE",
    "HEXPIREAT",
    "HEXPIRETIME",
    "HGET",
    "HGETALL",
    "HGETDEL",
    "HGETEX",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HPERSIST",
    "HPEXPIRE",
    "HPEXPIREAT",
    "HPEXPIRETIME",
    "HPTTL",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETEX",
    "HSETNX",
    "HSTRLEN",
    "HTTL",
    "HVALS",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LATENCY",
    "LCS",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LMOVE",
    "LMPOP",
    "LOLWUT",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "MEMORY",
    "MGET",
    "MIGRATE",
    "MODULE",
    "MONITOR",
    "MOVE",
    "MSET",
    "MSETNX",
    "MULTI",
    "OBJECT",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PEXPIRETIME",
    "PFADD",
    "PFCOUNT",
    "PFDEBUG",
    "PFMERGE",
    "PFSELFTEST",
    "PING",
    "PSETEX",
    "PSUBSCRIBE",
    "PSYNC",
    "PTTL",
    "PUBLISH",
    "PUBSUB",
    "PUNSUBSCRIBE",
    "QUIT",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "RENAME",
    "RENAMENX",
    "REPLCONF",
    "REPLICAOF",
    "RESET",
    "RESTORE",
    "RESTORE-ASKING",
    "ROLE",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SAVE",
    "SCAN",
    "SCARD",
    "SCRIPT",
    "SDIFF",
    "SDIFFSTORE",
    "SELECT",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SHUTDOWN",
    "SINTER",
    "SINTERCARD",
    "SINTERSTORE",
    "SISMEMBER",
    "SLAVEOF",
    "SLOWLOG",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SORT",
    "SORT_RO",
    "SPOP",
    "SPUBLISH",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "SSUBSCRIBE",
    "STRLEN",
    "SUBSCRIBE",
    "SUBSTR",
    "SUNION",
    "SUNIONSTORE",
    "SUNSUBSCRIBE",
    "SWAPDB",
    "SYNC",
    "TIME",
    "TOUCH",
    "TTL",
    "TYPE",
    "UNLINK",
    "UNSUBSCRIBE",
    "UNWATCH",
    "WAIT",
    "WAITAOF",
    "WATCH",
    "XACK",
    "XADD",
    "XAUTOCLAIM",
    "XCLAIM",
    "XDEL",
    "XGROUP",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREADGROUP",
    "XREVRANGE",
    "XSETID",
    "XTRIM",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZDIFFSTORE",
    "ZINCRBY",
    "ZINTER",
    "ZINTERCARD",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZMPOP",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANGESTORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
    "ZUNIONSTORE",
];

/// Modules whose commands are `PREFIX.NAME` (RedisJSON, RediSearch,
/// RedisTimeSeries, RedisBloom, RedisGraph).
const MODULES: &[&str] = &["BF", "CF", "CMS", "FT", "GRAPH", "JSON", "TDIGEST", "TOPK", "TS"];

/// Error prefixes Redis and its cluster send (`-WRONGTYPE Operation ...`).
const ERRORS: &[&str] = &[
    "ASK",
    "BUSY",
    "BUSYGROUP",
    "BUSYKEY",
    "CLUSTERDOWN",
    "CROSSSLOT",
    "ERR",
    "EXECABORT",
    "INVALIDOBJ",
    "IOERR",
    "LOADING",
    "MASTERDOWN",
    "MISCONF",
    "MOVED",
    "NOAUTH",
    "NOGOODSLAVE",
    "NOGROUP",
    "NOPERM",
    "NOPROTO",
    "NOREPLICAS",
    "NOSCRIPT",
    "OOM",
    "READONLY",
    "TRYAGAIN",
    "UNBLOCKED",
    "UNKILLABLE",
    "WRONGPASS",
    "WRONGTYPE",
];

/// Placeholder for a name that is not a known word.
pub const OTHER: &str = "_OTHER";

/// The command a request names (any case), upper-case: the table's entry
/// (no allocation), or a module command that passed the grammar.
pub fn command(name: &[u8]) -> Cow<'static, str> {
    let mut buf = [0u8; MAX_NAME];
    let Some(up) = upper(name, &mut buf) else { return Cow::Borrowed(OTHER) };
    if let Ok(i) = COMMANDS.binary_search(&up) {
        return Cow::Borrowed(COMMANDS[i]);
    }
    match is_module_command(up) {
        true => Cow::Owned(up.to_string()),
        false => Cow::Borrowed(OTHER),
    }
}

/// `PREFIX.NAME` of a module in [`MODULES`], NAME in [A-Z] of at most 16.
fn is_module_command(up: &str) -> bool {
    let Some((prefix, rest)) = up.split_once('.') else { return false };
    MODULES.binary_search(&prefix).is_ok()
        && !rest.is_empty()
        && rest.len() <= 16
        && rest.bytes().all(|b| b.is_ascii_uppercase())
}

/// The error prefix of an error reply's text (`WRONGTYPE Operation ...`).
pub fn error_prefix(text: &[u8]) -> &'static str {
    let word = text.split(|b| *b == b' ').next().unwrap_or_default();
    let mut buf = [0u8; MAX_NAME];
    match upper(word, &mut buf).filter(|w| w.bytes().all(|b| b.is_ascii_uppercase())) {
        Some(w) => ERRORS.binary_search(&w).map_or(OTHER, |i| ERRORS[i]),
        None => OTHER,
    }
}

/// `name` upper-cased into `buf`, if it is short ASCII without controls.
fn upper<'b>(name: &[u8], buf: &'b mut [u8; MAX_NAME]) -> Option<&'b str> {
    if name.is_empty() || name.len() > MAX_NAME || !name.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name);
    out.make_ascii_uppercase();
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted() {
        for t in [COMMANDS, MODULES, ERRORS] {
            assert!(t.windows(2).all(|w| w[0] < w[1]), "{:?}", t.windows(2).find(|w| w[0] >= w[1]));
        }
    }

    #[test]
    fn names() {
        assert_eq!(command(b"get"), "GET");
        assert_eq!(command(b"ZRangeByScore"), "ZRANGEBYSCORE");
        assert_eq!(command(b"json.set"), "JSON.SET");
        assert_eq!(command(b"JSON.SET"), "JSON.SET");
        for bad in [&b"secret-value-4711"[..], b"", b"GET\x00", b"JSON.", b"EVIL.SET", b"FT.a1", &[b'A'; 40]] {
            assert_eq!(command(bad), OTHER, "{bad:?}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(error_prefix(b"ERR unknown command"), "ERR");
        assert_eq!(error_prefix(b"WRONGTYPE Operation against a key"), "WRONGTYPE");
        assert_eq!(error_prefix(b"SECRET4711 from a script"), OTHER);
        assert_eq!(error_prefix(b""), OTHER);
    }
}
