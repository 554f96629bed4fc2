//! A load run: join the rooms' peers, measure a steady window (or ramp the
//! subscribers step by step), leave, report.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::{debug, info, warn};

use crate::config::{LoadArgs, Target};
use crate::direct::DirectApi;
use crate::janus::JanusApi;
use crate::payload::StreamId;
use crate::peer::{PeerBuilder, PeerHandle, PublishSpec, Shared};
use crate::procstat::ProcWatch;
use crate::report::{loadgen_cores, Measurement, RampReport, Report, Step};
use crate::signaling::SignalingApi;
use crate::stats::{Percentiles, Window};
use crate::LoadError;

/// How long after the senders stop in-flight packets may still arrive.
const DRAIN: Duration = Duration::from_millis(500);
/// Longest wait for the subscribers' first media after the joins.
const FIRST_MEDIA_WAIT: Duration = Duration::from_secs(10);

enum Backend {
    Direct {
        api: Arc<DirectApi>,
        rooms: Vec<String>,
    },
    Signaling(Arc<SignalingApi>),
    Janus(Arc<JanusApi>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher,
    Subscriber,
}

struct Peer {
    handle: PeerHandle,
    role: Role,
}

struct Runner {
    args: LoadArgs,
    shared: Arc<Shared>,
    backend: Backend,
    peers: Vec<Peer>,
    failed: u32,
    /// Subscribers per room joined so far (next index).
    subs_per_room: u32,
    next_sub: u32,
    sfu: Option<ProcWatch>,
    own: Option<ProcWatch>,
    bar: ProgressBar,
    deadline: Instant,
    run_tag: String,
}

/// Run the load described by `args` and return the report.
pub async fn run(args: LoadArgs) -> Result<Report, LoadError> {
    payload_epoch();
    let deadline = Instant::now() + args.max_time;
    let bar = if args.json {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_message("setting up");
    let backend = match (args.target, args.direct) {
        (Target::Janus, _) => {
            Backend::Janus(JanusApi::setup(&args.url, args.rooms, args.publishers).await?)
        }
        (Target::Convene, true) => {
            let secret = args.sfu_secret.clone().ok_or_else(|| {
                LoadError::Config(
                    "--direct needs --sfu-secret (the SFU's --sfu-http-secret)".into(),
                )
            })?;
            let api = DirectApi::connect(&args.sfu_url, &secret).await?;
            let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
            let rooms = (0..args.rooms).map(|r| format!("load-{tag}-{r}")).collect();
            Backend::Direct { api, rooms }
        }
        (Target::Convene, false) => {
            Backend::Signaling(SignalingApi::setup(&args.url, args.rooms).await?)
        }
    };
    let mut r = Runner {
        shared: Shared::new(),
        backend,
        peers: Vec::new(),
        failed: 0,
        subs_per_room: 0,
        next_sub: 0,
        sfu: None,
        own: ProcWatch::new(std::process::id() as i32).ok(),
        bar,
        deadline,
        run_tag: format!("{:04x}", rand::random::<u16>()),
        args,
    };
    let result = r.drive().await;
    r.bar.set_message("leaving");
    r.leave().await;
    r.bar.finish_and_clear();
    result
}

fn payload_epoch() {
    // Fix the time origin before any packet is stamped.
    let _ = crate::payload::epoch();
}

impl Runner {
    async fn drive(&mut self) -> Result<Report, LoadError> {
        self.bar.set_message("joining publishers");
        self.join_publishers().await?;
        let start_subs = if self.args.ramp {
            self.args.subscribers.max(1)
        } else {
            self.args.subscribers
        };
        self.bar.set_message("joining subscribers");
        self.add_subscribers(start_subs).await;
        self.wait_first_media().await;
        self.find_sfu();

        let joins: Vec<Duration> = self
            .peers
            .iter()
            .filter(|p| p.role == Role::Subscriber)
            .filter_map(|p| p.handle.stats.lock().join_time())
            .collect();
        let mut report = self.base_report();
        report.join_ms = Percentiles::of(&joins);

        if !self.args.ramp {
            let m = self.measure(self.args.duration, true).await;
            report.m = m;
            return Ok(report);
        }

        let step = self
            .args
            .ramp_step
            .unwrap_or(self.args.subscribers.max(1))
            .max(1);
        let mut steps: Vec<Step> = Vec::new();
        let mut held: Option<Measurement> = None;
        loop {
            let m = self.measure(self.args.duration, false).await;
            let passed = m.packets_received > 0
                && m.loss <= self.args.max_loss
                && m.latency_ms.p99 <= self.args.max_p99_ms;
            info!(
                subscribers_per_room = m.subscribers_per_room,
                loss = m.loss,
                p99_ms = m.latency_ms.p99,
                passed,
                "ramp step"
            );
            steps.push(Step {
                passed,
                m: m.clone(),
            });
            if !passed {
                break;
            }
            held = Some(m);
            let next = self.subs_per_room + step;
            let step_time = self.args.duration + self.args.settle + Duration::from_secs(5);
            if next > self.args.ramp_max_subscribers || Instant::now() + step_time > self.deadline {
                break;
            }
            self.bar
                .set_message(format!("ramp: joining up to {next} subscribers per room"));
            let failed_before = self.failed;
            self.add_subscribers(step).await;
            if self.failed > failed_before {
                warn!(
                    failed = self.failed - failed_before,
                    "joins failed at this step; stopping the ramp"
                );
                break;
            }
            self.wait_first_media().await;
        }
        // Final numbers: the largest step held (or the first, failed one).
        let joins: Vec<Duration> = self
            .peers
            .iter()
            .filter(|p| p.role == Role::Subscriber)
            .filter_map(|p| p.handle.stats.lock().join_time())
            .collect();
        report.join_ms = Percentiles::of(&joins);
        report.peers_joined = self.peers.len() as u32;
        report.peers_failed = self.failed;
        report.m = held
            .clone()
            .or_else(|| steps.first().map(|s| s.m.clone()))
            .unwrap_or_default();
        report.ramp = Some(RampReport {
            max_subscribers_per_room_held: held.map_or(0, |m| m.subscribers_per_room),
            max_loss: self.args.max_loss,
            max_p99_ms: self.args.max_p99_ms,
            steps,
        });
        Ok(report)
    }

    fn base_report(&self) -> Report {
        Report {
            target: match self.args.target {
                Target::Convene => "convene".into(),
                Target::Janus => "janus".into(),
            },
            mode: self.args.mode().into(),
            rooms: self.args.rooms,
            publishers: self.args.publishers,
            subscribers: self.subs_per_room,
            simulcast: self.args.simulcast,
            video_kbps: self.args.video_kbps,
            peers_joined: self.peers.len() as u32,
            peers_failed: self.failed,
            join_ms: Percentiles::default(),
            sfu_pid: self.sfu.as_ref().map(|s| s.pid),
            m: Measurement::default(),
            ramp: None,
        }
    }

    fn spec(&self, index: u32) -> PublishSpec {
        PublishSpec {
            index,
            video_kbps: self.args.video_kbps,
            simulcast: self.args.simulcast,
            fps: self.args.fps,
            keyframe_interval: self.args.keyframe_interval,
        }
    }

    async fn join_publishers(&mut self) -> Result<(), LoadError> {
        let jobs: Vec<(u32, u32)> = (0..self.args.rooms)
            .flat_map(|room| (0..self.args.publishers).map(move |i| (room, i)))
            .collect();
        let publishers = self.args.publishers;
        let results: Vec<_> = futures::stream::iter(jobs)
            .map(|(room, i)| {
                let index = room * publishers + i;
                self.join_one(room, Role::Publisher, index)
            })
            .buffer_unordered(self.args.join_concurrency.max(1))
            .collect()
            .await;
        for r in results {
            match r {
                Ok(h) => self.peers.push(Peer {
                    handle: h,
                    role: Role::Publisher,
                }),
                Err(e) => {
                    warn!("publisher join failed: {e}");
                    self.failed += 1;
                }
            }
        }
        if !self.peers.iter().any(|p| p.role == Role::Publisher) {
            return Err(LoadError::Server("no publisher could join".into()));
        }
        // Tracks are published at join; give connections a moment so the
        // subscribers' first keyframe is not a timeout away.
        self.wait_connected(Role::Publisher, Duration::from_secs(10))
            .await;
        Ok(())
    }

    async fn add_subscribers(&mut self, per_room: u32) {
        let first = self.next_sub;
        let jobs: Vec<(u32, u32)> = (0..self.args.rooms)
            .flat_map(|room| (0..per_room).map(move |i| (room, i)))
            .collect();
        let n = jobs.len() as u32;
        let results: Vec<_> = futures::stream::iter(jobs.into_iter().enumerate())
            .map(|(k, (room, _))| self.join_one(room, Role::Subscriber, first + k as u32))
            .buffer_unordered(self.args.join_concurrency.max(1))
            .collect()
            .await;
        self.next_sub += n;
        self.subs_per_room += per_room;
        for r in results {
            match r {
                Ok(h) => self.peers.push(Peer {
                    handle: h,
                    role: Role::Subscriber,
                }),
                Err(e) => {
                    warn!("subscriber join failed: {e}");
                    self.failed += 1;
                }
            }
        }
    }

    /// Join one peer through the backend and start it.
    async fn join_one(&self, room: u32, role: Role, index: u32) -> Result<PeerHandle, LoadError> {
        let name = match role {
            Role::Publisher => format!("p{index}-{}", self.run_tag),
            Role::Subscriber => format!("s{index}-{}", self.run_tag),
        };
        let mut b = PeerBuilder::new(name.clone(), self.args.bind_ip, Instant::now())?;
        let offer = match role {
            Role::Publisher => Some(b.publisher_offer(self.spec(index))?),
            Role::Subscriber if !matches!(self.backend, Backend::Janus(_)) => {
                Some(b.subscriber_offer()?)
            }
            Role::Subscriber => None,
        };
        match &self.backend {
            Backend::Direct { api, rooms } => {
                let room_id = &rooms[room as usize];
                let offer = offer.unwrap_or_default();
                api.join(room_id, &name, offer, &mut b).await?;
                let h = b.spawn(self.shared.clone())?;
                api.negotiate(room_id, &name, h.negotiator());
                if role == Role::Subscriber {
                    let want = (self.args.publishers * 2) as usize;
                    let tracks = api
                        .wait_tracks(room_id, want, Duration::from_secs(10))
                        .await;
                    if tracks.is_empty() {
                        return Err(LoadError::Server(format!("no tracks in room {room_id}")));
                    }
                    api.subscribe(room_id, &name, tracks).await?;
                }
                Ok(h)
            }
            Backend::Signaling(api) => {
                let offer = offer.unwrap_or_default();
                let session = api.join(room, offer, &mut b).await?;
                let h = b.spawn(self.shared.clone())?;
                session.run(h.negotiator(), self.shared.stop_signal(), name);
                Ok(h)
            }
            Backend::Janus(api) => {
                let handle = match role {
                    Role::Publisher => {
                        let offer = offer.unwrap_or_default();
                        api.join_publisher(room, &name, offer, &mut b).await?
                    }
                    Role::Subscriber => api.join_subscriber(room, &mut b).await?,
                };
                let h = b.spawn(self.shared.clone())?;
                api.forward_candidates(handle, h.negotiator());
                Ok(h)
            }
        }
    }

    async fn wait_connected(&self, role: Role, within: Duration) {
        let end = Instant::now() + within;
        while Instant::now() < end {
            let pending = self
                .peers
                .iter()
                .filter(|p| p.role == role)
                .filter(|p| p.handle.stats.lock().connected_at.is_none())
                .count();
            if pending == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        warn!(?role, "some peers did not connect in time");
    }

    async fn wait_first_media(&self) {
        let end = Instant::now() + FIRST_MEDIA_WAIT;
        loop {
            let pending = self
                .peers
                .iter()
                .filter(|p| p.role == Role::Subscriber)
                .filter(|p| p.handle.stats.lock().first_media_at.is_none())
                .count();
            if pending == 0 {
                return;
            }
            if Instant::now() >= end {
                warn!(
                    pending,
                    "subscribers without media after {FIRST_MEDIA_WAIT:?}"
                );
                return;
            }
            self.bar
                .set_message(format!("waiting for media at {pending} subscribers"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The SFU process: `--sfu-pid`, or the owner of the port media came from.
    fn find_sfu(&mut self) {
        if let Some(pid) = self.args.sfu_pid {
            match ProcWatch::new(pid) {
                Ok(w) => self.sfu = Some(w),
                Err(e) => warn!(pid, "cannot watch the SFU process: {e}"),
            }
            return;
        }
        let remote = self.peers.iter().find_map(|p| p.handle.stats.lock().remote);
        let Some(remote) = remote else {
            warn!("no media received: cannot find the SFU process");
            return;
        };
        match ProcWatch::owner_of_udp_port(remote.port()) {
            Ok(w) => {
                debug!(pid = w.pid, port = remote.port(), "SFU process");
                self.sfu = Some(w);
            }
            Err(e) => warn!("cannot find the SFU process ({remote}): {e}; pass --sfu-pid"),
        }
    }

    fn sent_packets(&self) -> u64 {
        self.peers
            .iter()
            .filter_map(|p| p.handle.sent.as_ref())
            .map(|s| s.lock().packets)
            .sum()
    }

    fn received_now(&self) -> u64 {
        self.peers
            .iter()
            .map(|p| p.handle.stats.lock().peek_received())
            .sum()
    }

    fn take_windows(&self) -> Window {
        let mut w = Window::default();
        for p in &self.peers {
            w.merge(&p.handle.stats.lock().take_window());
        }
        w
    }

    /// Settle, then measure for `hold`. With `last`, the senders stop at the
    /// end and the tails of every stream are counted.
    async fn measure(&mut self, hold: Duration, last: bool) -> Measurement {
        let settle_until = Instant::now() + self.args.settle;
        self.bar.set_message("settling");
        tokio::time::sleep_until(settle_until.into()).await;
        let _ = self.take_windows();
        let cpu0 = self.sfu.as_ref().and_then(|s| s.cpu().ok());
        let own0 = self.own.as_ref().and_then(|s| s.cpu().ok());
        let sent0 = self.sent_packets();
        let t0 = Instant::now();
        let end = (t0 + hold).min(self.deadline.max(t0 + Duration::from_secs(1)));
        let mut last_rx = self.received_now();
        let mut last_t = t0;
        while Instant::now() < end {
            let next = (Instant::now() + Duration::from_secs(1)).min(end);
            tokio::time::sleep_until(next.into()).await;
            let rx = self.received_now();
            let now = Instant::now();
            let pps = (rx.saturating_sub(last_rx)) as f64 / (now - last_t).as_secs_f64().max(1e-3);
            (last_rx, last_t) = (rx, now);
            self.bar.set_message(format!(
                "{} subs/room: {:.0}/{:.0} s, receiving {:.0} packets/s",
                self.subs_per_room,
                (now - t0).as_secs_f64(),
                hold.as_secs_f64(),
                pps
            ));
        }
        let t1 = Instant::now();
        let cpu1 = self.sfu.as_ref().and_then(|s| s.cpu().ok());
        let own1 = self.own.as_ref().and_then(|s| s.cpu().ok());
        let sent1 = self.sent_packets();
        if last {
            self.shared.sending.store(false, Ordering::Relaxed);
            tokio::time::sleep(DRAIN).await;
            let mut last_sent: HashMap<StreamId, u32> = HashMap::new();
            for p in &self.peers {
                if let Some(s) = &p.handle.sent {
                    last_sent.extend(s.lock().last_seq.iter().map(|(k, v)| (*k, *v)));
                }
            }
            for p in &self.peers {
                p.handle.stats.lock().finish(&last_sent);
            }
        }
        let w = self.take_windows();
        let secs = (t1 - t0).as_secs_f64();
        let mut m = Measurement {
            subscribers_per_room: self.subs_per_room,
            ..Default::default()
        };
        m.fill_from(&w, secs);
        m.sent_pps = sent1.saturating_sub(sent0) as f64 / secs.max(1e-9);
        if let (Some(s), Some(a), Some(b)) = (&self.sfu, cpu0, cpu1) {
            m.set_cpu(s.cores_between(a, b));
            m.rss_mb = s.rss_mb().ok();
        }
        if let (Some(s), Some(a), Some(b)) = (&self.own, own0, own1) {
            let limit = loadgen_cores();
            let cores = s.cores_between(a, b);
            m.set_loadgen_cpu(cores, limit);
            if m.loadgen_limited == Some(true) {
                warn!(
                    loadgen_cpu_cores = format!("{cores:.2}"),
                    limit,
                    "the load generator kept most of its cores busy: it may be the limit \
                     of this run, not the server (use a bigger machine or fewer peers per \
                     generator)"
                );
            }
        }
        m
    }

    async fn leave(&mut self) {
        self.shared.stop();
        for p in &mut self.peers {
            let _ = tokio::time::timeout(Duration::from_secs(2), p.handle.join()).await;
        }
        match &self.backend {
            Backend::Direct { api, rooms } => {
                for r in rooms {
                    api.close_room(r).await;
                }
            }
            // Sessions send `leave` and close on the stop signal.
            Backend::Signaling(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Backend::Janus(api) => api.close().await,
        }
    }
}
