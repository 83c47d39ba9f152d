//! The engine task with paused tokio time: timers fire on their own, without any new input,
//! at the right moment; a restart from the state file neither forgets nor re-announces an alert;
//! a corrupt state file is set aside and reported.

use chrono::Utc;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::core::reading::SensorReading;

const REGISTRY: &str = r#"
[[org]]
id = "o1"
temp_min = -25
temp_max = -15
[[site]]
id = "s1"
org = "o1"
[[unit]]
id = "freezer"
site = "s1"
[[sensor]]
id = "probe"
unit = "freezer"
"#;

const MIN: Duration = Duration::from_secs(60);

/// A running engine and the channel that sees its events.
struct Running {
    alerts: Alerts,
    events: mpsc::UnboundedReceiver<Event>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Running {
    fn start(dir: &Path, clock: Clock) -> Running {
        let registry = Registry::parse(REGISTRY, Path::new("r.toml")).unwrap();
        let config = AlertsConfig {
            resume_grace: Duration::from_secs(10),
            ..AlertsConfig::default()
        };
        let (alerts, engine) = Alerts::new(&config, dir, &registry, clock).unwrap();
        let (tap, events) = mpsc::unbounded_channel();
        let outlets = Outlets {
            fanout: None,
            tap: Some(tap),
            cluster: None,
            archive: None,
        };
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        tasks.spawn(engine.run(outlets, tasks.clone(), stop.clone()));
        Running {
            alerts,
            events,
            tasks,
            stop,
        }
    }

    async fn read(&self, temperature: f64) {
        self.alerts.reading(&reading(temperature)).await
    }

    /// The next event, waiting (in paused time) up to `within`.
    async fn next(&mut self, within: Duration) -> Option<Event> {
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

fn reading(temperature: f64) -> SensorReading {
    let now = Utc::now();
    SensorReading {
        id: "x".into(),
        seq: 1,
        unit_id: "freezer".into(),
        site_id: "s1".into(),
        organization_id: "o1".into(),
        device_id: "probe".into(),
        temperature,
        humidity: None,
        battery: None,
        signal_strength: None,
        recorded_at: now,
        received_at: now,
        source: "json",
        extra: Vec::new(),
        retained: false,
        door: None,
    }
}

#[tokio::test(start_paused = true)]
async fn an_excursion_escalates_after_confirm_after_with_no_further_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Running::start(dir.path(), Clock::tokio());
    e.read(-12.0).await;
    let Some(Event::Triggered(t)) = e.next(Duration::from_secs(1)).await else {
        panic!("triggered first")
    };
    assert!(matches!(
        e.next(Duration::from_secs(1)).await,
        Some(Event::StateChanged(_))
    ));
    let started = tokio::time::Instant::now();
    let Some(Event::Escalated(x)) = e.next(10 * MIN).await else {
        panic!("escalated on time")
    };
    assert_eq!(x.alert_id, t.alert_id);
    assert_eq!(
        x.escalated_at - t.triggered_at,
        chrono::Duration::minutes(5)
    );
    let waited = started.elapsed();
    assert!(
        waited >= 5 * MIN - Duration::from_secs(1) && waited <= 5 * MIN,
        "{waited:?}"
    );
    assert_eq!(e.alerts.view().alerts[0].severity, Severity::Critical);
    e.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_unit_goes_offline_on_time_and_back_with_a_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Running::start(dir.path(), Clock::tokio());
    e.read(-20.0).await;
    tokio::time::sleep(14 * MIN).await;
    assert!(e.events.try_recv().is_err(), "nothing before offline_after");
    let Some(Event::Triggered(t)) = e.next(2 * MIN).await else {
        panic!("offline alert")
    };
    assert_eq!(t.alert_type, AlertType::MonitoringInterrupted);
    assert_eq!(e.alerts.view().states["freezer"], UnitState::Offline);
    e.read(-20.0).await;
    let got: Vec<&str> = [e.next(MIN).await, e.next(MIN).await, e.next(MIN).await]
        .iter()
        .map(|ev| ev.as_ref().map_or("-", Event::name))
        .collect();
    assert_eq!(
        got,
        ["unit:state:changed", "alert:resolved", "unit:state:changed"]
    );
    e.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_keeps_the_open_alert_and_the_remaining_time_without_re_triggering() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio(); // one clock across both runs, as the wall clock would be
    let mut first = Running::start(dir.path(), clock);
    first.read(-12.0).await;
    let Some(Event::Triggered(t)) = first.next(Duration::from_secs(1)).await else {
        panic!()
    };
    tokio::time::sleep(2 * MIN).await;
    first.stop().await;
    assert!(dir.path().join(store::FILE).exists());

    let mut second = Running::start(dir.path(), clock);
    let open = second.alerts.view().alerts.clone();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].alert_id, t.alert_id);
    second.read(-11.0).await; // still out of range: the same excursion
    let restarted = tokio::time::Instant::now();
    let Some(Event::Escalated(x)) = second.next(10 * MIN).await else {
        panic!("escalation, and nothing before it")
    };
    assert_eq!(x.alert_id, t.alert_id);
    let waited = restarted.elapsed();
    assert!(
        waited > 2 * MIN + Duration::from_secs(50) && waited <= 3 * MIN,
        "the 3 minutes left, not a new 5: {waited:?}"
    );
    second.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_state_file_is_set_aside_reported_and_the_engine_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(store::FILE), "{ not json").unwrap();
    let mut e = Running::start(dir.path(), Clock::tokio());
    let health = e.alerts.health();
    assert_eq!(health["status"], "error");
    let problem = health["store"]["problem"].as_str().unwrap();
    assert!(problem.contains("moved to"), "{problem}");
    let moved = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|f| f.ok())
        .any(|f| {
            f.file_name()
                .to_string_lossy()
                .starts_with("alerts.json.corrupt-")
        });
    assert!(moved);
    e.read(-5.0).await;
    assert!(matches!(
        e.next(Duration::from_secs(1)).await,
        Some(Event::Triggered(_))
    ));
    e.stop().await;
    let saved = std::fs::read_to_string(dir.path().join(store::FILE)).unwrap();
    assert!(
        saved.contains("\"freezer\""),
        "a fresh file was written: {saved}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_with_bad_rules_is_refused_and_good_ones_keep_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Running::start(dir.path(), Clock::tokio());
    e.read(-12.0).await;
    let Some(Event::Triggered(t)) = e.next(Duration::from_secs(1)).await else {
        panic!()
    };
    assert!(matches!(
        e.next(Duration::from_secs(1)).await,
        Some(Event::StateChanged(_))
    ));
    let bad = REGISTRY.replace("temp_min = -25", "temp_min = -15.2");
    let bad = Registry::parse(&bad, Path::new("r.toml")).unwrap();
    assert!(matches!(
        e.alerts.reload(&bad).await,
        Err(RuleError::Band { .. })
    ));
    let good = REGISTRY.replace("temp_max = -15", "temp_max = -10");
    let good = Registry::parse(&good, Path::new("r.toml")).unwrap();
    e.alerts.reload(&good).await.unwrap();
    let open = e.alerts.view().alerts.clone();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].alert_id, t.alert_id);
    // Under the new limit and past its band: restoring.
    e.read(-11.0).await;
    let Some(Event::StateChanged(s)) = e.next(Duration::from_secs(1)).await else {
        panic!()
    };
    assert_eq!(s.new_state, UnitState::Restoring);
    e.stop().await;
}
