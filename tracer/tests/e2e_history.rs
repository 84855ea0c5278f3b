//! End-to-end history of the business view on the real kernel: the python
//! shop (tests/common/shop.rs) in its own network namespace, an agent with
//! `--netns` and a history file of this test's own. Checked: after SIGTERM
//! and a restart on the same file, /api/transactions gives the same KPIs,
//! SLO budgets, burn rates and alert start as before, equal to the load
//! generator's counts, and the second agent counts on from there; a
//! history path on a read-only file system is a clear error on /readyz, in
//! the log and in the API, while tracing goes on.
//!
//! Baselines of "yesterday" cannot be waited for here: they are checked in
//! unit tests with injected time (business/history_tests.rs).

mod common;

use std::{process::Command, thread, time::Duration};

use common::{shop::*, *};
use serde_json::Value;

const SHOP: &str = "histshop";
const STOCK: &str = "histstock";

fn shop(ns: &Namespace) -> (Proc, Proc, u16) {
    let (shop_port, stock_port) = (free_port(), free_port());
    let stock = python_in(&ns.name, &[stock_port.to_string()], &[("OTEL_SERVICE_NAME", STOCK)]);
    let shop = python_in(
        &ns.name,
        &[shop_port.to_string(), stock_port.to_string()],
        &[("OTEL_SERVICE_NAME", SHOP), ("OTEL_RESOURCE_ATTRIBUTES", "service.version=2.0.1")],
    );
    (stock, shop, shop_port)
}

fn config(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("tracer-e2e-history-{name}-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            r#"
[[business.transactions]]
name = "checkout"
service = "{SHOP}"
route = "/checkout"
apdex_t_ms = 100
slo = {{ availability = 99.0, latency = 99.0, latency_ms = 1000, window = "7d" }}

[[business.transactions]]
name = "search"
service = "{SHOP}"
route = "/search*"
"#
        ),
    )
    .unwrap();
    path
}

/// The fields that must not change across a restart (rate_per_s moves
/// with the clock: it divides by the minutes lived).
fn stable(t: &Value) -> Value {
    let mut k = t["kpis"].clone();
    k.as_object_mut().unwrap().remove("rate_per_s");
    let slos: Vec<Value> = t["slos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::json!({"name": s["name"], "budget": s["budget_remaining"], "burn": s["burn_rates"], "alerts": s["alerts"]}))
        .collect();
    let versions: Vec<Value> = t["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| serde_json::json!({"version": v["version"], "count": v["kpis"]["count"], "errors": v["kpis"]["errors"]}))
        .collect();
    serde_json::json!({"kpis": k, "slos": slos, "versions": versions})
}

#[test]
fn kpis_and_slo_state_survive_a_restart() {
    let ns = Namespace::create("hist");
    let (_stock, _shop, port) = shop(&ns);
    let cfg = config("restart");
    let dir = std::env::temp_dir().join(format!("tracer-e2e-history-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("history.redb");
    let args = ["--netns", &ns.path(), "--config", cfg.to_str().unwrap(), "--history", file.to_str().unwrap()];
    let agent = Agent::start(&args);

    // 120 checkouts, 30 of them 500s (25 %: the page alert fires), 40 searches.
    let mut reqs: Vec<(&'static str, String)> =
        (0..120).map(|i| ("checkout", format!("/checkout?d={}&fail={}", 5 + i % 40, u8::from(i % 4 == 0)))).collect();
    reqs.extend((0..40).map(|i| ("search", format!("/search?d={}", i % 20))));
    let samples = load(&ns.name, port, reqs, 4);
    let count = |p: &str, err: bool| samples.iter().filter(|s| s.path == p && (!err || s.status >= 500)).count() as u64;
    assert_eq!((count("checkout", false), count("checkout", true), count("search", false)), (120, 30, 40));

    let _ = wait_until("the counts and the page alert", Duration::from_secs(30), || {
        let t = transactions(&agent);
        let c = t.get("checkout");
        let ok = c.is_some_and(|c| {
            c["kpis"]["count"] == 120 && c["kpis"]["errors"] == 30 && c["slos"][0]["alerts"][0]["firing"] == true
        }) && t.get("search").is_some_and(|s| s["kpis"]["count"] == 40);
        (ok, t)
    });
    // The last requests go just before SIGTERM: the shutdown writes them.
    load(&ns.name, port, (0..5).map(|_| ("search", "/search?d=1".to_string())).collect(), 1);
    let before = wait_until("45 searches", Duration::from_secs(10), || {
        let t = transactions(&agent);
        (t.get("search").is_some_and(|s| s["kpis"]["count"] == 45), t)
    });
    eprintln!("before: checkout {}", stable(&before["checkout"]));
    let (code, body) = http_get(agent.api, "/api/transactions?window=1h").unwrap();
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["history"]["path"], file.to_str().unwrap(), "{}", v["history"]);
    assert!(v["history"]["off"].is_null(), "{}", v["history"]);
    // No earlier days: no band, and the baseline says so.
    let b = &before["checkout"]["baseline"];
    assert!(b["yesterday"].is_null() && b["days"] == 0, "{b}");
    assert!(b["band_note"].as_str().unwrap().contains("0 of the last 7 days"), "{b}");
    assert!(b["kpis"]["p95_ms"]["band"].is_null() && b["kpis"]["p95_ms"]["flag"].is_null(), "{b}");
    agent.stop();
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    eprintln!("history file after one run: {size} bytes");

    let again = Agent::start(&args);
    let after = wait_until("the restored transactions", Duration::from_secs(20), || {
        let t = transactions(&again);
        (t.get("checkout").is_some_and(|c| c["kpis"]["count"] == 120) && t.contains_key("search"), t)
    });
    for name in ["checkout", "search"] {
        assert_eq!(stable(&after[name]), stable(&before[name]), "{name} after the restart");
    }
    assert!(again.all_output().contains("transactions restored"), "the restore is logged");
    assert!(again.metrics().contains("\ntracer_business_history_up 1\n"), "history up on /metrics");

    // The second run counts on from the restored numbers.
    load(&ns.name, port, (0..10).map(|_| ("checkout", "/checkout?d=5".to_string())).collect(), 2);
    wait_until("130 checkouts", Duration::from_secs(20), || {
        let t = transactions(&again);
        (t.get("checkout").is_some_and(|c| c["kpis"]["count"] == 130 && c["kpis"]["errors"] == 30), ())
    });
    // 7d: the history's hours before this one plus this hour from memory.
    let (code, body) = http_get(again.api, "/api/transactions?window=7d").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let c = v["transactions"].as_array().unwrap().iter().find(|t| t["name"] == "checkout").unwrap();
    assert!(c["kpis"]["count"].as_u64().unwrap() >= 120, "{}", c["kpis"]);
    again.assert_no_drops();
    again.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}

/// A small tmpfs mounted for the test (`opts`: "ro", "rw"), unmounted at drop.
struct TmpFs(std::path::PathBuf);

impl TmpFs {
    fn mount(name: &str, opts: &str) -> TmpFs {
        let d = std::env::temp_dir().join(format!("tracer-e2e-history-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let o = format!("{opts},size=2m");
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &o, "tmpfs"]).arg(&d).status().unwrap();
        assert!(ok.success(), "mount a tmpfs ({o}) on {}", d.display());
        TmpFs(d)
    }
}

impl Drop for TmpFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn an_unwritable_history_is_a_clear_error_and_tracing_goes_on() {
    let ns = Namespace::create("histro");
    let (_stock, _shop, port) = shop(&ns);
    let cfg = config("ro");
    let ro = TmpFs::mount("ro", "ro");
    let file = ro.0.join("history.redb");
    let agent =
        Agent::start(&["--netns", &ns.path(), "--config", cfg.to_str().unwrap(), "--history", file.to_str().unwrap()]);
    let (code, ready) = wait_until("/readyz naming the history", Duration::from_secs(10), || {
        let r = http_get(agent.api, "/readyz").unwrap();
        (r.1.contains("business history off"), r)
    });
    eprintln!("/readyz: {ready}");
    assert_eq!(code, 200, "tracing goes on: still ready");
    assert!(ready.contains(file.to_str().unwrap()) && ready.contains("Read-only file system"), "{ready}");
    assert!(agent.all_output().contains("business history off"), "logged");
    assert!(agent.metrics().contains("\ntracer_business_history_up 0\n"), "history down on /metrics");

    load(&ns.name, port, (0..12).map(|_| ("checkout", "/checkout?d=1".to_string())).collect(), 2);
    let t = wait_until("checkouts counted without the history", Duration::from_secs(20), || {
        let t = transactions(&agent);
        (t.get("checkout").is_some_and(|c| c["kpis"]["count"] == 12), t)
    });
    assert!(t["checkout"]["baseline"].is_null(), "no history, no baseline: {}", t["checkout"]["baseline"]);
    let (code, body) = http_get(agent.api, "/api/transactions?window=1h").unwrap();
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["history"]["off"].as_str().unwrap().contains("Read-only"), "{}", v["history"]);
    let (code, body) = http_get(agent.api, "/api/transactions?window=7d").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("needs the history"), "{body}");
    thread::sleep(Duration::from_millis(100));
    agent.stop();
    let _ = std::fs::remove_file(&cfg);
}

/// A full disk: writes fail, the history is off (logged, /readyz) while
/// requests are still counted; with room again it writes again.
#[test]
fn a_full_disk_turns_the_history_off_until_there_is_room() {
    use std::io::Write as _;
    let ns = Namespace::create("histfull");
    let (_stock, _shop, port) = shop(&ns);
    let fs = TmpFs::mount("full", "rw");
    let file = fs.0.join("history.redb");
    let agent = Agent::start(&["--netns", &ns.path(), "--history", file.to_str().unwrap()]);
    assert!(agent.metrics().contains("\ntracer_business_history_up 1\n"), "history up on /metrics");
    // Fill the file system.
    let filler = fs.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    drop(f);
    // 100 routes (404s are entry routes too): 100 default transactions to write.
    let reqs: Vec<(&'static str, String)> = (0..200).map(|i| ("other", format!("/nope-{}", i % 100))).collect();
    load(&ns.name, port, reqs, 4);
    let ready = wait_until("/readyz naming the failed write", Duration::from_secs(40), || {
        let r = http_get(agent.api, "/readyz").unwrap();
        (r.0 == 200 && r.1.contains("business history off: writing"), r.1)
    });
    eprintln!("/readyz: {ready}");
    assert!(ready.contains("No space left"), "{ready}");
    assert!(agent.metrics().contains("\ntracer_business_history_up 0\n"));
    let t = transactions(&agent);
    let counted: u64 = t.values().filter_map(|v| v["kpis"]["count"].as_u64()).sum();
    assert_eq!(counted, 200, "tracing goes on: {:?}", t.keys().collect::<Vec<_>>());
    std::fs::remove_file(&filler).unwrap();
    wait_until("the history written again", Duration::from_secs(30), || {
        (!http_get(agent.api, "/readyz").unwrap().1.contains("business history"), ())
    });
    assert!(agent.all_output().contains("again"), "the recovery is logged");
    agent.stop();
}
