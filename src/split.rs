//! The services as separate processes: `convene sfu` and `convene signaling`
//! (`convene control` is in `up.rs`). Each serves `/healthz` and its own
//! `/metrics`, so a deployment probes and scrapes each process on its port.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use convene_control::ApiError;
use convene_signaling::remote::{RemoteControl, RemoteSfu, RemoteUsers};
use convene_signaling::{NodeOptions, Signaling};
use prometheus::Encoder as _;
use tokio::net::TcpListener;

use crate::cli::{SfuArgs, SignalingArgs};
use crate::up::serve_http;

/// Prometheus text format of the given registries.
fn metrics_response(registries: &[prometheus::Registry]) -> Response {
    let families: Vec<_> = registries.iter().flat_map(|r| r.gather()).collect();
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
        return ApiError::Internal(format!("encoding metrics: {e}")).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        out,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// `/healthz` and `/metrics` over the given registries.
fn ops_routes(registries: Vec<prometheus::Registry>) -> Router {
    Router::new().route("/healthz", get(healthz)).route(
        "/metrics",
        get(move || {
            let registries = registries.clone();
            async move { metrics_response(&registries) }
        }),
    )
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

pub async fn run_sfu(args: SfuArgs) -> anyhow::Result<()> {
    let mut config = args.sfu;
    // The HTTP API is served here, next to /healthz and /metrics, rather
    // than on the SFU's own listener.
    let Some(addr) = config.http_addr.take() else {
        bail!("convene sfu needs --sfu-http-addr (CONVENE_SFU_HTTP_ADDR): signaling reaches the SFU there");
    };
    let secret = match config.http_secret.take() {
        Some(s) if !s.0.is_empty() => s.0,
        _ => bail!("convene sfu needs --sfu-http-secret (CONVENE_SFU_HTTP_SECRET)"),
    };
    let listener = bind(addr).await?;
    let replay = config.event_replay;
    let (sfu, handle) = convene_sfu::start(config).await.context("starting SFU")?;
    let registry = sfu.registry().clone();
    let app = convene_sfu::http::router(handle, &secret, replay)
        .merge(ops_routes(vec![registry.clone()]));
    let http = listener.local_addr()?;
    println!("convene sfu is up");
    println!("  media       udp {}", sfu.local_addr());
    println!("  HTTP API    http://{http}/v1/request  http://{http}/v1/events");
    println!("  metrics     http://{http}/metrics");
    // Event streams never end by themselves: --http-drain-timeout-secs bounds
    // how long they hold the shutdown.
    let served = serve_http(listener, app, &args.limits, &registry).await;
    sfu.shutdown().await;
    served
}

pub async fn run_signaling(args: SignalingArgs) -> anyhow::Result<()> {
    let control = RemoteControl::connect(&args.control_url, &args.internal_secret, &args.redis_url)
        .await
        .context("setting up the control plane client (is REDIS_URL reachable?)")?;
    let users = RemoteUsers::connect(control.clone(), &args.redis_url)
        .await
        .context("setting up the chat client (is REDIS_URL reachable?)")?;
    let sfu =
        RemoteSfu::new(&args.sfu_url, &args.sfu_secret).context("setting up the SFU client")?;
    let redis = redis::Client::open(args.redis_url.as_str()).context("REDIS_URL")?;
    let signaling = Signaling::with_options(
        args.signaling,
        Arc::new(control),
        Arc::new(sfu.clone()),
        args.ice,
        NodeOptions {
            users: Some(Arc::new(users)),
            redis: Some(redis),
        },
    )
    .await
    .context("starting signaling")?;

    let registry = signaling.registry().clone();
    let app = signaling
        .router()
        .merge(convene::web::router())
        .merge(ops_routes(vec![registry.clone()]))
        // Ready once the SFU's event stream is connected: before that, media
        // events for this node's rooms would be lost.
        .route(
            "/readyz",
            get(move || {
                let sfu = sfu.clone();
                async move {
                    if sfu.is_connected() {
                        Ok("ready")
                    } else {
                        Err(ApiError::Unavailable(
                            "SFU event stream not connected".into(),
                        ))
                    }
                }
            }),
        );
    let listener = bind(args.http_addr).await?;
    let addr = listener.local_addr()?;
    println!("convene signaling is up");
    println!("  web client  http://{addr}/");
    println!("  signaling   ws://{addr}/v1/ws");
    println!("  metrics     http://{addr}/metrics");
    println!("  control     {}", args.control_url);
    println!("  SFU         {}", args.sfu_url);
    serve_http(listener, app, &args.limits, &registry).await
}
